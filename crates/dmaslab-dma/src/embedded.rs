//! `embedded-dma` integration: coherent buffers and pool blocks are `ReadBuffer` /
//! `WriteBuffer`, so HAL drivers written against those traits can take them.

use crate::coherent::{CoherentBuffer, UncachedRegion};
use crate::dma_pool::PoolBlock;
use embedded_dma::{ReadBuffer, WriteBuffer};

/// The range of an uncached region, as the traits want it.
fn range(r: &UncachedRegion) -> (*mut u8, usize) {
    (r.cpu.as_ptr(), r.size)
}

// SAFETY: the pointer and length are fixed for the value's life (no method changes them), and
// the memory stays allocated until the buffer is consumed by `free_coherent`, which takes it by
// value; the RAM region outlives it (the buffer holds a reference count). `u8` is valid for any
// byte the device writes.
unsafe impl ReadBuffer for CoherentBuffer {
    type Word = u8;
    unsafe fn read_buffer(&self) -> (*const u8, usize) {
        let (p, n) = range(self);
        (p, n)
    }
}

// SAFETY: as for `ReadBuffer`; `write_buffer` returns the same range every time.
unsafe impl WriteBuffer for CoherentBuffer {
    type Word = u8;
    unsafe fn write_buffer(&mut self) -> (*mut u8, usize) {
        range(self)
    }
}

// SAFETY: as for `CoherentBuffer`: a block's range is fixed and stays allocated until
// `DmaPool::free` consumes the block; its pages are freed only by `destroy`, which refuses while
// blocks are out.
unsafe impl ReadBuffer for PoolBlock {
    type Word = u8;
    unsafe fn read_buffer(&self) -> (*const u8, usize) {
        let (p, n) = range(self);
        (p, n)
    }
}

// SAFETY: as above.
unsafe impl WriteBuffer for PoolBlock {
    type Word = u8;
    unsafe fn write_buffer(&mut self) -> (*mut u8, usize) {
        range(self)
    }
}
