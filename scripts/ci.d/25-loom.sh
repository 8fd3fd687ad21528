# Loom models of the depot's lock-free bag (crates/dmaslab-core/tests/loom_depot.rs): every
# interleaving of its atomics, in a target directory of its own (`--cfg loom` rebuilds every
# crate, which would otherwise throw away the normal build's cache). The models take well under
# a second; the build about two minutes on 2 cores.
set -euo pipefail
if ! cargo fetch >/dev/null 2>&1; then
  echo "SKIPPED: loom models of the depot: the loom crate is neither cached nor downloadable"
  exit 0
fi
RUSTFLAGS="--cfg loom" cargo test -p dmaslab-core --release --test loom_depot --target-dir target/loom
