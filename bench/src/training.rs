//! The training load of a profile-guided build of the data plane: every route, in
//! both protocols, whole answers and streams, with refusals among them, from a few
//! concurrent clients. The profile decides which code is laid out as hot, so the load
//! is the product's traffic in general, not the benchmark's one call; each call must
//! get the status it expects, or the run fails and no profile is taken from it.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use super::{Bench, add_provider_key, chat};

/// Concurrent clients.
const WORKERS: usize = 8;
const BOUNDARY: &str = "switchyard-training";

/// One kind of call, and the status it must get.
struct Call {
    name: &'static str,
    get: bool,
    path: &'static str,
    /// Anthropic's headers (`x-api-key`, `anthropic-version`) instead of a bearer token.
    anthropic: bool,
    /// Sent with a key the data plane does not know.
    unknown_key: bool,
    content_type: String,
    body: Vec<u8>,
    expect: u16,
}

impl Call {
    fn post(name: &'static str, path: &'static str, body: &Value) -> Self {
        Self {
            name,
            get: false,
            path,
            anthropic: path.starts_with("/v1/messages"),
            unknown_key: false,
            content_type: "application/json".into(),
            body: serde_json::to_vec(body).unwrap_or_default(),
            expect: 200,
        }
    }
}

fn calls() -> Vec<Call> {
    let responses = |stream| json!({"model": "gpt-4o-mini", "stream": stream, "input": "hello from the training load"});
    let messages = |stream| {
        json!({"model": "claude-sonnet-4", "max_tokens": 64, "stream": stream,
               "messages": [{"role": "user", "content": "hello from the training load"}]})
    };
    let mut upload = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
         Content-Type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    upload.extend(std::iter::repeat_n(7u8, 16 * 1024));
    upload.extend(format!("\r\n--{BOUNDARY}--\r\n").into_bytes());
    // Chat and streams come twice: most of a gateway's traffic (coding tools stream).
    vec![
        Call::post("chat", "/v1/chat/completions", &chat(false)),
        Call::post("chat stream", "/v1/chat/completions", &chat(true)),
        Call::post("chat", "/v1/chat/completions", &chat(false)),
        Call::post("chat stream", "/v1/chat/completions", &chat(true)),
        Call::post("responses", "/v1/responses", &responses(false)),
        Call::post("responses stream", "/v1/responses", &responses(true)),
        Call::post("messages", "/v1/messages", &messages(false)),
        Call::post("messages stream", "/v1/messages", &messages(true)),
        Call::post("messages stream", "/v1/messages", &messages(true)),
        Call::post(
            "count tokens",
            "/v1/messages/count_tokens",
            &json!({"model": "claude-sonnet-4",
                    "messages": [{"role": "user", "content": "one two three"}]}),
        ),
        Call::post(
            "embeddings",
            "/v1/embeddings",
            &json!({"model": "text-embedding-3-small", "input": ["one", "two"]}),
        ),
        Call::post(
            "speech",
            "/v1/audio/speech",
            &json!({"model": "tts-1", "input": "a few words to say", "voice": "alloy"}),
        ),
        Call {
            content_type: format!("multipart/form-data; boundary={BOUNDARY}"),
            body: upload,
            ..Call::post("transcription", "/v1/audio/transcriptions", &json!({}))
        },
        Call {
            get: true,
            body: Vec::new(),
            ..Call::post("models", "/v1/models", &json!({}))
        },
        Call {
            unknown_key: true,
            expect: 401,
            ..Call::post("unknown key", "/v1/chat/completions", &chat(false))
        },
        Call {
            body: b"{\"model\": ".to_vec(),
            expect: 400,
            ..Call::post("malformed body", "/v1/chat/completions", &json!({}))
        },
    ]
}

/// Where the calls go, and with which key.
#[derive(Clone)]
struct Proxy {
    url: String,
    key: String,
}

/// Send `call` and read its answer to the end: the status, 0 when the call failed
/// on the way.
async fn send(http: &reqwest::Client, proxy: &Proxy, call: &Call) -> u16 {
    let key = if call.unknown_key {
        "sy-unknown-training-key"
    } else {
        proxy.key.as_str()
    };
    let url = format!("{}{}", proxy.url, call.path);
    let mut request = if call.get {
        http.get(url)
    } else {
        http.post(url)
            .header("content-type", &call.content_type)
            .body(call.body.clone())
    };
    request = if call.anthropic {
        request
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    } else {
        request.bearer_auth(key)
    };
    match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            if r.bytes().await.is_ok() { status } else { 0 }
        }
        Err(_) => 0,
    }
}

/// Each call once: the first that did not get its status, with the one it got.
async fn first_unexpected(
    http: &reqwest::Client,
    proxy: &Proxy,
    calls: &[Call],
) -> Option<(&'static str, u16)> {
    for call in calls {
        let status = send(http, proxy, call).await;
        if status != call.expect {
            return Some((call.name, status));
        }
    }
    None
}

/// Add an Anthropic provider key beside the OpenAI one, then drive the calls for
/// `length` from [`WORKERS`] clients, and report how many of each got which status.
pub(super) async fn run(
    http: &reqwest::Client,
    bench: &Bench,
    upstream: &str,
    length: Duration,
) -> anyhow::Result<()> {
    let anthropic = json!({"provider": "anthropic", "base_url": upstream,
                           "secret": "sk-bench-0002", "models": ["claude*"]});
    add_provider_key(http, &bench.admin_url, &bench.limited_key, &anthropic).await?;
    let calls = Arc::new(calls());
    let proxy = Proxy {
        url: bench.proxy.clone(),
        key: bench.limited_key.clone(),
    };
    // Until the data plane holds the new key.
    let ready_by = Instant::now() + Duration::from_secs(30);
    while let Some((name, status)) = first_unexpected(http, &proxy, &calls).await {
        if Instant::now() > ready_by {
            bail!("the training call `{name}` got {status} before the load began");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = Instant::now() + length;
    let workers: Vec<_> = (0..WORKERS)
        .map(|first| {
            let (http, calls, proxy) = (http.clone(), calls.clone(), proxy.clone());
            tokio::spawn(async move {
                let mut seen: BTreeMap<(&'static str, u16, u16), u64> = BTreeMap::new();
                let mut i = first;
                while Instant::now() < end {
                    let call = &calls[i % calls.len()];
                    let status = send(&http, &proxy, call).await;
                    *seen.entry((call.name, call.expect, status)).or_default() += 1;
                    i += 1;
                }
                seen
            })
        })
        .collect();
    let mut seen: BTreeMap<(&'static str, u16, u16), u64> = BTreeMap::new();
    for worker in workers {
        for (k, n) in worker.await? {
            *seen.entry(k).or_default() += n;
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "| training call | expected | status | calls |")?;
    writeln!(out, "|---|---|---|---|")?;
    for ((name, expect, status), n) in &seen {
        writeln!(out, "| {name} | {expect} | {status} | {n} |")?;
    }
    let wrong: u64 = seen
        .iter()
        .filter(|((_, expect, status), _)| expect != status)
        .map(|(_, n)| n)
        .sum();
    if wrong > 0 {
        bail!("{wrong} training calls did not get the status they expect");
    }
    Ok(())
}
