//! Token counting for a model only another protocol serves: Anthropic's
//! `/v1/messages/count_tokens` answered here, estimated, since no upstream of the
//! client's protocol can count it and another protocol's tokenizer is not ours to run.

use serde_json::Value;

use super::refusal::Refusal;

/// Characters per token in English-like text, the common rule of thumb.
const CHARS_PER_TOKEN: u64 = 4;
/// What a message costs besides its text (role and framing).
pub const PER_MESSAGE: u64 = 4;
/// What a tool definition costs besides its name, description and schema text.
pub const PER_TOOL: u64 = 16;
/// What an image or a document counts as: providers price a typical image at about
/// this many tokens.
pub const PER_IMAGE: u64 = 1_600;

/// The estimated input tokens of an Anthropic Messages request (a `count_tokens`
/// body): a quarter of the characters of its text (system, message text, tool
/// calls and results, tool definitions), plus a fixed cost per message, tool and
/// image or document.
pub fn estimate_input_tokens(body: &[u8]) -> Result<u64, Refusal> {
    crate::json_bounds::check_depth(body, crate::json_bounds::MAX_JSON_DEPTH)
        .map_err(Refusal::malformed)?;
    let request: Value = serde_json::from_slice(body).map_err(Refusal::malformed)?;
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return Err(Refusal::malformed("`messages` must be a list"));
    };
    let mut tally = Tally::default();
    if let Some(system) = request.get("system") {
        tally.content(system);
    }
    for message in messages {
        tally.fixed += PER_MESSAGE;
        if let Some(content) = message.get("content") {
            tally.content(content);
        }
    }
    for tool in request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        tally.fixed += PER_TOOL;
        tally.chars += serialized_chars(tool);
    }
    Ok(tally.chars.div_ceil(CHARS_PER_TOKEN) + tally.fixed)
}

#[derive(Default)]
struct Tally {
    chars: u64,
    fixed: u64,
}

impl Tally {
    /// A `content` (or `system`): a string, or a list of blocks.
    fn content(&mut self, content: &Value) {
        match content {
            Value::String(text) => self.chars += char_count(text),
            Value::Array(blocks) => blocks.iter().for_each(|b| self.block(b)),
            _ => {}
        }
    }

    fn block(&mut self, block: &Value) {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => self.text_field(block, "text"),
            Some("thinking") => self.text_field(block, "thinking"),
            Some("image" | "document") => self.fixed += PER_IMAGE,
            Some("tool_use") => {
                self.text_field(block, "name");
                if let Some(input) = block.get("input") {
                    self.chars += serialized_chars(input);
                }
            }
            Some("tool_result") => {
                if let Some(content) = block.get("content") {
                    self.content(content);
                }
            }
            _ => {}
        }
    }

    fn text_field(&mut self, block: &Value, field: &str) {
        if let Some(text) = block.get(field).and_then(Value::as_str) {
            self.chars += char_count(text);
        }
    }
}

fn char_count(text: &str) -> u64 {
    u64::try_from(text.chars().count()).unwrap_or(u64::MAX)
}

fn serialized_chars(value: &Value) -> u64 {
    u64::try_from(value.to_string().chars().count()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_counts_a_quarter_of_its_characters_plus_each_message() {
        let body = br#"{"model":"m","system":"abcd","messages":[
            {"role":"user","content":"12345678"},
            {"role":"assistant","content":[{"type":"text","text":"abcd"}]}]}"#;
        // 16 characters: 4 tokens; two messages: 8.
        assert_eq!(estimate_input_tokens(body).unwrap(), 4 + 2 * PER_MESSAGE);
    }

    #[test]
    fn images_tools_and_tool_traffic_count() {
        let body = br#"{"model":"m","messages":[
            {"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},
            {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"ok"}]}],
            "tools":[{"name":"f","input_schema":{"type":"object"}}]}"#;
        let tool = r#"{"input_schema":{"type":"object"},"name":"f"}"#.len() as u64;
        let chars = 1 + 2 + 2 + tool; // name, `{}`, "ok", the tool
        assert_eq!(
            estimate_input_tokens(body).unwrap(),
            chars.div_ceil(4) + 3 * PER_MESSAGE + PER_IMAGE + PER_TOOL
        );
    }

    #[test]
    fn a_body_without_messages_is_refused() {
        assert!(matches!(
            estimate_input_tokens(br#"{"model":"m"}"#),
            Err(Refusal::Malformed { .. })
        ));
        assert!(estimate_input_tokens(b"not json").is_err());
    }
}
