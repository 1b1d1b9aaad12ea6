//! Logging, message traces (OTLP) and the Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry_sdk::trace::SdkTracerProvider;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. Several nodes started in one
/// process (an embedding program) share it.
pub fn prometheus() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program); then ours stays
            // empty rather than failing the node.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Structured logs to stderr; `RUST_LOG` overrides `filter`. Colours only on a terminal: a log
/// file or a journal gets plain text. With an OTLP endpoint, message traces are exported too
/// (see `telex_actors::trace`); the returned provider flushes them when shut down. Call it
/// inside the Tokio runtime (the OTLP exporter's gRPC channel needs it).
pub fn init_logging(format: &str, filter: &str, traces: &crate::config::Traces) -> Option<SdkTracerProvider> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    // Message spans go to the trace exporter, never to the log.
    let logs = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(filter))
        .add_directive("telex_trace=off".parse().expect("static directive"));
    let ansi = std::io::stderr().is_terminal();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt: Box<dyn Layer<_> + Send + Sync> =
        if format == "json" { fmt.json().with_filter(logs).boxed() } else { fmt.with_filter(logs).boxed() };
    let (provider, otel) = match otlp(traces) {
        Ok(Some(provider)) => {
            use opentelemetry::trace::TracerProvider;
            let tracer = provider.tracer("telexd");
            let only_messages =
                tracing_subscriber::filter::Targets::new().with_target("telex_trace", tracing::Level::INFO);
            let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(only_messages).boxed();
            (Some(provider), Some(layer))
        }
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("telexd: traces.otlp_endpoint: {e}; traces are off");
            (None, None)
        }
    };
    let _ = tracing_subscriber::registry().with(fmt).with(otel).try_init();
    if provider.is_some() {
        telex_actors::trace::set_sample_ratio(traces.sample_ratio);
        tracing::info!(endpoint = %traces.otlp_endpoint, ratio = traces.sample_ratio, "exporting message traces over OTLP");
    }
    provider
}

/// The OTLP/gRPC trace pipeline, when an endpoint is configured. Message spans carry their
/// own sampling decision (a sampled or unsampled remote parent), so the sampler follows it.
fn otlp(traces: &crate::config::Traces) -> Result<Option<SdkTracerProvider>, String> {
    use opentelemetry_otlp::WithExportConfig;
    if traces.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(traces.otlp_endpoint.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(traces.service_name.clone()).build();
    let sampler =
        opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(opentelemetry_sdk::trace::Sampler::AlwaysOff));
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(resource)
            .build(),
    ))
}
