//! With trace export off, the spans meant for the exporter are disabled at their
//! callsite: the request path pays a check for each, not a span in the registry.
//! Its own test binary, because the subscriber is process-wide.

#[tokio::test]
async fn without_export_only_the_log_span_is_built() {
    let _telemetry =
        switchyard_runtime::init_telemetry("switchyard-test", switchyard_runtime::LogFormat::Json);
    assert!(!switchyard_runtime::tracing_on());
    let call = tracing::info_span!(target: "switchyard_data_plane::proxy", "call");
    assert!(call.is_disabled(), "an exporter-only span was built");
    let attempt = tracing::info_span!(target: "switchyard_data_plane::proxy", "route.try");
    assert!(attempt.is_disabled(), "an exporter-only span was built");
    // The log span carries the request id on log lines at the default level.
    if std::env::var_os("RUST_LOG").is_none() {
        let request = tracing::info_span!(target: "switchyard_data_plane::proxy", "request");
        assert!(!request.is_disabled(), "the log span is missing");
    }
}
