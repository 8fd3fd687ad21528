# A bounded cargo-fuzz run of the allocator API (the same harness runs as a proptest in
# 20-test.sh); 00-setup.sh installs cargo-fuzz. DMASLAB_FUZZ_SECS sets the duration (30 s).
set -uo pipefail
if ! cargo fuzz --version >/dev/null 2>&1 || ! cargo +nightly --version >/dev/null 2>&1; then
  echo "SKIPPED: cargo-fuzz run of allocator_api: cargo-fuzz or nightly is not installed (see 00-setup.sh's output)"
  exit 0
fi
cd fuzz
cargo +nightly fuzz run allocator_api -- -max_total_time="${DMASLAB_FUZZ_SECS:-30}"
