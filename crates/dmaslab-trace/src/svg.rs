//! Pages over time, one line per policy, as SVG.

use crate::analysis::Report;
use plotters::prelude::*;

/// Colours by policy line: A's lines in reds (darker = wider line), B blue, C green.
fn colour(policy: &str, nth_a: usize) -> RGBColor {
    match policy {
        "B" => RGBColor(31, 119, 180),
        "C" => RGBColor(44, 160, 44),
        _ => [
            RGBColor(255, 152, 80),
            RGBColor(230, 85, 13),
            RGBColor(200, 30, 30),
            RGBColor(120, 0, 40),
        ][nth_a.min(3)],
    }
}

/// The chart; `title` names the trace.
pub fn svg(r: &Report, title: &str) -> Result<String, String> {
    let t_hi = r
        .samples
        .iter()
        .flat_map(|s| s.last().map(|p| p.0))
        .fold(0.0f64, f64::max)
        .max(1e-6);
    let y_hi = r
        .policies
        .iter()
        .map(|p| p.peak_pages)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.12;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (960, 560)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Slab pages over time by policy: {title}"),
                ("sans-serif", 22),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..t_hi, 0.0..y_hi)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("seconds from the first event")
            .y_desc("pages held (4 KiB)")
            .light_line_style(RGBColor(235, 235, 235))
            .label_style(("sans-serif", 15))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(e)?;
        let mut nth_a = 0;
        for (p, samples) in r.policies.iter().zip(&r.samples) {
            let c = colour(p.policy, nth_a);
            if p.policy == "A" {
                nth_a += 1;
            }
            let label = if p.policy == "A" {
                format!("A, {}-byte lines: peak {}", p.dma_minalign, p.peak_pages)
            } else {
                format!("{}: peak {}", p.policy, p.peak_pages)
            };
            // B and C coincide unless GFP_DMA allocations are many: C dashed on top.
            let style = c.stroke_width(if p.policy == "C" { 2 } else { 3 });
            let points: Vec<(f64, f64)> = samples.iter().map(|&(t, v)| (t, v as f64)).collect();
            if p.policy == "C" {
                chart
                    .draw_series(DashedLineSeries::new(points, 8, 6, style))
                    .map_err(e)?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            } else {
                chart
                    .draw_series(LineSeries::new(points, style))
                    .map_err(e)?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(buf)
}
