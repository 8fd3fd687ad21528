# The root examples/: the two hosted examples of the dmaslab crate, and the Cortex-M7 firmware
# (examples/cortex-m7-qemu) built for thumbv7em-none-eabihf and run under QEMU's MPS2-AN500,
# its semihosting output checked line by line and its exit status required to be 0.
set -euo pipefail

for ex in global_alloc dma_vec; do
  out=$(cargo run -q -p dmaslab --release --example "$ex")
  printf '%s\n' "$out"
  grep -q "^$ex: ok$" <<<"$out" || { echo "examples: $ex did not print '$ex: ok'"; exit 1; }
done

if ! rustup target list --installed 2>/dev/null | grep -qx thumbv7em-none-eabihf \
   && ! rustup target add thumbv7em-none-eabihf; then
  echo "SKIPPED: cortex-m7-qemu firmware: the thumbv7em-none-eabihf target could not be installed"
  exit 0
fi
if ! command -v qemu-system-arm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends qemu-system-arm; } >/dev/null 2>&1 || true
  fi
fi

fw=examples/cortex-m7-qemu
(cd "$fw" && cargo build -q --release)
elf="$fw/target/thumbv7em-none-eabihf/release/dmaslab-cortex-m7-qemu"
size "$elf" 2>/dev/null || llvm-size "$elf" 2>/dev/null || true

if ! command -v qemu-system-arm >/dev/null 2>&1; then
  echo "SKIPPED: cortex-m7-qemu firmware run: qemu-system-arm is not installed and apt-get could not install it"
  exit 0
fi

set +e
out=$(cd "$fw" && timeout 120 cargo run -q --release 2>&1)
status=$?
set -e
printf '%s\n' "$out"
if [ "$status" -ne 0 ]; then
  echo "examples: the firmware exited with status $status under QEMU (124: timed out)"
  exit 1
fi
for want in '^dmaslab firmware: 1024 KiB heap' '^collections: ok' \
            '^dma: 12-byte kmalloc buffer, FromDevice: bounced .*device data read back: ok; neighbour intact: ok$' \
            '^dma: 12-byte Gfp::DMA buffer, Bidirectional: in place .*device read the CPU.s data: ok; device data read back: ok$' \
            '^# name ' '^kmalloc-16 ' '^oom: .* refused: true$' '^recovered: ' '^usable: ' '^firmware: ok$'; do
  grep -q -- "$want" <<<"$out" || { echo "examples: firmware output lacks a line matching '$want'"; exit 1; }
done
echo "examples: global_alloc, dma_vec and the cortex-m7-qemu firmware ran and printed what they should"
