//! Charts drawn on the server as inline SVG: plain functions from series to markup.
//! No script and no `style` attribute (the Content-Security-Policy allows neither):
//! colours come from classes in `console.css`, so they follow the light or dark
//! theme. Each chart is an image with a title for assistive technology, followed by
//! a table holding the same numbers.

use std::fmt::Write;

/// Margins around the plot, in SVG user units (the picture scales to its box).
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// Room one label under the x axis needs (the table has every one).
const X_LABEL_WIDTH: f64 = 100.0;

/// How wide a chart is drawn, so its text stays near the page's size when scaled
/// to its box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// One of a row of charts.
    Small,
    /// The width of the page.
    Wide,
}

impl Size {
    fn width(self) -> f64 {
        match self {
            Self::Small => 380.0,
            Self::Wide => 960.0,
        }
    }

    fn height(self) -> f64 {
        match self {
            Self::Small => 200.0,
            Self::Wide => 260.0,
        }
    }
}

/// How a chart's values read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Counts: requests, tokens.
    Count,
    /// Nano-dollars, shown as dollars.
    Nanos,
}

impl Unit {
    /// A value in full, as the table shows it.
    fn exact(self, value: u64) -> String {
        match self {
            Self::Count => grouped(value),
            Self::Nanos => super::views::dollars(i64::try_from(value).unwrap_or(i64::MAX)),
        }
    }

    /// A value in short, as an axis shows it.
    fn short(self, value: u64) -> String {
        match self {
            Self::Count => compact(value),
            Self::Nanos if value >= 1_000_000_000_000 => {
                format!("${}", compact(value / 1_000_000_000))
            }
            // As many decimals as the value needs (axis values are round).
            Self::Nanos => {
                let mut decimals = 0;
                let mut unit = 1_000_000_000;
                while decimals < 9 && !value.is_multiple_of(unit) {
                    decimals += 1;
                    unit /= 10;
                }
                let text = format!("{}.{:09}", value / 1_000_000_000, value % 1_000_000_000);
                let end = text.len() - 9 + decimals - usize::from(decimals == 0);
                format!("${}", &text[..end])
            }
        }
    }
}

/// One named row of values, one per label.
pub struct Series<'a> {
    pub name: &'a str,
    pub values: Vec<u64>,
}

/// A bar chart: for each label, one bar per series side by side.
pub struct Chart<'a> {
    /// Unique on its page: the ids of the title and the table derive from it.
    pub id: &'a str,
    pub title: &'a str,
    pub unit: Unit,
    pub size: Size,
    pub labels: &'a [String],
    pub series: Vec<Series<'a>>,
}

impl Chart<'_> {
    /// The chart as HTML: a figure holding the SVG, a legend when there are several
    /// series, and the table of the same numbers.
    pub fn html(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, r#"<figure class="chart" id="{}">"#, escape(self.id));
        out.push_str(&self.svg());
        if self.series.len() > 1 {
            out.push_str(r#"<ul class="legend">"#);
            for (i, s) in self.series.iter().enumerate() {
                let _ = write!(
                    out,
                    r#"<li><span class="swatch s{}" aria-hidden="true"></span>{}</li>"#,
                    i % 4,
                    escape(s.name)
                );
            }
            out.push_str("</ul>");
        }
        out.push_str(&self.table());
        out.push_str("</figure>");
        out
    }

    /// The largest value drawn, rounded up to a round number (1, 2 or 5 times a
    /// power of ten), so the axis reads well; 0 when every value is 0.
    fn top(&self) -> u128 {
        let max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .max()
            .unwrap_or(0);
        round_up(u128::from(max))
    }

    /// The picture alone.
    pub fn svg(&self) -> String {
        let id = escape(self.id);
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" role="img" aria-labelledby="{id}-title" focusable="false"><title id="{id}-title">{}</title>"#,
            self.size.width(),
            self.size.height(),
            escape(self.title)
        );
        let (width, height) = (self.size.width(), self.size.height());
        let plot_w = width - LEFT - RIGHT;
        let plot_h = height - TOP - BOTTOM;
        let base = TOP + plot_h;
        let top = self.top();
        // Grid lines and their values: 0, half and the top.
        for step in 0..=2_u32 {
            let y = base - plot_h * f64::from(step) / 2.0;
            let value = u64::try_from(top * u128::from(step) / 2).unwrap_or(u64::MAX);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                width - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                escape(&self.unit.short(value))
            );
        }
        let _ = write!(
            out,
            r#"<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base:.1}"/><line class="axis" x1="{LEFT}" y1="{base:.1}" x2="{:.1}" y2="{base:.1}"/>"#,
            width - RIGHT
        );
        let n = self.labels.len();
        if n == 0 || top == 0 {
            let _ = write!(
                out,
                r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">No data in this period</text>"#,
                LEFT + plot_w / 2.0,
                TOP + plot_h / 2.0
            );
        }
        if n > 0 {
            let slot = plot_w / n as f64;
            let kinds = self.series.len().max(1);
            let bar = (slot * 0.8 / kinds as f64).max(0.5);
            let room = ((plot_w / X_LABEL_WIDTH) as usize).max(1);
            let every = n.div_ceil(room);
            for (i, label) in self.labels.iter().enumerate() {
                let x0 = LEFT + slot * i as f64 + slot * 0.1;
                for (k, s) in self.series.iter().enumerate() {
                    let value = s.values.get(i).copied().unwrap_or(0);
                    if value == 0 || top == 0 {
                        continue;
                    }
                    let h = plot_h * (u128::from(value) as f64 / top as f64);
                    let _ = write!(
                        out,
                        r#"<rect class="bar s{}" x="{:.2}" y="{:.2}" width="{bar:.2}" height="{h:.2}"><title>{}: {} {}</title></rect>"#,
                        k % 4,
                        x0 + bar * k as f64,
                        base - h,
                        escape(label),
                        escape(s.name),
                        escape(&self.unit.exact(value))
                    );
                }
                if i % every == 0 {
                    let _ = write!(
                        out,
                        r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                        LEFT + slot * (i as f64 + 0.5),
                        base + 18.0,
                        escape(label)
                    );
                }
            }
        }
        out.push_str("</svg>");
        out
    }

    /// The same numbers as a table (inside a disclosure, so it does not crowd the page).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<details><summary>{} as a table</summary><div class="table-wrap"><table id="{}-table"><thead><tr><th scope="col">Period</th>"#,
            escape(self.title),
            escape(self.id)
        );
        for s in &self.series {
            let _ = write!(out, r#"<th scope="col">{}</th>"#, escape(s.name));
        }
        out.push_str("</tr></thead><tbody>");
        for (i, label) in self.labels.iter().enumerate() {
            let _ = write!(out, r#"<tr><th scope="row">{}</th>"#, escape(label));
            for s in &self.series {
                let value = s.values.get(i).copied().unwrap_or(0);
                let _ = write!(out, "<td>{}</td>", escape(&self.unit.exact(value)));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div></details>");
        out
    }
}

/// `value` rounded up to 1, 2 or 5 times a power of ten (0 stays 0).
fn round_up(value: u128) -> u128 {
    if value == 0 {
        return 0;
    }
    let mut power: u128 = 1;
    loop {
        for m in [1, 2, 5] {
            let candidate = power.saturating_mul(m);
            if candidate >= value {
                return candidate;
            }
        }
        match power.checked_mul(10) {
            Some(next) => power = next,
            None => return value,
        }
    }
}

/// `1234567` as `1,234,567`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1234567` as `1.2M`.
fn compact(value: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (1_000_000_000_000_000_000, "E"),
        (1_000_000_000_000_000, "P"),
        (1_000_000_000_000, "T"),
        (1_000_000_000, "G"),
        (1_000_000, "M"),
        (1_000, "k"),
    ];
    for (size, name) in UNITS {
        if value >= size {
            let whole = value / size;
            let tenth = value % size / (size / 10);
            return if whole >= 100 || tenth == 0 {
                format!("{whole}{name}")
            } else {
                format!("{whole}.{tenth}{name}")
            };
        }
    }
    value.to_string()
}

/// Text made safe for an element's content or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart<'a>(labels: &'a [String], series: Vec<Series<'a>>, unit: Unit) -> Chart<'a> {
        Chart {
            id: "c",
            title: "Requests",
            unit,
            size: Size::Wide,
            labels,
            series,
        }
    }

    fn days(n: usize) -> Vec<String> {
        (1..=n).map(|d| format!("2026-01-{d:02}")).collect()
    }

    #[test]
    fn axes_ticks_and_bars() {
        let labels = days(3);
        let c = chart(
            &labels,
            vec![Series {
                name: "Requests",
                values: vec![3, 0, 7],
            }],
            Unit::Count,
        );
        let svg = c.svg();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(r#"<title id="c-title">Requests</title>"#));
        assert_eq!(svg.matches(r#"class="axis""#).count(), 2);
        // 7 rounds up to 10: ticks 0, 5 and 10.
        for tick in [">0<", ">5<", ">10<"] {
            assert!(svg.contains(tick), "{tick} in {svg}");
        }
        // No bar for a zero; the others carry their exact value.
        assert_eq!(svg.matches("<rect ").count(), 2);
        assert!(svg.contains("<title>2026-01-03: Requests 7</title>"));
        assert!(!svg.contains("style="), "no inline style (CSP)");
        assert!(!svg.contains("No data"));
        // The table holds every label and number.
        let table = c.table();
        assert_eq!(table.matches(r#"<th scope="row">"#).count(), 3);
        assert!(table.contains(r#"<th scope="row">2026-01-02</th><td>0</td>"#));
        assert!(table.contains(r#"<th scope="row">2026-01-03</th><td>7</td>"#));
    }

    #[test]
    fn empty_series_and_no_labels() {
        let none: Vec<String> = Vec::new();
        let c = chart(&none, Vec::new(), Unit::Count);
        let svg = c.svg();
        assert!(svg.contains("No data in this period"));
        assert_eq!(svg.matches("<rect ").count(), 0);
        assert_eq!(svg.matches(r#"class="axis""#).count(), 2);
        assert!(c.table().contains("<tbody></tbody>"));
        let labels = days(2);
        let zeros = chart(
            &labels,
            vec![Series {
                name: "Cost",
                values: vec![0, 0],
            }],
            Unit::Nanos,
        );
        let svg = zeros.svg();
        assert!(svg.contains("No data in this period"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(zeros.table().contains("<td>$0.0000</td>"));
    }

    #[test]
    fn one_point() {
        let labels = days(1);
        let c = chart(
            &labels,
            vec![Series {
                name: "Tokens",
                values: vec![1],
            }],
            Unit::Count,
        );
        let svg = c.svg();
        assert_eq!(svg.matches("<rect ").count(), 1);
        // The single bar fills the plot's height.
        let plot_h = Size::Wide.height() - TOP - BOTTOM;
        assert!(svg.contains(&format!(r#"height="{plot_h:.2}""#)), "{svg}");
        assert!(svg.contains(">2026-01-01</text>"));
    }

    #[test]
    fn huge_values_stay_on_the_chart() {
        let labels = days(2);
        let c = chart(
            &labels,
            vec![
                Series {
                    name: "Provider cost",
                    values: vec![u64::MAX, 1],
                },
                Series {
                    name: "Billed",
                    values: vec![u64::MAX / 2, 0],
                },
            ],
            Unit::Nanos,
        );
        let svg = c.svg();
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        for h in svg.split(r#"height=""#).skip(1) {
            let h: f64 = h.split('"').next().unwrap().parse().unwrap();
            assert!((0.0..=Size::Wide.height()).contains(&h), "{h}");
        }
        assert!(c.html().contains(r#"<ul class="legend">"#));
        assert!(c.table().contains(&views_dollars(i64::MAX)));
        assert_eq!(round_up(u128::from(u64::MAX)), 20_000_000_000_000_000_000);
        assert_eq!(compact(u64::MAX), "18.4E");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(compact(1_250), "1.2k");
        assert_eq!(Unit::Nanos.short(0), "$0");
        assert_eq!(Unit::Nanos.short(50_000), "$0.00005");
        assert_eq!(Unit::Nanos.short(2_500_000_000), "$2.5");
        assert_eq!(Unit::Nanos.short(7_000_000_000), "$7");
        assert_eq!(Unit::Nanos.short(2_000_000_000_000), "$2k");
    }

    fn views_dollars(nanos: i64) -> String {
        super::super::views::dollars(nanos)
    }

    #[test]
    fn labels_and_names_are_escaped() {
        let labels = vec![r#"<script>"&'"#.to_owned()];
        let c = Chart {
            id: r#"x"><b"#,
            title: "<i>t</i>",
            unit: Unit::Count,
            size: Size::Small,
            labels: &labels,
            series: vec![Series {
                name: "a&b",
                values: vec![5],
            }],
        };
        let html = c.html();
        assert!(!html.contains("<script>") && !html.contains("<i>") && !html.contains("<b"));
        assert!(html.contains("&lt;script&gt;&quot;&amp;&#39;"));
        assert!(html.contains("a&amp;b"));
        assert!(html.contains(r#"id="x&quot;&gt;&lt;b-title""#));
    }
}
