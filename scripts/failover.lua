-- failover.lua: the default policy, an ordered failover chain.
--
-- Tries candidates in their configured order (`position`). A half-open candidate keeps its
-- place: its breaker lets exactly one request through as the recovery probe and the
-- gateway skips it for the others at no cost, so a recovered primary gets its traffic
-- back (putting it last would starve the probe while the backups answer). Open circuits
-- (the filters pass them only when every circuit is open) go last.
--
-- Params: none.

-- Lower rank is tried earlier; an unknown state counts as closed.
local CIRCUIT_RANK = { closed = 0, half_open = 0, open = 1 }

function route(request, candidates)
  local ranked = {}
  for i, c in ipairs(candidates) do
    ranked[i] = { id = c.id, rank = CIRCUIT_RANK[c.stats.circuit] or 0, position = c.position }
  end
  table.sort(ranked, function(a, b)
    if a.rank ~= b.rank then return a.rank < b.rank end
    return a.position < b.position
  end)

  local ids = {}
  for i, r in ipairs(ranked) do ids[i] = r.id end
  return ids
end
