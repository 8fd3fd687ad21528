# Every publishable crate packages and builds from its package alone: `cargo publish --workspace
# --dry-run` (cargo >= 1.90) packages them together, so the path dependencies resolve to each
# other, builds each one from its .crate file and uploads nothing. `publish = false` crates
# (dmaslab-bench) are left out. --allow-dirty: the suite also runs on a worktree with changes.
set -uo pipefail
if ! cargo publish --help 2>/dev/null | grep -q -- '--workspace'; then
  echo "SKIPPED: publish dry-run: $(cargo -V) has no cargo publish --workspace (needs 1.90)"
  exit 0
fi
# Cargo keeps what it unpacked from the dry run's temporary registry, keyed by that registry's
# path, and never unpacks a version it has seen again: a second run in the same checkout would
# verify the sources of the first; and a registry crate's build in the target directory is not
# checked against its sources either. So forget what cargo unpacked of our crates (crates.io's
# cache untouched) and verify in a target directory of the step's own, made afresh.
home="${CARGO_HOME:-$HOME/.cargo}"
for d in "$home"/registry/src/* "$home"/registry/cache/*; do
  case "$(basename "$d")" in index.crates.io-*) continue ;; esac
  rm -rf "$d"/dmaslab-*
done
export CARGO_TARGET_DIR="$PWD/target/publish-check"
rm -rf "$CARGO_TARGET_DIR"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if cargo publish --workspace --dry-run --allow-dirty 2>&1 | tee "$out"; then
  echo "publish: dry-run of $(grep -c '^ *Uploading ' "$out") crates passed"
elif grep -qE 'failed to (download|get|query|fetch)|Couldn.t resolve host|network' "$out"; then
  echo "SKIPPED: publish dry-run: crates.io's index is not reachable from here"
else
  exit 1
fi
