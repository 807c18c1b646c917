//! The account page's forms as text: a policy, a billing rule and money shown in
//! fields and read back into the JSON the API takes, and the service's refusal of a
//! policy split onto the fields it names. Only form syntax lives here: what a policy
//! may hold is decided by the service, reading the JSON as the REST API does.

use serde_json::{Map, Value, json};
use switchyard_core::billing::Billing;
use switchyard_core::policy::{Period, Policy};

use crate::console::session::Fields;
use crate::console::views::Refusal;

/// The policy's fields, as the form names them (the policy's own names).
pub const POLICY_FIELDS: &[&str] = &[
    "models",
    "resources",
    "client_cidrs",
    "rpm",
    "key_rpm",
    "model_limits",
    "credit",
];

/// A policy as the form's fields show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyText {
    pub models: String,
    pub resources: String,
    pub client_cidrs: String,
    pub rpm: String,
    pub key_rpm: String,
    pub model_limits: String,
    /// Dollars.
    pub credit: String,
    /// `day`, `month`, or empty (no credit cap).
    pub period: String,
}

fn lines<T: ToString>(list: Option<&Vec<T>>) -> String {
    list.map(|l| {
        l.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

fn period_name(p: Period) -> &'static str {
    match p {
        Period::Day => "day",
        Period::Month => "month",
    }
}

impl PolicyText {
    pub fn of(p: &Policy) -> Self {
        Self {
            models: lines(p.models.as_ref()),
            resources: lines(p.resources.as_ref()),
            client_cidrs: lines(p.client_cidrs.as_ref()),
            rpm: p.rpm.map(|n| n.to_string()).unwrap_or_default(),
            key_rpm: p.key_rpm.map(|n| n.to_string()).unwrap_or_default(),
            model_limits: p
                .model_limits
                .iter()
                .map(|(pattern, l)| {
                    let mut line = pattern.to_string();
                    if let Some(rpm) = l.rpm {
                        line.push_str(&format!(" rpm={rpm}"));
                    }
                    if let Some(tpm) = l.tpm {
                        line.push_str(&format!(" tpm={tpm}"));
                    }
                    line
                })
                .collect::<Vec<_>>()
                .join("\n"),
            credit: p
                .credit
                .map(|c| decimal(u128::from(c.limit_nanos), 9))
                .unwrap_or_default(),
            period: p
                .credit
                .map(|c| period_name(c.period).to_owned())
                .unwrap_or_default(),
        }
    }

    pub fn posted(form: &Fields) -> Self {
        Self {
            models: form.get("models").to_owned(),
            resources: form.get("resources").to_owned(),
            client_cidrs: form.get("client_cidrs").to_owned(),
            rpm: form.get("rpm").trim().to_owned(),
            key_rpm: form.get("key_rpm").trim().to_owned(),
            model_limits: form.get("model_limits").to_owned(),
            credit: form.get("credit").trim().to_owned(),
            period: form.get("period").trim().to_owned(),
        }
    }

    /// The policy as the API's JSON; a field the form cannot read is refused by name.
    pub fn to_json(&self) -> Result<Value, Refusal> {
        let mut out = Map::new();
        for (field, text) in [
            ("models", &self.models),
            ("resources", &self.resources),
            ("client_cidrs", &self.client_cidrs),
        ] {
            let items: Vec<Value> = entries(text).map(|e| json!(e)).collect();
            if !items.is_empty() {
                out.insert(field.to_owned(), Value::Array(items));
            }
        }
        for (field, text) in [("rpm", &self.rpm), ("key_rpm", &self.key_rpm)] {
            if !text.is_empty() {
                out.insert(field.to_owned(), number(text));
            }
        }
        let mut limits = Map::new();
        for line in self
            .model_limits
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let bad = || Refusal {
                field: "model_limits",
                message: format!(
                    "model_limits: {line:?} is not a model pattern followed by rpm=N and/or tpm=N"
                ),
            };
            let mut words = line.split_whitespace();
            let pattern = words.next().ok_or_else(bad)?;
            let mut caps = Map::new();
            for word in words {
                let (name, value) = word.split_once('=').ok_or_else(bad)?;
                if !matches!(name, "rpm" | "tpm") || caps.contains_key(name) {
                    return Err(bad());
                }
                caps.insert(name.to_owned(), number(value));
            }
            if caps.is_empty() {
                return Err(bad());
            }
            limits.insert(pattern.to_owned(), Value::Object(caps));
        }
        if !limits.is_empty() {
            out.insert("model_limits".to_owned(), Value::Object(limits));
        }
        match (self.credit.as_str(), self.period.as_str()) {
            ("", "") => {}
            ("", _) | (_, "") => {
                return Err(Refusal {
                    field: "credit",
                    message: "credit: give both an amount and a period, or neither".to_owned(),
                });
            }
            (amount, period) => {
                let nanos = dollars_to_nanos(amount).ok_or_else(|| Refusal {
                    field: "credit",
                    message: format!("credit: {amount:?} is not a dollar amount like 25.50"),
                })?;
                out.insert(
                    "credit".to_owned(),
                    json!({"limit_nanos": nanos, "period": period}),
                );
            }
        }
        Ok(Value::Object(out))
    }
}

/// The entries of a list field: one per line or comma, blanks skipped.
fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// A number field as JSON: a number when it reads as one, else the text, so the
/// API's own reading names what is wrong with it.
fn number(text: &str) -> Value {
    text.trim()
        .parse::<serde_json::Number>()
        .map_or_else(|_| Value::String(text.trim().to_owned()), Value::Number)
}

/// `value` (in units of 10^-`scale`) as a decimal, without trailing zeros.
pub fn decimal(value: u128, scale: u32) -> String {
    let unit = 10u128.pow(scale);
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:0width$}", width = scale as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A non-negative decimal (`12`, `12.5`, `$0.25`) in units of 10^-`scale`; `None`
/// for anything else, more decimals than `scale`, or a value beyond `i64`.
pub fn parse_decimal(text: &str, scale: u32) -> Option<u64> {
    let text = text.trim();
    let text = text.strip_prefix('$').unwrap_or(text).replace('_', "");
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    if (whole.is_empty() && frac.is_empty())
        || frac.len() > scale as usize
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 19
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_units: u64 = if frac.is_empty() {
        0
    } else {
        let padded = format!("{frac:0<width$}", width = scale as usize);
        padded.parse().ok()?
    };
    let value = whole
        .checked_mul(10u64.pow(scale))?
        .checked_add(frac_units)?;
    (value <= i64::MAX as u64).then_some(value)
}

/// Dollars typed in a field, as nano-dollars.
pub fn dollars_to_nanos(text: &str) -> Option<u64> {
    parse_decimal(text, 9)
}

/// A billing rule as the form shows it: the multiplier (`1.25`) and own prices (JSON).
pub fn billing_text(b: &Billing) -> (String, String) {
    let multiplier = b
        .multiplier_ppm
        .map(|ppm| decimal(u128::from(ppm), 6))
        .unwrap_or_default();
    let prices = if b.prices.is_empty() {
        String::new()
    } else {
        serde_json::to_string_pretty(&b.prices).unwrap_or_default()
    };
    (multiplier, prices)
}

/// The billing form as the API's JSON.
pub fn billing_json(multiplier: &str, prices: &str) -> Result<Value, Refusal> {
    let mut out = Map::new();
    if !multiplier.trim().is_empty() {
        let ppm = parse_decimal(multiplier, 6).ok_or_else(|| Refusal {
            field: "multiplier",
            message: format!(
                "multiplier: {:?} is not a number like 1.25",
                multiplier.trim()
            ),
        })?;
        out.insert("multiplier_ppm".to_owned(), json!(ppm));
    }
    if !prices.trim().is_empty() {
        let value: Value = serde_json::from_str(prices).map_err(|e| Refusal {
            field: "prices",
            message: format!("prices: not JSON: {e}"),
        })?;
        out.insert("prices".to_owned(), value);
    }
    Ok(Value::Object(out))
}

/// The service's refusal of a policy, each part beside the field it names (the
/// policy's own validation and "exceeds the parent's" list name their fields first;
/// the API's body reading names `policy.<field>`); the rest goes to the form.
pub fn policy_refusals(message: &str) -> Vec<Refusal> {
    let mut out: Vec<Refusal> = Vec::new();
    let mut add = |field: &'static str, text: &str| match out.iter_mut().find(|r| r.field == field)
    {
        Some(r) => {
            r.message.push_str("; ");
            r.message.push_str(text);
        }
        None => out.push(Refusal {
            field,
            message: text.to_owned(),
        }),
    };
    let parts = message
        .strip_prefix("policy exceeds the parent's: ")
        .or_else(|| message.strip_prefix("policy: "));
    match parts {
        Some(list) => {
            for part in list.split("; ") {
                let first = part.split([' ', ':']).next().unwrap_or_default();
                let field = POLICY_FIELDS.iter().find(|f| **f == first).copied();
                add(field.unwrap_or(""), part);
            }
        }
        None => {
            let field = POLICY_FIELDS
                .iter()
                .find(|f| message.contains(&format!("policy.{f}")))
                .copied();
            add(field.unwrap_or(""), message);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_read_and_shown() {
        assert_eq!(parse_decimal("12.5", 9), Some(12_500_000_000));
        assert_eq!(parse_decimal("$0.000000001", 9), Some(1));
        assert_eq!(parse_decimal(".25", 6), Some(250_000));
        assert_eq!(parse_decimal("1_000", 0), Some(1000));
        for bad in [
            "",
            ".",
            "-1",
            "1.0000000001",
            "1e3",
            "abc",
            "1.2.3",
            "99999999999",
        ] {
            assert_eq!(parse_decimal(bad, 9), None, "{bad}");
        }
        assert_eq!(
            parse_decimal("9223372036", 9),
            Some(9_223_372_036_000_000_000)
        );
        assert_eq!(parse_decimal("9223372037", 9), None, "beyond i64");
        assert_eq!(decimal(12_500_000_000, 9), "12.5");
        assert_eq!(decimal(1_250_000, 6), "1.25");
        assert_eq!(decimal(7, 0), "7");
    }

    #[test]
    fn policies_round_trip_through_the_form() {
        let policy: Policy = serde_json::from_value(json!({
            "models": ["gpt-4o*", "claude-3"], "client_cidrs": ["10.0.0.0/8"], "rpm": 60,
            "model_limits": {"gpt-4o*": {"rpm": 10, "tpm": 1000}},
            "credit": {"limit_nanos": 25_500_000_000u64, "period": "month"}
        }))
        .unwrap_or_default();
        let text = PolicyText::of(&policy);
        assert_eq!(text.models, "gpt-4o*\nclaude-3");
        assert_eq!(text.model_limits, "gpt-4o* rpm=10 tpm=1000");
        assert_eq!(text.credit, "25.5");
        let back: Policy = text
            .to_json()
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        assert_eq!(back, policy);
        assert_eq!(PolicyText::default().to_json().ok(), Some(json!({})));
        let odd = PolicyText {
            rpm: "lots".into(),
            ..PolicyText::default()
        };
        assert_eq!(odd.to_json().ok(), Some(json!({"rpm": "lots"})));
        let limits = PolicyText {
            model_limits: "gpt-4o rpm".into(),
            ..PolicyText::default()
        };
        assert_eq!(
            limits.to_json().err().map(|r| r.field),
            Some("model_limits")
        );
        let half = PolicyText {
            credit: "5".into(),
            ..PolicyText::default()
        };
        assert_eq!(half.to_json().err().map(|r| r.field), Some("credit"));
    }

    #[test]
    fn refusals_go_beside_their_fields() {
        let split = policy_refusals(
            "policy exceeds the parent's: models gpt-5: not granted by the parent; rpm: 1000 exceeds the parent's 100; models o1: not granted by the parent",
        );
        let fields: Vec<(&str, &str)> = split
            .iter()
            .map(|r| (r.field, r.message.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                (
                    "models",
                    "models gpt-5: not granted by the parent; models o1: not granted by the parent"
                ),
                ("rpm", "rpm: 1000 exceeds the parent's 100"),
            ]
        );
        let zero = policy_refusals("policy: key_rpm must be greater than zero");
        assert_eq!(zero[0].field, "key_rpm");
        let read = policy_refusals(
            "Failed to deserialize the JSON body into the target type: policy.client_cidrs[0]: invalid IP address syntax",
        );
        assert_eq!(read[0].field, "client_cidrs");
        assert_eq!(policy_refusals("something else")[0].field, "");
    }

    #[test]
    fn billing_fields() {
        assert_eq!(
            billing_json("1.25", "").ok(),
            Some(json!({"multiplier_ppm": 1_250_000}))
        );
        assert_eq!(billing_json("", "").ok(), Some(json!({})));
        assert_eq!(
            billing_json("x", "").err().map(|r| r.field),
            Some("multiplier")
        );
        assert_eq!(billing_json("", "{").err().map(|r| r.field), Some("prices"));
        let b: Billing =
            serde_json::from_value(json!({"multiplier_ppm": 1_500_000})).unwrap_or_default();
        assert_eq!(billing_text(&b).0, "1.5");
    }
}
