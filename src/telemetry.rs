//! Logging: `tracing` events to stderr, as compact text or one JSON object per line.
//!
//! The filter comes from `DESKPILOT_LOG`, else `RUST_LOG`, else [`DEFAULT_FILTER`], in
//! `EnvFilter` syntax (`info,deskpilot::ticketing=debug`). Logs go to stderr so that commands
//! printing JSON on stdout stay pipeable.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter used when neither `DESKPILOT_LOG` nor `RUST_LOG` is set.
pub const DEFAULT_FILTER: &str = "info,deskpilot=info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Compact human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line: event fields flattened, plus the current span.
    Json,
}

/// Installs the global subscriber. Fails if one is already installed.
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    init_with_default(format, DEFAULT_FILTER)
}

/// As [`init`], with `default` when neither variable is set (the demo's terminal shows its own
/// lines, so it logs warnings only unless asked).
pub fn init_with_default(format: LogFormat, default: &str) -> anyhow::Result<()> {
    let (filter, rejected) = filter_from_env(default);
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    let installed = match format {
        LogFormat::Text => builder.compact().with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
        }
    };
    installed.map_err(|e| anyhow::anyhow!("could not install the log subscriber: {e}"))?;
    if let Some((var, error)) = rejected {
        tracing::warn!(var, %error, filter = default, "ignoring an invalid log filter");
    }
    Ok(())
}

/// The filter to use, and the variable that was set but could not be parsed, if any.
fn filter_from_env(default: &str) -> (EnvFilter, Option<(&'static str, String)>) {
    for var in ["DESKPILOT_LOG", "RUST_LOG"] {
        if let Ok(spec) = std::env::var(var)
            && !spec.trim().is_empty()
        {
            return match EnvFilter::try_new(&spec) {
                Ok(filter) => (filter, None),
                Err(e) => (EnvFilter::new(default), Some((var, e.to_string()))),
            };
        }
    }
    (EnvFilter::new(default), None)
}

/// Histogram buckets (seconds) for event, stage and LLM latencies.
const LATENCY_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0];

/// Histogram buckets (seconds) for store commits: most take well under a millisecond, and one
/// disk flush that stalls for a tenth of a second holds back every other write.
const COMMIT_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The Prometheus recorder behind the `metrics` facade, installed on first use and shared by
/// everything in the process. `None` when another recorder was installed first.
pub fn metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(install_metrics).clone()
}

fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::Matcher;
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full("deskpilot_store_commit_seconds".into()), COMMIT_BUCKETS)
        .ok()?
        .install_recorder()
        .ok()
}
