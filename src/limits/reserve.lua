-- Reserve one request against every limit and budget that applies to it, all or nothing.
-- One clock for every replica: the Redis server's.
--
-- KEYS, per subject i (0-based), four keys from 4*i+1:
--   requests zset (member rid, score admit ms), tokens zset (member rid, score admit ms),
--   tokens hash (rid -> tokens, "_sum" -> their sum), concurrency zset (rid, score expiry ms)
-- then, when a budget applies, four keys: holds zset (rid, expiry ms), holds hash
-- (rid -> micro-USD, "_sum"), the day's spend, the month's spend (integer micro-USD).
-- ARGV: rid, hold_ttl_ms, tokens, cost_micros, subjects, then per subject rpm, tpm,
--   max_concurrent (0: none), then day_cap, month_cap (micro-USD, 0: none; both 0 and no
--   budget keys when no budget applies).
-- Returns {"ok", limit_req, remaining_req, reset_req_ms, limit_tok, remaining_tok,
--   reset_tok_ms} (0 limits: none applied), or {refusal, subject, limit, remaining,
--   retry_ms} where refusal is requests | tokens | tokens_never | concurrent | budget_day |
--   budget_month.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid = ARGV[1]
local ttl = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local window = 60000

-- HINCRBY by a whole number. Lua 5.1 writes a negated zero as "-0" and large numbers in
-- exponent form, both of which HINCRBY rejects: skip zero, and format as an integer.
local function add(key, field, n)
  if n ~= 0 then
    redis.call('HINCRBY', key, field, string.format('%d', n))
  end
end
local cutoff = now - window

-- Drops the members of sorted set `z` scored `before` or earlier, and their amounts in
-- hash `amounts` (and its `_sum`): tokens that left the window, holds that expired.
local function drop_until(z, amounts, before)
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', before)
  if #old == 0 then return end
  local freed = 0
  for _, id in ipairs(old) do
    freed = freed + tonumber(redis.call('HGET', amounts, id) or '0')
    redis.call('HDEL', amounts, id)
  end
  add(amounts, '_sum', -freed)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', before)
end

-- The most constrained figures, for the rate-limit headers.
local best_req = {0, 0, 0}
local best_tok = {0, 0, 0}

for i = 0, n - 1 do
  local r, tz, tv, c = KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]
  local rpm = tonumber(ARGV[6 + 3 * i])
  local tpm = tonumber(ARGV[7 + 3 * i])
  local conc = tonumber(ARGV[8 + 3 * i])
  if rpm > 0 then
    redis.call('ZREMRANGEBYSCORE', r, '-inf', cutoff)
    local count = redis.call('ZCARD', r)
    if count >= rpm then
      -- One more fits once the (count - rpm + 1) oldest have left the window.
      local e = redis.call('ZRANGE', r, count - rpm, count - rpm, 'WITHSCORES')
      return {'requests', i, rpm, 0, tonumber(e[2]) + window - now}
    end
    local reset = 0
    local first = redis.call('ZRANGE', r, 0, 0, 'WITHSCORES')
    if #first > 0 then reset = tonumber(first[2]) + window - now end
    if best_req[1] == 0 or rpm - count - 1 < best_req[2] then
      best_req = {rpm, rpm - count - 1, reset}
    end
  end
  if tpm > 0 then
    drop_until(tz, tv, cutoff)
    local sum = tonumber(redis.call('HGET', tv, '_sum') or '0')
    if tokens > tpm then
      return {'tokens_never', i, tpm, math.max(tpm - sum, 0), 0}
    end
    if sum + tokens > tpm then
      local need = sum + tokens - tpm
      local freed = 0
      local at = now + window
      local entries = redis.call('ZRANGE', tz, 0, -1, 'WITHSCORES')
      for j = 1, #entries, 2 do
        freed = freed + tonumber(redis.call('HGET', tv, entries[j]) or '0')
        if freed >= need then
          at = tonumber(entries[j + 1]) + window
          break
        end
      end
      return {'tokens', i, tpm, math.max(tpm - sum, 0), at - now}
    end
    local reset = 0
    local first = redis.call('ZRANGE', tz, 0, 0, 'WITHSCORES')
    if #first > 0 then reset = tonumber(first[2]) + window - now end
    if best_tok[1] == 0 or tpm - sum - tokens < best_tok[2] then
      best_tok = {tpm, tpm - sum - tokens, reset}
    end
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', c, '-inf', now)
    if redis.call('ZCARD', c) >= conc then
      return {'concurrent', i, conc, 0, 1000}
    end
  end
end

local day_cap = tonumber(ARGV[6 + 3 * n])
local month_cap = tonumber(ARGV[7 + 3 * n])
local budget = day_cap > 0 or month_cap > 0
local h, hv, day, month = KEYS[4 * n + 1], KEYS[4 * n + 2], KEYS[4 * n + 3], KEYS[4 * n + 4]
if budget then
  -- Holds whose replica died free themselves here.
  drop_until(h, hv, now)
  local held = tonumber(redis.call('HGET', hv, '_sum') or '0')
  if day_cap > 0 then
    local spent = tonumber(redis.call('GET', day) or '0')
    if spent + held + cost > day_cap then
      return {'budget_day', n, day_cap, math.max(day_cap - spent - held, 0), 0}
    end
  end
  if month_cap > 0 then
    local spent = tonumber(redis.call('GET', month) or '0')
    if spent + held + cost > month_cap then
      return {'budget_month', n, month_cap, math.max(month_cap - spent - held, 0), 0}
    end
  end
end

-- Everything admits it: take the places.
for i = 0, n - 1 do
  local r, tz, tv, c = KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]
  if tonumber(ARGV[6 + 3 * i]) > 0 then
    redis.call('ZADD', r, now, rid)
    redis.call('PEXPIRE', r, window + 1000)
  end
  if tonumber(ARGV[7 + 3 * i]) > 0 then
    redis.call('ZADD', tz, now, rid)
    redis.call('HSET', tv, rid, tokens)
    add(tv, '_sum', tokens)
    redis.call('PEXPIRE', tz, window + 1000)
    redis.call('PEXPIRE', tv, window + 1000)
  end
  if tonumber(ARGV[8 + 3 * i]) > 0 then
    redis.call('ZADD', c, now + ttl, rid)
    redis.call('PEXPIRE', c, ttl + 1000)
  end
end
if budget then
  redis.call('ZADD', h, now + ttl, rid)
  redis.call('HSET', hv, rid, cost)
  add(hv, '_sum', cost)
  redis.call('PEXPIRE', h, ttl + 1000)
  redis.call('PEXPIRE', hv, ttl + 1000)
end
return {'ok', best_req[1], best_req[2], best_req[3], best_tok[1], best_tok[2], best_tok[3]}
