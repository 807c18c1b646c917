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
//!
//! Inside: the threads and their handover (here); the acceptor (`acceptor`) and the
//! caps it checks (`caps`) under the [`ConnectionBounds`] (`bounds`); one
//! connection's serving loop (`connection`), what its requests tell it (`state`),
//! the service each request passes (`service`) and its body bounded in time
//! (`body`).

mod acceptor;
mod body;
mod bounds;
mod caps;
mod connection;
mod service;
mod state;

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use switchyard_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

pub use body::{BodyError, BodyTimeout};
pub use bounds::ConnectionBounds;
pub use connection::SHUTDOWN_QUIET;

use acceptor::{Acceptor, Handoff, Thread};
use caps::Gate;
use connection::{Serving, serve_connection};

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

/// Streams one HTTP/2 connection may run at once.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// HTTP/2 pings, so a peer that vanished is noticed even with streams open.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

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
