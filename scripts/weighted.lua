-- weighted.lua: an A/B split by candidate weight, sticky per split key.
--
-- The first candidate is a weighted choice: weight 3 is chosen three times as often as
-- weight 1. The rest follow in configured order as fallbacks. A weight <= 0 means
-- "never first" (still a fallback); when no weight is positive, the configured order.
--
-- The choice is sticky when the request has a split key: header x-route-split-key, else
-- the API key's name. The key is hashed to a point in [0, total weight), so a key keeps
-- landing on the same candidate while the candidates and weights stay the same (a
-- candidate filtered out, e.g. by an open circuit, shifts the split). Without a split
-- key the point is drawn with math.random.
--
-- Params: none.

local MAX_KEY_BYTES = 256 -- bounds the hash loop against huge header values

-- Maps a string to [0, 1): FNV-1a 32-bit, then the murmur3 finaliser, because FNV alone
-- barely moves the top bits when keys differ only in the last byte ("user-1", "user-2").
local function unit_hash(key)
  local h = 2166136261
  for i = 1, math.min(#key, MAX_KEY_BYTES) do
    h = ((h ~ key:byte(i)) * 16777619) & 0xffffffff
  end
  h = h ~ (h >> 16)
  h = (h * 0x85ebca6b) & 0xffffffff
  h = h ~ (h >> 13)
  h = (h * 0xc2b2ae35) & 0xffffffff
  h = h ~ (h >> 16)
  return h / 4294967296
end

local function split_key(request)
  local key = request.headers["x-route-split-key"]
  if key == nil or key == "" then key = request.key.name end
  return key
end

function route(request, candidates)
  local ids, total = {}, 0
  for i, c in ipairs(candidates) do
    ids[i] = c.id
    if c.weight > 0 then total = total + c.weight end
  end
  if total <= 0 then return ids end

  local key = split_key(request)
  local point = (key and unit_hash(key) or math.random()) * total
  local chosen
  for i, c in ipairs(candidates) do
    if c.weight > 0 then
      chosen = i -- the last positive one also absorbs float rounding at the top end
      point = point - c.weight
      if point < 0 then break end
    end
  end
  table.insert(ids, 1, table.remove(ids, chosen))
  return ids
end
