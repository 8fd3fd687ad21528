# The workspace's unit, property, integration and doc tests, in release (optimised like what
# ships), but without fat LTO and with parallel codegen: the release profile links each of the
# ~40 test binaries through a single-threaded whole-program LTO, most of this step's time before,
# and LTO changes no behaviour a test checks. (10-build.sh builds the shipped LTO artifacts; the
# preload tests build the libdmaslab.so they test with these settings.)
set -euo pipefail
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
cargo test --workspace --release --no-fail-fast
