#!/usr/bin/env bash
# Fuzzes every parser target for SECONDS each (default 600), one after another, with cargo fuzz
# on the nightly toolchain, and prints executions and findings per target.
#
#   scripts/fuzz.sh 600            # every target, 10 minutes each
#   scripts/fuzz.sh 60 vxu line    # some targets
#
# Corpora grow in fuzz/corpus/<target> (cut at the end to the fewest inputs that reach every
# edge reached, so the committed corpus stays small); a crash is saved by libFuzzer in
# fuzz/artifacts/<target>/. Copy a crash input to fuzz/regressions/<target>/ once its bug is
# fixed: tests/fuzz_corpora.rs replays seeds, corpora and regressions in CI (which never fuzzes).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(mqtt_payload vxu berlinger logtag line query_time)
fi

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cargo +nightly fuzz build --release
mkdir -p logs
printf '%-14s %14s %10s %s\n' target executions seconds findings
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  cargo +nightly fuzz run --release "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    >"logs/$t.log" 2>&1 || true
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  after=$(find "artifacts/$t" -type f | wc -l)
  printf '%-14s %14s %10s %s\n' "$t" "${runs:-?}" "$seconds" "$((after - before)) new (artifacts/$t)"
  # Keep the committed corpus small: the fewest inputs that still reach every edge reached.
  bin="target/x86_64-unknown-linux-gnu/release/$t"
  rm -rf "corpus/$t.min" && mkdir -p "corpus/$t.min"
  if "$bin" -set_cover_merge=1 -use_counters=0 -use_cmp=0 "corpus/$t.min" "corpus/$t" >"logs/$t.min.log" 2>&1; then
    rm -rf "corpus/$t" && mv "corpus/$t.min" "corpus/$t"
  else
    rm -rf "corpus/$t.min"
  fi
done
