-- Adds one ledger batch to the hour hashes, once.
--
-- KEYS[1]   the batch's marker, switchyard:usage:batch:<id>: set first (NX, for ARGV[1]
--           seconds); when it is already there the batch was applied (its answer was lost
--           and it is being retried), and nothing is added again.
-- KEYS[2]   the sorted set of stored hours.
-- KEYS[3..] one hash per hour the batch touches.
-- ARGV[1]   the marker's lifetime (s); ARGV[2] hours scored at or below it are dropped from
--           the index.
-- ARGV[3..] per hour, in KEYS order: its name (index member), its start (score), when its
--           hash expires (UNIX s); then the increments as triples: the hour's position
--           (1-based, among KEYS[3..]), the field, the amount.
-- Every number arrives and leaves as the decimal string Rust wrote: Lua 5.1 numbers are
-- doubles and would print large counters in exponent form. Amounts are never zero.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
local hours = #KEYS - 2
local i = 3 + 3 * hours
while i <= #ARGV do
  redis.call('HINCRBY', KEYS[2 + tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
for h = 1, hours do
  local at = 3 + 3 * (h - 1)
  redis.call('ZADD', KEYS[2], ARGV[at + 1], ARGV[at])
  redis.call('EXPIREAT', KEYS[2 + h], ARGV[at + 2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
return 1
