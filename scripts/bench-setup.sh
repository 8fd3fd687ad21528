#!/bin/sh
# Installs what `scripts/bench.sh` compares against: Debian's mimalloc, jemalloc and tcmalloc
# (for LD_PRELOAD), valgrind (instruction counts), python3 (the recorded trace) and sqlite3
# (the sqlite3 row).
# Benchmarks are not run in CI; CI only builds the bench crate.
set -e
apt-get update -qq
apt-get install -y libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4 valgrind python3 sqlite3
