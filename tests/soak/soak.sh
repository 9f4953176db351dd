#!/usr/bin/env bash
# soak.sh: many simulated site agents against one nircd for a long run, to
# judge memory flatness and error freedom (issue 6). Not part of CI: the
# default run takes ten minutes and one core each for nircd and the swarm.
#
# It starts a private PostgreSQL (deploy/pg-private.sh), makes a PKI
# (deploy/pki.sh: CA and controller certificate) and SOAK_AGENTS site
# identities (nirc-swarm gen-pki), imports those sites, starts nircd, runs
# `nirc-swarm run` for SOAK_SECONDS while sampling nircd's and the swarm's
# RSS and nircd's CPU every SOAK_SAMPLE seconds, stops nircd (which
# flushes its load aggregates), and prints a summary ending in PASS or
# FAIL. Everything it starts is stopped when it ends or is interrupted.
#
#   tests/soak/soak.sh                             1,000 agents, 10 minutes
#   SOAK_SECONDS=60 SOAK_AGENTS=200 tests/soak/soak.sh
#   SOAK_FAILOVER_AT=30 tests/soak/soak.sh         also SIGKILL nircd 30 s after
#                                                  every agent connected, restart it
#
# PASS needs all of:
#   - the swarm ended with every agent connected and no protocol error
#     (nirc-swarm exit 0); no Error frame, no dropped link (with a failover:
#     only the drops of the kill) and no failed connect after the first
#     moment every agent was connected;
#   - every report the swarm sent is in load_minute (without a failover: a
#     SIGKILL loses the minute in progress by design);
#   - nircd recorded every link going offline when the swarm closed them,
#     logged no error and dropped no database record;
#   - memory flat, for nircd (its last process) and for the swarm: the
#     least-squares trend of RSS over the second half of the run, taken
#     over that half, is below SOAK_MAX_GROWTH_KB plus SOAK_MAX_GROWTH_PCT %
#     of the mean RSS of that half (defaults 2048 KiB + 2 %: about 3.3 MiB
#     for nircd with 1,000 links, some 11 bytes per report over the second
#     half of the default run). A trend, not two samples: nircd's RSS swings
#     by a few MiB from second to second while [http] renders its status
#     page, and a fit over many samples sees through that where a
#     difference of two does not. The judged half must span at least 60 s
#     (so a run of 2 minutes or more, counted for nircd from its last
#     start) with 10 samples or more; a shorter run prints the figures and
#     says "not judged" (a young process is still filling its caches).
#
# Environment (defaults in brackets): NIRC_BUILD_DIR [./build, as made by
# ./test.sh --quick], SOAK_AGENTS [1000], SOAK_SECONDS [600], SOAK_SAMPLE
# [SOAK_SECONDS / 60, from 1 to 10], SOAK_PORT [17443], SOAK_HTTP_PORT
# [17444; 0 runs nircd without its status page and metrics],
# SOAK_PG_PORT [55533], SOAK_RUN [.run/soak], SOAK_FAILOVER_AT [unset],
# SOAK_MAX_GROWTH_KB [2048], SOAK_MAX_GROWTH_PCT [2], SOAK_PG_FAST [1:
# fsync off, as the demo].
set -euo pipefail
cd "$(dirname "$0")/../.."
top=$(pwd)

agents=${SOAK_AGENTS:-1000}
seconds=${SOAK_SECONDS:-600}
sample=${SOAK_SAMPLE:-$((seconds / 60 < 1 ? 1 : seconds / 60 > 10 ? 10 : seconds / 60))}
port=${SOAK_PORT:-17443}
http_port=${SOAK_HTTP_PORT:-17444}
pg_port=${SOAK_PG_PORT:-55533}
run=${SOAK_RUN:-$top/.run/soak}
failover_at=${SOAK_FAILOVER_AT:-}
build=${NIRC_BUILD_DIR:-$top/build}
pg_dir="${TMPDIR:-/tmp}/nirc-soak-pg-$(id -u)-$pg_port"
conninfo="host=127.0.0.1 port=$pg_port user=nirc dbname=nirc"

say() { printf '==> %s\n' "$*"; }
die() {
  echo "soak.sh: $*" >&2
  exit 2
}

case "${1:-}" in
-h | --help)
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
  ;;
"") ;;
*) die "no arguments are taken (see --help); configure with SOAK_* variables" ;;
esac
for v in agents seconds sample port http_port pg_port; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "SOAK_${v^^} must be a whole number, not '${!v}'"
done
[ "$agents" -ge 2 ] || die "SOAK_AGENTS must be at least 2"
[ "$sample" -ge 1 ] || die "SOAK_SAMPLE must be at least 1"
[ -z "$failover_at" ] || [[ $failover_at =~ ^[0-9]+$ ]] || die "SOAK_FAILOVER_AT must be seconds"
for b in nircd nirc-swarm; do
  [ -x "$build/$b" ] || die "$build/$b not found: build first (./test.sh --quick) or set NIRC_BUILD_DIR"
done
command -v python3 >/dev/null || die "python3 is needed for the summary"
command -v psql >/dev/null || die "psql is needed to read load_minute (deploy/install-deps.sh)"
command -v curl >/dev/null || die "curl is needed to read nircd's /metrics"

nircd_pid=""
swarm_pid=""
sampler_pid=""
notify_pid=""
cleanup() {
  trap - EXIT INT TERM
  for p in $swarm_pid $sampler_pid $nircd_pid $notify_pid; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $swarm_pid $sampler_pid $nircd_pid $notify_pid; do wait "$p" 2>/dev/null || true; done
  "$top/deploy/pg-private.sh" stop "$pg_dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$run"
mkdir -p "$run"
# One descriptor per agent link in each process: nircd does not raise its
# own limit, so the shell gives it (and the swarm) enough.
need=$((agents + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
fd_limit=$(ulimit -n)
say "soak: $agents agents for ${seconds}s; working directory $run; fd limit $fd_limit"

say "starting PostgreSQL on 127.0.0.1:$pg_port"
"$top/deploy/pg-private.sh" stop "$pg_dir" >/dev/null 2>&1 || true
rm -rf "$pg_dir"
NIRC_PG_FAST=${SOAK_PG_FAST:-1} "$top/deploy/pg-private.sh" start "$pg_dir" "$pg_port" >"$run/pg.log"

say "certificates: CA and controller (deploy/pki.sh), $agents site identities (nirc-swarm gen-pki)"
"$top/deploy/pki.sh" "$run/pki" >/dev/null
"$build/nirc-swarm" gen-pki --ca-cert "$run/pki/ca.crt" --ca-key "$run/pki/ca.key" \
  --count "$agents" --out "$run/swarm" | tee "$run/gen-pki.log"

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
CONF
if [ "$http_port" != 0 ]; then
  printf '[http]\nlisten = 127.0.0.1:%s\n' "$http_port" >>"$run/nircd.conf"
fi
"$build/nircd" -c "$run/nircd.conf" migrate >"$run/migrate.log"
"$build/nircd" -c "$run/nircd.conf" import-sites "$run/swarm/scenario.json"

# nircd says READY=1 (and, as a standby, STATUS=standby) through
# sd_notify: a receiver on a socket of ours prints each such message as one
# line, so the script waits for the event instead of guessing a delay.
notify_sock="$run/notify.sock"
coproc NOTIFY {
  exec python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound")
while True:
    m = s.recv(4096).decode(errors="replace")
    if "READY=1" in m or "STATUS=" in m:
        print(" ".join(m.split()))
' "$notify_sock"
}
# shellcheck disable=SC2153 # set by coproc
notify_pid=$NOTIFY_PID
read -r -t 10 line <&"${NOTIFY[0]}" || die "the sd_notify receiver did not start"

# Starts nircd and returns when it serves as leader (or, for a controller
# without leader election, when it is ready). Sets nircd_pid.
start_nircd() {
  local t0 line
  # Lines a previous nircd left (it may have said more than READY) must not
  # be taken for this one's.
  while read -r -t 0.05 line <&"${NOTIFY[0]}"; do :; done
  # Link events after this are this nircd's (the database's clock).
  nircd_since=$(psql -XAtq "$conninfo" -c "SELECT now()")
  t0=$(date +%s.%N)
  NOTIFY_SOCKET=$notify_sock "$build/nircd" -c "$run/nircd.conf" >>"$run/nircd.log" 2>&1 &
  nircd_pid=$!
  echo "$nircd_pid" >"$run/nircd.pid"
  while :; do
    if ! read -r -t 30 line <&"${NOTIFY[0]}"; then
      tail -20 "$run/nircd.log" >&2
      die "nircd did not become ready within 30 s"
    fi
    case "$line" in *standby*) continue ;; esac
    case "$line" in *READY=1* | *leader*) break ;; esac
  done
  ready_s=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 3))" \
    "$t0" "$(date +%s.%N)")
}

say "starting nircd on 127.0.0.1:$port$([ "$http_port" = 0 ] && echo ", no status page" ||
  echo " (metrics on http://127.0.0.1:$http_port/metrics)")"
start_nircd
echo "start $ready_s" >"$run/nircd-starts.txt"

# Samples: Unix time, nircd pid, RSS KiB, CPU ticks (user + system), live
# links. A sampling period, not a synchronisation.
sampler() {
  local pid rss ticks links
  while :; do
    pid=$(cat "$run/nircd.pid")
    if [ -r "/proc/$pid/stat" ]; then
      rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo -1)
      ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo -1)
      links=-1
      if [ "$http_port" != 0 ]; then
        links=$(curl -s --max-time 2 "http://127.0.0.1:$http_port/metrics" |
          awk '$1 == "nirc_links" {print $2}')
      fi
      echo "$(date +%s.%N) $pid ${rss:--1} ${ticks:--1} ${links:--1}"
    fi
    sleep "$sample"
  done
}
sampler >"$run/nircd-samples.txt" &
sampler_pid=$!

say "nirc-swarm run --count $agents --duration ${seconds}s"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$nircd_pid/stat"; }
ticks0=$(cpu_ticks)
t0=$(date +%s.%N)
echo "launch $t0" >>"$run/nircd-starts.txt"
"$build/nirc-swarm" run --controllers "127.0.0.1:$port" --ca "$run/pki/ca.crt" \
  --dir "$run/swarm" --count "$agents" --duration "${seconds}s" --rss-interval "${sample}s" \
  --json-out "$run/swarm.json" --progress >"$run/swarm.jsonl" 2>"$run/swarm.log" &
swarm_pid=$!

# Watch the swarm's own progress lines: note nircd's CPU from the swarm's
# first connection (after it has loaded its certificates) until every agent
# is connected, and trigger the failover once everyone has been connected
# for SOAK_FAILOVER_AT seconds.
started=0
connected_at=""
connected_s=0
failed_over=0
while kill -0 "$swarm_pid" 2>/dev/null; do
  if [ "$started" = 0 ] && grep -q '"started"' "$run/swarm.jsonl"; then
    started=1
    ticks0=$(cpu_ticks)
    t0=$(date +%s.%N)
  fi
  if [ -z "$connected_at" ] && grep -q '"all_connected"' "$run/swarm.jsonl"; then
    connected_at=$(date +%s.%N)
    connected_s=$(date +%s)
    ticks1=$(cpu_ticks)
    python3 -c "import sys, os
t0, t1, k0, k1 = map(float, sys.argv[1:5])
hz = os.sysconf('SC_CLK_TCK')
print(f'connect {t1 - t0:.3f} {(k1 - k0) / hz:.3f}')" "$t0" "$connected_at" "$ticks0" "$ticks1" \
      >>"$run/nircd-starts.txt"
    say "every agent connected"
  fi
  if [ -n "$failover_at" ] && [ -n "$connected_at" ] && [ "$failed_over" = 0 ] &&
    [ $(($(date +%s) - connected_s)) -ge "$failover_at" ]; then
    failed_over=1
    say "failover: SIGKILL nircd (pid $nircd_pid) and start it again"
    kill -KILL "$nircd_pid"
    wait "$nircd_pid" 2>/dev/null || true
    start_nircd
    echo "restart $ready_s" >>"$run/nircd-starts.txt"
    say "nircd back (pid $nircd_pid) after ${ready_s}s"
  fi
  # Fine while connecting (the CPU window), coarse afterwards.
  if [ -z "$connected_at" ]; then sleep 0.02; else sleep 0.2; fi
done
swarm_rc=0
wait "$swarm_pid" || swarm_rc=$?
swarm_pid=""
# The swarm has closed its links; stop nircd only once it has recorded
# every one of them going offline (a stop with links open is another test).
closes_recorded() {
  psql -XAtq "$conninfo" -c "SELECT count(*) FROM link_events WHERE event = 'offline'
    AND at >= '$nircd_since'"
}
deadline=$((SECONDS + 30))
while [ "$(closes_recorded)" -lt "$agents" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
closes=$(closes_recorded)
metrics=""
[ "$http_port" = 0 ] || metrics=$(curl -s --max-time 5 "http://127.0.0.1:$http_port/metrics" || true)
echo "$metrics" >"$run/nircd-metrics-final.txt"

say "stopping nircd (SIGTERM flushes the minute in progress)"
kill -TERM "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
nircd_rc=0
kill -TERM "$nircd_pid"
wait "$nircd_pid" || nircd_rc=$?
nircd_pid=""

stored=$(psql -XAtq "$conninfo" -c "SELECT coalesce(sum(reports), 0) FROM load_minute")
events=$(psql -XAtq "$conninfo" -c \
  "SELECT event || '=' || count(*) FROM link_events GROUP BY event ORDER BY event" | paste -sd' ')

python3 - "$run" "$agents" "$seconds" "$swarm_rc" "$nircd_rc" "$stored" "$failed_over" "$closes" \
  "${SOAK_MAX_GROWTH_KB:-2048}" "${SOAK_MAX_GROWTH_PCT:-2}" "$events" "$fd_limit" <<'PY'
import json, os, sys

(run, agents, seconds, swarm_rc, nircd_rc, stored, failed_over, closes, max_kb, max_pct, events,
 fd_limit) = sys.argv[1:13]
closes = int(closes)
agents, seconds, swarm_rc, nircd_rc = int(agents), int(seconds), int(swarm_rc), int(nircd_rc)
stored, failed_over, max_kb, max_pct = int(stored), failed_over == "1", float(max_kb), float(max_pct)
hz = os.sysconf("SC_CLK_TCK")
fails = []
unjudged = []

try:
    sw = json.load(open(os.path.join(run, "swarm.json")))
except (OSError, ValueError) as e:
    print(f"FAIL: no swarm summary ({e}); see {run}/swarm.log")
    sys.exit(1)

starts = dict(l.split(None, 1) for l in open(os.path.join(run, "nircd-starts.txt")))
# Only samples taken while the swarm ran count: once it stops, links close
# and nircd's RSS falls, which would hide a leak. Times are seconds since
# the swarm was launched; it ran from its set-up to set-up + duration.
launch = float(starts["launch"])
swarm_end = (sw["setup_ms"] + sw["duration_ms"]) / 1000 - 0.5
samples = []
for line in open(os.path.join(run, "nircd-samples.txt")):
    t, pid, rss, ticks, links = line.split()
    t = round(float(t) - launch, 1)
    if t <= swarm_end:
        samples.append((t, int(pid), int(rss), int(ticks), links))
metrics = {}
for line in open(os.path.join(run, "nircd-metrics-final.txt")):
    if line and not line.startswith("#") and " " in line:
        k, v = line.rsplit(" ", 1)
        metrics[k] = v.strip()

def growth(points, what):
    """points: [(t_s, kb)] of one process; judged over its second half by
    the least-squares trend, extrapolated over that half."""
    if len(points) < 2:
        fails.append(f"{what}: no RSS samples to judge")
        return None
    t_mid = points[0][0] + (points[-1][0] - points[0][0]) / 2
    half = [p for p in points if p[0] >= t_mid]
    n = len(half)
    if n < 2:
        fails.append(f"{what}: {n} RSS samples in the second half, too few to show")
        return None
    mt = sum(p[0] for p in half) / n
    mk = sum(p[1] for p in half) / n
    den = sum((p[0] - mt) ** 2 for p in half) or 1
    slope = sum((p[0] - mt) * (p[1] - mk) for p in half) / den  # KiB per second
    span = half[-1][0] - half[0][0]
    trend = slope * span
    limit = max_kb + mk * max_pct / 100
    judged = span >= 60 and n >= 10
    ok = trend < limit or not judged
    if not judged:
        unjudged.append(f"{what} ({n} samples over {span:g} s)")
    elif not ok:
        fails.append(f"{what}: RSS trend {trend:+.0f} KiB over the second half "
                     f"({slope * 60:+.0f} KiB/min; limit {limit:.0f} KiB)")
    return {"first_kb": half[0][1], "last_kb": half[-1][1], "mean_kb": round(mk),
            "min_kb": min(p[1] for p in half), "max_kb": max(p[1] for p in half),
            "trend_kb": round(trend), "span_s": span, "limit_kb": round(limit),
            "slope_kb_per_min": round(slope * 60, 1), "samples": n, "ok": ok,
            "judged": judged}

# nircd: the last process only (a failover restarts it from nothing).
last_pid = samples[-1][1] if samples else None
nircd_pts = [(t, rss) for t, pid, rss, _, _ in samples if pid == last_pid and rss >= 0]
all_rss = [rss for _, _, rss, _, _ in samples if rss >= 0]
nircd_growth = growth(nircd_pts, "nircd")
swarm_pts = [(t, kb) for t, kb in sw["rss_kb"]["samples"]]
swarm_growth = growth(swarm_pts, "nirc-swarm")

# nircd CPU over the run (last process) and during the connect storm.
cpu_run = None
if nircd_pts and len(samples) >= 2:
    first = next(s for s in samples if s[1] == last_pid)
    span = samples[-1][0] - first[0]
    if span > 0:
        cpu_run = round((samples[-1][3] - first[3]) / hz / span * 100, 1)
connect = starts.get("connect", "").split()
connect_wall, connect_cpu = (float(connect[0]), float(connect[1])) if connect else (None, None)

sent = sw["reports_sent"]
if swarm_rc != 0:
    fails.append(f"nirc-swarm exited {swarm_rc}: connected {sw['connected']}/{agents}, "
                 f"protocol errors {sw['protocol_errors']}")
# A restarted controller is a standby until it holds the lease: agents that
# reach it then are sent on with NOT_LEADER, as they should be.
errs = {k: v for k, v in sw["errors"]["by_reason"].items()
        if not (failed_over and k == "NOT_LEADER")}
if errs:
    fails.append(f"Error frames from the controller: {errs}")
if failed_over:
    if sw["recoveries_total"] < 1:
        fails.append("the failover never ended with every agent back")
    if sw["drops"]["total"] > agents:
        fails.append(f"{sw['drops']['total']} drops for one failover of {agents} links")
else:
    if sw["drops"]["total"]:
        fails.append(f"links dropped: {sw['drops']['by_reason']}")
    if stored != sent:
        fails.append(f"reports sent {sent} but {stored} stored in load_minute")
# Failed connects after the first full connection (the first storm may be
# shed by max_unauthenticated: that is the controller protecting itself).
late_fail = None
if sw["first_all_connected_ms"] is not None and not failed_over:
    prog = [json.loads(l) for l in open(os.path.join(run, "swarm.jsonl")) if l.startswith("{")]
    at = [p for p in prog if p.get("event") == "progress" and p["t_ms"] >= sw["first_all_connected_ms"]]
    if at:
        late_fail = sw["failed_connects"]["total"] - at[0]["failed_connects"]
        if late_fail:
            fails.append(f"{late_fail} failed connects after every agent was connected")
if closes < agents:
    fails.append(f"nircd recorded {closes} of {agents} links going offline within 30 s of the "
                 "swarm closing them")
if nircd_rc != 0:
    fails.append(f"nircd exited {nircd_rc} after SIGTERM")
errors_logged = sum(1 for l in open(os.path.join(run, "nircd.log")) if " error " in l[:40])
if errors_logged:
    fails.append(f"nircd logged {errors_logged} error lines (grep ' error ' {run}/nircd.log)")
dropped = metrics.get("nirc_db_dropped_total", "unknown (no [http])")
if dropped not in ("0", "unknown (no [http])"):
    fails.append(f"nircd dropped {dropped} database records")

def mib(kb):
    return f"{kb / 1024:.1f} MiB"

rc = sw["reconnect_ms"]
print()
print(f"==== soak summary: {agents} agents, {seconds} s"
      f"{', one failover (SIGKILL + restart)' if failed_over else ''} ====")
print(f"command: SOAK_AGENTS={agents} SOAK_SECONDS={seconds}"
      f"{' SOAK_FAILOVER_AT=' + os.environ.get('SOAK_FAILOVER_AT', '') if failed_over else ''}"
      f"{' SOAK_HTTP_PORT=0' if os.environ.get('SOAK_HTTP_PORT') == '0' else ''} tests/soak/soak.sh")
print(f"connect: all {agents} connected {sw['first_all_connected_ms'] / 1000:.2f} s after start"
      if sw["first_all_connected_ms"] is not None else "connect: never all connected")
print(f"  attempts {sw['connect_attempts']}, failed {sw['failed_connects']['total']} "
      f"{sw['failed_connects']['by_reason']}; connect_ms p50 {sw['connect_ms'].get('p50')} "
      f"p99 {sw['connect_ms'].get('p99')} max {sw['connect_ms'].get('max')}")
if connect_wall:
    print(f"  nircd CPU during the connect storm: {connect_cpu:.2f} s in {connect_wall:.2f} s "
          f"({connect_cpu / connect_wall * 100:.0f}% of a core); nircd ready "
          f"{starts['start'].strip()} s after exec")
if failed_over:
    for r in sw["recoveries"]:
        print(f"failover: {r['drops']} links dropped, all back {r['all_back_ms'] / 1000:.2f} s "
              f"later; nircd restart to ready {starts.get('restart', '?').strip()} s")
    print(f"  reconnect_ms: min {rc.get('min')} p10 {rc.get('p10')} p50 {rc.get('p50')} "
          f"p90 {rc.get('p90')} p99 {rc.get('p99')} max {rc.get('max')}")
    print(f"  densest 50 ms held {rc.get('max_in_50ms')} of {rc.get('count')} reconnects")
    print("  histogram: " + ", ".join(
        f"<={h['le_ms']:g}:{h['count']}" if h["le_ms"] is not None else f">:{h['count']}"
        for h in rc.get("histogram", []) if h["count"]))
print(f"reports: sent {sent}, stored in load_minute {stored}"
      f"{' (a SIGKILL loses the minute in progress)' if failed_over else ''}; "
      f"directives acked {sw['directives']['acked_applied']}, rejected "
      f"{sw['directives']['acked_rejected']}")
print(f"errors: Error frames {sw['errors']['total']} {sw['errors']['by_reason']}, protocol errors {sw['protocol_errors']}, "
      f"drops {sw['drops']['total']} {sw['drops']['by_reason']}, nircd error lines "
      f"{errors_logged}, db records dropped {dropped}")
print(f"link events in the database: {events}")
if all_rss:
    print(f"nircd RSS: first {mib(all_rss[0])}, last {mib(all_rss[-1])}, max {mib(max(all_rss))}"
          f"; CPU {cpu_run}% of a core over the run; fd limit {fd_limit}")
def show_half(g):
    if g:
        print(f"  second half ({g['samples']} samples over {g['span_s']:g} s): mean "
              f"{mib(g['mean_kb'])}, range {mib(g['min_kb'])}..{mib(g['max_kb'])}, "
              f"{mib(g['first_kb'])} -> {mib(g['last_kb'])}; trend {g['trend_kb']:+d} KiB "
              f"({g['slope_kb_per_min']:+} KiB/min), limit {g['limit_kb']} KiB"
              f"{'' if g['judged'] else ' (not judged: under 60 s or 10 samples)'}")

show_half(nircd_growth)
r = sw["rss_kb"]
print(f"swarm RSS: after set-up {mib(r['after_setup'])}, first {mib(r['first'])}, last "
      f"{mib(r['last'])}, max {mib(r['max'])}; CPU user {sw['cpu_s']['user']} s sys "
      f"{sw['cpu_s']['sys']} s")
show_half(swarm_growth)
print(f"files: {run} (swarm.json, swarm.jsonl, nircd-samples.txt, nircd.log)")
for f in fails:
    print("  - " + f)
if fails:
    print("FAIL")
elif unjudged:
    print("PASS (memory not judged: " + ", ".join(unjudged) + "; run 2 minutes or more)")
else:
    print("PASS")
sys.exit(1 if fails else 0)
PY
