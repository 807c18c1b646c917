//! One connection's serving loop: serves its requests, ends it when idle, timed out
//! or asked to close, and on shutdown lets what it received be answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use switchyard_runtime::Shutdown;
use tokio::sync::watch;
use tokio::time::Instant;

use super::bounds::ConnectionBounds;
use super::caps::Permit;
use super::service::ConnService;
use super::state::{ConnState, Due, Step, next_step};
use crate::metric;

/// After shutdown begins, how long a connection with nothing in flight stays open
/// for a request its client may already have sent.
pub const SHUTDOWN_QUIET: Duration = Duration::from_secs(1);

/// What every connection of a serving thread shares.
pub(super) struct Serving {
    pub(super) router: Router,
    pub(super) builder: Builder<TokioExecutor>,
    pub(super) bounds: ConnectionBounds,
}

/// Serve one connection until it ends, then give back its permit and its place in
/// its thread's count.
pub(super) async fn serve_connection(
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
