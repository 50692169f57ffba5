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

local function in_region(region, wanted)
  if region == nil then return false end
  region, wanted = region:lower(), wanted:lower()
  return region == wanted or region:sub(1, #wanted + 1) == wanted .. "-"
end

local function has_tag(candidate, tag)
  for _, t in ipairs(candidate.tags) do
    if t == tag then return true end
  end
  return false
end

local function ranked_before(a, b)
  if a.resident ~= b.resident then return a.resident end
  if a.preferred ~= b.preferred then return a.preferred end
  if a.tag_count ~= b.tag_count then return a.tag_count > b.tag_count end
  return a.position < b.position
end

function route(request, candidates)
  local wanted = request.headers["x-route-region"]
  if wanted == "" then wanted = nil end
  local high = request.tier == "high"
  local prefer_tag = request.params.prefer_tag or "private"

  local ranked = {}
  for i, c in ipairs(candidates) do
    ranked[i] = { id = c.id, position = c.position, tag_count = #c.tags,
                  resident = wanted ~= nil and in_region(c.region, wanted),
                  preferred = high and has_tag(c, prefer_tag) }
  end
  table.sort(ranked, ranked_before)

  local all, resident = {}, {}
  for i, r in ipairs(ranked) do
    all[i] = r.id
    if r.resident then resident[#resident + 1] = r.id end
  end
  if high and wanted and #resident > 0 then return resident end
  return all
end
