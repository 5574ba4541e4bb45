//! Doses given per month for each product of an order, as the state reviews it: a line per
//! product over the same months, with a legend.

use plotters::prelude::*;

use super::{escape, fonts};

/// Doses per month for each product: a line per product over the same months.
#[derive(Debug, Clone)]
pub struct MonthlyChart {
    /// The months' labels (`2026-11`), oldest first.
    pub months: Vec<String>,
    /// (product, doses per month), as many numbers as months.
    pub series: Vec<(String, Vec<i64>)>,
    pub alt: String,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(21, 101, 192),
    RGBColor(106, 27, 154),
    RGBColor(0, 121, 107),
    RGBColor(191, 54, 12),
    RGBColor(69, 90, 100),
    RGBColor(130, 119, 23),
];

impl MonthlyChart {
    pub fn svg(&self, width: u32, height: u32) -> Result<String, String> {
        fonts();
        let fail = |e: &dyn std::fmt::Display| format!("drawing the chart: {e}");
        let n = self.months.len().max(1);
        let top = self
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| fail(&e))?;
            let months = self.months.clone();
            let label = move |i: &usize| months.get(*i).cloned().unwrap_or_default();
            let mut chart = ChartBuilder::on(&root)
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(44)
                .build_cartesian_2d(0..n - 1, 0..(top + top / 10 + 1))
                .map_err(|e| fail(&e))?;
            chart
                .configure_mesh()
                .x_labels(n.min(12))
                .x_label_formatter(&label)
                .y_desc("doses")
                .light_line_style(RGBColor(238, 238, 238))
                .draw()
                .map_err(|e| fail(&e))?;
            for (k, (name, values)) in self.series.iter().enumerate() {
                let color = PALETTE[k % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(
                        values.iter().enumerate().map(|(i, v)| (i, *v)),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| fail(&e))?
                    .label(name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            }
            if !self.series.is_empty() {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(200, 200, 200))
                    .position(SeriesLabelPosition::UpperLeft)
                    .draw()
                    .map_err(|e| fail(&e))?;
            }
            root.present().map_err(|e| fail(&e))?;
        }
        let open = out.find("<svg").ok_or("the SVG backend wrote no <svg>")?;
        out.insert_str(open + 4, &format!(" role=\"img\" aria-label=\"{}\"", escape(&self.alt)));
        Ok(out)
    }
}
