-- 014: a new leader reads each site's newest PBX events of the last 24 h
-- (controller/store/pbxrecent.c, PBXRECENT_SQL) on the read connection that
-- also serves operators. Without an index of their own it read the whole
-- day of link_events (millions of online/offline/report rows at 20,000
-- sites) and sorted it. This partial index holds only the PBX kinds, in the
-- order the query asks for them per site, so the query walks at most
-- `keep` rows of each site and sorts nothing.
--
-- The kinds here must include every kind PBXRECENT_SQL lists: a kind the
-- query asks for and this predicate lacks makes PostgreSQL ignore the
-- index (the query's condition no longer implies it). A new kind therefore
-- needs a migration that recreates the index; test_store_pbxrecent checks
-- the plan. 'pbx_events_dropped' is here ahead of its writer.
--
-- Migrations run in a transaction, where CREATE INDEX CONCURRENTLY cannot
-- run, so this build holds link_events' inserts (not its reads) while it
-- scans the table: about 2 s at 3.8M rows (docs/PERFORMANCE.md). For a
-- larger table, build it beforehand without that lock, with the definition
-- below plus CONCURRENTLY, and this migration keeps it. An invalid index
-- left by a failed concurrent build is dropped and built again here.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_index
              WHERE indexrelid = to_regclass('link_events_pbx') AND NOT indisvalid) THEN
    DROP INDEX link_events_pbx;
  END IF;
END
$$;
CREATE INDEX IF NOT EXISTS link_events_pbx ON link_events (site, at DESC, id DESC)
    WHERE kind = 'site' AND event IN ('pbx_drift_repaired', 'pbx_drift_not_repaired',
        'pbx_verify_failed', 'route_unconfirmed', 'route_confirmed', 'agent_reverted',
        'agent_state_not_saved', 'agent_state_saved', 'pbx_events_dropped');
