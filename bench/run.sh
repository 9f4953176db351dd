#!/usr/bin/env bash
# Runs every benchmark with its default sizes; one JSON line each on stdout.
set -euo pipefail
cd "$(dirname "$0")"
for b in idle_sites.py cutover.py ingest.py storm.py surface.py; do
  echo "== $b" >&2
  python3 "./$b"
done
