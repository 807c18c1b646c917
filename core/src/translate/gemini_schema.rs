//! Gemini's `parameters` and `responseSchema` are its OpenAPI subset (`type:
//! "OBJECT"`, `nullable`, counts as strings), which neither Anthropic nor OpenAI
//! reads: rewritten here as the JSON Schema they take. (`parametersJsonSchema` and
//! `responseJsonSchema` are JSON Schema already and pass as sent.)

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::refusal::Refusal;

/// Keywords proto3 JSON also accepts in snake case, with the JSON Schema name.
const RENAMED: [(&str, &str); 8] = [
    ("any_of", "anyOf"),
    ("min_items", "minItems"),
    ("max_items", "maxItems"),
    ("min_length", "minLength"),
    ("max_length", "maxLength"),
    ("min_properties", "minProperties"),
    ("max_properties", "maxProperties"),
    ("property_ordering", "propertyOrdering"),
];

/// Counts Gemini's proto3 JSON writes as strings (int64).
const COUNTS: [&str; 6] = [
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
];

/// Rewrite an OpenAPI schema as JSON Schema. Nesting was bounded before the body was
/// read, so the recursion is too.
pub(crate) fn json_schema(openapi: &RawValue, at: &str) -> Result<Box<RawValue>, Refusal> {
    let mut value: Value = serde_json::from_str(openapi.get())
        .map_err(|e| Refusal::malformed(format_args!("{at}: {e}")))?;
    if !value.is_object() {
        return Err(Refusal::malformed(format_args!(
            "{at}: must be a schema object"
        )));
    }
    rewrite(&mut value);
    serde_json::value::to_raw_value(&value).map_err(Refusal::malformed)
}

fn rewrite(value: &mut Value) {
    let Value::Object(map) = value else {
        return;
    };
    for (snake, camel) in RENAMED {
        if let Some(v) = map.remove(snake) {
            map.insert(camel.to_owned(), v);
        }
    }
    // JSON Schema has no ordering keyword; the targets keep `properties` in order.
    map.remove("propertyOrdering");
    if let Some(Value::String(kind)) = map.get("type") {
        let lower = kind.to_ascii_lowercase();
        if lower == "type_unspecified" {
            map.remove("type");
        } else {
            map.insert("type".to_owned(), Value::String(lower));
        }
    }
    if map.remove("nullable") == Some(Value::Bool(true)) {
        nullable(map);
    }
    for key in COUNTS {
        if let Some(Value::String(n)) = map.get(key)
            && let Ok(n) = n.parse::<u64>()
        {
            map.insert(key.to_owned(), Value::from(n));
        }
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(rewrite);
    }
    if let Some(items) = map.get_mut("items") {
        rewrite(items);
    }
    if let Some(Value::Array(any_of)) = map.get_mut("anyOf") {
        any_of.iter_mut().for_each(rewrite);
    }
}

/// `nullable: true` in JSON Schema: `null` joins the type (or the alternatives).
fn nullable(map: &mut Map<String, Value>) {
    let null = || Value::String("null".to_owned());
    match map.get_mut("type") {
        Some(Value::String(kind)) => {
            let kind = std::mem::take(kind);
            map.insert(
                "type".to_owned(),
                Value::Array(vec![Value::String(kind), null()]),
            );
        }
        _ => {
            if let Some(Value::Array(any_of)) = map.get_mut("anyOf") {
                let mut typed = Map::new();
                typed.insert("type".to_owned(), null());
                any_of.push(Value::Object(typed));
            }
        }
    }
}
