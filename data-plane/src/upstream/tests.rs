//! The attempt's URLs, headers and the network guard, against local listeners.

use super::*;
use switchyard_core::crypto::Sealed;
use switchyard_core::ids::AccountId;
use switchyard_core::snapshot::{ProviderKind, Status};

fn key(base_url: &str) -> ProviderKey {
    ProviderKey {
        id: ProviderKeyId::new(),
        owner: AccountId::new(),
        kind: ProviderKind::OpenAi,
        passthrough: false,
        base_url: base_url.into(),
        secret: Sealed {
            key_id: "k".into(),
            blob: Vec::new(),
        },
        level: 0,
        models: Vec::new(),
        weight: 1,
        status: Status::Active,
        discovered_models: Vec::new(),
    }
}

#[test]
fn urls_are_parsed_once_per_key_and_again_when_the_base_changes() {
    let urls = UpstreamUrls::default();
    let mut k = key("https://api.example.com/v1");
    let chat = urls.get(&k, Endpoint::ChatCompletions).unwrap();
    assert_eq!(chat, "https://api.example.com/v1/chat/completions");
    let messages = urls.get(&k, Endpoint::Messages).unwrap();
    assert_eq!(messages, "https://api.example.com/v1/messages");
    assert_eq!(urls.0.load().len(), 2);
    assert_eq!(urls.get(&k, Endpoint::ChatCompletions), Some(chat));
    assert_eq!(urls.0.load().len(), 2, "a hit adds nothing");

    k.base_url = "http://127.0.0.1:9000/openai/v1".into();
    let moved = urls.get(&k, Endpoint::ChatCompletions).unwrap();
    assert_eq!(moved, "http://127.0.0.1:9000/openai/v1/chat/completions");

    k.base_url = "https://bücher.example/v1".into();
    let idna = urls.get(&k, Endpoint::Embeddings).unwrap();
    assert_eq!(idna, "https://xn--bcher-kva.example/v1/embeddings");

    for bad in [
        "not a url",
        "ftp://files.example.com/v1",
        "/v1",
        "http://exa mple.com/v1",
    ] {
        k.base_url = bad.into();
        assert_eq!(urls.get(&k, Endpoint::ChatCompletions), None, "{bad}");
    }
}

/// Host names of the tests' own choosing, never the system's.
struct Table(Vec<(&'static str, Vec<IpAddr>)>);

impl Resolve for Table {
    fn resolve(&self, host: &str) -> Resolving {
        let found = self.0.iter().find(|(name, _)| *name == host);
        let answer = found
            .map(|(_, ips)| ips.clone())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such test host"));
        Box::pin(std::future::ready(answer))
    }
}

fn ips(texts: &[&str]) -> Vec<IpAddr> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

/// A plain TCP service that keeps what each connection sent and answers 200.
struct Recorder {
    port: u16,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(listener: tokio::net::TcpListener) -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // Until the head and its two-byte body are in, or the peer leaves.
                while !String::from_utf8_lossy(&got).contains("\r\n\r\n{}") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&got).into_owned());
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
            }
        });
        Self { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

const SECRET: &str = "sk-tenant-secret-0123456789";

fn sealed_key(keyring: &Keyring, base_url: &str) -> ProviderKey {
    let mut k = key(base_url);
    k.secret = keyring.seal(SECRET.as_bytes(), k.id.0.as_bytes()).unwrap();
    k
}

async fn attempt(upstream: &Upstream, keyring: &Keyring, key: &ProviderKey) -> Sent {
    send(
        upstream,
        keyring,
        key,
        Endpoint::ChatCompletions,
        &mut UpstreamBody::Whole(Bytes::from_static(b"{}")),
        &ClientParts {
            headers: &HeaderMap::new(),
            query: None,
            owner_headers: &[],
            user_agent: user_agent(&HeaderMap::new()),
        },
        None,
        Instant::now() + Duration::from_secs(5),
    )
    .await
}

/// The attempt's failure detail; panics on any other outcome.
fn refusal(sent: Sent) -> String {
    match sent {
        Sent::KeyFailed(f) => {
            assert_eq!(f.failure, Failure::Unreachable);
            f.detail
        }
        Sent::Answer(r) => panic!("answered {}", r.status()),
        Sent::NotReplayable => panic!("not replayable"),
        Sent::Unusable(why) => panic!("unusable: {why}"),
    }
}

fn answered(sent: Sent) -> u16 {
    match sent {
        Sent::Answer(r) => r.status().as_u16(),
        Sent::KeyFailed(f) => panic!("failed: {}", f.detail),
        Sent::NotReplayable => panic!("not replayable"),
        Sent::Unusable(why) => panic!("unusable: {why}"),
    }
}

fn upstream(networks: UpstreamNetworks, table: Table) -> Upstream {
    Upstream::with_resolver(Duration::from_secs(2), 1, networks, Arc::new(table)).unwrap()
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_before_connecting_unless_allowed() {
    let keyring = Keyring::parse(&Keyring::generate_spec("k1")).unwrap();
    let service = Recorder::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let port = service.port;
    let table = || Table(vec![("some-host.test", ips(&["127.0.0.1"]))]);

    let strict = upstream(UpstreamNetworks::default(), table());
    let by_name = sealed_key(&keyring, &format!("http://some-host.test:{port}/v1"));
    let detail = refusal(attempt(&strict, &keyring, &by_name).await);
    assert_eq!(
        detail,
        "the upstream address is not allowed: 127.0.0.1 is loopback; the operator has not allowed this network for upstreams"
    );
    // Literal addresses are held to the same rule, embeddings by what they carry.
    for (host, says) in [
        ("127.0.0.1", "127.0.0.1 is loopback"),
        (
            "[::ffff:127.0.0.1]",
            "::ffff:127.0.0.1 carries 127.0.0.1, loopback",
        ),
        ("[::1]", "::1 is loopback"),
    ] {
        let literal = sealed_key(&keyring, &format!("http://{host}:{port}/v1"));
        let detail = refusal(attempt(&strict, &keyring, &literal).await);
        assert!(detail.contains(says), "{host}: {detail}");
    }
    let unknown = sealed_key(&keyring, &format!("http://other-host.test:{port}/v1"));
    let detail = refusal(attempt(&strict, &keyring, &unknown).await);
    assert_eq!(detail, "the upstream could not be reached");

    // Allowed, the same key goes through: the first connection the service sees.
    let allowed = upstream(UpstreamNetworks::new(true, Vec::new()), table());
    assert_eq!(answered(attempt(&allowed, &keyring, &by_name).await), 200);
    let seen = service.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains(&format!("Bearer {SECRET}")), "{}", seen[0]);
    assert!(
        seen[0].starts_with("POST /v1/chat/completions"),
        "{}",
        seen[0]
    );
}

#[tokio::test]
async fn a_name_with_allowed_and_forbidden_answers_connects_to_the_allowed_only() {
    let keyring = Keyring::parse(&Keyring::generate_spec("k1")).unwrap();
    // The same port on two loopback addresses, only one of them allowed.
    let (allowed, forbidden) = loop {
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        if let Ok(second) = tokio::net::TcpListener::bind(("127.0.0.2", port)).await {
            break (Recorder::start(first), Recorder::start(second));
        }
    };
    let port = allowed.port;
    let networks = UpstreamNetworks::new(false, vec!["127.0.0.1/32".parse().unwrap()]);
    let guarded = upstream(
        networks,
        Table(vec![
            ("mixed.test", ips(&["127.0.0.2", "127.0.0.1"])),
            ("private.test", ips(&["127.0.0.2"])),
        ]),
    );

    let only = sealed_key(&keyring, &format!("http://private.test:{port}/v1"));
    let detail = refusal(attempt(&guarded, &keyring, &only).await);
    assert!(detail.contains("127.0.0.2 is loopback"), "{detail}");

    let mixed = sealed_key(&keyring, &format!("http://mixed.test:{port}/v1"));
    assert_eq!(answered(attempt(&guarded, &keyring, &mixed).await), 200);
    assert_eq!(allowed.seen().len(), 1);
    assert_eq!(forbidden.seen(), Vec::<String>::new());
}

fn parts<'a>(headers: &'a HeaderMap, owner_headers: &'a [String]) -> ClientParts<'a> {
    ClientParts {
        headers,
        query: None,
        owner_headers,
        user_agent: user_agent(headers),
    }
}

fn sent<'a>(client: &'a ClientParts<'a>, exporting: bool) -> Vec<(&'a str, &'a str)> {
    forwarded(client, exporting)
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect()
}

#[test]
fn without_export_the_clients_context_goes_upstream_unchanged() {
    let mut client = HeaderMap::new();
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    client.insert("traceparent", HeaderValue::from_static(parent));
    client.insert("tracestate", HeaderValue::from_static("vendor=1"));
    client.insert("cookie", HeaderValue::from_static("a=b"));
    assert_eq!(
        sent(&parts(&client, &[]), false),
        vec![("traceparent", parent), ("tracestate", "vendor=1")]
    );
    assert_eq!(sent(&parts(&HeaderMap::new(), &[]), false), vec![]);
    // Exporting, the attempt's own context replaces the client's.
    assert_eq!(sent(&parts(&client, &[]), true), vec![]);
}

#[test]
fn the_allow_list_and_the_owners_names_go_credentials_and_hops_stay() {
    let mut client = HeaderMap::new();
    for (name, value) in [
        ("anthropic-beta", "tools-2024-05-16"),
        ("x-stainless-os", "Linux"),
        ("x-my-header", "mine"),
        ("x-other", "not listed"),
        ("authorization", "Bearer sy-client"),
        ("x-api-key", "sy-client"),
        ("cookie", "a=b"),
        ("connection", "keep-alive"),
        ("user-agent", "curl/8.5.0"),
    ] {
        client.append(name, HeaderValue::from_static(value));
    }
    client.append("x-stainless-os", HeaderValue::from_static("again"));
    let owner = vec!["x-my-header".to_owned(), "cookie".to_owned()];
    assert_eq!(
        sent(&parts(&client, &owner), true),
        vec![
            ("anthropic-beta", "tools-2024-05-16"),
            ("x-stainless-os", "Linux"),
            ("x-stainless-os", "again"),
            ("x-my-header", "mine"),
        ]
    );
    let ua = parts(&client, &owner).user_agent;
    assert_eq!(ua, format!("curl/8.5.0 {}", forward::PRODUCT).as_str());
    assert_eq!(user_agent(&HeaderMap::new()), forward::PRODUCT);
}

#[test]
fn queries_join_the_upstream_uri() {
    let uri: Uri = "https://api.example.com/v1/messages".parse().unwrap();
    assert_eq!(with_query(uri.clone(), None), uri);
    assert_eq!(
        with_query(uri, Some("beta=true")),
        "https://api.example.com/v1/messages?beta=true"
    );
    let own: Uri = "http://127.0.0.1:9/v1/chat?api-version=1".parse().unwrap();
    assert_eq!(
        with_query(own, Some("a=%20b")),
        "http://127.0.0.1:9/v1/chat?api-version=1&a=%20b"
    );
}
