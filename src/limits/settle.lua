-- Settle one reservation: its tokens become the real usage, its concurrency place and
-- budget hold are freed, and the real cost is spent. Keys as in reserve.lua.
-- ARGV: rid, tokens (-1: release, the call used none that is known), cost_micros (0: none),
--   subjects, then per subject tpm_set, concurrency_set (0/1), then budget (0/1),
--   day_ttl_s, month_ttl_s.
local rid = ARGV[1]
local tokens = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local n = tonumber(ARGV[4])

-- HINCRBY by a whole number. Lua 5.1 writes a negated zero as "-0" and large numbers in
-- exponent form, both of which HINCRBY rejects: skip zero, and format as an integer.
local function add(key, field, n)
  if n ~= 0 then
    redis.call('HINCRBY', key, field, string.format('%d', n))
  end
end
for i = 0, n - 1 do
  local tz, tv, c = KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]
  if tonumber(ARGV[5 + 2 * i]) > 0 then
    local held = redis.call('HGET', tv, rid)
    -- Gone when the reservation already left the window: nothing to correct.
    if held then
      local now = math.max(tokens, 0)
      redis.call('HSET', tv, rid, now)
      add(tv, '_sum', now - tonumber(held))
    end
  end
  if tonumber(ARGV[6 + 2 * i]) > 0 then
    redis.call('ZREM', c, rid)
  end
end
if tonumber(ARGV[5 + 2 * n]) > 0 then
  local h, hv, day, month = KEYS[4 * n + 1], KEYS[4 * n + 2], KEYS[4 * n + 3], KEYS[4 * n + 4]
  local held = redis.call('HGET', hv, rid)
  if held then
    redis.call('HDEL', hv, rid)
    add(hv, '_sum', -tonumber(held))
    redis.call('ZREM', h, rid)
  end
  if cost > 0 then
    redis.call('INCRBY', day, cost)
    redis.call('EXPIRE', day, tonumber(ARGV[6 + 2 * n]))
    redis.call('INCRBY', month, cost)
    redis.call('EXPIRE', month, tonumber(ARGV[7 + 2 * n]))
  end
end
return 1
