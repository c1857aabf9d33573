//! The scaling chart (`docs/perf/scale.svg`): cost per VM of each measured path against
//! the plan's size, both axes logarithmic. A flat line means the cost grows linearly
//! with the number of VMs; a line that climbs a decade per decade means quadratic.
//! A standalone SVG document written by hand, in the style of the run Gantt chart
//! (`src/report/svg.rs`), which a bench cannot import.

use std::fmt::Write as _;

use crate::report::{Machine, Report, thousands};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 50.0;

const STYLE: &str = "text{font-family:sans-serif;font-size:12px;fill:#212529}\
.h{font-size:15px;font-weight:bold}.s{font-size:11px;fill:#495057}.ax{font-size:11px;fill:#495057}";

/// The plotted series: label, colour, CSV column (µs per VM).
const SERIES: &[(&str, &str, &str)] = &[
    ("check + dry-run", "#1971c2", "check_dry_run_us_per_vm"),
    ("real run, engine + journal", "#2f9e44", "engine_us_per_vm"),
    ("journal, durable", "#f59f00", "journal_us_per_vm"),
    ("Rhai action overhead", "#6741d9", "action_overhead_us"),
];

/// Writes into a `String`, which cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

fn us_label(us: f64) -> String {
    match us {
        u if u >= 1e6 => format!("{:.0} s", u / 1e6),
        u if u >= 1e3 => format!("{:.0} ms", u / 1e3),
        u if u >= 1.0 => format!("{u:.0} µs"),
        u => format!("{u} µs"),
    }
}

pub fn svg(reports: &[Report], machine: &Machine) -> String {
    // Points worth plotting: a log axis has no room for zero or less (an overhead lost
    // in the noise).
    let points: Vec<Vec<(f64, f64)>> = SERIES
        .iter()
        .map(|(_, _, column)| {
            reports
                .iter()
                .filter_map(|r| r.get(column).filter(|v| v.is_finite() && *v > 0.0).map(|v| (r.vms as f64, v)))
                .collect()
        })
        .collect();
    let all = || points.iter().flatten();
    let decade = |v: f64| v.log10();
    let x_lo = all().map(|p| decade(p.0).floor()).fold(f64::INFINITY, f64::min).min(3.0);
    let x_hi = all().map(|p| decade(p.0).ceil()).fold(f64::NEG_INFINITY, f64::max).max(x_lo + 1.0);
    let y_lo = all().map(|p| decade(p.1).floor()).fold(f64::INFINITY, f64::min).min(0.0);
    let y_hi = all().map(|p| decade(p.1).ceil()).fold(f64::NEG_INFINITY, f64::max).max(y_lo + 1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |vms: f64| LEFT + (decade(vms) - x_lo) / (x_hi - x_lo) * plot_w;
    let y = |us: f64| TOP + plot_h - (decade(us) - y_lo) / (y_hi - y_lo) * plot_h;

    let mut out = String::with_capacity(8 * 1024);
    w!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\">\n<style>{STYLE}</style>\n\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\"/>\n"
    );
    w!(out, "<text class=\"h\" x=\"{LEFT}\" y=\"22\">Cost per VM against plan size (flat = linear growth)</text>\n");
    w!(
        out,
        "<text class=\"s\" x=\"{LEFT}\" y=\"40\">{}, {} cores; {}; {}</text>\n",
        escape(&machine.cpu),
        machine.cores,
        escape(&machine.rustc),
        escape(&machine.date)
    );
    // Decade grid and labels.
    let mut d = y_lo;
    while d <= y_hi {
        let py = y(10f64.powf(d));
        w!(out, "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#dee2e6\"/>\n", LEFT + plot_w);
        w!(
            out,
            "<text class=\"ax\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 6.0,
            py + 4.0,
            us_label(10f64.powf(d))
        );
        d += 1.0;
    }
    let mut d = x_lo;
    while d <= x_hi {
        let px = x(10f64.powf(d));
        w!(out, "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#dee2e6\"/>\n", TOP + plot_h);
        w!(
            out,
            "<text class=\"ax\" x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            TOP + plot_h + 16.0,
            thousands(10f64.powf(d).round() as usize)
        );
        d += 1.0;
    }
    w!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#868e96\"/>\n\
         <text class=\"ax\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">VMs in the plan</text>\n\
         <text class=\"ax\" transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">per VM</text>\n",
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        TOP + plot_h / 2.0
    );
    // Series, and their legend on the right.
    for (i, ((label, colour, _), points)) in SERIES.iter().zip(&points).enumerate() {
        let path: Vec<String> = points.iter().map(|&(v, us)| format!("{:.1},{:.1}", x(v), y(us))).collect();
        if path.len() > 1 {
            w!(out, "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>\n", path.join(" "));
        }
        for &(v, us) in points {
            w!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"><title>{label}: {us:.1} µs per VM \
                 at {} VMs</title></circle>\n",
                x(v),
                y(us),
                thousands(v as usize)
            );
        }
        let ly = TOP + 10.0 + i as f64 * 22.0;
        let lx = LEFT + plot_w + 16.0;
        w!(
            out,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{label}</text>\n",
            lx + 22.0,
            lx + 28.0,
            ly + 4.0
        );
    }
    let dropped = reports.len() * SERIES.len() - points.iter().map(Vec::len).sum::<usize>();
    if dropped > 0 {
        w!(
            out,
            "<text class=\"s\" x=\"{:.1}\" y=\"{:.1}\">{dropped} point(s) at or below zero</text>\n\
             <text class=\"s\" x=\"{:.1}\" y=\"{:.1}\">(lost in noise) not drawn</text>\n",
            LEFT + plot_w + 16.0,
            TOP + 10.0 + SERIES.len() as f64 * 22.0 + 8.0,
            LEFT + plot_w + 16.0,
            TOP + 10.0 + SERIES.len() as f64 * 22.0 + 22.0
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
