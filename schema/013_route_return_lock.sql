-- 013: the lookup of an earlier entry of the same return home
-- (controller/store/store.c, STORE_ROUTE_RETURN_SQL) done under a lock.
-- Two live leaders recording one return at the same moment both missed
-- each other: under READ COMMITTED an INSERT sees only what committed
-- before it started, so neither saw the other's uncommitted entry, and
-- both entries claimed to be the return (counted twice by nircctl history).
--
-- This function takes a transaction-scoped advisory lock on the return
-- (site, epoch, version of the directive whose move it ends), then looks.
-- It is VOLATILE, so its query takes a snapshot of its own after the lock
-- is granted: a second writer waits until the first commits (advisory
-- locks are released after the commit is visible) and then finds its
-- entry. The lock is held to the end of the writer's transaction, so the
-- entry it inserts is committed before the next writer looks.
--
-- Key: the two-integer form, class 0x4e495252 ("NIRR"), apart from the
-- leadership lock (single bigint) and the migration lock (class "NIRC").
-- Two returns whose keys hash alike only wait for each other.
--
-- Returns the id of the first entry naming that directive, or NULL. The
-- lookup reads the partial index audit_log_route_return (schema 011).
CREATE FUNCTION audit_log_route_return_first(p_target text, p_epoch bigint, p_version bigint)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  first_id bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(1313428050,
                                hashtext(p_target || '/' || p_epoch || '/' || p_version));
  SELECT a.id INTO first_id FROM audit_log a
   WHERE a.action = 'route' AND a.target = p_target
     AND coalesce(a.detail -> 'left_epoch', a.detail -> 'reverted_epoch') = to_jsonb(p_epoch)
     AND coalesce(a.detail -> 'left_version', a.detail -> 'reverted_version') = to_jsonb(p_version)
   ORDER BY a.id LIMIT 1;
  RETURN first_id;
END
$$;
