//! Serving threads. Each runs a single-threaded runtime of its own, so the tasks of
//! one call (the client's connection, the pooled upstream connection, the relay) live
//! on one thread and wake one another without crossing cores: on a shared runtime
//! every call paid several cross-thread wake-ups, which cost more than the proxying.
//! One acceptor hands each new connection to the thread with the fewest open; the
//! caller's runtime keeps the background work (snapshot stream, usage delivery).
//!
//! Connections are bounded ([`ConnectionBounds`]): a cap on open connections, in all
//! and per client address, checked at accept (over it, the connection is closed
//! unanswered); a deadline for a request's headers (also the longest a connection
//! may sit idle between requests); and, for a request body, a longest silence and a
//! longest time to receive it whole. A 401 ends its connection.
//!
//! On shutdown the acceptor takes what already waits in the listen backlog, then
//! closes the listener. Every connection answers what it has received: HTTP/1
//! answers carry `Connection: close` from then on, and a connection with nothing in
//! flight closes once it has been quiet for [`SHUTDOWN_QUIET`] (a request already on
//! its way is still read and answered); HTTP/2 connections get GOAWAY at once, whose
//! streams already begun finish.

use std::cell::Cell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, Version, header};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use switchyard_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

use crate::metric;

thread_local! {
    static THREAD_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The serving thread running the caller: 0 outside them.
pub(crate) fn thread_index() -> usize {
    THREAD_INDEX.with(Cell::get)
}

/// Serving threads when none is asked for: one per CPU this process may use.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// After shutdown begins, how long a connection with nothing in flight stays open
/// for a request its client may already have sent.
pub const SHUTDOWN_QUIET: Duration = Duration::from_secs(1);
/// Streams one HTTP/2 connection may run at once.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// HTTP/2 pings, so a peer that vanished is noticed even with streams open.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Bounds on the connections clients hold.
#[derive(Clone, Debug)]
pub struct ConnectionBounds {
    /// Connections open at once; beyond, new ones are closed at accept.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 one by its /64).
    pub max_connections_per_client: usize,
    /// Peers the per-client cap does not apply to: proxies in front of the router,
    /// which carry many clients' connections.
    pub shared_peers: Vec<ipnet::IpNet>,
    /// Longest wait for a request's headers, from the connection's opening or the
    /// previous answer: also the longest an idle connection stays open.
    pub header_read_timeout: Duration,
    /// Longest silence while a request body is received.
    pub body_idle_timeout: Duration,
    /// Longest time to receive a request body whole, from its headers.
    pub body_read_timeout: Duration,
}

impl Default for ConnectionBounds {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_client: 256,
            shared_peers: Vec::new(),
            header_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(300),
        }
    }
}

type Handoff = (std::net::TcpStream, SocketAddr, Permit);

struct Thread {
    handoff: mpsc::UnboundedSender<Handoff>,
    /// Connections the thread serves now.
    open: Arc<AtomicUsize>,
    /// Fires when the thread has no connection left after shutdown.
    idle: oneshot::Receiver<()>,
    join: std::thread::JoinHandle<()>,
}

/// Serving threads that have stopped taking connections and still run what their
/// calls left behind (a stream draining for its usage after its client left).
pub struct Draining {
    release: watch::Sender<bool>,
    joins: Vec<std::thread::JoinHandle<()>>,
}

impl Draining {
    /// End the threads' runtimes (cancelling what is still running) and join them.
    pub async fn stop(self) {
        let _ = self.release.send(true);
        let joins = self.joins;
        let _ = tokio::task::spawn_blocking(move || {
            for join in joins {
                let _ = join.join();
            }
        })
        .await;
    }
}

/// What every connection of a serving thread shares.
struct Serving {
    router: Router,
    builder: Builder<TokioExecutor>,
    bounds: ConnectionBounds,
}

/// Serve `router` on `threads` serving threads until `shutdown`, then let open
/// connections finish (streams included). Returns once none is left.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    threads: usize,
    bounds: ConnectionBounds,
    shutdown: Shutdown,
) -> std::io::Result<Draining> {
    let (release, released) = watch::channel(false);
    let gate = Arc::new(Gate::new(&bounds));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    let serving = Arc::new(Serving {
        router,
        builder,
        bounds,
    });
    let mut pool = Vec::new();
    for index in 0..threads.max(1) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (handoff, incoming) = mpsc::unbounded_channel();
        let (idle_tx, idle) = oneshot::channel();
        let open = Arc::new(AtomicUsize::new(0));
        let work = serve_thread(incoming, serving.clone(), shutdown.clone(), open.clone());
        let mut released = released.clone();
        let join = std::thread::Builder::new()
            .name(format!("serve-{index}"))
            .spawn(move || {
                THREAD_INDEX.with(|i| i.set(index));
                runtime.block_on(async move {
                    work.await;
                    let _ = idle_tx.send(());
                    let _ = released.wait_for(|r| *r).await;
                });
            })?;
        pool.push(Thread {
            handoff,
            open,
            idle,
            join,
        });
    }
    drop(serving);
    let mut acceptor = Acceptor {
        pool: &pool,
        gate: &gate,
        turn: 0,
    };
    acceptor.accept(&listener, shutdown).await;
    acceptor.take_backlog(listener);
    let mut joins = Vec::with_capacity(pool.len());
    for thread in pool {
        drop(thread.handoff);
        let _ = thread.idle.await;
        joins.push(thread.join);
    }
    Ok(Draining { release, joins })
}

struct Acceptor<'a> {
    pool: &'a [Thread],
    gate: &'a Arc<Gate>,
    turn: usize,
}

impl Acceptor<'_> {
    /// Take connections until shutdown.
    async fn accept(&mut self, listener: &TcpListener, shutdown: Shutdown) {
        let mut stop = std::pin::pin!(shutdown.wait());
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = &mut stop => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) if connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory: wait rather than spin.
                    tracing::error!(error = %e, "accepting connections failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Ok(stream) = stream.into_std() {
                self.hand_off(stream, peer);
            }
        }
    }

    /// Serve the connections the kernel already completed for clients (they sent
    /// their request believing it received), then close the listener: later
    /// clients are refused rather than reset.
    fn take_backlog(&mut self, listener: TcpListener) {
        let Ok(listener) = listener.into_std() else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.hand_off(stream, peer);
                    }
                }
                Err(e) if connection_error(&e) => {}
                Err(_) => return,
            }
        }
    }

    /// Admit the connection under the caps and give it to the thread with the fewest
    /// open (the next in turn among equals); over a cap, close it unanswered.
    fn hand_off(&mut self, stream: std::net::TcpStream, peer: SocketAddr) {
        let permit = match self.gate.admit(peer.ip()) {
            Ok(p) => p,
            Err(refusal) => {
                metrics::counter!(metric::CONNECTIONS_REFUSED, "reason" => refusal.as_str())
                    .increment(1);
                return;
            }
        };
        self.turn = self.turn.wrapping_add(1);
        let open: Vec<usize> = self
            .pool
            .iter()
            .map(|t| t.open.load(Ordering::Relaxed))
            .collect();
        let Some(thread) = least_loaded(&open, self.turn).and_then(|i| self.pool.get(i)) else {
            return;
        };
        thread.open.fetch_add(1, Ordering::Relaxed);
        if thread.handoff.send((stream, peer, permit)).is_err() {
            thread.open.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("a serving thread is gone; connection dropped");
        }
    }
}

/// The index of the smallest of `open`; among equals, the first from `turn` on.
fn least_loaded(open: &[usize], turn: usize) -> Option<usize> {
    let n = open.len();
    (0..n)
        .map(|i| (turn + i) % n)
        .min_by_key(|&i| open.get(i).copied().unwrap_or(usize::MAX))
}

/// Errors of one connection, not of the listener.
fn connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Why a connection was closed at accept (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    MaxConnections,
    MaxConnectionsPerClient,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxConnectionsPerClient => "max_connections_per_client",
        }
    }
}

/// Whether one more connection fits, given those open in all and from its client
/// (`None`: the client is not capped).
fn refusal(
    open: usize,
    open_from_client: Option<usize>,
    max: usize,
    max_per_client: usize,
) -> Option<Refusal> {
    if open >= max {
        Some(Refusal::MaxConnections)
    } else if open_from_client.is_some_and(|n| n >= max_per_client) {
        Some(Refusal::MaxConnectionsPerClient)
    } else {
        None
    }
}

/// What a client's connections are counted under: its address, an IPv6 one by its
/// /64 (what one subscriber is given), an IPv4-mapped one as IPv4.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// The connection caps, checked by the acceptor, released by the serving threads.
struct Gate {
    max: usize,
    max_per_client: usize,
    shared_peers: Vec<ipnet::IpNet>,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    open_gauge: metrics::Gauge,
}

impl Gate {
    fn new(bounds: &ConnectionBounds) -> Self {
        Self {
            max: bounds.max_connections,
            max_per_client: bounds.max_connections_per_client,
            shared_peers: bounds.shared_peers.clone(),
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            open_gauge: metrics::gauge!(metric::CONNECTIONS_OPEN),
        }
    }

    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refusal> {
        let client =
            (!self.shared_peers.iter().any(|n| n.contains(&peer))).then(|| client_key(peer));
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let from_client = client.map(|c| per_client.get(&c).copied().unwrap_or(0));
        if let Some(refused) = refusal(
            self.open.load(Ordering::Relaxed),
            from_client,
            self.max,
            self.max_per_client,
        ) {
            return Err(refused);
        }
        if let Some(c) = client {
            *per_client.entry(c).or_insert(0) += 1;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        self.open_gauge.increment(1.0);
        Ok(Permit {
            gate: self.clone(),
            client,
        })
    }
}

/// One admitted connection; dropped when it ends.
struct Permit {
    gate: Arc<Gate>,
    client: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(c) = self.client {
            let mut per_client = self
                .gate
                .per_client
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = per_client.get_mut(&c) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_client.remove(&c);
                }
            }
        }
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
        self.gate.open_gauge.decrement(1.0);
    }
}

/// One serving thread: serve what the acceptor hands over until it stops, then wait
/// for the open connections to finish.
async fn serve_thread(
    mut incoming: mpsc::UnboundedReceiver<Handoff>,
    serving: Arc<Serving>,
    shutdown: Shutdown,
    open: Arc<AtomicUsize>,
) {
    let (closed_tx, closed_rx) = watch::channel(());
    while let Some((stream, peer, permit)) = incoming.recv().await {
        tokio::spawn(serve_connection(
            stream,
            peer,
            permit,
            serving.clone(),
            shutdown.clone(),
            open.clone(),
            closed_rx.clone(),
        ));
    }
    drop(serving);
    drop(closed_rx);
    closed_tx.closed().await;
}

/// What one connection's requests tell its serving loop.
struct ConnState {
    /// When the connection was accepted: the origin of the times below.
    accepted: Instant,
    /// Requests begun whose answer is not yet wholly sent.
    in_flight: AtomicUsize,
    /// Milliseconds from `accepted` to the end of the last answer (0: none yet).
    last_end_ms: AtomicU64,
    any_request: AtomicBool,
    h2: AtomicBool,
    /// Shutdown began: HTTP/1 answers say the connection closes.
    closing: AtomicBool,
    /// End the connection once its answers are sent (a 401, a body timed out).
    close: AtomicBool,
    wake: Notify,
}

impl ConnState {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            any_request: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            close: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        // No wake-up: a deadline the serving loop set before is checked again when
        // it comes, against the facts of then.
        self.any_request.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn request_close(&self) {
        self.close.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn facts(&self, stopping: Option<Instant>) -> ConnFacts {
        let last_end_ms = self.last_end_ms.load(Ordering::Relaxed);
        ConnFacts {
            accepted: self.accepted,
            any_request: self.any_request.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            last_end: self.accepted + Duration::from_millis(last_end_ms),
            stopping,
            h2: self.h2.load(Ordering::Relaxed),
            close: self.close.load(Ordering::Relaxed),
        }
    }
}

/// A request being answered; its end is when the answer's body is dropped.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.0;
        let elapsed = state.accepted.elapsed().as_millis();
        state.last_end_ms.store(
            u64::try_from(elapsed).unwrap_or(u64::MAX).max(1),
            Ordering::Relaxed,
        );
        if state.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            state.wake.notify_one();
        }
    }
}

/// What a connection's serving loop decides from.
#[derive(Clone, Copy, Debug)]
struct ConnFacts {
    accepted: Instant,
    any_request: bool,
    in_flight: usize,
    last_end: Instant,
    stopping: Option<Instant>,
    h2: bool,
    close: bool,
}

/// What a connection's serving loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Shut down gracefully now: answers in flight are finished.
    Graceful,
    /// Wait for news, or until this instant, then do this.
    Until(Instant, Due),
    /// Wait for news only.
    Wait,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// No request came in time (or an idle connection did not end after graceful
    /// shutdown): drop the connection.
    Drop,
    /// Idle or quiet long enough: shut down gracefully.
    Graceful,
}

/// The serving loop's next step, before graceful shutdown began.
fn next_step(f: ConnFacts, header_read_timeout: Duration, quiet: Duration) -> Step {
    if f.close || (f.stopping.is_some() && f.h2) {
        return Step::Graceful;
    }
    if f.in_flight > 0 {
        return Step::Wait;
    }
    let quiet_until = f.stopping.map(|at| at.max(f.last_end) + quiet);
    if !f.any_request {
        let first = f.accepted + header_read_timeout;
        return match quiet_until {
            Some(q) if q < first => Step::Until(q, Due::Graceful),
            _ => Step::Until(first, Due::Drop),
        };
    }
    let idle_until = f.last_end + header_read_timeout;
    Step::Until(
        quiet_until.map_or(idle_until, |q| q.min(idle_until)),
        Due::Graceful,
    )
}

async fn serve_connection(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: Permit,
    serving: Arc<Serving>,
    shutdown: Shutdown,
    open: Arc<AtomicUsize>,
    _closed: watch::Receiver<()>,
) {
    if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::new());
        let service = ConnService {
            router: serving.router.clone(),
            peer,
            state: state.clone(),
            body_idle_timeout: serving.bounds.body_idle_timeout,
            body_read_timeout: serving.bounds.body_read_timeout,
        };
        let header_read_timeout = serving.bounds.header_read_timeout;
        let connection = serving
            .builder
            .serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        let mut stop = std::pin::pin!(shutdown.wait());
        let mut stopping: Option<Instant> = None;
        // When graceful shutdown began.
        let mut graceful_since: Option<Instant> = None;
        loop {
            let step = match graceful_since {
                // Its answers in flight finish; an idle one left open is dropped.
                Some(since) => match state.in_flight.load(Ordering::Relaxed) {
                    0 => Step::Until(since + header_read_timeout, Due::Drop),
                    _ => Step::Wait,
                },
                None => next_step(state.facts(stopping), header_read_timeout, SHUTDOWN_QUIET),
            };
            let at = match step {
                Step::Graceful => {
                    connection.as_mut().graceful_shutdown();
                    graceful_since = Some(Instant::now());
                    continue;
                }
                // Checked against the facts of now, not those of when the timer was set.
                Step::Until(at, due) if at <= Instant::now() => match due {
                    Due::Drop => {
                        if graceful_since.is_none() {
                            metrics::counter!(metric::CONNECTION_TIMEOUTS, "timeout" => "header")
                                .increment(1);
                        }
                        break;
                    }
                    Due::Graceful => {
                        connection.as_mut().graceful_shutdown();
                        graceful_since = Some(Instant::now());
                        continue;
                    }
                },
                Step::Until(at, _) => Some(at),
                Step::Wait => None,
            };
            let sleep = async {
                match at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                            metrics::counter!(metric::CONNECTION_TIMEOUTS, "timeout" => "header")
                                .increment(1);
                        }
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    break;
                }
                () = &mut stop, if stopping.is_none() => {
                    stopping = Some(Instant::now());
                    state.closing.store(true, Ordering::Relaxed);
                }
                () = state.wake.notified() => {}
                () = sleep => {}
            }
        }
    }
    drop(permit);
    open.fetch_sub(1, Ordering::Relaxed);
}

/// Serves one connection's requests through the router: gives each its client's
/// address, bounds its body in time, and marks the connection to close when an
/// answer says so.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    state: Arc<ConnState>,
    body_idle_timeout: Duration,
    body_read_timeout: Duration,
}

type Answer = http::Response<Answered>;

impl hyper::service::Service<http::Request<Incoming>> for ConnService {
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let in_flight = self.state.begin();
        let http1 = request.version() < Version::HTTP_2;
        if !http1 {
            self.state.h2.store(true, Ordering::Relaxed);
        }
        let (parts, body) = request.into_parts();
        let now = Instant::now();
        let body = TimedBody {
            inner: body,
            idle: self.body_idle_timeout,
            read_by: now + self.body_read_timeout,
            quiet_since: now,
            progressed: false,
            timer: None,
            failed: None,
            state: self.state.clone(),
        };
        let mut request = http::Request::from_parts(parts, body);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        let state = self.state.clone();
        Box::pin(async move {
            let response = match router.oneshot(request).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let (mut parts, body) = response.into_parts();
            if parts.status == StatusCode::UNAUTHORIZED {
                // Whoever failed authentication gets no further use of the connection.
                state.request_close();
            }
            if http1
                && (state.close.load(Ordering::Relaxed) || state.closing.load(Ordering::Relaxed))
            {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(http::Response::from_parts(
                parts,
                Answered {
                    inner: body,
                    _in_flight: in_flight,
                },
            ))
        })
    }
}

/// An answer's body, holding its request in flight until it is sent or dropped.
struct Answered {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl HttpBody for Answered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when its client falls silent too long or takes too
/// long to send it whole.
struct TimedBody {
    inner: Incoming,
    idle: Duration,
    read_by: Instant,
    /// When the body last had nothing to give after giving something.
    quiet_since: Instant,
    progressed: bool,
    /// Made only once the body first has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    failed: Option<BodyTimeout>,
    state: Arc<ConnState>,
}

/// A request body that did not arrive in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimeout {
    #[error("the request body stalled: no bytes within the body idle timeout")]
    Idle,
    #[error("the request body took longer than the body read timeout")]
    Read,
}

impl BodyTimeout {
    fn label(self) -> &'static str {
        match self {
            Self::Idle => "body_idle",
            Self::Read => "body_read",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Timeout(#[from] BodyTimeout),
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(failed) = this.failed {
            return Poll::Ready(Some(Err(failed.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.progressed = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.timer = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.progressed {
                    this.progressed = false;
                    this.quiet_since = Instant::now();
                }
                let idle_by = this.quiet_since + this.idle;
                let due = idle_by.min(this.read_by);
                let timer = match &mut this.timer {
                    Some(t) => {
                        if t.deadline() != due {
                            t.as_mut().reset(due);
                        }
                        t
                    }
                    None => this.timer.insert(Box::pin(tokio::time::sleep_until(due))),
                };
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let failed = if this.read_by <= idle_by {
                    BodyTimeout::Read
                } else {
                    BodyTimeout::Idle
                };
                this.failed = Some(failed);
                this.timer = None;
                metrics::counter!(metric::CONNECTION_TIMEOUTS, "timeout" => failed.label())
                    .increment(1);
                // What the connection held unread is not a request to answer next.
                this.state.request_close();
                Poll::Ready(Some(Err(failed.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_with_fewest_connections_takes_the_next() {
        assert_eq!(least_loaded(&[3, 1, 2], 0), Some(1));
        assert_eq!(least_loaded(&[0, 5], 7), Some(0));
        assert_eq!(least_loaded(&[], 0), None);
    }

    #[test]
    fn equals_take_turns() {
        let picked: Vec<Option<usize>> = (0..4).map(|turn| least_loaded(&[2, 2], turn)).collect();
        assert_eq!(picked, [Some(0), Some(1), Some(0), Some(1)]);
        assert_eq!(least_loaded(&[4, 1, 1], 0), Some(1));
        assert_eq!(least_loaded(&[4, 1, 1], 2), Some(2));
    }

    #[test]
    fn caps_refuse_at_their_limit() {
        assert_eq!(refusal(0, Some(0), 10, 2), None);
        assert_eq!(refusal(9, Some(1), 10, 2), None);
        assert_eq!(
            refusal(9, Some(2), 10, 2),
            Some(Refusal::MaxConnectionsPerClient)
        );
        assert_eq!(refusal(10, Some(0), 10, 2), Some(Refusal::MaxConnections));
        // A shared peer (a trusted proxy) is held only to the total.
        assert_eq!(refusal(9, None, 10, 2), None);
        assert_eq!(refusal(10, None, 10, 2), Some(Refusal::MaxConnections));
    }

    #[test]
    fn clients_are_counted_by_address_and_ipv6_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        assert_eq!(client_key(mapped), v4);
    }

    fn facts(at: Instant) -> ConnFacts {
        ConnFacts {
            accepted: at,
            any_request: false,
            in_flight: 0,
            last_end: at,
            stopping: None,
            h2: false,
            close: false,
        }
    }

    #[test]
    fn a_connection_without_a_request_is_dropped_at_the_header_timeout() {
        let t = Instant::now();
        let header = Duration::from_secs(30);
        let quiet = Duration::from_secs(1);
        assert_eq!(
            next_step(facts(t), header, quiet),
            Step::Until(t + header, Due::Drop)
        );
        // Shutdown: it gets the quiet time to send what it may have sent.
        let stopping = ConnFacts {
            stopping: Some(t + Duration::from_secs(5)),
            ..facts(t)
        };
        assert_eq!(
            next_step(stopping, header, quiet),
            Step::Until(t + Duration::from_secs(6), Due::Graceful)
        );
    }

    #[test]
    fn requests_in_flight_are_never_cut_and_idle_connections_close() {
        let t = Instant::now();
        let header = Duration::from_secs(30);
        let quiet = Duration::from_secs(1);
        let busy = ConnFacts {
            any_request: true,
            in_flight: 2,
            stopping: Some(t),
            ..facts(t)
        };
        assert_eq!(next_step(busy, header, quiet), Step::Wait);
        let end = t + Duration::from_secs(3);
        let idle = ConnFacts {
            any_request: true,
            last_end: end,
            ..facts(t)
        };
        assert_eq!(
            next_step(idle, header, quiet),
            Step::Until(end + header, Due::Graceful)
        );
        // After shutdown began, quiet for a second since the later of the two.
        let stopped = ConnFacts {
            stopping: Some(t + Duration::from_secs(10)),
            ..idle
        };
        assert_eq!(
            next_step(stopped, header, quiet),
            Step::Until(t + Duration::from_secs(11), Due::Graceful)
        );
        // HTTP/2 has GOAWAY for this: at once, streams begun still finish.
        let h2 = ConnFacts { h2: true, ..busy };
        assert_eq!(next_step(h2, header, quiet), Step::Graceful);
        let refused = ConnFacts {
            close: true,
            ..busy
        };
        assert_eq!(next_step(refused, header, quiet), Step::Graceful);
    }
}
