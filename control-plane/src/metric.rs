//! The control plane's Prometheus metrics: the API's calls, the configuration and
//! snapshot versions, and the data planes this replica streams to.
//!
//! Label values are bounded, none is a client's string: `route` is a route's pattern
//! (or `unmatched`), `method` one HTTP defines (or `other`), `status` a status code.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{describe_counter, describe_gauge, describe_histogram};

/// API calls answered, by `method`, `route` (the route's pattern) and `status`.
pub const API_REQUESTS: &str = "switchyard_api_requests_total";
/// Time to answer an API call, by `route`.
pub const API_DURATION: &str = "switchyard_api_request_duration_seconds";
/// The newest configuration revision this replica committed or heard of.
pub const CONFIG_REVISION: &str = "switchyard_config_revision";
/// The snapshot version this replica streams.
pub const SNAPSHOT_VERSION: &str = "switchyard_snapshot_version";
/// Time to read the state and build one snapshot.
pub const SNAPSHOT_BUILD: &str = "switchyard_snapshot_build_seconds";
/// Data planes streaming from this replica.
pub const DATA_PLANES: &str = "switchyard_data_planes_connected";
/// The largest gap, in versions, between this replica's snapshot and what a data
/// plane connected to it applied.
pub const DATA_PLANE_LAG: &str = "switchyard_data_plane_lag_versions";

pub fn describe() {
    describe_counter!(
        API_REQUESTS,
        "API calls answered, by method, route and status"
    );
    describe_histogram!(
        API_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an API call, by route"
    );
    describe_gauge!(
        CONFIG_REVISION,
        "The newest configuration revision this replica committed or heard of"
    );
    describe_gauge!(
        SNAPSHOT_VERSION,
        "The snapshot version this replica streams"
    );
    describe_histogram!(
        SNAPSHOT_BUILD,
        metrics::Unit::Seconds,
        "Time to read the state and build one snapshot"
    );
    describe_gauge!(DATA_PLANES, "Data planes streaming from this replica");
    describe_gauge!(
        DATA_PLANE_LAG,
        "Largest version gap between this replica's snapshot and a connected data plane"
    );
}

/// Count and time every API call under its route pattern (never the raw path,
/// which carries ids).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(API_DURATION, "route" => route.clone()).record(started.elapsed());
    metrics::counter!(API_REQUESTS, "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// A request method as a label: the methods HTTP defines, every other token (a
/// client may send any) as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_http_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        for made_up in ["FOO", "get", "PROPFIND", "X1"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{made_up}");
        }
    }
}
