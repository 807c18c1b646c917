//! The serving threads over real sockets: connections spread over the threads, each
//! call sees its client's address, and shutdown lets a call in flight finish while
//! refusing new connections.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use switchyard_data_plane::serve::{ConnectionBounds, Draining, serve};
use switchyard_runtime::ShutdownTrigger;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which thread served the call, and whom it saw calling.
fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                let thread = std::thread::current().name().unwrap_or("").to_owned();
                format!("{thread} {peer}")
            }),
        )
        .route(
            "/denied",
            get(|| async { (http::StatusCode::UNAUTHORIZED, "who are you") }),
        )
        .route(
            "/slow",
            get(|| async {
                // A call still in flight when shutdown begins.
                tokio::time::sleep(Duration::from_millis(300)).await;
                "finished"
            }),
        )
}

/// One call on an open connection; the server closes it after answering.
async fn call(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

type Server = tokio::task::JoinHandle<std::io::Result<Draining>>;

/// Two serving threads on a free loopback port.
async fn start() -> (SocketAddr, ShutdownTrigger, Server) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = switchyard_runtime::shutdown_pair();
    (
        addr,
        trigger,
        tokio::spawn(serve(
            listener,
            router(),
            2,
            ConnectionBounds::default(),
            shutdown,
        )),
    )
}

/// What is left once the server stopped taking connections (after its trigger).
async fn stopped(server: Server) -> Draining {
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn connections_spread_over_the_threads_and_each_call_knows_its_client() {
    let (addr, trigger, server) = start().await;

    // All four are open before any call, so the acceptor sees two on each thread.
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(TcpStream::connect(addr).await.unwrap());
        // Paced: the acceptor takes each before the next, nothing outside shows it.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut threads = BTreeSet::new();
    for stream in &mut streams {
        let local = stream.local_addr().unwrap();
        let body = call(stream, "/").await;
        let (thread, peer) = body.split_once(' ').unwrap();
        assert_eq!(peer, local.to_string());
        threads.insert(thread.to_owned());
    }
    assert_eq!(
        threads,
        BTreeSet::from(["serve-0".to_owned(), "serve-1".to_owned()])
    );

    trigger.trigger();
    let draining = stopped(server).await;
    draining.stop().await;
}

#[tokio::test]
async fn shutdown_lets_a_call_in_flight_finish_and_refuses_new_connections() {
    let (addr, trigger, server) = start().await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let in_flight = tokio::spawn(async move { call(&mut stream, "/slow").await });
    // The call reaches its handler (which takes 300 ms) before shutdown; nothing
    // outside shows that moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    trigger.trigger();

    assert_eq!(in_flight.await.unwrap(), "finished");
    let draining = stopped(server).await;
    assert!(TcpStream::connect(addr).await.is_err());
    draining.stop().await;
}

#[tokio::test]
async fn http2_is_served_and_a_401_on_it_is_answered_before_the_connection_goes() {
    switchyard_data_plane::install_tls_provider();
    let (addr, trigger, server) = start().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = client.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    // GOAWAY follows the answer; the answer itself arrives whole.
    let r = client
        .get(format!("http://{addr}/denied"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("connection").is_none());
    assert_eq!(r.text().await.unwrap(), "who are you");
    // A later call finds a connection of its own.
    let r = client.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    trigger.trigger();
    stopped(server).await.stop().await;
}
