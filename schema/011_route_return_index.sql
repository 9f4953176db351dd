-- 011: a return home's route entry looks for an earlier entry of the same
-- return, written by another leader (controller/store/store.c,
-- STORE_ROUTE_RETURN_SQL): same site (target), and `left_epoch`/
-- `left_version` or `reverted_epoch`/`reverted_version` naming the same
-- directive. Without an index that lookup read every audit entry of every
-- site. This partial index holds only the route entries that name such a
-- directive, keyed as the lookup asks: the lookup's own equality on the
-- epoch implies the IS NOT NULL of the predicate, so the planner uses it
-- with the query as it is.
CREATE INDEX audit_log_route_return ON audit_log
    (target, (coalesce(detail -> 'left_epoch', detail -> 'reverted_epoch')),
     (coalesce(detail -> 'left_version', detail -> 'reverted_version')))
    WHERE action = 'route' AND coalesce(detail -> 'left_epoch', detail -> 'reverted_epoch') IS NOT NULL;
