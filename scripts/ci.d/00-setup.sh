# Toolchain pieces the later steps need, installed when missing: clippy (10-build), the Cortex-M7
# target (10-build's no_std build), nightly with Miri (30-miri) and cargo-fuzz (35-fuzz). A piece
# that cannot be installed is reported here; the step that needs it prints its SKIPPED line.
# (The rust-version toolchains are 17-msrv.sh's, qemu-system-arm is 40-examples.sh's.)
set -uo pipefail

if ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add clippy || echo "setup: could not install clippy"
fi
if ! rustup target list --installed 2>/dev/null | grep -qx thumbv7em-none-eabihf; then
  rustup target add thumbv7em-none-eabihf || echo "setup: could not add thumbv7em-none-eabihf"
fi
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  # An installed nightly gets the components (no update of nightly itself); else a minimal one.
  if rustc +nightly --version >/dev/null 2>&1; then
    rustup component add --toolchain nightly miri rust-src
  else
    rustup toolchain install nightly --profile minimal --component miri,rust-src
  fi || echo "setup: could not install Miri on nightly"
fi
if cargo +nightly miri --version >/dev/null 2>&1; then
  # Builds Miri's sysroot once (cached in ~/.cache/miri); quiet when it is already there.
  cargo +nightly miri setup >/dev/null 2>&1 || echo "setup: cargo miri setup failed"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz (compiles from source, once)"
  cargo install cargo-fuzz --locked --quiet || echo "setup: could not install cargo-fuzz"
fi
echo "setup: $(cargo clippy --version 2>/dev/null || echo 'no clippy'); \
$(cargo +nightly miri --version 2>/dev/null || echo 'no Miri'); \
$(cargo fuzz --version 2>/dev/null || echo 'no cargo-fuzz')"
exit 0
