# Miri over the no_std core's tests (reduced iteration counts under cfg(miri)).
set -uo pipefail
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "SKIPPED: Miri tests of dmaslab-core: Miri is not installed on nightly (see 00-setup.sh's output)"
  exit 0
fi
MIRIFLAGS="${MIRIFLAGS:--Zmiri-permissive-provenance}" cargo +nightly miri test --no-fail-fast -p dmaslab-core
