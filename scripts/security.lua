-- security.lua: ranking for regulated traffic: data residency, then trust, then compliance.
--
-- The hard filter has already removed deployments lacking the tier's required tags;
-- this policy orders what is left:
--   1. candidates in the requested region (header x-route-region) first;
--   2. at tier "high", candidates tagged `prefer_tag` (e.g. self-hosted) next;
--   3. then more compliance tags first;
--   4. then configured order.
-- At tier "high" residency is a requirement: candidates outside the requested region
-- are dropped, unless none is in it, in which case all are returned in the order above.
--
-- A region matches when equal ignoring case, or when the requested one is a prefix that
-- ends at a dash: "eu" matches "eu-west-1", "europe" does not. No region never matches.
--
-- Params:
--   prefer_tag  tag preferred at tier "high" (default "private")

-- Same request facts and same live stats give the same answer (no randomness, no state
-- that changes the answer): the gateway may reuse an answer until the stats next change.
deterministic = true

-- Scratch arrays, reused by every call on this VM (no per-candidate tables).
local rank, key, order = {}, {}, {}

-- Sorts order[1..n] (candidate indices) by rank, then key, then configured position.
-- Insertion sort with the comparisons inline: for the few dozen candidates a model has,
-- it beats table.sort with a Lua comparator several times over.
local function sort(candidates, n)
  for i = 1, n do
    local ri, ki, pi = rank[i], key[i], candidates[i].position
    local j = i - 1
    while j >= 1 do
      local o = order[j]
      local ro, ko = rank[o], key[o]
      if ro < ri or (ro == ri and (ko < ki or (ko == ki and candidates[o].position <= pi))) then
        break
      end
      order[j + 1] = o
      j = j - 1
    end
    order[j + 1] = i
  end
end

local function in_region(region, wanted)
  if region == nil then return false end
  region = region:lower()
  return region == wanted or region:sub(1, #wanted + 1) == wanted .. "-"
end

local function has_tag(candidate, tag)
  local tags = candidate.tags
  for i = 1, #tags do
    if tags[i] == tag then return true end
  end
  return false
end

function route(request, candidates)
  local wanted = request.headers["x-route-region"]
  if wanted == "" then wanted = nil end
  if wanted then wanted = wanted:lower() end
  local high = request.tier == "high"
  local prefer_tag = request.params.prefer_tag or "private"

  local n, residents = #candidates, 0
  for i = 1, n do
    local c = candidates[i]
    local resident = wanted ~= nil and in_region(c.region, wanted)
    if resident then residents = residents + 1 end
    -- Residents first, then (at high) the preferred tag, each group by tag count.
    rank[i] = (resident and 0 or 2) + ((high and has_tag(c, prefer_tag)) and 0 or 1)
    key[i] = -#c.tags
  end
  sort(candidates, n)

  -- At high, a requested region is a requirement, unless no candidate is in it.
  local keep = high and wanted ~= nil and residents > 0
  local ids, m = {}, 0
  for k = 1, n do
    local i = order[k]
    if not keep or rank[i] < 2 then m = m + 1; ids[m] = candidates[i].id end
  end
  return ids
end
