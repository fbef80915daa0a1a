//! The PNG chart of `make bench`: added microseconds per request against the no-filter row, one
//! horizontal bar per configuration.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::Summary;

/// Fonts tried in order (Debian's fonts-dejavu-core; `make setup` installs it when missing).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

pub fn render(path: &Path, rows: &[Summary], rounds: usize) -> Result<()> {
    let font = FONTS
        .iter()
        .find_map(|f| std::fs::read(f).ok())
        .ok_or_else(|| {
            anyhow!("no TrueType font found (tried {FONTS:?}); install fonts-dejavu-core")
        })?;
    // plotters keeps the font for the life of the process.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow!("cannot load the chart font"))?;

    let n = rows.len();
    let height = 140 + 48 * n as u32;
    let root = BitMapBackend::new(path, (1300, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let lo = rows.iter().map(|r| r.added_us).fold(0.0_f64, f64::min);
    let hi = rows.iter().map(|r| r.added_us).fold(0.0_f64, f64::max);
    let span = (hi - lo).max(0.5);
    let (x0, x1) = (lo - span * 0.05, hi + span * 0.25);
    // Segment 0 is at the bottom: draw the first row at the top, like the table.
    let seg = |i: usize| n - 1 - i;
    let names: Vec<String> = rows.iter().rev().map(|r| r.name.clone()).collect();

    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Added µs per request vs no filter (Envoy, 1 worker; median of {rounds} rounds)"
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(470)
        .build_cartesian_2d(x0..x1, (0..n).into_segmented())
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("µs added per request")
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let color = if r.name.contains("Wasm") || r.name.starts_with("no filter") {
                RGBColor(90, 110, 140)
            } else {
                RGBColor(40, 120, 200)
            };
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(seg(i))),
                    (r.added_us, SegmentValue::Exact(seg(i) + 1)),
                ],
                color.filled(),
            );
            bar.set_margin(8, 8, 0, 0);
            bar
        }))
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            Text::new(
                format!("{:+.2} µs  ({:.0} req/s)", r.added_us, r.rps),
                (
                    r.added_us.max(0.0) + span * 0.01,
                    SegmentValue::CenterOf(seg(i)),
                ),
                ("sans-serif", 14).into_font(),
            )
        }))
        .map_err(|e| anyhow!("{e}"))?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
