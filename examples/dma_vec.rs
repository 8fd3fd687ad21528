//! DMA buffers as `Vec<u8, DmaAlloc>` through the re-exported `allocator_api2`.
//!
//! `cargo run -p dmaslab --release --example dma_vec`
//!
//! Each buffer starts on a DMA cache line and owns whole lines, so the cache maintenance of a
//! DMA mapping (clean before the device reads, invalidate before the CPU reads) never touches
//! a neighbouring object. The example checks that for a few typical buffer sizes, beside the
//! ordinary `Vec<u8>` of the same size for comparison.

use dmaslab::allocator_api2::vec::Vec as DmaVec;
use dmaslab::{heap, DmaAlloc, DmaSlab};

#[global_allocator]
static GLOBAL: DmaSlab = DmaSlab;

/// Is `[p, p + len)` made of whole cache lines of `line` bytes?
fn whole_lines(p: usize, len: usize, line: usize) -> bool {
    p.is_multiple_of(line) && len.is_multiple_of(line)
}

fn main() {
    let h = heap();
    let line = DmaAlloc.line();
    println!(
        "policy {}, DMA line {line} (DMASLAB_POLICY / DMASLAB_DMA_MINALIGN)",
        h.settings().policy
    );
    println!(
        "{:>6} {:>14} {:>6} {:>14} {:>6}",
        "bytes", "dma buffer", "slot", "Vec<u8>", "slot"
    );
    for n in [4usize, 24, 100, 512, 1500, 4000] {
        let mut rx: DmaVec<u8, DmaAlloc> = DmaVec::with_capacity_in(n, DmaAlloc);
        rx.resize(n, 0xA5);
        let plain: Vec<u8> = vec![0x5A; n];
        let (p, slot) = (rx.as_ptr() as usize, h.usable_size(rx.as_ptr()));
        println!(
            "{n:>6} {p:>#14x} {slot:>6} {:>#14x} {:>6}",
            plain.as_ptr() as usize,
            h.usable_size(plain.as_ptr())
        );
        assert!(
            whole_lines(p, slot, line),
            "a {n}-byte DMA buffer at {p:#x} ({slot} bytes) shares a cache line"
        );
        assert!(rx.iter().all(|&b| b == 0xA5) && plain.iter().all(|&b| b == 0x5A));
    }
    println!("dma_vec: ok");
}
