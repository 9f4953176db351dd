#!/usr/bin/env bash
# The CPU each test costs, one test at a time: the user and system time of
# the test and every process it waited for (nircd, agents, nircctl,
# Kamailio; not the shared PostgreSQL, nor Chromium's own children), with
# the test's wall clock. It tells which tests wait and which load the
# cores (tests/CMakeLists.txt: LIGHT, CORES, CLOCK).
#
#   tests/tools/cpu-per-test.sh BUILD_DIR OUT [ctest selection...]
#   e.g. tests/tools/cpu-per-test.sh build /tmp/cpu.txt -L integration
#
# OUT gets one line per test: name, user s, system s, wall s. Set the same
# environment as test.sh's run of that build (ASAN_OPTIONS, the
# NIRC_*_STEPS scales) to measure that run.
set -euo pipefail
dir=$1 out=$2
shift 2
cd "$dir"
ctest -R '^pg.start$' >/dev/null
trap 'ctest -R "^pg.stop$" >/dev/null' EXIT
: >"$out"
for t in $(ctest -N "$@" | sed -n 's/^ *Test *#[0-9]*: //p' | grep -v '^pg\.'); do
  /usr/bin/time -f "$t %U %S %e" -a -o "$out" ctest -R "^$t\$" -FA pg >/dev/null 2>&1 ||
    echo "$t FAILED" >>"$out"
done
awk 'NF == 4 { c += $2 + $3; w += $4 } END { printf "all: %.0f s of CPU in %.0f s\n", c, w }' "$out" |
  tee -a "$out"
