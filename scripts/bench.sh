#!/bin/sh
# The one command behind BENCHMARKS.md: builds libdmaslab.so and the bench crate (with the
# Rust-crate peers) in release mode and runs `dmaslab-bench "$@"` (default: every section,
# 5 interleaved rounds). Markdown on stdout, progress on stderr.
#   scripts/bench.sh                   # everything
#   scripts/bench.sh --rounds 3 preload fastpath
set -e
cd "$(dirname "$0")/.."
cargo build --release -p dmaslab-preload -p dmaslab-bench --features dmaslab-bench/rust-peers
exec "${CARGO_TARGET_DIR:-target}/release/dmaslab-bench" "$@"
