#!/usr/bin/env bash
# The NIRC demo, from a fresh clone: installs what it needs, builds, starts
# a private PostgreSQL, the controller and the 31 provincial site agents
# (simulated call centres on an accelerated clock), and plays the reference
# story (scenario/story.py): the 22:00 night consolidation into Xi'an in
# verified waves, the dawn emergency moving Hubei to Xi'an, the Xi'an
# lockdown moving everyone to the backup hub, and the 08:00 return of
# everyone but Hubei; then it prints a report computed from the run.
# Everything it started is stopped when it ends or is interrupted.
#
#   ./demo.sh                 the story (about 4 minutes), then stop
#   ./demo.sh --duration 60   just the network for 60 s (0: show and stop)
#   ./demo.sh --live          the network until Ctrl-C, refreshing the status
#
# While it runs: the status page and metrics at http://127.0.0.1:9180/, and
# nircctl with NIRCCTL_CONFIG=<run dir>/nircctl.conf in another shell.
#
# Environment: NIRC_DEMO_PORT (controller, default 7443), NIRC_DEMO_PG_PORT
# (PostgreSQL, default 15433), NIRC_DEMO_SPEED (clock speed, default 180),
# NIRC_DEMO_HTTP (status page address, default 127.0.0.1:9180),
# NIRC_DEMO_RUN (working directory, default .run/demo), NIRC_BUILD_DIR (use
# an existing build; skip install and build).
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

duration=""
mode=story
while [ $# -gt 0 ]; do
  case "$1" in
  --duration) duration=${2:?--duration needs seconds}; mode=duration; shift 2 ;;
  --live) mode=live; shift ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "demo.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done

port=${NIRC_DEMO_PORT:-7443}
pg_port=${NIRC_DEMO_PG_PORT:-15433}
speed=${NIRC_DEMO_SPEED:-180}
http=${NIRC_DEMO_HTTP:-127.0.0.1:9180}
scenario="$top/scenario/provinces.json"
run=${NIRC_DEMO_RUN:-$top/.run/demo}
pg_dir="${TMPDIR:-/tmp}/nirc-demo-pg-$(id -u)-$pg_port"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
[ -t 1 ] || say() { printf '==> %s\n' "$*"; }

if [ -z "${NIRC_BUILD_DIR:-}" ]; then
  say "installing packages (deploy/install-deps.sh)"
  deploy/install-deps.sh
  say "building"
  cmake -S "$top" -B "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$top/build" -j "$(nproc)" >/dev/null
  build="$top/build"
else
  build=$NIRC_BUILD_DIR
fi

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  say "stopping the demo"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  "$top/deploy/pg-private.sh" stop "$pg_dir" >/dev/null 2>&1 || true
  say "stopped (logs in $run)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$run"
mkdir -p "$run/logs"
slugs=$(python3 -c 'import json,sys; print(",".join(s["slug"] for s in json.load(open(sys.argv[1]))["sites"]))' "$scenario")

say "creating certificates for the controller, 31 sites and an operator"
"$top/deploy/pki.sh" "$run/pki" --sites "$slugs" --operator demo:admin >/dev/null

say "starting PostgreSQL on 127.0.0.1:$pg_port"
"$top/deploy/pg-private.sh" stop "$pg_dir" >/dev/null 2>&1 || true
rm -rf "$pg_dir"
NIRC_PG_FAST=1 "$top/deploy/pg-private.sh" start "$pg_dir" "$pg_port" >"$run/logs/pg.log"
conninfo="host=127.0.0.1 port=$pg_port user=nirc dbname=nirc"

anchor=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# The business clock starts early enough that start-up (a few real seconds,
# an hour of business time at 900x; over 8 s under a sanitizer on a loaded
# machine, which left the report no evening to compare with) is over well
# before 20:00, so the evening before the 22:00 night window is measured.
# A wave is verified after 5 business minutes, as an operator would watch a
# real one, which is a fraction of a real second at demo speeds.
read -r start verify_ms < <(python3 - "$speed" <<'PY'
import datetime as dt, sys
speed = float(sys.argv[1])
lead = max(600.0, 16.0 * speed)
t = dt.datetime(2020, 1, 22, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))) - dt.timedelta(seconds=lead)
print(t.replace(second=0).isoformat(), max(300, int(300000 / speed)))
PY
)
cat >"$run/nircd.conf" <<CONF
[controller]
node = nircd-1
listen = 127.0.0.1:$port
[tls]
ca = $run/pki/ca.crt
cert = $run/pki/controller-nircd.crt
key = $run/pki/controller-nircd.key
[database]
conninfo = $conninfo
schema_dir = $top/schema
journal = $run/nircd.journal
[routing]
forecast = $scenario
# 5 business minutes: the clock runs ${speed}x.
verify_window = ${verify_ms}ms
[http]
listen = $http
[clock]
speed = $speed
start = $start
anchor = $anchor
CONF
cat >"$run/nircctl.conf" <<CONF
[ctl]
controllers = 127.0.0.1:$port
[tls]
ca = $run/pki/ca.crt
cert = $run/pki/operator-demo.crt
key = $run/pki/operator-demo.key
CONF
export NIRCCTL_CONFIG="$run/nircctl.conf"

say "preparing the database"
"$build/nircd" -c "$run/nircd.conf" migrate >"$run/logs/migrate.log"
"$build/nircd" -c "$run/nircd.conf" import-sites "$scenario"

say "starting the controller on 127.0.0.1:$port (business clock $start, ${speed}x)"
"$build/nircd" -c "$run/nircd.conf" >"$run/logs/nircd.log" 2>&1 &
pids+=($!)

say "starting 31 site agents (simulated call centres)"
IFS=, read -r -a sites <<<"$slugs"
for s in "${sites[@]}"; do
  cat >"$run/agent-$s.conf" <<CONF
[agent]
controllers = 127.0.0.1:$port
state_file = $run/state-$s.json
[tls]
ca = $run/pki/ca.crt
cert = $run/pki/site-$s.crt
key = $run/pki/site-$s.key
[sim]
scenario = $scenario
[clock]
speed = $speed
start = $start
anchor = $anchor
CONF
  "$build/nirc-agent" -c "$run/agent-$s.conf" >"$run/logs/agent-$s.log" 2>&1 &
  pids+=($!)
done

# Wait until every site is online (or give up with the reason).
online() {
  "$build/nircctl" --json status 2>/dev/null |
    python3 -c 'import json,sys; print(sum(s["link"]=="online" and s["load"] is not None for s in json.load(sys.stdin)["sites"]))' 2>/dev/null || echo 0
}
for i in $(seq 1 150); do
  n=$(online)
  if [ -t 1 ]; then printf '\r    %2s/31 sites online' "$n"; fi
  [ "$n" = 31 ] && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo; echo "demo.sh: nircd exited:" >&2; tail -20 "$run/logs/nircd.log" >&2; exit 1; }
  sleep 0.2
done
if [ -t 1 ]; then echo; fi
if [ "$n" != 31 ]; then
  echo "demo.sh: only $n of 31 sites came online; see $run/logs" >&2
  exit 1
fi

say "the network (nircctl status); status page on http://$http/"
"$build/nircctl" status

if [ "$mode" = story ]; then
  say "the reference story, at ${speed}x (a night in $((36000 / ${speed%.*})) s)"
  python3 "$top/scenario/story.py" --nircctl "$build/nircctl" --db "$conninfo" \
    --scenario "$scenario" --start "$start" --anchor "$anchor" --speed "$speed" \
    --out "$run/report.txt"
  say "report saved in $run/report.txt"
elif [ -n "$duration" ]; then
  end=$((SECONDS + duration))
  while [ $SECONDS -lt "$end" ]; do sleep 1; done
  if [ "$duration" -gt 0 ]; then "$build/nircctl" status | tail -1; fi
elif [ "$mode" = live ]; then
  say "live view: refreshing every 2 s; Ctrl-C stops everything"
  while true; do
    sleep 2
    out=$("$build/nircctl" status 2>&1 || true)
    printf '\033[H\033[2J%s\n\n(Ctrl-C to stop; nircctl works in another shell with NIRCCTL_CONFIG=%s)\n' "$out" "$NIRCCTL_CONFIG"
  done
fi
