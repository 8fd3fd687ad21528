# A bounded cargo-fuzz run of the allocator API (the same harness runs as a proptest in
# 20-test.sh). Only where cargo-fuzz and nightly are already installed: installing cargo-fuzz
# compiles it from source, too slow for every CI run.
set -uo pipefail
if ! cargo fuzz --version >/dev/null 2>&1 || ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: SKIPPED - cargo-fuzz or nightly is not installed (cargo install cargo-fuzz)"
  exit 0
fi
cd fuzz
cargo +nightly fuzz run allocator_api -- -max_total_time="${DMASLAB_FUZZ_SECS:-30}"
