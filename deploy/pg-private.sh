#!/usr/bin/env bash
# pg-private.sh: runs a private PostgreSQL 15 for NIRC's demo and tests.
#
# The cluster lives entirely in DIR (DIR/data, the socket in DIR/run, the
# log in DIR/postgres.log) and listens only on 127.0.0.1:PORT, so it never
# touches a system-wide PostgreSQL and several can run side by side. It
# uses Debian's binaries in /usr/lib/postgresql/15/bin (override with
# NIRC_PG_BIN). Authentication is "trust" for the superuser "nirc": this is
# a loopback-only instance for development and tests, never production.
#
#   pg-private.sh start DIR PORT   initdb if needed, start, create db "nirc"
#   pg-private.sh stop DIR         fast shutdown; no error if not running
#   pg-private.sh status DIR       exit 0 running, 3 stopped, 4 no cluster
#   pg-private.sh url DIR PORT     print the libpq conninfo
#
# Environment:
#   NIRC_PG_FAST=1   fsync, synchronous_commit and full_page_writes off:
#                    much faster, and a crash can lose or corrupt data, so
#                    only for throw-away test clusters. Applied at start.
#   NIRC_PG_BIN      directory of initdb, pg_ctl, psql, createdb.
#
# Running as root (as CI does): initdb and postgres refuse to run as root,
# so the cluster is owned by and run as the "postgres" system user that
# Debian's postgresql package creates (or, if that user does not exist, a
# system user "nirc-pg" made with useradd). DIR is chowned to that user and
# mode 700. Every parent directory of DIR must be searchable by that user:
# the script checks each one and, where it is not, adds o+x (search only,
# never read) and prints what it changed. A DIR under /tmp needs no change.
# An existing cluster is always run as the owner of DIR/data.
set -euo pipefail

readonly PROG=pg-private.sh
readonly PG_BIN=${NIRC_PG_BIN:-/usr/lib/postgresql/15/bin}
readonly DB_USER=nirc
readonly DB_NAME=nirc
readonly START_TIMEOUT_S=60

usage() {
  cat <<EOF
Usage: $PROG start DIR PORT | stop DIR | status DIR | url DIR PORT

Runs a private PostgreSQL in DIR listening on 127.0.0.1:PORT.
Set NIRC_PG_FAST=1 to turn off fsync for throw-away test clusters.
EOF
}

say() { echo "pg-private: $*"; }
die() {
  echo "$PROG: error: $*" >&2
  exit 1
}
usage_error() {
  echo "$PROG: $*" >&2
  usage >&2
  exit 2
}

# Prints the end of a log file indented, so a failure shows its cause.
show_log() {
  local file=$1
  if [ -s "$file" ]; then
    echo "--- last lines of $file ---" >&2
    tail -n 25 "$file" | sed 's/^/  /' >&2
    echo "---" >&2
  fi
}

check_port() {
  if ! [[ $1 =~ ^[0-9]{1,5}$ ]] || [ "$1" -lt 1024 ] || [ "$1" -gt 65535 ]; then
    usage_error "PORT must be a number from 1024 to 65535, not '$1'"
  fi
}

# ---- arguments ------------------------------------------------------------

[ "$#" -ge 1 ] || usage_error "missing command"
CMD=$1
case "$CMD" in
  -h | --help) usage; exit 0 ;;
  start | url) [ "$#" -eq 3 ] || usage_error "usage: $PROG $CMD DIR PORT" ;;
  stop | status) [ "$#" -eq 2 ] || usage_error "usage: $PROG $CMD DIR" ;;
  *) usage_error "unknown command '$CMD'" ;;
esac
[ -n "$2" ] || usage_error "DIR must not be empty"
DIR=$(realpath -m -- "$2")
PORT=${3:-}
[ -z "$PORT" ] || check_port "$PORT"

if [ "$CMD" = url ]; then
  echo "host=127.0.0.1 port=$PORT user=$DB_USER dbname=$DB_NAME"
  exit 0
fi

DATA=$DIR/data
RUN=$DIR/run
LOG=$DIR/postgres.log

for tool in initdb pg_ctl psql createdb; do
  [ -x "$PG_BIN/$tool" ] ||
    die "$PG_BIN/$tool not found; install PostgreSQL 15 (deploy/install-deps.sh) or set NIRC_PG_BIN to its bin directory"
done

# ---- who runs the server --------------------------------------------------

IS_ROOT=0
[ "$(id -u)" -ne 0 ] || IS_ROOT=1
RUN_USER=$(id -un)

has_cluster() { [ -f "$DATA/PG_VERSION" ]; }

# Chooses the user the server runs as. Without root that is simply us.
pick_run_user() {
  [ "$IS_ROOT" -eq 1 ] || return 0
  if has_cluster; then
    RUN_USER=$(stat -c %U "$DATA")
    if [ "$RUN_USER" = root ] || [ "$RUN_USER" = UNKNOWN ]; then
      die "$DATA is owned by '$RUN_USER'; PostgreSQL cannot run as that user. Fix: chown -R postgres: $DATA"
    fi
  elif getent passwd postgres >/dev/null; then
    RUN_USER=postgres
  else
    if ! getent passwd nirc-pg >/dev/null; then
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nirc-pg ||
        die "cannot create the system user nirc-pg; create a non-root user to own the cluster (useradd --system nirc-pg)"
      say "created system user nirc-pg to run PostgreSQL (initdb refuses to run as root)"
    fi
    RUN_USER=nirc-pg
  fi
}

# Runs a PostgreSQL tool as RUN_USER, from DIR so that the tool does not
# warn about a working directory it cannot enter. The lock descriptor is
# closed for the child: a server started by pg_ctl would otherwise inherit
# it and hold the lock for as long as it runs.
as_pg() {
  if [ "$IS_ROOT" -eq 1 ]; then
    (cd "$DIR" && runuser -u "$RUN_USER" -- "$@") 9>&-
  else
    "$@" 9>&-
  fi
}

# Makes every ancestor of DIR searchable by RUN_USER, top down, because a
# directory below an unsearchable one is unreachable whatever its own mode.
open_parents() {
  [ "$IS_ROOT" -eq 1 ] || return 0
  local path="" part
  local -a parts
  IFS=/ read -r -a parts <<<"${DIR#/}"
  unset 'parts[${#parts[@]}-1]'
  for part in "${parts[@]}"; do
    path+=/$part
    if ! runuser -u "$RUN_USER" -- test -x "$path" 2>/dev/null; then
      chmod o+x "$path" ||
        die "$RUN_USER cannot enter $path and chmod o+x failed; use a DIR under /tmp"
      say "chmod o+x $path, so that $RUN_USER can reach $DIR"
    fi
  done
}

# Prints the port of the running postmaster (line 4 of postmaster.pid).
running_port() { sed -n 4p "$DATA/postmaster.pid" 2>/dev/null; }
running_pid() { sed -n 1p "$DATA/postmaster.pid" 2>/dev/null; }

is_running() { has_cluster && as_pg "$PG_BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1; }

# ---- commands -------------------------------------------------------------

cmd_status() {
  if ! has_cluster; then
    say "no cluster in $DIR"
    exit 4
  fi
  pick_run_user
  if is_running; then
    say "running: pid $(running_pid), 127.0.0.1:$(running_port), data $DATA, log $LOG"
    exit 0
  fi
  say "stopped (data $DATA)"
  exit 3
}

cmd_stop() {
  if ! has_cluster; then
    say "no cluster in $DIR; nothing to stop"
    return 0
  fi
  pick_run_user
  if ! is_running; then
    say "not running ($DIR)"
    return 0
  fi
  if ! as_pg "$PG_BIN/pg_ctl" stop -D "$DATA" -m fast -w -t "$START_TIMEOUT_S" >/dev/null 2>"$DIR/pg_ctl.err"; then
    cat "$DIR/pg_ctl.err" >&2
    show_log "$LOG"
    die "PostgreSQL in $DIR did not stop within ${START_TIMEOUT_S}s; try: $PG_BIN/pg_ctl stop -D $DATA -m immediate (as $RUN_USER)"
  fi
  rm -f "$DIR/pg_ctl.err"
  say "stopped ($DIR)"
}

# Picks the locale for initdb: C.UTF-8 when the system has it (Debian
# always does), plain C otherwise. Both sort bytewise, so results do not
# depend on the machine.
pick_locale() {
  if locale -a 2>/dev/null | grep -qixE 'c\.utf-?8'; then echo C.UTF-8; else echo C; fi
}

init_cluster() {
  if [ -d "$DATA" ]; then
    if [ -z "$(ls -A "$DATA")" ]; then
      rmdir "$DATA"
    else
      die "$DATA exists but holds no cluster (an interrupted initdb?). Fix: rm -rf $DATA"
    fi
  fi
  local locale
  locale=$(pick_locale)
  say "initdb $DATA (user $DB_USER, UTF8, locale $locale, trust on loopback)"
  if ! as_pg "$PG_BIN/initdb" -D "$DATA" --auth=trust -U "$DB_USER" -E UTF8 --locale="$locale" \
    >"$DIR/initdb.log" 2>&1; then
    show_log "$DIR/initdb.log"
    die "initdb failed (full output in $DIR/initdb.log). Fix the cause above, then remove $DATA and retry"
  fi
  # Our settings live in their own file, rewritten at every start, so the
  # port or NIRC_PG_FAST can change between runs.
  printf "\n# Added by deploy/pg-private.sh\ninclude_if_exists = 'nirc-private.conf'\n" >>"$DATA/postgresql.conf"
}

write_settings() {
  local conf=$DATA/nirc-private.conf q_run=${RUN//\'/\'\'}
  {
    echo "# Written by deploy/pg-private.sh at every start; changes here are lost."
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $PORT"
    echo "unix_socket_directories = '$q_run'"
    echo "log_line_prefix = '%m [%p] %q%u@%d '"
    echo "log_timezone = 'UTC'"
    echo "timezone = 'UTC'"
    if [ "${NIRC_PG_FAST:-0}" = 1 ]; then
      echo "# NIRC_PG_FAST=1: fast and unsafe, for throw-away test clusters only."
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
    fi
  } >"$conf"
  [ "$IS_ROOT" -eq 0 ] || chown "$RUN_USER:" "$conf"
  chmod 600 "$conf"
}

# Says why the server did not start, as precisely as the log allows.
explain_start_failure() {
  show_log "$LOG"
  if grep -qE 'could not bind|Address already in use' "$LOG" 2>/dev/null; then
    die "port $PORT is in use. Fix: pick another PORT, or stop what listens there (ss -ltnp 'sport = :$PORT')"
  elif grep -qE 'could not (create|map|resize) (anonymous )?shared memory|No space left on device' "$LOG" 2>/dev/null; then
    die "not enough shared memory. Fix: enlarge /dev/shm (docker run --shm-size=256m) or free memory"
  elif grep -q 'Permission denied' "$LOG" 2>/dev/null; then
    die "PostgreSQL (as $RUN_USER) cannot access a file it needs. Fix: chown -R $RUN_USER: $DIR"
  elif grep -qE 'database files are incompatible|was initialized by PostgreSQL version' "$LOG" 2>/dev/null; then
    die "$DATA was made by another PostgreSQL version. Fix: remove $DIR or set NIRC_PG_BIN to that version"
  elif grep -q 'configuration file .* contains errors' "$LOG" 2>/dev/null; then
    die "a setting is invalid. Fix: correct the line the log names in $DATA/postgresql.conf (nirc-private.conf is rewritten at every start)"
  fi
  die "PostgreSQL did not start. Fix the cause the log above names (full log: $LOG), then run '$PROG start $DIR $PORT' again"
}

ensure_database() {
  local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$DB_USER")
  local have
  if ! have=$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" 2>&1); then
    echo "$have" >&2
    die "cannot connect to 127.0.0.1:$PORT as $DB_USER; see $LOG"
  fi
  if [ "$have" != 1 ]; then
    local out
    if ! out=$("$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -E UTF8 "$DB_NAME" 2>&1); then
      echo "$out" >&2
      die "cannot create database $DB_NAME; see $LOG"
    fi
    say "created database $DB_NAME"
  fi
}

cmd_start() {
  # The Unix socket path is limited to 107 bytes by the kernel.
  local sock="$RUN/.s.PGSQL.$PORT"
  [ "${#sock}" -le 107 ] ||
    die "socket path $sock is longer than 107 bytes. Fix: use a shorter DIR"

  mkdir -p -- "$DIR" || die "cannot create $DIR; check the parent directory's permissions"
  # One start or stop at a time per DIR, so parallel tests sharing a
  # cluster neither run initdb twice nor race on createdb.
  exec 9>>"$DIR/.lock"
  flock -w $((START_TIMEOUT_S * 2)) 9 || die "another $PROG holds $DIR/.lock; wait for it or remove the stale lock"

  pick_run_user
  if [ "$IS_ROOT" -eq 1 ]; then
    open_parents
    chown "$RUN_USER:" "$DIR"
    chmod 700 "$DIR"
  fi
  mkdir -p "$RUN"
  if [ "$IS_ROOT" -eq 1 ]; then
    chown "$RUN_USER:" "$RUN"
    [ ! -e "$LOG" ] || chown "$RUN_USER:" "$LOG"
  fi

  if has_cluster; then
    local have want
    have=$(cat "$DATA/PG_VERSION")
    want=$("$PG_BIN/pg_ctl" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')
    [ "$have" = "$want" ] ||
      die "$DATA was made by PostgreSQL $have but $PG_BIN is version $want. Fix: remove $DIR, or set NIRC_PG_BIN to PostgreSQL $have"
  else
    init_cluster
  fi

  if is_running; then
    local port
    port=$(running_port)
    [ "$port" = "$PORT" ] ||
      die "the cluster in $DIR is already running on port $port, not $PORT. Fix: $PROG stop $DIR, then start again"
    say "already running: pid $(running_pid), 127.0.0.1:$PORT"
  else
    # A listener on the port would make postgres fail with a log message
    # that is easy to miss; say it plainly instead.
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      die "port $PORT on 127.0.0.1 is already in use. Fix: pick another PORT, or stop what listens there (ss -ltnp 'sport = :$PORT')"
    fi
    write_settings
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$DATA" -l "$LOG" -w -t "$START_TIMEOUT_S" >/dev/null 2>"$DIR/pg_ctl.err"; then
      cat "$DIR/pg_ctl.err" >&2
      explain_start_failure
    fi
    rm -f "$DIR/pg_ctl.err"
    say "started: pid $(running_pid), 127.0.0.1:$PORT, data $DATA, log $LOG${NIRC_PG_FAST:+ (NIRC_PG_FAST=$NIRC_PG_FAST)}"
  fi
  ensure_database
}

case "$CMD" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
esac
