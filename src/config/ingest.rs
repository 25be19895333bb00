//! `[ingest]`: how helpdesk changes come in (the webhook receiver's limits).

use std::time::Duration;

use serde::Deserialize;

/// Default `webhook_max_body_bytes`: 1 MiB, far above a delivery of a few tickets.
pub const DEFAULT_WEBHOOK_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Default `webhook_timestamp_tolerance_secs`: five minutes either way, as Zendesk suggests.
pub const DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE_SECS: u64 = 300;

/// `[ingest]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest webhook body accepted, bytes; a larger one is refused with 413 before it is read.
    #[serde(default = "default_max_body")]
    pub webhook_max_body_bytes: usize,
    /// How far a signed timestamp (Zendesk's) may be from now, seconds; older or newer
    /// deliveries are refused as replays.
    #[serde(default = "default_tolerance")]
    pub webhook_timestamp_tolerance_secs: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            webhook_max_body_bytes: DEFAULT_WEBHOOK_MAX_BODY_BYTES,
            webhook_timestamp_tolerance_secs: DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE_SECS,
        }
    }
}

impl IngestConfig {
    /// The timestamp window, as a duration.
    pub fn webhook_timestamp_tolerance(&self) -> Duration {
        Duration::from_secs(self.webhook_timestamp_tolerance_secs)
    }

    /// What is wrong with these values.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(1024..=64 * 1024 * 1024).contains(&self.webhook_max_body_bytes) {
            out.push(format!(
                "ingest.webhook_max_body_bytes = {} must be between 1024 and 67108864 (64 MiB)",
                self.webhook_max_body_bytes
            ));
        }
        if !(1..=86_400).contains(&self.webhook_timestamp_tolerance_secs) {
            out.push(format!(
                "ingest.webhook_timestamp_tolerance_secs = {} must be between 1 and 86400",
                self.webhook_timestamp_tolerance_secs
            ));
        }
        out
    }
}

fn default_max_body() -> usize {
    DEFAULT_WEBHOOK_MAX_BODY_BYTES
}

fn default_tolerance() -> u64 {
    DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE_SECS
}
