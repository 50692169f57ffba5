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

local function threshold(request, header, param)
  return tonumber(request.headers[header]) or tonumber(request.params[param])
end

local function estimated_cost(candidate, input_tokens, output_tokens)
  return (input_tokens * candidate.price_in + output_tokens * candidate.price_out) / 1e6
end

function route(request, candidates)
  local params = request.params
  local max_p95 = threshold(request, "x-route-max-latency-ms", "max_p95_ms")
  local min_quality = threshold(request, "x-route-min-quality", "min_quality")
  local min_samples = tonumber(params.min_samples) or 20
  local max_error_rate = tonumber(params.max_error_rate) or 0.5
  local output_tokens = request.max_tokens or tonumber(params.expected_output) or 256

  local function meets_bar(c)
    local s = c.stats
    if min_quality and c.quality < min_quality then return false end
    if max_p95 and s.samples >= min_samples and s.p95_ms > max_p95 then return false end
    return s.error_rate <= max_error_rate
  end

  -- Rank once per candidate, so the sort compares plain fields.
  local ranked = {}
  for i, c in ipairs(candidates) do
    ranked[i] = {
      id = c.id,
      meets = meets_bar(c),
      cost = estimated_cost(c, request.input_tokens, output_tokens),
      position = c.position,
    }
  end
  table.sort(ranked, function(a, b)
    if a.meets ~= b.meets then return a.meets end
    if a.cost ~= b.cost then return a.cost < b.cost end
    return a.position < b.position
  end)

  local ids = {}
  for i, r in ipairs(ranked) do ids[i] = r.id end
  return ids
end
