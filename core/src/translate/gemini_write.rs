//! A [`Conversation`] written as a Gemini `generateContent` request.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;
use serde_json::value::RawValue;

use super::ir::{Conversation, Effort, Format, Media, Part, Reasoning, Role, ToolChoice};
use super::read;
use super::refusal::{Dropped, Refusal, drop_field};

const TARGET: &str = "Gemini generateContent";

/// The thinking budget each OpenAI reasoning effort becomes (`minimal`: none), as
/// for Anthropic.
fn effort_budget(effort: Effort) -> u64 {
    match effort {
        Effort::Minimal => 0,
        Effort::Low => 1024,
        Effort::Medium => 4096,
        Effort::High => 16384,
    }
}

/// The path of a call to `model` (appended to the key's base URL, which ends in
/// its version, `/v1beta`); a stream asks for SSE.
pub(crate) fn path(model: &str, stream: bool) -> String {
    if stream {
        format!("/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/models/{model}:generateContent")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'c> {
    contents: Vec<Content<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<System<'c>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tools<'c>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'c>>,
    generation_config: GenerationConfig<'c>,
}

#[derive(Serialize)]
struct System<'c> {
    parts: Vec<OutPart<'c>>,
}

#[derive(Serialize)]
struct Content<'c> {
    role: &'static str,
    parts: Vec<OutPart<'c>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutPart<'c> {
    Text {
        text: &'c str,
    },
    Inline {
        #[serde(rename = "inlineData")]
        inline_data: Inline<'c>,
    },
    Call {
        #[serde(rename = "functionCall")]
        function_call: Call<'c>,
    },
    Response {
        #[serde(rename = "functionResponse")]
        function_response: FunctionResponse<'c>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Inline<'c> {
    mime_type: &'c str,
    data: &'c str,
}

#[derive(Serialize)]
struct Call<'c> {
    id: &'c str,
    name: &'c str,
    args: &'c RawValue,
}

#[derive(Serialize)]
struct FunctionResponse<'c> {
    id: &'c str,
    name: &'c str,
    response: ToolOutput,
}

/// Gemini wants a tool's result as an object: the text goes under `output` (or
/// `error` when the tool failed).
#[derive(Serialize)]
struct ToolOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tools<'c> {
    function_declarations: Vec<Declaration<'c>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Declaration<'c> {
    name: &'c str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'c str>,
    /// Full JSON Schema (Gemini's `parameters` takes only an OpenAPI subset).
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<&'c RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'c> {
    function_calling_config: CallingConfig<'c>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallingConfig<'c> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'c str; 1]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'c> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'c [Cow<'c, str>],
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'c RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<ThinkingConfig>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThinkingConfig {
    thinking_budget: u64,
    include_thoughts: bool,
}

/// Write `conv` as a Gemini request body.
pub(crate) fn request(
    conv: &Conversation<'_>,
    dropped: &mut Vec<Dropped>,
) -> Result<Vec<u8>, Refusal> {
    // Gemini answers a tool by the function's name; the conversation knows it by
    // the call's id.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for m in &conv.messages {
        for p in &m.parts {
            if let Part::ToolCall { id, name, .. } = p {
                names.insert(id, name);
            }
        }
    }
    let contents: Vec<Content<'_>> = conv
        .turns(|p| part(p, &names, dropped))?
        .into_iter()
        .map(|(role, parts)| Content {
            role: match role {
                Role::User => "user",
                Role::Assistant => "model",
            },
            parts,
        })
        .collect();
    let tools = if conv.tools.is_empty() {
        Vec::new()
    } else {
        vec![Tools {
            function_declarations: conv
                .tools
                .iter()
                .map(|t| Declaration {
                    name: &t.name,
                    description: t.description.as_deref(),
                    parameters_json_schema: t.schema.as_deref(),
                })
                .collect(),
        }]
    };
    if conv.tools.iter().any(|t| t.strict) {
        drop_field(dropped, "strict", "Gemini has no strict tool schemas");
    }
    if conv.parallel_tool_calls == Some(false) {
        drop_field(
            dropped,
            "parallel_tool_calls",
            "Gemini cannot be held to one call",
        );
    }
    let tool_config = conv.tool_choice.as_ref().map(|c| {
        let (mode, name) = match c {
            ToolChoice::Auto => ("AUTO", None),
            ToolChoice::None => ("NONE", None),
            ToolChoice::Required => ("ANY", None),
            ToolChoice::Named(n) => ("ANY", Some([n.as_ref()])),
        };
        ToolConfig {
            function_calling_config: CallingConfig {
                mode,
                allowed_function_names: name,
            },
        }
    });
    let (response_mime_type, response_json_schema) = match &conv.format {
        None => (None, None),
        Some(Format::JsonObject) => (Some("application/json"), None),
        Some(Format::JsonSchema { schema, .. }) => (Some("application/json"), Some(&**schema)),
    };
    let thinking_config = match conv.reasoning {
        None => None,
        Some(Reasoning::Disabled) => Some(0),
        Some(Reasoning::Effort(e)) => Some(effort_budget(e)),
        Some(Reasoning::Budget(b)) => Some(b),
    }
    .map(|budget| ThinkingConfig {
        thinking_budget: budget,
        include_thoughts: budget > 0,
    });
    let system = (!conv.system.is_empty()).then(|| System {
        parts: conv
            .system
            .iter()
            .map(|s| OutPart::Text { text: s })
            .collect(),
    });
    let body = Request {
        contents,
        system_instruction: system,
        tools,
        tool_config,
        generation_config: GenerationConfig {
            max_output_tokens: conv.max_tokens,
            temperature: conv.temperature,
            top_p: conv.top_p,
            top_k: conv.top_k,
            stop_sequences: &conv.stop,
            response_mime_type,
            response_json_schema,
            thinking_config,
        },
    };
    serde_json::to_vec(&body).map_err(Refusal::malformed)
}

fn part<'c>(
    p: &'c Part<'_>,
    names: &HashMap<&str, &'c str>,
    dropped: &mut Vec<Dropped>,
) -> Result<Option<OutPart<'c>>, Refusal> {
    Ok(Some(match p {
        Part::Text(t) if t.is_empty() => return Ok(None),
        Part::Text(text) => OutPart::Text { text },
        Part::Image(Media::Base64 { media_type, data })
        | Part::Document {
            media: Media::Base64 { media_type, data },
            ..
        } => OutPart::Inline {
            inline_data: Inline {
                mime_type: media_type,
                data,
            },
        },
        Part::Image(Media::Url(_))
        | Part::Document {
            media: Media::Url(_),
            ..
        } => {
            return Err(Refusal::unsupported("images and documents by URL", TARGET));
        }
        Part::Thinking { .. } | Part::RedactedThinking(_) => {
            drop_field(
                dropped,
                "thinking",
                "Gemini takes back only its own thought signatures",
            );
            return Ok(None);
        }
        Part::ToolCall {
            id,
            name,
            arguments,
        } => {
            let args = read::arguments_object(id, arguments)?;
            OutPart::Call {
                function_call: Call { id, name, args },
            }
        }
        Part::ToolResult {
            id,
            content,
            is_error,
        } => {
            let name = names.get(id.as_ref()).copied().ok_or_else(|| {
                Refusal::malformed(format_args!("the tool result `{id}` answers no tool call"))
            })?;
            let mut text = String::new();
            for c in content {
                match c {
                    Part::Text(t) => text.push_str(t),
                    _ => {
                        return Err(Refusal::unsupported(
                            "images and documents in tool results",
                            TARGET,
                        ));
                    }
                }
            }
            let response = if *is_error {
                ToolOutput {
                    output: None,
                    error: Some(text),
                }
            } else {
                ToolOutput {
                    output: Some(text),
                    error: None,
                }
            };
            OutPart::Response {
                function_response: FunctionResponse { id, name, response },
            }
        }
    }))
}
