# Miri over the no_std core's tests (reduced iteration counts under cfg(miri)).
# Miri interprets one thread at a time, so the test binaries run as two groups side by side (the
# CI machine has two cores): the per-CPU layer's tests, the longest binary, against all the
# others and the doctests. Each group's output is printed whole once both are done.
set -uo pipefail
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "SKIPPED: Miri tests of dmaslab-core: Miri is not installed on nightly (see 00-setup.sh's output)"
  exit 0
fi
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-permissive-provenance}"
miri() { cargo +nightly miri test --no-fail-fast -p dmaslab-core "$@"; }
# Build once, so that the two groups do not wait on each other's build.
miri --no-run || exit 1

long=cpu_cache
others=(--lib)
for f in crates/dmaslab-core/tests/*.rs; do
  t=$(basename "$f" .rs)
  [ "$t" = "$long" ] || others+=(--test "$t")
done
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
miri --test "$long" >"$logs/a" 2>&1 &
a=$!
{
  miri "${others[@]}"; r=$?
  miri --doc && exit "$r"
} >"$logs/b" 2>&1 &
b=$!
wait "$a"; ra=$?
wait "$b"; rb=$?
cat "$logs/a" "$logs/b"
[ "$ra" -eq 0 ] && [ "$rb" -eq 0 ]
