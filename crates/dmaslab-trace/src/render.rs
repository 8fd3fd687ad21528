//! A [`Report`] as text and as JSON.

use crate::analysis::Report;
use std::fmt::Write;

/// The report as JSON (one object; the fields of issue 14 first).
pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("JSON of plain data") + "\n"
}

fn mib(pages: f64) -> f64 {
    pages * 4096.0 / (1 << 20) as f64
}

/// The report as text.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} events over {:.3} s; lost {}; frees of objects allocated before the trace {} (ignored); other events skipped {}",
        r.events, r.duration_s, r.lost_events, r.unmatched_frees, r.unknown_events
    );
    let _ = writeln!(
        s,
        "geometry check: {:.1}% of kmalloc allocations get the kernel's own size class (bytes_alloc) from dmaslab's kmalloc",
        r.kernel_class_match * 100.0
    );
    let _ = writeln!(
        s,
        "kernel: {} bytes requested, {} bytes allocated ({} named caches replayed as kmem_caches)",
        r.kernel_bytes_requested, r.kernel_bytes_allocated, r.named_caches
    );
    let _ = writeln!(
        s,
        "\npolicy  line  peak pages  (MiB)  mean pages  final pages  bytes requested  bytes handed out"
    );
    for p in &r.policies {
        let _ = writeln!(
            s,
            "{:<6} {:>5} {:>11} {:>6.2} {:>11.1} {:>12} {:>16} {:>17}",
            p.policy,
            p.dma_minalign,
            p.peak_pages,
            mib(p.peak_pages as f64),
            p.mean_pages,
            p.final_pages,
            p.bytes_requested,
            p.bytes_handed_out
        );
    }
    let _ = writeln!(
        s,
        "\nA at {}-byte lines holds {:+} pages at its peak against B at that moment; by call site (share of the extra object bytes live then):",
        r.a_cost_dma_minalign, r.a_extra_peak_pages
    );
    if r.a_cost_call_sites.is_empty() {
        let _ = writeln!(s, "  (no kmalloc object grows under A)");
    }
    for c in &r.a_cost_call_sites {
        let _ = writeln!(
            s,
            "  {:>6} pages {:>5.1}%  {}",
            c.extra_peak_pages,
            c.share * 100.0,
            c.call_site
        );
    }
    match &r.dma {
        None => {
            let _ = writeln!(s, "\nDMA: no dma:* events in this trace.");
        }
        Some(d) => {
            let _ = writeln!(s, "\nDMA: {} mapped ranges", d.mappings);
            match (&d.offset.linear_map_offset, &d.offset.note) {
                (Some(o), _) => {
                    let _ = writeln!(
                        s,
                        "linear-map offset {o} (virtual = physical + offset): {} addresses agree, next best {}, confidence {:.2}",
                        d.offset.offset_votes, d.offset.runner_up_votes, d.offset.confidence
                    );
                }
                (None, Some(n)) => {
                    let _ = writeln!(s, "no linear-map offset: {n}");
                }
                (None, None) => {}
            }
            for k in &d.kernel_bounced {
                let _ = writeln!(
                    s,
                    "kernel swiotlb bounces: {} {} events, {} bytes",
                    k.device, k.events, k.bytes
                );
            }
            let _ = writeln!(
                s,
                "as if non-coherent, under C:\ndevice            direction      line kmalloc cache exact linux  FP  FN exact-copied linux-copied spanning other other-linux"
            );
            for w in &d.rows {
                let _ = writeln!(
                    s,
                    "{:<17} {:<14} {:>4} {:>7} {:>5} {:>5} {:>5} {:>3} {:>3} {:>12} {:>12} {:>8} {:>5} {:>11}",
                    w.device,
                    w.direction,
                    w.dma_minalign,
                    w.kmalloc_mappings,
                    w.cache_mappings,
                    w.exact_bounces,
                    w.linux_bounces,
                    w.false_positives,
                    w.false_negatives,
                    w.exact_bytes_copied,
                    w.linux_bytes_copied,
                    w.spanning,
                    w.other_mappings,
                    w.other_linux_bounces
                );
            }
        }
    }
    s
}
