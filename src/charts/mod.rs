//! Charts drawn with `plotters`: a storage unit's temperatures over a window, as an SVG for the
//! pages. Readings are put in buckets (about two pixels each) and each bucket is drawn as the
//! envelope of its minimum and maximum, so a short excursion can never disappear by averaging;
//! a gap longer than two logging intervals is a break, never bridged. The unit's range is a
//! shaded band, its rules' thresholds bold lines, and each excursion a shaded span that links
//! to it and carries `data-start` / `data-end` exactly as the API writes `started_at` /
//! `ended_at`. Knows nothing of the database: callers hand it the data.

use plotters::prelude::*;

mod monthly;
pub use monthly::MonthlyChart;

/// One logger's readings: (epoch ms, °C), in time order — or, for a long window, its buckets
/// already summarised by the database (`runs`), drawn as they are.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(i64, f64)>,
    /// A gap longer than this (two logging intervals) is a break in the line.
    pub gap_ms: i64,
    /// The buckets, run by run (a gap ends a run), when the caller summarised the readings.
    pub runs: Option<Vec<Vec<Bucket>>>,
}

impl Series {
    /// The lowest and highest temperature drawn, if any.
    pub fn extremes(&self) -> Option<(f64, f64)> {
        let fold =
            |m: Option<(f64, f64)>, (lo, hi): (f64, f64)| Some(m.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        match &self.runs {
            Some(runs) => runs.iter().flatten().map(|b| (b.min, b.max)).fold(None, fold),
            None => self.points.iter().map(|p| (p.1, p.1)).fold(None, fold),
        }
    }
}

/// A bucket summarised elsewhere (the database): its extremes, its first and last reading, and
/// how many readings it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub bucket: Bucket,
    pub first_ts: i64,
    pub last_ts: i64,
    pub count: i64,
}

/// Summarised buckets as runs, so a gap is never bridged: a new run starts after a wait longer
/// than `gap_ms` (two logging intervals) between buckets, and a bucket that is missing more than
/// one interval's readings inside it stands alone (its gap is somewhere within).
pub fn runs_of(items: impl IntoIterator<Item = Summary>, gap_ms: i64) -> Vec<Vec<Bucket>> {
    let interval = (gap_ms / 2).max(1);
    let mut runs: Vec<Vec<Bucket>> = Vec::new();
    let mut previous: Option<(i64, bool)> = None;
    for s in items {
        let holed = s.count > 1 && (s.last_ts - s.first_ts) - (s.count - 1) * interval > interval;
        let joins = previous.is_some_and(|(last, prev_holed)| !prev_holed && !holed && s.first_ts - last <= gap_ms);
        match runs.last_mut() {
            Some(run) if joins => run.push(s.bucket),
            _ => runs.push(vec![s.bucket]),
        }
        previous = Some((s.last_ts, holed));
    }
    runs
}

/// An excursion, shaded from its start to its end (or to the last reading while open).
#[derive(Debug, Clone)]
pub struct Shade {
    pub id: i64,
    pub start: i64,
    pub end: i64,
    /// As the API writes `started_at`.
    pub started_at: String,
    /// As the API writes `ended_at`; none while open.
    pub ended_at: Option<String>,
}

/// A unit's temperature chart.
#[derive(Debug, Clone)]
pub struct TempChart {
    pub from: i64,
    pub to: i64,
    pub tz: chrono_tz::Tz,
    /// The unit's range, °C.
    pub range: (f64, f64),
    /// The thresholds of its rules, °C.
    pub thresholds: Vec<f64>,
    /// The primary logger first, then the backup.
    pub series: Vec<Series>,
    pub shades: Vec<Shade>,
    /// What the chart shows, in words (its text alternative).
    pub alt: String,
}

/// A bucket's lowest and highest reading over `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start: i64,
    pub end: i64,
    pub min: f64,
    pub max: f64,
}

/// The readings of `[from, to)` in `n` buckets, as runs of buckets: a new run starts after a
/// gap longer than `gap_ms` between two readings.
pub fn buckets(points: &[(i64, f64)], from: i64, to: i64, n: usize, gap_ms: i64) -> Vec<Vec<Bucket>> {
    let width = ((to - from) as f64 / n.max(1) as f64).max(1.0);
    let mut runs: Vec<Vec<Bucket>> = Vec::new();
    let mut last_ts: Option<i64> = None;
    for &(ts, c) in points.iter().filter(|(ts, _)| *ts >= from && *ts < to) {
        let i = ((ts - from) as f64 / width) as i64;
        let (start, end) = (from + (i as f64 * width) as i64, from + ((i + 1) as f64 * width) as i64);
        let broken = last_ts.is_none_or(|l| ts - l > gap_ms);
        last_ts = Some(ts);
        if broken {
            runs.push(Vec::new());
        }
        let run = runs.last_mut().expect("a run was started");
        match run.last_mut() {
            Some(b) if b.start == start => {
                b.min = b.min.min(c);
                b.max = b.max.max(c);
            }
            _ => run.push(Bucket {
                start,
                end,
                min: c,
                max: c,
            }),
        }
    }
    runs
}

fn fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Without a registered font, drawing text fails (no system fonts on a server).
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ] {
            if plotters::style::register_font("sans-serif", style, bytes).is_err() {
                tracing::error!("the chart font could not be registered");
            }
        }
    });
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const LINES: [RGBColor; 2] = [RGBColor(21, 101, 192), RGBColor(106, 27, 154)];

/// Where an excursion was drawn, in pixels: (excursion, left, top, width, height).
type Span<'a> = (&'a Shade, i32, i32, i32, i32);

impl TempChart {
    /// Draws the chart on `root`; returns where each excursion fell.
    fn draw<'a, DB: DrawingBackend>(
        &'a self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
        width: u32,
    ) -> Result<Vec<Span<'a>>, String> {
        let fail = |e: &dyn std::fmt::Display| format!("drawing the chart: {e}");
        let to = self.to.max(self.from + 60_000);
        let mut lo = self
            .range
            .0
            .min(self.thresholds.iter().copied().fold(f64::INFINITY, f64::min));
        let mut hi = self
            .range
            .1
            .max(self.thresholds.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        for s in &self.series {
            match &s.runs {
                Some(runs) => {
                    for b in runs.iter().flatten() {
                        lo = lo.min(b.min);
                        hi = hi.max(b.max);
                    }
                }
                None => {
                    for &(ts, c) in &s.points {
                        if ts >= self.from && ts < to {
                            lo = lo.min(c);
                            hi = hi.max(c);
                        }
                    }
                }
            }
        }
        let (lo, hi) = ((lo - 1.0).floor(), (hi + 1.0).ceil());
        let tz = self.tz;
        let span_days = (to - self.from) as f64 / 86_400_000.0;
        let label = move |ms: &i64| {
            let t = chrono::DateTime::from_timestamp_millis(*ms)
                .unwrap_or_default()
                .with_timezone(&tz);
            if span_days <= 2.0 {
                t.format("%H:%M").to_string()
            } else {
                t.format("%b %d").to_string()
            }
        };
        let mut spans = Vec::new();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(self.from..to, lo..hi)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(8)
            .x_label_formatter(&label)
            .y_label_formatter(&|c: &f64| format!("{c:.0}"))
            .y_desc("°C")
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(|e| fail(&e))?;
        // The range: a shaded band.
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(self.from, self.range.0), (to, self.range.1)],
                RGBColor(46, 125, 50).mix(0.12).filled(),
            )))
            .map_err(|e| fail(&e))?;
        // The rules' thresholds: bold lines.
        for t in &self.thresholds {
            chart
                .draw_series(LineSeries::new(
                    [(self.from, *t), (to, *t)],
                    RGBColor(183, 28, 28).stroke_width(2),
                ))
                .map_err(|e| fail(&e))?;
        }
        // Each logger: the envelope of its buckets' minimum and maximum, run by run.
        let n = (width as usize / 2).max(10);
        for (k, s) in self.series.iter().enumerate() {
            let color = LINES[k % LINES.len()];
            let runs = match &s.runs {
                Some(r) => r.clone(),
                None => buckets(&s.points, self.from, to, n, s.gap_ms),
            };
            for run in runs {
                let mid = |b: &Bucket| b.start + (b.end - b.start) / 2;
                let top: Vec<(i64, f64)> = run.iter().map(|b| (mid(b), b.max)).collect();
                let bottom: Vec<(i64, f64)> = run.iter().rev().map(|b| (mid(b), b.min)).collect();
                let mut outline = top.clone();
                outline.extend(bottom.iter().copied());
                chart
                    .draw_series(std::iter::once(Polygon::new(outline, color.mix(0.35).filled())))
                    .map_err(|e| fail(&e))?;
                chart
                    .draw_series(LineSeries::new(top, color.stroke_width(1)))
                    .map_err(|e| fail(&e))?;
                chart
                    .draw_series(LineSeries::new(bottom, color.stroke_width(1)))
                    .map_err(|e| fail(&e))?;
            }
        }
        for x in &self.shades {
            let (x0, y0) = chart.backend_coord(&(x.start.max(self.from), hi));
            let (x1, y1) = chart.backend_coord(&(x.end.min(to).max(x.start.max(self.from)), lo));
            spans.push((x, x0, y0, (x1 - x0).max(2), (y1 - y0).max(1)));
        }
        Ok(spans)
    }

    /// The chart as an SVG document of `width` × `height` pixels.
    pub fn svg(&self, width: u32, height: u32) -> Result<String, String> {
        fonts();
        let mut out = String::new();
        let spans = {
            let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
            let spans = self.draw(&root, width)?;
            root.present().map_err(|e| format!("drawing the chart: {e}"))?;
            spans
        };
        // The excursions, drawn last so each is a link with its times.
        let mut shaded = String::from("<g class=\"excursions\">");
        for (x, left, top, w, h) in spans {
            shaded.push_str(&format!(
                "<a href=\"/excursions/{id}\"><rect class=\"excursion\" data-excursion-id=\"{id}\" data-start=\"{start}\" \
                 data-end=\"{end}\" x=\"{left}\" y=\"{top}\" width=\"{w}\" height=\"{h}\" fill=\"#c62828\" fill-opacity=\"0.2\">\
                 <title>Excursion {id}: {start} to {until}</title></rect></a>",
                id = x.id,
                start = escape(&x.started_at),
                end = escape(x.ended_at.as_deref().unwrap_or("")),
                until = escape(x.ended_at.as_deref().unwrap_or("now (still open)")),
            ));
        }
        shaded.push_str("</g>");
        let close = out.rfind("</svg>").ok_or("the SVG backend wrote no </svg>")?;
        out.insert_str(close, &shaded);
        let open = out.find("<svg").ok_or("the SVG backend wrote no <svg>")?;
        out.insert_str(open + 4, &format!(" role=\"img\" aria-label=\"{}\"", escape(&self.alt)));
        Ok(out)
    }

    /// The chart as a PNG image of `width` × `height` pixels (for email, where SVG is not
    /// shown), the excursions shaded in red.
    pub fn png(&self, width: u32, height: u32) -> Result<Vec<u8>, String> {
        fonts();
        let mut rgb = vec![0u8; (width * height * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
            let spans = self.draw(&root, width)?;
            for (_, left, top, w, h) in spans {
                root.draw(&Rectangle::new(
                    [(left, top), (left + w, top + h)],
                    RGBColor(198, 40, 40).mix(0.2).filled(),
                ))
                .map_err(|e| format!("drawing the chart: {e}"))?;
            }
            root.present().map_err(|e| format!("drawing the chart: {e}"))?;
        }
        encode_png(&rgb, width, height)
    }
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| format!("encoding the PNG: {e}"))?;
        w.write_image_data(rgb).map_err(|e| format!("encoding the PNG: {e}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn one_warm_reading_among_many_keeps_its_peak_in_the_bucket() {
        let mut points: Vec<(i64, f64)> = (0..600).map(|i| (i * MIN, 5.0)).collect();
        points[300].1 = 11.0;
        let runs = buckets(&points, 0, 600 * MIN, 10, 2 * MIN);
        assert_eq!(runs.len(), 1);
        let peak = runs[0].iter().map(|b| b.max).fold(f64::MIN, f64::max);
        assert_eq!(peak, 11.0, "an average would have shown 5.1");
    }

    #[test]
    fn a_gap_longer_than_two_intervals_breaks_the_line() {
        let points = vec![(0, 5.0), (MIN, 5.0), (10 * MIN, 5.0), (11 * MIN, 5.0)];
        assert_eq!(buckets(&points, 0, 20 * MIN, 20, 2 * MIN).len(), 2);
        assert_eq!(buckets(&points, 0, 20 * MIN, 20, 10 * MIN).len(), 1);
    }

    #[test]
    fn an_excursion_is_a_shaded_link_with_the_apis_times() {
        let chart = TempChart {
            from: 0,
            to: 600 * MIN,
            tz: chrono_tz::America::New_York,
            range: (2.0, 8.0),
            thresholds: vec![8.0],
            series: vec![Series {
                name: "LT-1".into(),
                points: (0..600)
                    .map(|i| (i * MIN, if (200..300).contains(&i) { 9.5 } else { 5.0 }))
                    .collect(),
                gap_ms: 10 * MIN,
                runs: None,
            }],
            shades: vec![Shade {
                id: 7,
                start: 200 * MIN,
                end: 300 * MIN,
                started_at: "1970-01-01T03:20:00.000Z".into(),
                ended_at: Some("1970-01-01T05:00:00.000Z".into()),
            }],
            alt: "Unit 1 <fridge>".into(),
        };
        let svg = chart.svg(600, 300).unwrap();
        assert!(
            svg.contains(r#"data-start="1970-01-01T03:20:00.000Z" data-end="1970-01-01T05:00:00.000Z""#),
            "{svg}"
        );
        assert!(svg.contains(r#"href="/excursions/7""#));
        assert!(svg.contains(r#"aria-label="Unit 1 &lt;fridge&gt;""#), "escaped");
        assert!(svg.trim_end().ends_with("</svg>"));
        // The pages' Content-Security-Policy allows no inline style: the chart uses none.
        assert!(!svg.contains("style="), "{svg}");
    }

    #[test]
    fn summarised_buckets_break_at_a_gap_between_them_and_around_a_hole_inside_one() {
        let b = |i: i64| Bucket {
            start: i * 10 * MIN,
            end: (i + 1) * 10 * MIN,
            min: 4.0,
            max: 5.0,
        };
        // One-minute readings: ten a bucket, full.
        let full = |i: i64| Summary {
            bucket: b(i),
            first_ts: i * 10 * MIN,
            last_ts: i * 10 * MIN + 9 * MIN,
            count: 10,
        };
        let gap = 2 * MIN;
        assert_eq!(
            runs_of([full(0), full(1), full(2)], gap).len(),
            1,
            "readings every minute"
        );
        // Bucket 3 is empty: 11 minutes without a reading between 2 and 4.
        assert_eq!(runs_of([full(0), full(1), full(2), full(4)], gap).len(), 2);
        // Bucket 1 lost five readings in its middle: it stands alone.
        let holed = Summary { count: 5, ..full(1) };
        let runs = runs_of([full(0), holed, full(2)], gap);
        assert_eq!(runs.len(), 3, "{runs:?}");
        // Readings two minutes apart with a two-minute gap allowance are one run.
        let sparse = |i: i64| Summary {
            count: 5,
            last_ts: i * 10 * MIN + 8 * MIN,
            ..full(i)
        };
        assert_eq!(runs_of([sparse(0), sparse(1)], 4 * MIN).len(), 1);
    }

    #[test]
    fn the_email_chart_is_a_png_with_the_excursion_shaded_red() {
        let chart = TempChart {
            from: 0,
            to: 360 * MIN,
            tz: chrono_tz::America::New_York,
            range: (2.0, 8.0),
            thresholds: vec![],
            series: vec![Series {
                name: "LT-1".into(),
                points: (0..360).map(|i| (i * MIN, 5.0)).collect(),
                gap_ms: 10 * MIN,
                runs: None,
            }],
            shades: vec![Shade {
                id: 1,
                start: 100 * MIN,
                end: 200 * MIN,
                started_at: String::new(),
                ended_at: None,
            }],
            alt: String::new(),
        };
        let png = chart.png(640, 260).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
        let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!((info.width, info.height), (640, 260));
        // Some pixel in the excursion's span (the middle third of the plot) is reddish; none
        // is outside the plot's right quarter.
        let reddish = |x: usize, y: usize| {
            let p = (y * 640 + x) * 3;
            rgb[p] > rgb[p + 1].saturating_add(20) && rgb[p] > rgb[p + 2].saturating_add(20)
        };
        assert!((0..260).any(|y| reddish(250, y)), "the excursion's shade");
        assert!(!(0..260).any(|y| reddish(600, y)), "nothing red after it");
    }
}
