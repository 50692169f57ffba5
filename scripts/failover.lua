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

-- Same request facts and same live stats give the same answer (no randomness, no state
-- that changes the answer): the gateway may reuse an answer until the stats next change.
deterministic = true

function route(request, candidates)
  -- Candidates arrive in configured order: closed and half-open ones as they are, then
  -- the open ones (present only when every circuit is open).
  local ids, n = {}, 0
  for i = 1, #candidates do
    local c = candidates[i]
    if c.stats.circuit ~= "open" then n = n + 1; ids[n] = c.id end
  end
  for i = 1, #candidates do
    local c = candidates[i]
    if c.stats.circuit == "open" then n = n + 1; ids[n] = c.id end
  end
  return ids
end
