-- cost.lua: the cheapest deployment that meets the request's latency and quality bar.
--
-- Estimated cost of a request on a candidate, in USD:
--   (input_tokens * price_in + output_tokens * price_out) / 1e6
-- where output_tokens is request.max_tokens, else params.expected_output, else 256.
--
-- A candidate meets the bar when
--   * its quality >= min_quality,
--   * its live p95 <= max_p95_ms, judged only once it has min_samples successes
--     (unknown latency is not bad latency), and
--   * its error_rate <= max_error_rate.
-- Candidates meeting the bar come first, cheapest first; the rest follow as fallbacks,
-- also cheapest first. Equal costs keep the configured order.
--
-- Thresholds come from headers when they parse as numbers, else from params; absent
-- means no threshold:
--   max_p95_ms       header x-route-max-latency-ms, else params.max_p95_ms
--   min_quality      header x-route-min-quality,    else params.min_quality
-- Other params:
--   min_samples      successes needed before p95 is judged (default 20)
--   max_error_rate   error rates above this fail the bar (default 0.5)
--   expected_output  output tokens assumed when the request sets no max_tokens (default 256)
-- A price of 0 (unknown) makes a candidate look free, so give every deployment a price.

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

local function threshold(request, header, param)
  return tonumber(request.headers[header]) or tonumber(request.params[param])
end

function route(request, candidates)
  local params = request.params
  local max_p95 = threshold(request, "x-route-max-latency-ms", "max_p95_ms")
  local min_quality = threshold(request, "x-route-min-quality", "min_quality")
  local min_samples = tonumber(params.min_samples) or 20
  local max_error_rate = tonumber(params.max_error_rate) or 0.5
  local input = request.input_tokens
  local output = request.max_tokens or tonumber(params.expected_output) or 256

  local n = #candidates
  for i = 1, n do
    local c = candidates[i]
    local s = c.stats
    local meets = (not min_quality or c.quality >= min_quality)
      and (not max_p95 or s.samples < min_samples or s.p95_ms <= max_p95)
      and s.error_rate <= max_error_rate
    rank[i] = meets and 0 or 1 -- those meeting the bar first, the rest as fallbacks
    key[i] = (input * c.price_in + output * c.price_out) / 1e6
  end
  sort(candidates, n)

  local ids = {}
  for k = 1, n do ids[k] = candidates[order[k]].id end
  return ids
end
