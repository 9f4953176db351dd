#!/usr/bin/env bash
# Long fuzz runs (outside CI): builds the libFuzzer harnesses with clang,
# ASan and UBSan, then runs each for RUNS executions (default 10 million)
# and prints the counts. Crashes land in build-fuzz/artifacts/.
#   tests/fuzz/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-10000000}
dir=build-fuzz
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DNIRC_FUZZ=ON -DNIRC_ASAN=ON -DNIRC_UBSAN=ON \
  -DNIRC_TESTS=ON >/dev/null
harnesses="frame config rules report directive operator cli"
targets=$(for h in $harnesses; do printf 'fuzz_%s ' "$h"; done)
# shellcheck disable=SC2086 # one word per target
cmake --build "$dir" -j "$(nproc)" --target $targets >/dev/null
mkdir -p "$dir/artifacts"
for h in $harnesses; do
  echo "== fuzz_$h: $runs runs"
  "$dir/tests/fuzz_$h" -runs="$runs" -max_len=70000 -artifact_prefix="$dir/artifacts/$h-" \
    -print_final_stats=1 "$dir/fuzz-corpus/$h" 2>&1 | grep -E "^(Done|stat::number_of_executed_units|==.*ERROR|SUMMARY)|invariant broken" || true
done
