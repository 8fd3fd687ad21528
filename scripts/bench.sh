#!/bin/sh
# The one command behind BENCHMARKS.md: builds libdmaslab.so and the bench crate (with the
# Rust-crate peers) in release mode, a second libdmaslab.so with lock counting (the
# `lock-stats` feature, into target/lock-stats, so the timed runs use the normal build), and
# runs `dmaslab-bench "$@"` (default: every section, 5 interleaved rounds). Markdown on stdout,
# progress on stderr.
#   scripts/bench.sh                   # everything
#   scripts/bench.sh --rounds 3 preload fastpath
#   scripts/bench.sh --rounds 3 --scale 0.2 field   # only the field's shapes and sqlite3
set -e
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p dmaslab-preload -p dmaslab-bench --features dmaslab-bench/rust-peers
cargo build --release -p dmaslab-preload --features lock-stats --target-dir "$target/lock-stats"
DMASLAB_LOCK_LIB="$target/lock-stats/release/libdmaslab.so" exec "$target/release/dmaslab-bench" "$@"
