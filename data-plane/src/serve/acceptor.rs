//! The acceptor: takes each new connection, admits it under the caps, and hands it
//! to the serving thread with the fewest open; on shutdown, the listen backlog too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchyard_runtime::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::caps::{Gate, Permit};
use crate::metric;

pub(super) type Handoff = (std::net::TcpStream, SocketAddr, Permit);

pub(super) struct Thread {
    pub(super) handoff: mpsc::UnboundedSender<Handoff>,
    /// Connections the thread serves now.
    pub(super) open: Arc<AtomicUsize>,
    /// Fires when the thread has no connection left after shutdown.
    pub(super) idle: oneshot::Receiver<()>,
    pub(super) join: std::thread::JoinHandle<()>,
}

pub(super) struct Acceptor<'a> {
    pub(super) pool: &'a [Thread],
    pub(super) gate: &'a Arc<Gate>,
    pub(super) turn: usize,
}

impl Acceptor<'_> {
    /// Take connections until shutdown.
    pub(super) async fn accept(&mut self, listener: &TcpListener, shutdown: Shutdown) {
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
    pub(super) fn take_backlog(&mut self, listener: TcpListener) {
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
}
