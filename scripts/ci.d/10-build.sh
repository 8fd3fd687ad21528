# Everything builds in release (the preload library and the CLI are used by later tests),
# clippy is clean, and the core and the DMA layer build for a Cortex-M7 without std.
set -euo pipefail
cargo build --workspace --release
cargo clippy --workspace --all-targets -- -D warnings
cargo build -p dmaslab-core -p dmaslab-dma --target thumbv7em-none-eabihf --release
echo "no_std: dmaslab-core and dmaslab-dma built for thumbv7em-none-eabihf"
