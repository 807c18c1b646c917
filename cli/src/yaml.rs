//! YAML in and out. Reading keeps where each node starts, so every problem found in a
//! file (a syntax error, a field of the wrong type, a bound a policy breaks) names
//! its line and column. Writing is deterministic: the same value always gives the
//! same text, keys in the order the value holds them.

use std::collections::HashMap;
use std::fmt;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

/// Where a node starts: line and column, both from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One problem in a file, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.pos.line, self.pos.col, self.message
        )
    }
}

/// A path into a document, the way `serde_path_to_error` prints it:
/// `accounts[0].policy.rpm`.
pub fn join_path(parent: &str, segment: Segment<'_>) -> String {
    match segment {
        Segment::Key(k) if parent.is_empty() => k.to_owned(),
        Segment::Key(k) => format!("{parent}.{k}"),
        Segment::Index(i) => format!("{parent}[{i}]"),
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// A parsed document: the value, and where each of its nodes starts.
#[derive(Debug, Default)]
pub struct Located {
    pub value: Value,
    positions: HashMap<String, Pos>,
}

impl Located {
    /// Where the node at `path` starts; for a path the document does not hold (a
    /// field left out), its nearest ancestor that it does.
    pub fn pos(&self, path: &str) -> Pos {
        let mut path = path;
        loop {
            if let Some(p) = self.positions.get(path) {
                return *p;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return self.positions.get("").copied().unwrap_or_default(),
            }
        }
    }

    /// The value as `T`, or the first field that does not fit, where it is.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        serde_path_to_error::deserialize::<_, T>(&self.value).map_err(|e| {
            let path = path_of(e.path());
            // A field that does not belong is pointed at itself, not at its map.
            let message = e.inner().to_string();
            let unknown = message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(field, _)| join_path(&path, Segment::Key(field)));
            Problem {
                pos: self.pos(unknown.as_deref().unwrap_or(&path)),
                message: if path.is_empty() {
                    e.inner().to_string()
                } else {
                    format!("{path}: {}", e.inner())
                },
            }
        })
    }
}

fn path_of(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        out = match segment {
            serde_path_to_error::Segment::Seq { index } => join_path(&out, Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => join_path(&out, Segment::Key(key)),
            serde_path_to_error::Segment::Enum { variant } => {
                join_path(&out, Segment::Key(variant))
            }
            serde_path_to_error::Segment::Unknown => out,
        };
    }
    out
}

/// Parse one YAML document (an empty one is null).
pub fn parse(text: &str) -> Result<Located, Problem> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| Problem {
        pos: Pos {
            line: e.marker().line(),
            col: e.marker().col() + 1,
        },
        message: e.info().to_owned(),
    })?;
    let mut located = Located::default();
    let Some(doc) = docs.first() else {
        return Ok(located);
    };
    if docs.len() > 1 {
        return Err(Problem {
            pos: marker_pos(&docs[1]),
            message: "one document expected, found more".into(),
        });
    }
    located.value = convert(doc, String::new(), &mut located.positions)?;
    Ok(located)
}

fn marker_pos(node: &MarkedYaml<'_>) -> Pos {
    Pos {
        line: node.span.start.line(),
        col: node.span.start.col() + 1,
    }
}

fn convert(
    node: &MarkedYaml<'_>,
    path: String,
    positions: &mut HashMap<String, Pos>,
) -> Result<Value, Problem> {
    let pos = marker_pos(node);
    let problem = |message: &str| Problem {
        pos,
        message: message.to_owned(),
    };
    let value = match &node.data {
        YamlData::Value(scalar) => {
            scalar_value(scalar).ok_or_else(|| problem("not a number JSON can hold"))?
        }
        YamlData::Representation(text, _, _) => Value::String(text.to_string()),
        YamlData::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(convert(
                    item,
                    join_path(&path, Segment::Index(i)),
                    positions,
                )?);
            }
            Value::Array(out)
        }
        YamlData::Mapping(entries) => {
            let mut out = Map::new();
            for (key, item) in entries {
                let key_text = match &key.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(Scalar::Integer(n)) => n.to_string(),
                    YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                    YamlData::Representation(text, _, _) => text.to_string(),
                    _ => {
                        return Err(Problem {
                            pos: marker_pos(key),
                            message: "a key must be a string".into(),
                        });
                    }
                };
                if out.contains_key(&key_text) {
                    return Err(Problem {
                        pos: marker_pos(key),
                        message: format!("{key_text} is given twice"),
                    });
                }
                let child = join_path(&path, Segment::Key(&key_text));
                let v = convert(item, child, positions)?;
                out.insert(key_text, v);
            }
            Value::Object(out)
        }
        YamlData::Tagged(_, inner) => return convert(inner, path, positions),
        YamlData::Alias(_) => return Err(problem("aliases are not supported")),
        YamlData::BadValue => return Err(problem("a value that does not fit its tag")),
    };
    positions.insert(path, pos);
    Ok(value)
}

fn scalar_value(scalar: &Scalar<'_>) -> Option<Value> {
    Some(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(n) => Value::Number((*n).into()),
        Scalar::FloatingPoint(f) => Value::Number(Number::from_f64(f.into_inner())?),
        Scalar::String(s) => Value::String(s.to_string()),
    })
}

/// `value` as YAML text, keys in the value's order, ending with a newline.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn write_map(out: &mut String, map: &Map<String, Value>, depth: usize) {
    let mut first = true;
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by_key(|(k, _)| rank(k));
    for (k, v) in entries {
        // The first entry of a map inside a sequence follows its `- `.
        if !first || depth == 0 || !out.ends_with("- ") {
            indent(out, depth);
        }
        first = false;
        out.push_str(&string(k));
        out.push(':');
        write_value(out, v, depth + 2);
    }
}

fn write_seq(out: &mut String, items: &[Value], depth: usize) {
    for item in items {
        indent(out, depth);
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => write_map(out, m, depth + 2),
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                write_seq(out, a, depth + 2);
            }
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn write_value(out: &mut String, value: &Value, depth: usize) {
    if !is_block(value) {
        out.push(' ');
        out.push_str(&scalar(value));
        out.push('\n');
        return;
    }
    out.push('\n');
    match value {
        Value::Object(m) => write_map(out, m, depth),
        // Sequences sit at their key's indentation plus two, like maps.
        Value::Array(a) => write_seq(out, a, depth),
        _ => {}
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string plain when YAML reads it back as the same string, double-quoted
/// (JSON's escapes are YAML's) otherwise.
fn string(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./*@+:".contains(c))
        && !s.ends_with(':')
        // What the core schema would read as a number, a boolean or null stays quoted.
        && matches!(Scalar::parse_from_cow(s.into()), Scalar::String(_))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// Keys in the order people read them: what names a thing first, nested accounts
/// last, the rest alphabetically (as the value holds them).
fn rank(key: &str) -> u8 {
    match key {
        "main" | "name" | "provider" | "current" => 0,
        "accounts" => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_text() {
        let value = json!({
            "main": "acme",
            "empty": {},
            "none": [],
            "list": ["a", "b*", "/v1/chat/completions", "true", "12", "", "x y", "a: b", "#c", "10.0.0.0/8", "http://h:9/v1", "1.5", "0x1f", "no", "a:"],
            "nested": {"rpm": 60, "neg": -3, "ok": true, "nothing": null},
            "accounts": [
                {"name": "team", "accounts": [{"name": "dev", "policy": {"models": ["m"]}}]},
                {"name": "ops"}
            ],
            "deep": [[1, 2], [3]]
        });
        let text = to_string(&value);
        let back = parse(&text).unwrap();
        assert_eq!(back.value, value, "{text}");
        assert_eq!(to_string(&back.value), text);
        assert!(
            text.contains("- 10.0.0.0/8\n") && text.contains("- \"1.5\"\n"),
            "{text}"
        );
        // Names first, nested accounts last.
        assert!(text.starts_with("main: acme\n"), "{text}");
        assert!(text.contains("  - name: team\n    accounts:\n"), "{text}");
    }

    #[test]
    fn positions_are_lines_and_columns_from_one() {
        let text = "main: acme\naccounts:\n  - name: team\n    policy:\n      rpm: 60\n";
        let doc = parse(text).unwrap();
        assert_eq!(doc.pos("main"), Pos { line: 1, col: 7 });
        assert_eq!(doc.pos("accounts[0].name"), Pos { line: 3, col: 11 });
        assert_eq!(doc.pos("accounts[0].policy.rpm"), Pos { line: 5, col: 12 });
        // A field the file leaves out: where its nearest ancestor is.
        assert_eq!(
            doc.pos("accounts[0].policy.models"),
            Pos { line: 5, col: 7 }
        );
    }

    #[test]
    fn syntax_errors_name_their_place() {
        let err = parse("main: acme\naccounts:\n  - name: [team\n").unwrap_err();
        assert!(err.pos.line >= 3, "{err}");
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, col: 1 });
        assert!(
            err.message.contains("twice") || err.message.contains("duplicate"),
            "{err}"
        );
    }

    #[test]
    fn type_errors_name_the_field_and_its_place() {
        #[derive(serde::Deserialize, Debug)]
        #[expect(dead_code, reason = "only decoded")]
        struct Doc {
            items: Vec<Item>,
        }
        #[derive(serde::Deserialize, Debug)]
        #[expect(dead_code, reason = "only decoded")]
        struct Item {
            n: u32,
        }
        let doc = parse("items:\n  - n: 1\n  - n: lots\n").unwrap();
        let err = doc.decode::<Doc>().unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 8 });
        assert!(err.message.starts_with("items[1].n:"), "{err}");

        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[expect(dead_code, reason = "only decoded")]
        struct Strict {
            n: u32,
        }
        let doc = parse(
            "n: 1
nn: 2
",
        )
        .unwrap();
        let err = doc.decode::<Strict>().unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, col: 5 }, "{err}");
        assert!(err.message.contains("unknown field `nn`"), "{err}");
    }
}
