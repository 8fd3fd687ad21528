# The workspace's unit, property and integration tests.
set -euo pipefail
cargo test --workspace --release
