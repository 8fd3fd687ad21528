//! The cost of a streaming map/unmap pair in the DMA model (`dmaslab-dma`), per buffer size:
//! a DMA-safe buffer (whole lines: no maintenance beyond its own lines, no copy) against a
//! bounced one (copied through the swiotlb pool). Policy C, non-coherent device, 64-byte lines,
//! `FromDevice`.

use dmaslab_core::{Gfp, Policy};
use dmaslab_dma::{Device, Direction, Machine, MachineConfig};
use std::time::Instant;

const SIZES: [usize; 10] = [8, 32, 64, 96, 128, 256, 512, 1024, 2048, 4096];

/// ns per map+unmap of `len` bytes at `buf` for `dev`, and whether it bounced.
fn pair_cost(m: &mut Machine, dev: &Device, buf: usize, len: usize) -> Option<(f64, bool)> {
    let n = 20_000;
    let before = m.stats().bounces;
    let d = m.map_single(dev, buf, len, Direction::FromDevice).ok()?;
    m.unmap_single(dev, d, len, Direction::FromDevice).ok()?;
    let bounced = m.stats().bounces > before;
    let t = Instant::now();
    for _ in 0..n {
        let d = m.map_single(dev, buf, len, Direction::FromDevice).ok()?;
        m.unmap_single(dev, d, len, Direction::FromDevice).ok()?;
    }
    Some((t.elapsed().as_nanos() as f64 / n as f64, bounced))
}

/// Prints the table.
pub fn run() {
    println!("\n### DMA map+unmap pair (dmaslab-dma model, policy C, non-coherent, 64-byte line, FromDevice), ns\n");
    println!("| buffer bytes | DMA-safe buffer (dma-kmalloc) | kmalloc buffer | bounced? | bounced buffer | why bounced |");
    println!("|---|---|---|---|---|---|");
    for s in SIZES {
        let cfg = MachineConfig::new(Policy::C).ram_bytes(16 << 20);
        let Ok(mut m) = Machine::new(cfg) else {
            println!("| {s} | machine failed |");
            continue;
        };
        let dev = Device::non_coherent(64);
        let safe = m
            .kmalloc(s, Gfp::DMA)
            .and_then(|b| pair_cost(&mut m, &dev, b, s));
        // A kmalloc buffer between two live neighbours of its cache.
        let _left = m.kmalloc(s, Gfp::KERNEL);
        let plain = m.kmalloc(s, Gfp::KERNEL);
        let _right = m.kmalloc(s, Gfp::KERNEL);
        let k = plain.and_then(|b| pair_cost(&mut m, &dev, b, s));
        // A bounced buffer of the same size: by line sharing when kmalloc's is, else forced by
        // a DMA mask that the buffer is beyond but the bounce pool is not.
        let mut bounced = None;
        let mut why = "";
        if let (Some(b), Some((c, true))) = (plain, k) {
            bounced = Some(c);
            why = "shares a line";
            let _ = b;
        } else if let Some(b) = plain {
            for bits in (12..=24).rev() {
                let d = Device::non_coherent(64).mask_bits(bits);
                if let Some((c, true)) = pair_cost(&mut m, &d, b, s) {
                    bounced = Some(c);
                    why = "beyond the DMA mask (forced)";
                    break;
                }
            }
        }
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.0}"));
        println!(
            "| {s} | {} | {} | {} | {} | {why} |",
            f(safe.map(|x| x.0)),
            f(k.map(|x| x.0)),
            k.map_or("-", |x| if x.1 { "yes" } else { "no" }),
            f(bounced)
        );
    }
}
