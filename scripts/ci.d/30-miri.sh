# Miri over the no_std core's tests (reduced iteration counts under cfg(miri)).
set -uo pipefail
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "miri: SKIPPED - Miri is not installed on this machine (rustup component add --toolchain nightly miri failed)"
  exit 0
fi
MIRIFLAGS="${MIRIFLAGS:--Zmiri-permissive-provenance}" cargo +nightly miri test -p dmaslab-core
