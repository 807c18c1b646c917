//! What commands print: a table for people, JSON or YAML for scripts.

use serde_json::Value;
use std::io::Write;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// Rows under headers, columns as wide as their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, cell) in cells.enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                out.push_str(cell);
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
            out
        };
        let mut out = line(&mut self.headers.iter().copied());
        for row in &self.rows {
            out.push_str(&line(&mut row.iter().map(String::as_str)));
        }
        out
    }
}

/// A value as the format asks; `table` draws it for people.
pub fn render(format: Format, value: &Value, table: impl FnOnce(&Value) -> String) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Yaml => crate::yaml::to_string(value),
        Format::Table => table(value),
    }
}

/// A cell from a JSON value: text as is, null as `-`, lists joined.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn when(value: &Value) -> String {
    let Some(ms) = value.as_i64() else {
        return "-".into();
    };
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = switchyard_core::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Nano-dollars as dollars, to the nano-dollar, trailing zeros dropped.
pub fn dollars(value: &Value) -> String {
    let Some(n) = value.as_i64() else {
        return cell(value);
    };
    let sign = if n < 0 { "-" } else { "" };
    let n = n.unsigned_abs();
    let whole = n / 1_000_000_000;
    let frac = n % 1_000_000_000;
    if frac == 0 {
        return format!("{sign}${whole}.00");
    }
    let mut f = format!("{frac:09}");
    while f.len() > 2 && f.ends_with('0') {
        f.pop();
    }
    format!("{sign}${whole}.{f}")
}

/// Dollars as written (`12`, `12.5`, `0.000000001`) to nano-dollars, exactly.
pub fn parse_dollars(text: &str) -> Result<i64, String> {
    let text = text.trim().trim_start_matches('$');
    let (neg, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let bad = || format!("{text:?} is not an amount of dollars (like 12.50)");
    if whole.is_empty() && frac.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    if frac.len() > 9 {
        return Err(format!("{text}: at most 9 decimals (nano-dollars)"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac_nanos: i64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    let n = whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(frac_nanos))
        .ok_or_else(|| format!("{text}: too large"))?;
    Ok(if neg { -n } else { n })
}

/// Standard output, for what a command answers.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is no error of the command.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Standard error, for progress and errors.
pub fn eprint(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["1".into(), "acme".into()]);
        t.row(vec!["22".into(), "b".into()]);
        assert_eq!(t.render(), "ID  NAME\n1   acme\n22  b\n");
    }

    #[test]
    fn dollars_both_ways() {
        assert_eq!(parse_dollars("12.5").unwrap(), 12_500_000_000);
        assert_eq!(parse_dollars("$0.000000001").unwrap(), 1);
        assert_eq!(parse_dollars("-3").unwrap(), -3_000_000_000);
        assert!(parse_dollars("1.0000000001").is_err());
        assert!(parse_dollars("abc").is_err());
        assert!(parse_dollars(".").is_err());
        assert_eq!(dollars(&json!(12_500_000_000_i64)), "$12.50");
        assert_eq!(dollars(&json!(1)), "$0.000000001");
        assert_eq!(dollars(&json!(-3_000_000_000_i64)), "-$3.00");
    }

    #[test]
    fn times_in_utc() {
        assert_eq!(when(&json!(0)), "1970-01-01 00:00:00");
        assert_eq!(when(&json!(1_700_000_000_000_i64)), "2023-11-14 22:13:20");
        assert_eq!(when(&Value::Null), "-");
    }
}
