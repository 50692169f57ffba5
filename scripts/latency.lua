-- latency.lua: the fastest deployment first, judged on live latency, with exploration.
--
-- Score (lower is better) = latency * (1 + 4 * error_rate), where latency is the
-- time to first token (stats.ttft_ms) for a streaming request once one has been seen,
-- else the latency EWMA (stats.ewma_ms). The penalty makes a deployment failing half
-- its requests look three times slower.
--
-- Candidates with fewer than min_samples successes are tried first, in configured order,
-- so their latency gets learned instead of guessed. Then the rest by score; equal scores
-- keep the configured order. With probability `explore`, one candidate picked uniformly
-- at random is moved to the front, so a deployment that had a bad spell is measured again.
--
-- Params:
--   min_samples  successes before a candidate is ranked by score (default 5)
--   explore      probability of a random first choice, 0..1 (default 0.05; 0 is deterministic)

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

function route(request, candidates)
  local min_samples = tonumber(request.params.min_samples) or 5
  local explore = tonumber(request.params.explore) or 0.05
  local streaming = request.stream

  local n = #candidates
  for i = 1, n do
    local s = candidates[i].stats
    if s.samples < min_samples then
      rank[i], key[i] = 0, 0 -- still learning: tried first, in configured order
    else
      local latency = s.ewma_ms
      if streaming and s.ttft_ms > 0 then latency = s.ttft_ms end
      rank[i], key[i] = 1, latency * (1 + 4 * s.error_rate)
    end
  end
  sort(candidates, n)

  local ids = {}
  for k = 1, n do ids[k] = candidates[order[k]].id end
  if n > 1 and math.random() < explore then
    table.insert(ids, 1, table.remove(ids, math.random(n)))
  end
  return ids
end
