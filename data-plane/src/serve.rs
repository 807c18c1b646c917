//! Serving threads. Each runs a single-threaded runtime of its own, so the tasks of
//! one call (the client's connection, the pooled upstream connection, the relay) live
//! on one thread and wake one another without crossing cores: on a shared runtime
//! every call paid several cross-thread wake-ups, which cost more than the proxying.
//! One acceptor hands each new connection to the thread with the fewest open; the
//! caller's runtime keeps the background work (snapshot stream, usage delivery).

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use switchyard_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tower::ServiceExt as _;

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

type Handoff = (std::net::TcpStream, SocketAddr);

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

/// Serve `router` on `threads` serving threads until `shutdown`, then let open
/// connections finish (streams included). Returns once none is left.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    threads: usize,
    shutdown: Shutdown,
) -> std::io::Result<Draining> {
    let (release, released) = watch::channel(false);
    let mut pool = Vec::new();
    for index in 0..threads.max(1) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (handoff, incoming) = mpsc::unbounded_channel();
        let (idle_tx, idle) = oneshot::channel();
        let open = Arc::new(AtomicUsize::new(0));
        let work = serve_thread(incoming, router.clone(), shutdown.clone(), open.clone());
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
    drop(router);
    accept(&listener, &pool, shutdown).await;
    drop(listener);
    let mut joins = Vec::with_capacity(pool.len());
    for thread in pool {
        drop(thread.handoff);
        let _ = thread.idle.await;
        joins.push(thread.join);
    }
    Ok(Draining { release, joins })
}

/// Take connections until shutdown, each to the thread with the fewest open
/// (the next in turn among equals).
async fn accept(listener: &TcpListener, pool: &[Thread], shutdown: Shutdown) {
    let mut stop = std::pin::pin!(shutdown.wait());
    let mut turn = 0usize;
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
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        turn = turn.wrapping_add(1);
        let open: Vec<usize> = pool
            .iter()
            .map(|t| t.open.load(Ordering::Relaxed))
            .collect();
        let Some(thread) = least_loaded(&open, turn).and_then(|i| pool.get(i)) else {
            return;
        };
        thread.open.fetch_add(1, Ordering::Relaxed);
        if thread.handoff.send((stream, peer)).is_err() {
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

/// One serving thread: serve what the acceptor hands over until it stops, then wait
/// for the open connections to finish.
async fn serve_thread(
    mut incoming: mpsc::UnboundedReceiver<Handoff>,
    router: Router,
    shutdown: Shutdown,
    open: Arc<AtomicUsize>,
) {
    let (closed_tx, closed_rx) = watch::channel(());
    while let Some((stream, peer)) = incoming.recv().await {
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            shutdown.clone(),
            open.clone(),
            closed_rx.clone(),
        ));
    }
    drop(router);
    drop(closed_rx);
    closed_tx.closed().await;
}

async fn serve_connection(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    shutdown: Shutdown,
    open: Arc<AtomicUsize>,
    _closed: watch::Receiver<()>,
) {
    if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
        let _ = stream.set_nodelay(true);
        let service =
            router.map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let builder = Builder::new(TokioExecutor::new());
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let mut connection = std::pin::pin!(connection);
        let mut stop = std::pin::pin!(shutdown.wait());
        let mut stopping = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    break;
                }
                () = &mut stop, if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    open.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::least_loaded;

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
}
