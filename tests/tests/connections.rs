//! Connections to the data plane cannot be hoarded, and shutdown loses nothing in
//! flight: slow clients (half a header, a body that stalls or trickles) are closed at
//! their timeouts while other calls are served, the per-client cap refuses the
//! excess at accept, a 401 ends its connection, and a SIGTERM under load answers
//! every call that was sent (later ones find the port closed).

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use switchyard_core::crypto::Keyring;
use switchyard_fake_upstream::FakeUpstream;
use switchyard_tests::system::{
    System, chat, start_system, start_system_opts, wait_for_key, wait_for_key_at,
};
use switchyard_tests::wait::{self, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A system whose owner has a provider key on the fake; the owner's API key.
async fn system_with_owner(data_args: &[&str]) -> (System, FakeUpstream, String) {
    let kek = Keyring::generate_spec("k1").to_string();
    let sys = start_system_opts(1 << 20, &kek, &kek, data_args).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, key) = sys.owner("acme", &fake).await;
    wait_for_key(&sys, &key).await;
    (sys, fake, key)
}

/// A connection to `to` from the loopback address `from` (127.0.0.0/8 is all local).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Everything the server sends until it closes the connection, and how long after
/// `since` it closed; `None` if it was still open at `within`.
async fn until_closed(
    stream: &mut TcpStream,
    since: Instant,
    within: Duration,
) -> Option<(Duration, String)> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some((since.elapsed(), String::from_utf8_lossy(&seen).into_owned()))
}

/// One answer on a kept-alive connection: its head (lowercase) and body.
async fn answer(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while seen.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&seen[head_end..head_end + length]).into_owned();
    Some((head, body))
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n";

/// Served: a kept-alive connection answers `/healthz`.
async fn served(stream: &mut TcpStream) -> bool {
    if stream.write_all(HEALTH).await.is_err() {
        return false;
    }
    tokio::time::timeout(Duration::from_secs(5), answer(stream))
        .await
        .ok()
        .flatten()
        .is_some_and(|(head, _)| head.starts_with("http/1.1 200"))
}

/// Closed at accept: the connection ends with no answer at all.
async fn refused_unanswered(stream: &mut TcpStream) -> bool {
    let _ = stream.write_all(HEALTH).await;
    until_closed(stream, Instant::now(), Duration::from_secs(5))
        .await
        .is_some_and(|(_, sent)| sent.is_empty())
}

async fn scrape(sys: &System, url: &str) -> String {
    sys.http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one series in a Prometheus text page (0 when absent).
fn series(page: &str, name_and_labels: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(6);
/// How late past its timeout a slow connection may close on a busy machine.
const SLACK: Duration = Duration::from_secs(5);
/// Timers fire on whole milliseconds; a close a little early is still the timeout.
const EARLY: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_at_their_timeouts_while_calls_are_served() {
    let (sys, fake, key) = system_with_owner(&[
        "--header-read-timeout-seconds",
        "3",
        "--body-idle-timeout-seconds",
        "3",
        "--body-read-timeout-seconds",
        "6",
    ])
    .await;
    let addr = sys.data.addr("http");
    let chat_head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let upload_head = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n\
         content-type: multipart/form-data; boundary=b0\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let upload_start = "--b0\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
         --b0\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF";
    let upload_chunk = format!("{:x}\r\n{upload_start}\r\n", upload_start.len());

    // Each slow client in its own task, reporting when (and with what) it was closed.
    type Watch = tokio::task::JoinHandle<Option<(Duration, String)>>;
    let within = BODY_READ_TIMEOUT + SLACK * 2;
    let mut half_headers: Vec<Watch> = Vec::new();
    let mut stalled: Vec<Watch> = Vec::new();
    let mut uploads: Vec<Watch> = Vec::new();
    let mut trickling: Vec<Watch> = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let since = Instant::now();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthoriz")
            .await
            .unwrap();
        half_headers.push(tokio::spawn(async move {
            until_closed(&mut s, since, within).await
        }));
    }
    for _ in 0..40 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("{chat_head}6\r\n{{\"mode\r\n").as_bytes())
            .await
            .unwrap();
        let since = Instant::now();
        stalled.push(tokio::spawn(async move {
            until_closed(&mut s, since, within).await
        }));
    }
    // Uploads stream on to the upstream once their model field is read.
    for _ in 0..10 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("{upload_head}{upload_chunk}").as_bytes())
            .await
            .unwrap();
        let since = Instant::now();
        uploads.push(tokio::spawn(async move {
            until_closed(&mut s, since, within).await
        }));
    }
    // A byte of whitespace every 300 ms: never idle, never finished.
    for _ in 0..10 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("{chat_head}1\r\n{{\r\n").as_bytes())
            .await
            .unwrap();
        let since = Instant::now();
        trickling.push(tokio::spawn(async move {
            let (mut read, mut write) = s.split();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let mut tick = tokio::time::interval(Duration::from_millis(300));
            // The end of the trickle: a timer, not a wait on anything.
            let deadline = tokio::time::sleep(within);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = read.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    },
                    _ = tick.tick() => { let _ = write.write_all(b"1\r\n \r\n").await; }
                    () = &mut deadline => return None,
                }
            }
            Some((since.elapsed(), String::from_utf8_lossy(&seen).into_owned()))
        }));
    }
    let slow_opened = Instant::now();

    // Meanwhile, calls are served as usual.
    for i in 0..20 {
        let r = sys
            .http
            .post(sys.proxy("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat(&format!("call {i}"), false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let served_by = slow_opened.elapsed();
    let page = scrape(&sys, &sys.data.url("http")).await;
    let open_meanwhile = series(&page, "switchyard_connections_open");

    let mut earliest = Duration::MAX;
    let mut check = |what: &str, watch: Option<(Duration, String)>, timeout: Duration| {
        let (after, sent) =
            watch.unwrap_or_else(|| panic!("a {what} connection was still open after {within:?}"));
        assert!(
            after + EARLY >= timeout && after <= timeout + SLACK,
            "a {what} connection closed after {after:?}, its timeout is {timeout:?}"
        );
        earliest = earliest.min(after);
        sent
    };
    for w in half_headers {
        let sent = check("half-header", w.await.unwrap(), HEADER_TIMEOUT);
        assert!(!sent.starts_with("HTTP/1.1 2"), "{sent}");
    }
    for w in stalled {
        let sent = check("stalled body", w.await.unwrap(), BODY_IDLE_TIMEOUT);
        assert!(sent.starts_with("HTTP/1.1 400"), "{sent}");
        assert!(sent.to_lowercase().contains("connection: close"), "{sent}");
    }
    for w in uploads {
        let sent = check("stalled upload", w.await.unwrap(), BODY_IDLE_TIMEOUT);
        assert!(sent.starts_with("HTTP/1.1 400"), "{sent}");
    }
    for w in trickling {
        let sent = check("trickling body", w.await.unwrap(), BODY_READ_TIMEOUT);
        assert!(sent.starts_with("HTTP/1.1 400"), "{sent}");
    }
    // The calls above were served while every slow connection was still open.
    assert!(
        served_by < earliest,
        "calls took {served_by:?}; slow clients closed from {earliest:?}"
    );
    assert!(open_meanwhile >= 110.0, "{page}");

    // A stalled upload is the client's failure, not the provider key's: it still serves.
    let r = sys
        .http
        .post(sys.proxy("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat("after", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(fake);

    let page = scrape(&sys, &sys.data.url("http")).await;
    let timeouts = |t: &str| {
        series(
            &page,
            &format!("switchyard_connection_timeouts_total{{timeout=\"{t}\"}}"),
        )
    };
    assert!(timeouts("header") >= 50.0, "{page}");
    assert!(timeouts("body_idle") >= 50.0, "{page}");
    assert!(timeouts("body_read") >= 10.0, "{page}");
    // Every slow connection's place is free again.
    assert!(
        series(&page, "switchyard_connections_open") <= 5.0,
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_client_cap_refuses_the_excess_and_a_401_ends_its_connection() {
    let (sys, _fake, key) = system_with_owner(&[]).await;
    let capped = sys
        .another_data_plane(&["--max-connections-per-client", "10"])
        .await;
    wait_for_key_at(&sys, &capped.url("http"), &key).await;
    let addr = capped.addr("http");

    // Ten connections from one address are served and kept.
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut s = connect_from([127, 0, 0, 2], addr).await;
        assert!(served(&mut s).await);
        held.push(s);
    }
    // The eleventh is closed unanswered; another address is served meanwhile.
    let mut excess = connect_from([127, 0, 0, 2], addr).await;
    assert!(refused_unanswered(&mut excess).await);
    let mut other = connect_from([127, 0, 0, 3], addr).await;
    assert!(served(&mut other).await);
    // Once one of the ten closes, its client may open another.
    drop(held.pop());
    wait::until(PATIENCE, "the freed place to be reused", async || {
        let mut again = connect_from([127, 0, 0, 2], addr).await;
        served(&mut again).await.then_some(())
    })
    .await;
    let page = scrape(&sys, &capped.url("http")).await;
    assert!(
        series(
            &page,
            "switchyard_connections_refused_total{reason=\"max_connections_per_client\"}"
        ) >= 1.0,
        "{page}"
    );

    // A 401 ends its connection, even one kept alive through earlier answers.
    let mut s = TcpStream::connect(sys.data.addr("http")).await.unwrap();
    assert!(served(&mut s).await);
    let bad = "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer nope\r\n\
               content-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    s.write_all(bad.as_bytes()).await.unwrap();
    let (head, body) = answer(&mut s).await.unwrap();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        body.contains("invalid_api_key") || body.contains("error"),
        "{body}"
    );
    let closed = until_closed(&mut s, Instant::now(), Duration::from_secs(5)).await;
    assert!(closed.is_some_and(|(_, more)| more.is_empty()));
    // The same for a listing without any key.
    let mut s = TcpStream::connect(sys.data.addr("http")).await.unwrap();
    s.write_all(b"GET /v1/models HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = answer(&mut s).await.unwrap();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(
        until_closed(&mut s, Instant::now(), Duration::from_secs(5))
            .await
            .is_some()
    );
    // An authenticated answer keeps its connection.
    let mut s = TcpStream::connect(sys.data.addr("http")).await.unwrap();
    let good = format!("GET /v1/models HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n\r\n");
    s.write_all(good.as_bytes()).await.unwrap();
    let (head, _) = answer(&mut s).await.unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert!(served(&mut s).await);
}

/// How one call ended.
enum Outcome {
    /// Status and a whole body.
    Answered,
    /// The port was closed: nothing was sent.
    Refused,
    /// Anything else: sent, and not wholly answered.
    Cut(String),
}

async fn one_call(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    n: usize,
    stream: bool,
    started: &AtomicUsize,
) -> Outcome {
    let sent = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat(&format!("call {n}"), stream))
        .send()
        .await;
    let r = match sent {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Outcome::Refused,
        Err(e) => return Outcome::Cut(format!("{e:?}")),
    };
    if r.status() != 200 {
        return Outcome::Cut(format!("status {}", r.status()));
    }
    let mut body = Vec::new();
    let mut chunks = r.bytes_stream();
    let mut first = true;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(c) => body.extend_from_slice(&c),
            Err(e) => return Outcome::Cut(format!("body: {e:?}")),
        }
        if first && stream {
            first = false;
            started.fetch_add(1, Ordering::Relaxed);
        }
    }
    let text = String::from_utf8_lossy(&body);
    let whole = if stream {
        text.contains("data: [DONE]")
    } else {
        serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v["choices"].is_array())
    };
    if whole {
        Outcome::Answered
    } else {
        Outcome::Cut(format!("incomplete answer: {text}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_call_that_was_sent() {
    let sys = start_system(1 << 20).await;
    let fake = FakeUpstream::start(None).await.unwrap();
    let (_, key) = sys.owner("acme", &fake).await;
    wait_for_key(&sys, &key).await;

    for round in 0..2 {
        let mut dp = sys.another_data_plane(&[]).await;
        let url = dp.url("http");
        wait_for_key_at(&sys, &url, &key).await;
        let addr = dp.addr("http");
        fake.hold_streams();

        let answered = Arc::new(AtomicUsize::new(0));
        let streams_started = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        // Eight held streams and eight callers back to back, each on a connection of its own.
        for w in 0..16 {
            let (url, key) = (url.clone(), key.clone());
            let (answered, started) = (answered.clone(), streams_started.clone());
            workers.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let stream = w < 8;
                let mut refused = false;
                let mut cut = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(90);
                for n in 0.. {
                    match one_call(&http, &url, &key, n, stream, &started).await {
                        Outcome::Answered => answered.fetch_add(1, Ordering::Relaxed),
                        Outcome::Refused => {
                            refused = true;
                            break;
                        }
                        Outcome::Cut(why) => {
                            cut.push(why);
                            break;
                        }
                    };
                    if Instant::now() > deadline {
                        break;
                    }
                }
                (refused, cut)
            }));
        }
        // Under way: every stream holds, and calls have been answered.
        wait::until(
            Duration::from_secs(30),
            "the load to get going",
            async || {
                (streams_started.load(Ordering::Relaxed) >= 8
                    && answered.load(Ordering::Relaxed) >= 100)
                    .then_some(())
            },
        )
        .await;
        let before = answered.load(Ordering::Relaxed);
        let exited = tokio::task::spawn_blocking(move || {
            let status = dp.terminate(Duration::from_secs(60));
            (status, dp)
        });
        // Once the port is closed, the held streams may go on to their end.
        wait::until(
            Duration::from_secs(20),
            "the listener to close",
            async || TcpStream::connect(addr).await.is_err().then_some(()),
        )
        .await;
        fake.release_streams();

        let mut cuts = Vec::new();
        for w in workers {
            let (refused, cut) = w.await.unwrap();
            cuts.extend(cut);
            assert!(refused || !cuts.is_empty(), "a worker was never refused");
        }
        let (status, dp) = exited.await.unwrap();
        assert!(
            cuts.is_empty(),
            "round {round}: calls cut: {cuts:#?}\n{}",
            dp.log_tail()
        );
        assert!(status.unwrap().success(), "{}", dp.log_tail());
        // The held streams, and calls after the signal, were answered.
        assert!(answered.load(Ordering::Relaxed) >= before + 8);
    }
}
