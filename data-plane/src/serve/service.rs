//! The service each request of a connection passes on its way to the router, and
//! the answer body that holds the request in flight until it is sent.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, Version, header};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::body::TimedBody;
use super::state::{ConnState, InFlight};

/// Serves one connection's requests through the router: gives each its client's
/// address, bounds its body in time, and marks the connection to close when an
/// answer says so.
#[derive(Clone)]
pub(super) struct ConnService {
    pub(super) router: Router,
    pub(super) peer: SocketAddr,
    pub(super) state: Arc<ConnState>,
    pub(super) body_idle_timeout: Duration,
    pub(super) body_read_timeout: Duration,
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
pub(super) struct Answered {
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
