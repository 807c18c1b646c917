//! The parts of a Gemini request's contents read as neutral parts: text, inline and
//! file data, function calls and their responses, thoughts with their signatures.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::gemini_signature::{Signed, read_signature, standard_base64};
use super::ir::{Conversation, Media, Message, Part, Role};
use super::read::{object_text, parse};
use super::refusal::{Dropped, Refusal, drop_field};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InPart<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(borrow, default, alias = "thought_signature")]
    thought_signature: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "inline_data")]
    inline_data: Option<Blob<'a>>,
    #[serde(borrow, default, alias = "file_data")]
    file_data: Option<FileData<'a>>,
    #[serde(borrow, default, alias = "function_call")]
    function_call: Option<InCall<'a>>,
    #[serde(borrow, default, alias = "function_response")]
    function_response: Option<InResponse<'a>>,
    #[serde(default, alias = "executable_code")]
    executable_code: Option<IgnoredAny>,
    #[serde(default, alias = "code_execution_result")]
    code_execution_result: Option<IgnoredAny>,
    #[serde(default, alias = "tool_call")]
    tool_call: Option<IgnoredAny>,
    #[serde(default, alias = "tool_response")]
    tool_response: Option<IgnoredAny>,
    #[serde(default, alias = "video_metadata")]
    video_metadata: Option<IgnoredAny>,
    #[serde(default, alias = "media_resolution")]
    media_resolution: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Blob<'a> {
    #[serde(borrow, alias = "mime_type")]
    mime_type: Cow<'a, str>,
    #[serde(borrow)]
    data: Cow<'a, str>,
    #[serde(borrow, default, alias = "display_name")]
    display_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileData<'a> {
    #[serde(borrow, default, alias = "mime_type")]
    mime_type: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "file_uri")]
    file_uri: Cow<'a, str>,
    #[serde(borrow, default, alias = "display_name")]
    display_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InCall<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    args: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InResponse<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
    #[serde(borrow, default)]
    parts: Vec<&'a RawValue>,
    #[serde(default, alias = "will_continue")]
    will_continue: Option<IgnoredAny>,
    #[serde(default)]
    scheduling: Option<IgnoredAny>,
}

/// A function's result as Gemini's convention has it: `{"output": …}`, or
/// `{"error": …}` when it failed (what the Gemini writer sends too).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome<'a> {
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// Reads the parts of a conversation, in order: function responses find the call
/// they answer among the calls read before them.
pub(crate) struct Parts<'a> {
    target: &'static str,
    /// Each call so far: its id, its name, whether a response answered it.
    calls: Vec<(Cow<'a, str>, Cow<'a, str>, bool)>,
    /// Calls without an id so far (each gets `call_<n>`).
    unnamed: usize,
}

impl<'a> Parts<'a> {
    pub(crate) fn new(target: &'static str) -> Self {
        Self {
            target,
            calls: Vec::new(),
            unnamed: 0,
        }
    }

    /// `systemInstruction`'s parts: text only.
    pub(crate) fn system(&self, parts: Vec<&'a RawValue>) -> Result<Vec<Cow<'a, str>>, Refusal> {
        let mut out = Vec::with_capacity(parts.len());
        for (j, raw) in parts.into_iter().enumerate() {
            let at = format!("systemInstruction.parts[{j}]");
            let p: InPart<'a> = parse(raw.get(), &at)?;
            match p.text {
                Some(t) if p.inline_data.is_none() && p.file_data.is_none() => out.push(t),
                _ => {
                    return Err(Refusal::malformed(format_args!(
                        "{at}: system instructions are text"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Read the parts of `contents[i]` and append them to `conv` in `role`.
    pub(crate) fn read(
        &mut self,
        conv: &mut Conversation<'a>,
        role: Role,
        parts: Vec<&'a RawValue>,
        i: usize,
        dropped: &mut Vec<Dropped>,
    ) -> Result<(), Refusal> {
        for (j, raw) in parts.into_iter().enumerate() {
            let at = format!("contents[{i}].parts[{j}]");
            let p: InPart<'a> = parse(raw.get(), &at)?;
            if let Some(part) = self.part(p, role, &at, dropped)? {
                push(conv, role, part);
            }
        }
        Ok(())
    }

    /// After the last turn: thinking that carries no signature of the target's
    /// goes no further (Anthropic takes back only its own signed thinking, OpenAI
    /// takes none).
    pub(crate) fn finish(self, conv: &mut Conversation<'a>, dropped: &mut Vec<Dropped>) {
        for m in &mut conv.messages {
            let before = m.parts.len();
            m.parts.retain(|p| {
                !matches!(
                    p,
                    Part::Thinking {
                        signature: None,
                        ..
                    }
                )
            });
            if m.parts.len() != before {
                drop_field(
                    dropped,
                    "thought",
                    "the target takes back only its own signed thinking",
                );
            }
        }
        conv.messages.retain(|m| !m.parts.is_empty());
    }

    fn part(
        &mut self,
        p: InPart<'a>,
        role: Role,
        at: &str,
        dropped: &mut Vec<Dropped>,
    ) -> Result<Option<Part<'a>>, Refusal> {
        let target = self.target;
        let data = [
            p.text.is_some(),
            p.inline_data.is_some(),
            p.file_data.is_some(),
            p.function_call.is_some(),
            p.function_response.is_some(),
            p.executable_code.is_some(),
            p.code_execution_result.is_some(),
        ];
        if data.iter().filter(|d| **d).count() > 1 {
            return Err(Refusal::malformed(format_args!(
                "{at}: a part holds one of text, inlineData, fileData, functionCall, functionResponse"
            )));
        }
        if p.executable_code.is_some() || p.code_execution_result.is_some() {
            return Err(Refusal::unsupported(
                "Gemini's code execution parts (the target cannot run code)",
                target,
            ));
        }
        if p.tool_call.is_some() || p.tool_response.is_some() {
            return Err(Refusal::unsupported(
                "Gemini's own tool calls (toolCall, toolResponse: the target cannot run them)",
                target,
            ));
        }
        if p.video_metadata.is_some() {
            return Err(Refusal::unsupported("video", target));
        }
        if p.media_resolution.is_some() {
            drop_field(dropped, "mediaResolution", "the target has no such setting");
        }
        let thought = p.thought == Some(true);
        if thought || (p.text.is_none() && p.thought_signature.is_some() && !data.contains(&true)) {
            if role != Role::Assistant {
                return Err(Refusal::malformed(format_args!(
                    "{at}: thoughts belong to model turns"
                )));
            }
            return Ok(Some(thought_part(p.text, p.thought_signature, dropped)));
        }
        if p.thought_signature.is_some() {
            drop_field(
                dropped,
                "thoughtSignature",
                "only Gemini reads its own thought signatures",
            );
        }
        if let Some(text) = p.text {
            return Ok((!text.is_empty()).then_some(Part::Text(text)));
        }
        if let Some(blob) = p.inline_data {
            let name = blob.display_name.clone();
            return media_part(inline(blob, at)?, name, role, target).map(Some);
        }
        if let Some(file) = p.file_data {
            let name = file.display_name.clone();
            return media_part(file_media(file, target)?, name, role, target).map(Some);
        }
        if let Some(call) = p.function_call {
            if role != Role::Assistant {
                return Err(Refusal::malformed(format_args!(
                    "{at}: function calls belong to model turns"
                )));
            }
            return self.call(call, at).map(Some);
        }
        if let Some(response) = p.function_response {
            if role != Role::User {
                return Err(Refusal::malformed(format_args!(
                    "{at}: function responses belong to user turns"
                )));
            }
            return self.response(response, at).map(Some);
        }
        Err(Refusal::malformed(format_args!("{at}: the part is empty")))
    }

    fn call(&mut self, call: InCall<'a>, at: &str) -> Result<Part<'a>, Refusal> {
        let id = match call.id.filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => {
                self.unnamed += 1;
                Cow::Owned(format!("call_{}", self.unnamed - 1))
            }
        };
        let arguments = match call.args.filter(|a| a.get() != "null") {
            Some(args) => Cow::Borrowed(object_text(args, format_args!("{at}.functionCall.args"))?),
            None => Cow::Borrowed("{}"),
        };
        self.calls.push((id.clone(), call.name.clone(), false));
        Ok(Part::ToolCall {
            id,
            name: call.name,
            arguments,
        })
    }

    /// A function response answers the call with its id, else (Gemini's ids are
    /// optional, and some clients make up their own) the first unanswered call of
    /// its name.
    fn response(&mut self, r: InResponse<'a>, at: &str) -> Result<Part<'a>, Refusal> {
        if r.will_continue.is_some() || r.scheduling.is_some() {
            return Err(Refusal::unsupported(
                "non-blocking function responses (willContinue, scheduling)",
                self.target,
            ));
        }
        let by_id = r.id.as_deref().and_then(|id| {
            self.calls
                .iter()
                .position(|(c, _, answered)| !answered && c == id)
        });
        let at_call = by_id
            .or_else(|| {
                self.calls
                    .iter()
                    .position(|(_, name, answered)| !answered && *name == r.name)
            })
            .ok_or_else(|| {
                Refusal::malformed(format_args!(
                    "{at}: the function response `{}` answers no function call",
                    r.name
                ))
            })?;
        let call = &mut self.calls[at_call];
        call.2 = true;
        let (text, is_error) = outcome(r.response, at)?;
        let mut content = vec![Part::Text(text)];
        for (k, raw) in r.parts.into_iter().enumerate() {
            let at = format!("{at}.functionResponse.parts[{k}]");
            let p: InPart<'a> = parse(raw.get(), &at)?;
            let media = match (p.inline_data, p.file_data) {
                (Some(blob), None) => inline(blob, &at)?,
                (None, Some(file)) => file_media(file, self.target)?,
                _ => {
                    return Err(Refusal::malformed(format_args!(
                        "{at}: a function response's parts are inlineData or fileData"
                    )));
                }
            };
            content.push(media_part(media, None, Role::User, self.target)?);
        }
        Ok(Part::ToolResult {
            id: call.0.clone(),
            content,
            is_error,
        })
    }
}

/// Append `part`, joining thought text to the unsigned thought before it: clients
/// keep a streamed thought as one part per chunk, its signature on the last.
fn push<'a>(conv: &mut Conversation<'a>, role: Role, part: Part<'a>) {
    if let Some(last) = conv.messages.last_mut().filter(|m| m.role == role)
        && let Some(Part::Thinking {
            text,
            signature: open @ None,
        }) = last.parts.last_mut()
        && let Part::Thinking {
            text: more,
            signature,
        } = &part
    {
        text.to_mut().push_str(more);
        *open = signature.clone();
        return;
    }
    match conv.messages.last_mut() {
        Some(last) if last.role == role => last.parts.push(part),
        _ => conv.messages.push(Message {
            role,
            parts: vec![part],
        }),
    }
}

fn thought_part<'a>(
    text: Option<Cow<'a, str>>,
    signature: Option<Cow<'a, str>>,
    dropped: &mut Vec<Dropped>,
) -> Part<'a> {
    let text = text.unwrap_or_default();
    match signature.as_deref().map(read_signature) {
        None => Part::Thinking {
            text,
            signature: None,
        },
        Some(Signed::Thinking(s)) => Part::Thinking {
            text,
            signature: Some(Cow::Owned(s)),
        },
        Some(Signed::Redacted(data)) => Part::RedactedThinking(Cow::Owned(data)),
        Some(Signed::Foreign) => {
            drop_field(
                dropped,
                "thoughtSignature",
                "only Gemini reads its own thought signatures",
            );
            Part::Thinking {
                text,
                signature: None,
            }
        }
    }
}

/// The text of a function's result, and whether it is an error.
fn outcome<'a>(response: Option<&'a RawValue>, at: &str) -> Result<(Cow<'a, str>, bool), Refusal> {
    let Some(raw) = response else {
        return Ok((Cow::Borrowed(""), false));
    };
    if !raw.get().starts_with('{') {
        return Err(Refusal::malformed(format_args!(
            "{at}.functionResponse.response: must be a JSON object"
        )));
    }
    let (value, is_error) = match serde_json::from_str::<Outcome<'a>>(raw.get()) {
        Ok(Outcome {
            output: Some(v),
            error: None,
        }) => (v, false),
        Ok(Outcome {
            output: None,
            error: Some(v),
        }) => (v, true),
        _ => return Ok((Cow::Borrowed(raw.get()), false)),
    };
    if value.get().starts_with('"') {
        Ok((parse(value.get(), at)?, is_error))
    } else {
        Ok((Cow::Borrowed(value.get()), is_error))
    }
}

/// Inline bytes, with their type.
type Typed<'a> = (Cow<'a, str>, Media<'a>);

fn inline<'a>(blob: Blob<'a>, at: &str) -> Result<Typed<'a>, Refusal> {
    let data = standard_base64(blob.data)
        .ok_or_else(|| Refusal::malformed(format_args!("{at}.inlineData.data: not base64")))?;
    let media = Media::Base64 {
        media_type: blob.mime_type.clone(),
        data,
    };
    Ok((blob.mime_type, media))
}

/// A file by URI: only a public `https` link travels; the Gemini Files API's URIs
/// and Cloud Storage's need Google's credentials.
fn file_media<'a>(file: FileData<'a>, target: &'static str) -> Result<Typed<'a>, Refusal> {
    let google = file
        .file_uri
        .strip_prefix("https://")
        .is_none_or(|rest| rest.starts_with("generativelanguage.googleapis.com/"));
    if google {
        return Err(Refusal::unsupported(
            "file URIs of the Gemini Files API or Cloud Storage (the target cannot read them)",
            target,
        ));
    }
    let mime_type = file
        .mime_type
        .ok_or_else(|| Refusal::unsupported("fileData without a mimeType", target))?;
    Ok((mime_type, Media::Url(file.file_uri)))
}

fn media_part<'a>(
    (media_type, media): Typed<'a>,
    name: Option<Cow<'a, str>>,
    role: Role,
    target: &'static str,
) -> Result<Part<'a>, Refusal> {
    if role != Role::User {
        return Err(Refusal::unsupported(
            "images and files in model turns",
            target,
        ));
    }
    if media_type.starts_with("image/") {
        Ok(Part::Image(media))
    } else if media_type == "application/pdf" {
        Ok(Part::Document { media, name })
    } else {
        Err(Refusal::unsupported(
            format!("inline data and files of type `{media_type}`"),
            target,
        ))
    }
}
