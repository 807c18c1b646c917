//! A Gemini `generateContent` request read into a [`Conversation`]. The model and
//! whether to stream come from the path ([`GeminiCall`]); the body holds the rest.
//! Field names are read in camelCase and, as Gemini's proto3 JSON also accepts them
//! (and its REST examples use them), in snake case.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::dialect::Dialect;
use super::gemini_parts::Parts;
use super::gemini_path::{GeminiCall, GeminiMethod};
use super::gemini_schema::json_schema;
use super::ir::{Conversation, Effort, Format, Reasoning, Role, Tool, ToolChoice};
use super::read::parse;
use super::refusal::{Dropped, Refusal, drop_field};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Request<'a> {
    #[serde(borrow)]
    contents: Vec<InContent<'a>>,
    #[serde(borrow, default, alias = "system_instruction")]
    system_instruction: Option<InContent<'a>>,
    #[serde(borrow, default)]
    tools: Vec<std::collections::BTreeMap<Cow<'a, str>, &'a RawValue>>,
    #[serde(borrow, default, alias = "tool_config")]
    tool_config: Option<InToolConfig<'a>>,
    #[serde(default, alias = "safety_settings")]
    safety_settings: Option<IgnoredAny>,
    #[serde(borrow, default, alias = "generation_config")]
    generation_config: Option<GenerationConfig<'a>>,
    #[serde(default, alias = "cached_content")]
    cached_content: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InContent<'a> {
    #[serde(borrow, default)]
    pub(crate) role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) parts: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Declaration<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "parameters_json_schema")]
    parameters_json_schema: Option<&'a RawValue>,
    #[serde(default)]
    response: Option<IgnoredAny>,
    #[serde(default, alias = "response_json_schema")]
    response_json_schema: Option<IgnoredAny>,
    #[serde(borrow, default)]
    behavior: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InToolConfig<'a> {
    #[serde(borrow, default, alias = "function_calling_config")]
    function_calling_config: Option<CallingConfig<'a>>,
    #[serde(default, alias = "retrieval_config")]
    retrieval_config: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CallingConfig<'a> {
    #[serde(borrow, default)]
    mode: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "allowed_function_names")]
    allowed_function_names: Option<Vec<Cow<'a, str>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default, alias = "top_p")]
    top_p: Option<f64>,
    /// An integer, which the Python SDK writes as a float (`40.0`).
    #[serde(default, alias = "top_k")]
    top_k: Option<f64>,
    #[serde(default, alias = "candidate_count")]
    candidate_count: Option<u64>,
    #[serde(default, alias = "max_output_tokens")]
    max_output_tokens: Option<u64>,
    #[serde(borrow, default, alias = "stop_sequences")]
    stop_sequences: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default, alias = "response_mime_type")]
    response_mime_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "response_schema")]
    response_schema: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "response_json_schema")]
    response_json_schema: Option<&'a RawValue>,
    #[serde(default, alias = "presence_penalty")]
    presence_penalty: Option<f64>,
    #[serde(default, alias = "frequency_penalty")]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    seed: Option<IgnoredAny>,
    #[serde(default, alias = "response_logprobs")]
    response_logprobs: Option<bool>,
    #[serde(default)]
    logprobs: Option<IgnoredAny>,
    #[serde(borrow, default, alias = "response_modalities")]
    response_modalities: Option<Vec<Cow<'a, str>>>,
    #[serde(default, alias = "speech_config")]
    speech_config: Option<IgnoredAny>,
    #[serde(default, alias = "image_config")]
    image_config: Option<IgnoredAny>,
    #[serde(default, alias = "media_resolution")]
    media_resolution: Option<IgnoredAny>,
    #[serde(default, alias = "enable_enhanced_civic_answers")]
    enable_enhanced_civic_answers: Option<IgnoredAny>,
    #[serde(borrow, default, alias = "thinking_config")]
    thinking_config: Option<ThinkingConfig<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ThinkingConfig<'a> {
    /// Read, not used: the target's thinking always comes back as thought parts
    /// (Anthropic must be sent its signed thinking back with tool results).
    #[serde(default, rename = "includeThoughts", alias = "include_thoughts")]
    _include_thoughts: Option<bool>,
    #[serde(default, alias = "thinking_budget")]
    thinking_budget: Option<i64>,
    #[serde(borrow, default, alias = "thinking_level")]
    thinking_level: Option<Cow<'a, str>>,
}

/// Read a Gemini request for `call` (from its path), bound for `upstream`.
pub(crate) fn conversation<'a>(
    body: &'a [u8],
    call: GeminiCall<'_>,
    upstream: Dialect,
    dropped: &mut Vec<Dropped>,
) -> Result<Conversation<'a>, Refusal> {
    let target = upstream.name();
    if call.method == GeminiMethod::CountTokens {
        return Err(Refusal::unsupported(
            "Gemini countTokens (token counting is not translated)",
            target,
        ));
    }
    let text = std::str::from_utf8(body).map_err(Refusal::malformed)?;
    let req: Request<'a> = parse(text, "request")?;
    if req.cached_content.is_some() {
        return Err(Refusal::unsupported(
            "cachedContent (content cached at Google)",
            target,
        ));
    }
    if req.safety_settings.is_some() {
        drop_field(
            dropped,
            "safetySettings",
            "the target applies its own safety policy",
        );
    }
    let mut conv = Conversation {
        model: Cow::Owned(call.model.to_owned()),
        stream: call.stream(),
        // The usage goes in the last chunk: a Chat upstream must be asked for it.
        include_usage: true,
        ..Conversation::default()
    };
    if let Some(system) = req.system_instruction {
        for part in Parts::new(target).system(system.parts)? {
            conv.system.push(part);
        }
    }
    let mut parts = Parts::new(target);
    for (i, content) in req.contents.into_iter().enumerate() {
        let role = match content.role.as_deref() {
            None | Some("user" | "function") => Role::User,
            Some("model") => Role::Assistant,
            Some(other) => {
                return Err(Refusal::malformed(format_args!(
                    "contents[{i}]: unknown role `{other}`"
                )));
            }
        };
        parts.read(&mut conv, role, content.parts, i, dropped)?;
    }
    parts.finish(&mut conv, dropped);
    tools(&mut conv, req.tools, target, dropped)?;
    if let Some(config) = req.tool_config {
        if config.retrieval_config.is_some() {
            drop_field(
                dropped,
                "toolConfig.retrievalConfig",
                "it serves only Google's own tools",
            );
        }
        if let Some(calling) = config.function_calling_config {
            tool_choice(&mut conv, calling, target)?;
        }
    }
    if let Some(config) = req.generation_config {
        generation(&mut conv, config, upstream, dropped)?;
    }
    Ok(conv)
}

fn tools<'a>(
    conv: &mut Conversation<'a>,
    list: Vec<std::collections::BTreeMap<Cow<'a, str>, &'a RawValue>>,
    target: &'static str,
    dropped: &mut Vec<Dropped>,
) -> Result<(), Refusal> {
    for (i, tool) in list.into_iter().enumerate() {
        for (kind, raw) in tool {
            if kind != "functionDeclarations" && kind != "function_declarations" {
                return Err(Refusal::unsupported(
                    format!("Gemini's `{kind}` tool (the target cannot run it)"),
                    target,
                ));
            }
            let at = format!("tools[{i}].functionDeclarations");
            let declarations: Vec<Declaration<'a>> = parse(raw.get(), &at)?;
            for (j, d) in declarations.into_iter().enumerate() {
                let at = format!("{at}[{j}]");
                conv.tools.push(declaration(d, &at, target, dropped)?);
            }
        }
    }
    Ok(())
}

fn declaration<'a>(
    d: Declaration<'a>,
    at: &str,
    target: &'static str,
    dropped: &mut Vec<Dropped>,
) -> Result<Tool<'a>, Refusal> {
    if d.behavior.as_deref().is_some_and(|b| b != "BLOCKING") {
        return Err(Refusal::unsupported(
            "non-blocking function declarations",
            target,
        ));
    }
    if d.response.is_some() || d.response_json_schema.is_some() {
        drop_field(
            dropped,
            "functionDeclarations.response",
            "the target takes no schema of a function's result",
        );
    }
    let schema = match (d.parameters, d.parameters_json_schema) {
        (Some(_), Some(_)) => {
            return Err(Refusal::malformed(format_args!(
                "{at}: both parameters and parametersJsonSchema"
            )));
        }
        (Some(openapi), None) => Some(Cow::Owned(json_schema(
            openapi,
            &format!("{at}.parameters"),
        )?)),
        (None, json) => json.map(Cow::Borrowed),
    };
    Ok(Tool {
        name: d.name,
        description: d.description,
        schema,
        strict: false,
    })
}

fn tool_choice<'a>(
    conv: &mut Conversation<'a>,
    calling: CallingConfig<'a>,
    target: &'static str,
) -> Result<(), Refusal> {
    let mut names = calling.allowed_function_names.unwrap_or_default();
    let mode = calling.mode.as_deref().unwrap_or("AUTO");
    if !names.is_empty() && mode != "ANY" {
        return Err(Refusal::malformed(
            "toolConfig.functionCallingConfig: allowedFunctionNames only with mode ANY",
        ));
    }
    conv.tool_choice = Some(match mode {
        "AUTO" | "MODE_UNSPECIFIED" => ToolChoice::Auto,
        "NONE" => ToolChoice::None,
        "ANY" if names.len() == 1 => ToolChoice::Named(names.remove(0)),
        "ANY" => {
            // Calling one of several named functions is calling some function of
            // those declared: the others are left out of the request.
            if !names.is_empty() {
                conv.tools
                    .retain(|t| names.iter().any(|n| n.as_ref() == t.name.as_ref()));
            }
            ToolChoice::Required
        }
        "VALIDATED" => {
            return Err(Refusal::unsupported(
                "function calling mode VALIDATED",
                target,
            ));
        }
        other => {
            return Err(Refusal::malformed(format_args!(
                "toolConfig.functionCallingConfig.mode: unknown mode `{other}`"
            )));
        }
    });
    Ok(())
}

fn generation<'a>(
    conv: &mut Conversation<'a>,
    c: GenerationConfig<'a>,
    upstream: Dialect,
    dropped: &mut Vec<Dropped>,
) -> Result<(), Refusal> {
    let target = upstream.name();
    if c.candidate_count.is_some_and(|n| n > 1) {
        return Err(Refusal::unsupported("candidateCount above 1", target));
    }
    if c.response_logprobs == Some(true) || c.logprobs.is_some() {
        return Err(Refusal::unsupported("logprobs", target));
    }
    if c.speech_config.is_some() || c.image_config.is_some() {
        return Err(Refusal::unsupported("speech and image output", target));
    }
    for m in c.response_modalities.iter().flatten() {
        if !m.eq_ignore_ascii_case("TEXT") {
            return Err(Refusal::unsupported(
                format!("responseModalities `{m}`"),
                target,
            ));
        }
    }
    conv.temperature = c.temperature;
    conv.top_p = c.top_p;
    conv.max_tokens = c.max_output_tokens;
    conv.stop = c.stop_sequences.unwrap_or_default();
    if let Some(k) = c.top_k {
        if k < 0.0 || k.fract() != 0.0 || k > u32::MAX.into() {
            return Err(Refusal::malformed(
                "generationConfig.topK: must be a whole number",
            ));
        }
        if upstream == Dialect::Chat {
            drop_field(dropped, "topK", "the target has no such setting");
        } else {
            // Checked whole and in range above.
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let k = k as u64;
            conv.top_k = Some(k);
        }
    }
    if c.presence_penalty.is_some_and(|p| p != 0.0) || c.frequency_penalty.is_some_and(|p| p != 0.0)
    {
        drop_field(
            dropped,
            "presencePenalty/frequencyPenalty",
            "sampling hints the translation does not carry",
        );
    }
    if c.seed.is_some() {
        drop_field(dropped, "seed", "the target does not promise determinism");
    }
    if c.media_resolution.is_some() {
        drop_field(dropped, "mediaResolution", "the target has no such setting");
    }
    if c.enable_enhanced_civic_answers.is_some() {
        drop_field(
            dropped,
            "enableEnhancedCivicAnswers",
            "the target has no such setting",
        );
    }
    conv.format = format(
        c.response_mime_type.as_deref(),
        c.response_schema,
        c.response_json_schema,
        target,
    )?;
    if let Some(t) = c.thinking_config {
        conv.reasoning = thinking(&t)?;
    }
    Ok(())
}

fn format<'a>(
    mime: Option<&str>,
    openapi: Option<&'a RawValue>,
    json: Option<&'a RawValue>,
    target: &'static str,
) -> Result<Option<Format<'a>>, Refusal> {
    let schema = match (openapi, json) {
        (Some(_), Some(_)) => {
            return Err(Refusal::malformed(
                "generationConfig: both responseSchema and responseJsonSchema",
            ));
        }
        (Some(o), None) => Some(Cow::Owned(json_schema(
            o,
            "generationConfig.responseSchema",
        )?)),
        (None, j) => j.map(Cow::Borrowed),
    };
    match (mime.unwrap_or("text/plain"), schema) {
        ("text/plain", None) => Ok(None),
        ("application/json", None) => Ok(Some(Format::JsonObject)),
        // Gemini's schemas are not written for OpenAI's strict mode (every property
        // required, no extra properties), so they are sent as plain schemas.
        ("application/json", Some(schema)) => Ok(Some(Format::JsonSchema {
            name: None,
            schema,
            strict: false,
        })),
        ("text/plain", Some(_)) => Err(Refusal::malformed(
            "generationConfig: a response schema needs responseMimeType application/json",
        )),
        (other, _) => Err(Refusal::unsupported(
            format!("responseMimeType `{other}`"),
            target,
        )),
    }
}

fn thinking(t: &ThinkingConfig<'_>) -> Result<Option<Reasoning>, Refusal> {
    if let Some(level) = t.thinking_level.as_deref() {
        return Ok(Some(match level.to_ascii_uppercase().as_str() {
            "MINIMAL" => Reasoning::Effort(Effort::Minimal),
            "LOW" => Reasoning::Effort(Effort::Low),
            "MEDIUM" | "THINKING_LEVEL_UNSPECIFIED" => Reasoning::Effort(Effort::Medium),
            "HIGH" => Reasoning::Effort(Effort::High),
            other => {
                return Err(Refusal::malformed(format_args!(
                    "thinkingConfig.thinkingLevel: unknown level `{other}`"
                )));
            }
        }));
    }
    Ok(match t.thinking_budget {
        None => None,
        Some(0) => Some(Reasoning::Disabled),
        // Dynamic thinking, the model deciding: the target's own default.
        Some(-1) => None,
        Some(b) => Some(Reasoning::Budget(u64::try_from(b).map_err(|_| {
            Refusal::malformed("thinkingConfig.thinkingBudget: must be -1, 0 or more")
        })?)),
    })
}
