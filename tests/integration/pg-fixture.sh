#!/usr/bin/env bash
# CTest fixture: one private, throw-away PostgreSQL for a whole test run.
#   pg-fixture.sh start NAME PORT | stop NAME PORT
# The cluster lives under /tmp (not in the build tree) because it runs as
# the postgres user when the suite runs as root, and /tmp is searchable by
# everyone, whereas a clone under /root is not.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=$1 port=$3
dir="${TMPDIR:-/tmp}/nirc-test-pg-$(id -u)-$port"
pg="$here/../../deploy/pg-private.sh"
case "$cmd" in
start)
  # A cluster left by an interrupted run is discarded: every run starts clean.
  "$pg" stop "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
  NIRC_PG_FAST=1 "$pg" start "$dir" "$port"
  psql -q "host=127.0.0.1 port=$port user=nirc dbname=postgres" -c "CREATE DATABASE nirc_unit"
  echo "pg-fixture: PostgreSQL ready on 127.0.0.1:$port ($dir)"
  ;;
stop)
  "$pg" stop "$dir" || true
  rm -rf "$dir"
  ;;
*)
  echo "usage: pg-fixture.sh start|stop NAME PORT" >&2
  exit 2
  ;;
esac
