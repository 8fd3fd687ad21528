# Toolchain pieces the tests need: the Cortex-M7 target for the no_std build, and Miri.
set -uo pipefail
rustup target add thumbv7em-none-eabihf || echo "setup: could not add thumbv7em-none-eabihf"
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup component add --toolchain nightly miri rust-src >/dev/null 2>&1 \
    && cargo +nightly miri setup >/dev/null 2>&1 \
    || echo "setup: Miri could not be installed here"
fi
exit 0
