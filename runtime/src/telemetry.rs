//! Logs, traces and metrics for every service.
//!
//! - Logs: on stderr, filtered by `RUST_LOG` (default `info`), every line passed
//!   through [`switchyard_core::redact::scrub`] on its way out; JSON lines, or lines
//!   for people when stderr is a terminal (`--log-format auto|pretty|json`).
//! - Traces: OpenTelemetry over OTLP/gRPC, configured by the standard `OTEL_*`
//!   variables and off unless an OTLP endpoint is set. Spans go only to the exporter,
//!   never into log lines, so with tracing off a span costs one disabled-callsite check
//!   (`tests/spans_off.rs`); only the `request` span reaches the logs.
//! - Metrics: one Prometheus recorder per process, shared by every service in it.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use switchyard_core::redact::scrub;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The process's telemetry; dropping it flushes the spans not yet exported.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing traces at exit failed");
        }
    }
}

static TRACING_ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (so trace context is worth propagating).
pub fn tracing_on() -> bool {
    TRACING_ON.load(Ordering::Relaxed)
}

/// Whether the `OTEL_*` environment asks for trace export: an OTLP endpoint is set
/// and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says no.
fn otlp_traces_requested(env: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let exporter_none =
        env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !disabled
        && !exporter_none
}

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `pretty` when stderr is a terminal, `json` otherwise.
    #[default]
    Auto,
    /// One line per event for people: time, level, message, fields.
    Pretty,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl LogFormat {
    /// `Auto` settled against whether stderr is a terminal.
    pub fn resolve(self, stderr_is_terminal: bool) -> Self {
        match self {
            Self::Auto if stderr_is_terminal => Self::Pretty,
            Self::Auto => Self::Json,
            chosen => chosen,
        }
    }
}

/// The log flag every binary takes.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct LogArgs {
    /// How log lines on stderr look: `pretty` for people, `json` for log pipelines;
    /// `auto` picks pretty when stderr is a terminal.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto, env = "SWITCHYARD_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Start logging and, when the environment asks for it, trace export. `service`
/// names the process unless `OTEL_SERVICE_NAME` does. Must run inside a Tokio
/// runtime (the OTLP channel is spawned on it). A second call in one process
/// (embedded mode, tests) keeps the first setup and returns an inert guard.
pub fn init_telemetry(service: &'static str, format: LogFormat) -> Telemetry {
    let env = |name: &str| std::env::var(name).ok();
    let traces = otlp_traces_requested(env)
        .then(|| tracer_provider(service))
        .flatten();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = log_layer(filter, format.resolve(terminal), terminal);
    // The exporter's layer exists only when traces are on: an absent layer (`None`)
    // would count as interested in every span, and each disabled span would still be
    // built in the registry on every call.
    let with_logs = tracing_subscriber::registry().with(logs);
    let installed = match &traces {
        Some(provider) => with_logs
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("switchyard"))
                    .with_filter(filter_fn(|meta| {
                        meta.target().starts_with("switchyard")
                            && *meta.level() <= tracing::Level::INFO
                            && meta.name() != "request"
                    })),
            )
            .try_init(),
        None => with_logs.try_init(),
    }
    .is_ok();
    if !installed {
        return Telemetry { traces: None };
    }
    if traces.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        TRACING_ON.store(true, Ordering::Relaxed);
        tracing::info!(service, "exporting traces over OTLP");
    }
    Telemetry { traces }
}

/// JSON lines on stderr at the level `filter` allows. Of the spans, logs see only a
/// call's `request` span, so every line a call writes carries its request id and
/// route; the others are for the exporter. The span-name filter carries the level
/// filter's ceiling: without one it counted as wanting every level, so the registry
/// built the `request` span on every call even where the level turned it off.
fn log_layer<S>(
    filter: EnvFilter,
    format: LogFormat,
    ansi: bool,
) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let ceiling = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let logged = filter_fn(move |meta| {
        *meta.level() <= ceiling && (meta.is_event() || meta.name() == "request")
    })
    .with_max_level_hint(ceiling);
    let lines = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(ansi)
            .with_target(false)
            .with_writer(RedactingStderr)
            .boxed(),
        LogFormat::Json | LogFormat::Auto => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(RedactingStderr)
            .boxed(),
    };
    lines.with_filter(filter).with_filter(logged)
}

fn tracer_provider(service: &'static str) -> Option<SdkTracerProvider> {
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            // Logging is not up yet; stderr is where the operator looks.
            eprintln!("trace export is off: cannot build the OTLP exporter: {e}");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    Some(
        SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build(),
    )
}

/// Stderr, one scrubbed log line per write (the JSON formatter writes each event
/// whole, in one call).
struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr()
            .lock()
            .write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Histogram buckets in seconds, from a fast cache hit to a long generation.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide metrics recorder, installed on first use; its handle renders
/// the Prometheus text format. Every service of one process shares it. Metrics
/// whose names end in `_seconds` are histograms with [`SECONDS_BUCKETS`].
pub fn metrics_handle() -> Option<PrometheusHandle> {
    METRICS
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Below the level that logs it, the `request` span is not built at all; at it,
    /// it is, and the exporter-only spans never reach the log layer.
    #[test]
    fn auto_is_pretty_on_a_terminal_only() {
        assert_eq!(LogFormat::Auto.resolve(true), LogFormat::Pretty);
        assert_eq!(LogFormat::Auto.resolve(false), LogFormat::Json);
        assert_eq!(LogFormat::Json.resolve(true), LogFormat::Json);
        assert_eq!(LogFormat::Pretty.resolve(false), LogFormat::Pretty);
    }

    #[test]
    fn the_log_span_follows_the_level() {
        for (level, built) in [("warn", false), ("info", true), ("debug", true)] {
            // Beside a layer whose filter has no ceiling (as the exporter's), every
            // level reaches the log layer's filters.
            let subscriber = tracing_subscriber::registry()
                .with(log_layer(EnvFilter::new(level), LogFormat::Json, false))
                .with(tracing_subscriber::layer::Identity::new().with_filter(filter_fn(|_| false)));
            tracing::subscriber::with_default(subscriber, || {
                // Events above the level pass through the filters without a fuss.
                tracing::trace!("below every level here");
                tracing::debug!("below some");
                let request = tracing::info_span!("request", request_id = 1);
                assert_eq!(!request.is_disabled(), built, "at {level}");
                let call = tracing::info_span!("call");
                assert!(call.is_disabled(), "at {level}");
            });
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn traces_only_when_an_endpoint_is_set_and_nothing_says_no() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        let traces = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4317",
        );
        assert!(!otlp_traces_requested(env(&[])));
        assert!(!otlp_traces_requested(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            " "
        )])));
        assert!(otlp_traces_requested(env(&[endpoint])));
        assert!(otlp_traces_requested(env(&[traces])));
        assert!(!otlp_traces_requested(env(&[
            endpoint,
            ("OTEL_SDK_DISABLED", "TRUE")
        ])));
        assert!(otlp_traces_requested(env(&[
            endpoint,
            ("OTEL_SDK_DISABLED", "false")
        ])));
        assert!(!otlp_traces_requested(env(&[
            traces,
            ("OTEL_TRACES_EXPORTER", "none")
        ])));
        assert!(otlp_traces_requested(env(&[
            endpoint,
            ("OTEL_TRACES_EXPORTER", "otlp")
        ])));
    }
}
