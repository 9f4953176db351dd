#!/bin/sh
# The new leader's read-back of PBX events (controller/store/pbxrecent.c,
# PBXRECENT_SQL) at 20,031 sites: EXPLAIN (ANALYZE, BUFFERS) of the query as
# it is in the source tree, on a migrated database of your choosing.
#
#   bench/pbxrecent.sh CONNINFO build PBX_EVERY   # fills an empty, migrated database
#   bench/pbxrecent.sh CONNINFO pbx PBX_EVERY     # replaces only the PBX events
#   bench/pbxrecent.sh CONNINFO explain           # the query, twice (cold, warm)
#
# build: 20,031 sites; link_events with 190 online/offline/report/
# connected/closed rows per site (3.8M) over the last 26 h, inserted in
# random order (so not in time order on disk); then PBX events at every
# PBX_EVERY-th site (100: 1 % of the sites; 1: all of them), 10 a day each
# over the same 26 h (some outside the 24 h window the leader reads).
set -eu
ci=$1
what=$2
every=${3:-1}
src=$(cd "$(dirname "$0")/.." && pwd)
psql_() { psql "$ci" -X -q -v ON_ERROR_STOP=1; }
kinds="'pbx_drift_repaired','pbx_drift_not_repaired','pbx_verify_failed','route_unconfirmed',\
'route_confirmed','agent_reverted','agent_state_not_saved','agent_state_saved'"
pbx() {
  psql_ <<SQL
DELETE FROM link_events WHERE event IN ($kinds);
INSERT INTO link_events (at, kind, identity, site, peer, event, detail)
SELECT now() - random() * interval '26 hours', 'site', 'site-' || s, 'site-' || s,
       '10.1.2.3:40000', (ARRAY[$kinds])[1 + floor(random() * 8)::int], 'bench'
  FROM generate_series(1, 20031) s, generate_series(1, 11) k
 WHERE s % $every = 0 ORDER BY random();
VACUUM ANALYZE link_events;
ANALYZE sites;
SQL
}
case $what in
build)
  psql_ <<SQL
INSERT INTO sites (slug, name_en, name_zh)
SELECT 'site-' || s, 'Site ' || s, 'Site ' || s FROM generate_series(1, 20031) s;
INSERT INTO link_events (at, kind, identity, site, peer, event, detail)
SELECT now() - random() * interval '26 hours', 'site', 'site-' || s, 'site-' || s,
       '10.1.2.3:40000', (ARRAY['online','offline','report','connected','closed'])[1 + floor(random() * 5)::int], ''
  FROM generate_series(1, 20031) s, generate_series(1, 190) k ORDER BY random();
SQL
  pbx ;;
pbx) pbx ;;
explain)
  # The C string literal, as PostgreSQL gets it.
  sql=$(sed -n '/^const char PBXRECENT_SQL\[\]/,/;$/p' "$src/controller/store/pbxrecent.c" |
        sed -n 's/^[^"]*"\(.*\)"[^"]*$/\1/p' | tr -d '\n')
  psql_ <<SQL
SELECT pg_size_pretty(pg_table_size('link_events')) AS table_size,
       pg_size_pretty(pg_indexes_size('link_events')) AS indexes,
       (SELECT count(*) FROM link_events) AS link_events,
       (SELECT count(*) FROM link_events WHERE event IN ($kinds)) AS pbx_events,
       (SELECT count(DISTINCT site) FROM link_events WHERE event IN ($kinds)) AS pbx_sites;
PREPARE q(bigint, int) AS $sql;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q((extract(epoch FROM now() - interval '24 hours') * 1000)::bigint, 8);
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q((extract(epoch FROM now() - interval '24 hours') * 1000)::bigint, 8);
SQL
  ;;
*) echo "usage: $0 CONNINFO build|pbx|explain [PBX_EVERY]" >&2; exit 2 ;;
esac
