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

local function score(candidate, streaming)
  local s = candidate.stats
  local latency = s.ewma_ms
  if streaming and s.ttft_ms > 0 then latency = s.ttft_ms end
  return latency * (1 + 4 * s.error_rate)
end

function route(request, candidates)
  local min_samples = tonumber(request.params.min_samples) or 5
  local explore = tonumber(request.params.explore) or 0.05

  local ranked = {}
  for i, c in ipairs(candidates) do
    ranked[i] = { id = c.id, position = c.position,
                  learning = c.stats.samples < min_samples,
                  score = score(c, request.stream) }
  end
  table.sort(ranked, function(a, b)
    if a.learning ~= b.learning then return a.learning end
    if not a.learning and a.score ~= b.score then return a.score < b.score end
    return a.position < b.position
  end)

  local ids = {}
  for i, r in ipairs(ranked) do ids[i] = r.id end
  if #ids > 1 and math.random() < explore then
    table.insert(ids, 1, table.remove(ids, math.random(#ids)))
  end
  return ids
end
