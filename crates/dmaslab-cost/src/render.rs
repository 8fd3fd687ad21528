//! Output of an [`Analysis`]: a text table, JSON, and an SVG chart.
//!
//! Every renderer returns the whole document as a `String`, so the caller prints all or nothing.

use crate::cost::{Analysis, Basis, Scenario};
use plotters::prelude::*;
use std::fmt::Write as _;

/// `1423 pages (5828608 bytes, 5.6 MiB)`-style size, signed.
fn pages_and_bytes(pages: i64, bytes: i64) -> String {
    format!(
        "{pages:+} pages ({bytes:+} bytes, {:+.1} MiB)",
        bytes as f64 / (1024.0 * 1024.0)
    )
}

fn pct(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_string(), |p| format!("{p:+.2}%"))
}

/// Says why there is nothing to cost, or `None` if there is something.
pub fn nothing_to_cost(a: &Analysis) -> Option<String> {
    if a.caches == 0 {
        Some(format!(
            "no slab caches in {} (empty input): nothing to cost",
            a.source
        ))
    } else if a.kmalloc_caches == 0 {
        Some(format!(
            "no kmalloc caches in {} ({} other caches, all untouched): policy A costs nothing here",
            a.source, a.caches
        ))
    } else {
        None
    }
}

/// One summary line per scenario: `M basis extra pages bytes %kmalloc %slab`.
fn summary(out: &mut String, a: &Analysis) {
    let _ = writeln!(
        out,
        "{:>8}  {:<6}  {:>11}  {:>13}  {:>9}  {:>12}  {:>12}",
        "minalign", "basis", "extra pages", "extra bytes", "extra MiB", "% of kmalloc", "% of slab"
    );
    for s in &a.scenarios {
        let _ = writeln!(
            out,
            "{:>8}  {:<6}  {:>+11}  {:>+13}  {:>+9.1}  {:>12}  {:>12}",
            s.minalign,
            s.basis.to_string(),
            s.extra_pages,
            s.extra_bytes,
            s.extra_bytes as f64 / (1024.0 * 1024.0),
            pct(s.percent_of_kmalloc()),
            pct(s.percent_of_slab()),
        );
    }
}

/// Which per-cache rows the text report lists under each scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// The caches whose page count changes (the default: a real machine has ~50 kmalloc caches
    /// per scenario, most of them unchanged or empty).
    Changed,
    /// Every kmalloc cache.
    All,
}

/// The per-cache lines of one scenario: the ones `rows` selects.
fn details(out: &mut String, s: &Scenario, page_size: u64, rows: Rows) {
    let _ = writeln!(
        out,
        "\nminalign {} / {}: {}; {} of kmalloc memory ({} pages), {} of slab memory ({} pages)",
        s.minalign,
        s.basis,
        pages_and_bytes(s.extra_pages, s.extra_bytes),
        pct(s.percent_of_kmalloc()),
        s.kmalloc_pages,
        pct(s.percent_of_slab()),
        s.slab_pages,
    );
    let shown: Vec<_> = match rows {
        Rows::Changed => s.caches.iter().filter(|c| c.extra_pages != 0).collect(),
        Rows::All => s.caches.iter().collect(),
    };
    if shown.is_empty() {
        let _ = writeln!(out, "  no kmalloc cache changes");
        return;
    }
    let w = shown
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max("cache".len());
    let _ = writeln!(
        out,
        "  {:<w$}  {:>7}  {:>6}  {:>10}  {:>9}  {:>10}  {:>8}",
        "cache", "objsize", "target", "count", "pages now", "pages then", "extra"
    );
    for c in &shown {
        let _ = writeln!(
            out,
            "  {:<w$}  {:>7}  {:>6}  {:>10}  {:>9}  {:>10}  {:>+8}",
            c.name, c.objsize, c.target, c.count, c.pages_now, c.pages_then, c.extra_pages
        );
    }
    let unchanged = s.caches.len() - shown.len();
    if unchanged > 0 {
        let _ = writeln!(
            out,
            "  ({unchanged} other kmalloc caches unchanged; page size {page_size})"
        );
    }
}

/// The summary table alone (one line per scenario), or the reason there is nothing to cost.
pub fn summary_text(a: &Analysis) -> String {
    if let Some(line) = nothing_to_cost(a) {
        return line + "\n";
    }
    let mut out = String::new();
    summary(&mut out, a);
    out
}

/// The readable report: a summary table, then the caches whose pages change in every scenario.
pub fn text(a: &Analysis) -> String {
    text_with(a, Rows::Changed)
}

/// The readable report with the per-cache rows `rows` selects.
pub fn text_with(a: &Analysis, rows: Rows) -> String {
    if let Some(line) = nothing_to_cost(a) {
        return line + "\n";
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Cost of policy A (every kmalloc object at least M bytes and M-aligned) on {}:\n\
         {} caches, {} of them kmalloc, {} other caches untouched; page size {} bytes.\n\
         Basis `total` counts num_objs and slabs as printed, `active` counts active_objs packed into\n\
         full slabs; percentages are of the pages now on the same basis.\n",
        a.source,
        a.caches,
        a.kmalloc_caches,
        a.caches - a.kmalloc_caches,
        a.page_size,
    );
    summary(&mut out, a);
    for s in &a.scenarios {
        details(&mut out, s, a.page_size, rows);
    }
    out
}

/// The `--json` document.
pub fn json(a: &Analysis) -> String {
    // Serialising plain structs of strings and integers cannot fail.
    let mut s = serde_json::to_string_pretty(a).unwrap_or_default();
    s.push('\n');
    s
}

/// An SVG chart of extra memory (MiB) against the minimum alignment, one line per basis.
pub fn svg(a: &Analysis) -> Result<String, String> {
    let mib = |s: &Scenario| s.extra_bytes as f64 / (1024.0 * 1024.0);
    // x is log2(M), so the powers of two are evenly spaced; only the analysed M are labelled.
    let log2 = |m: u64| m.max(1).ilog2() as i32;
    let mut xs: Vec<i32> = a.scenarios.iter().map(|s| log2(s.minalign)).collect();
    xs.sort_unstable();
    xs.dedup();
    let (Some(&first), Some(&last)) = (xs.first(), xs.last()) else {
        return Err("no minimum alignment to chart".to_string());
    };
    let (x_lo, x_hi) = (first - 1, last + 1);
    let y_hi = a.scenarios.iter().map(mib).fold(0.0f64, f64::max);
    let y_lo = a.scenarios.iter().map(mib).fold(0.0f64, f64::min);
    let pad = ((y_hi - y_lo) * 0.1).max(0.1);
    let (y_lo, y_hi) = (if y_lo < 0.0 { y_lo - pad } else { 0.0 }, y_hi + pad);

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (800, 500)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Extra memory for DMA-safe kmalloc (policy A): {}", a.source),
                ("sans-serif", 20),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("kmalloc minimum alignment M (bytes)")
            .y_desc("extra memory (MiB)")
            .light_line_style(WHITE.mix(0.0))
            .x_labels((x_hi - x_lo + 1) as usize)
            .x_label_formatter(&|x| {
                if xs.contains(x) {
                    format!("{}", 1u64 << x)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.1}"))
            .draw()
            .map_err(e)?;
        for (basis, colour) in [(Basis::Total, RED), (Basis::Active, BLUE)] {
            let points: Vec<(i32, f64)> = a
                .scenarios
                .iter()
                .filter(|s| s.basis == basis)
                .map(|s| (log2(s.minalign), mib(s)))
                .collect();
            let label = match basis {
                Basis::Total => "total (num_objs)",
                Basis::Active => "active (active_objs)",
            };
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            // Each point with its value in MiB, where the rising line is not: total above-left,
            // active below-right.
            let (dx, dy) = if basis == Basis::Total {
                (-34, -18)
            } else {
                (6, 6)
            };
            chart
                .draw_series(points.iter().map(|&(x, y)| {
                    EmptyElement::at((x, y))
                        + Circle::new((0, 0), 4, colour.filled())
                        + Text::new(
                            format!("{y:.1}"),
                            (dx, dy),
                            ("sans-serif", 13).into_font().color(&colour),
                        )
                }))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(buf)
}
