//! `[ingest]`: how helpdesk changes come in (the webhook receiver's limits, the loop guard's
//! tolerance).

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
    /// How far a ticket change may lie from deskpilot's own write to it and still be taken for
    /// that write (not reported as work), seconds: the helpdesk's clock skew and `updated_at`
    /// precision. 0 = only changes within the write itself.
    #[serde(default = "default_own_write_tolerance")]
    pub own_write_tolerance_secs: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            webhook_max_body_bytes: DEFAULT_WEBHOOK_MAX_BODY_BYTES,
            webhook_timestamp_tolerance_secs: DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE_SECS,
            own_write_tolerance_secs: default_own_write_tolerance(),
        }
    }
}

impl IngestConfig {
    /// The timestamp window, as a duration.
    pub fn webhook_timestamp_tolerance(&self) -> Duration {
        Duration::from_secs(self.webhook_timestamp_tolerance_secs)
    }

    /// The loop guard's tolerance, as a duration.
    pub fn own_write_tolerance(&self) -> Duration {
        Duration::from_secs(self.own_write_tolerance_secs)
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
        if self.own_write_tolerance_secs > 3600 {
            out.push(format!(
                "ingest.own_write_tolerance_secs = {} must be at most 3600: a person's change within it \
                 of deskpilot's write is taken for deskpilot's",
                self.own_write_tolerance_secs
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

fn default_own_write_tolerance() -> u64 {
    crate::ingest::loop_guard::DEFAULT_TOLERANCE.as_secs()
}
