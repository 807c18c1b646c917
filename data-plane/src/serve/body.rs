//! A request body bounded in time: a longest silence, a longest time to arrive whole.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::state::ConnState;
use crate::metric;

/// A request body that fails when its client falls silent too long or takes too
/// long to send it whole.
pub(super) struct TimedBody {
    pub(super) inner: Incoming,
    pub(super) idle: Duration,
    pub(super) read_by: Instant,
    /// When the body last had nothing to give after giving something.
    pub(super) quiet_since: Instant,
    pub(super) progressed: bool,
    /// Made only once the body first has to wait.
    pub(super) timer: Option<Pin<Box<Sleep>>>,
    pub(super) failed: Option<BodyTimeout>,
    pub(super) state: Arc<ConnState>,
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
