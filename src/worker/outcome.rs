//! What became of a delivery, and why an attempt failed, with what to do about it.

use std::time::Duration;

use serde::Deserialize;

use crate::{
    act::{self, Stop},
    http::error_chain,
    store::{DecisionRecord, StoreError},
    triage::{TriageError, decision::Decision},
};

/// What happened to one delivery, for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Effects done (or already done before) and acked.
    Acked(String),
    /// Sent to a delay tier.
    Retried(String),
    /// Sent to the dead-letter queue.
    DeadLettered(String),
    /// Handed back to the broker (shutdown).
    Requeued,
    /// Returned to the broker to wait for a spent LLM budget to reset.
    Held(String),
}

impl Disposition {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::Acked(_) => "acked",
            Self::Retried(_) => "retried",
            Self::DeadLettered(_) => "dead_lettered",
            Self::Requeued => "requeued",
            Self::Held(_) => "held",
        }
    }
}

/// A failure while handling an event, with what to do about it.
pub(super) struct Failure {
    pub(super) reason: String,
    pub(super) retryable: bool,
    pub(super) retry_after: Option<Duration>,
    /// The attempt was stopped by its fence: not a failure of the ticket, so not recorded.
    pub(super) stopped: Option<Stop>,
    /// A budget is spent and the ticket waits in the broker for it to reset (`retry_after`): not a
    /// failure either, and not a try.
    pub(super) held: bool,
}

impl Failure {
    pub(super) fn permanent(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), retryable: false, retry_after: None, stopped: None, held: false }
    }

    /// The ticket waits `until_reset` for a spent budget, for the reason given.
    pub(super) fn held(reason: String, until_reset: Duration) -> Self {
        Self { reason, retryable: true, retry_after: Some(until_reset), stopped: None, held: true }
    }
}

impl From<TriageError> for Failure {
    fn from(e: TriageError) -> Self {
        Self {
            retryable: e.is_retryable(),
            retry_after: e.retry_after(),
            reason: format!("triage: {}", error_chain(&e)),
            stopped: None,
            held: false,
        }
    }
}

impl From<act::ActError> for Failure {
    fn from(e: act::ActError) -> Self {
        match e {
            act::ActError::Store(store) => Self::from(store),
            act::ActError::Helpdesk(h) => Self {
                retryable: h.is_retryable(),
                retry_after: h.retry_after(),
                reason: format!("act: {}", error_chain(&h)),
                stopped: None,
                held: false,
            },
            act::ActError::Stopped(why) => Self {
                retryable: true,
                retry_after: None,
                reason: format!("act: stopped before the next helpdesk write: {why}"),
                stopped: Some(why),
                held: false,
            },
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        // A lost lease means another replica took the ticket over: the next claim sees its
        // progress (Done → ack, Busy → later), so it is never a reason to dead-letter.
        let lease_lost = matches!(e, StoreError::LeaseLost { .. });
        Self {
            retryable: lease_lost || e.is_retryable(),
            retry_after: None,
            reason: error_chain(&e),
            stopped: None,
            held: false,
        }
    }
}

/// The decision an earlier attempt recorded, read back as triage's type. One that no longer reads
/// (recorded by a build whose Decision differed) cannot be acted on by a retry either.
pub(super) fn recorded_decision(record: &DecisionRecord) -> Result<Decision, Failure> {
    Decision::deserialize(&record.decision).map_err(|e| {
        Failure::permanent(format!(
            "the decision recorded for this ticket no longer reads as a Decision: {e}"
        ))
    })
}
