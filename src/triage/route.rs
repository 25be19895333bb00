//! Which model answers a ticket: the configured one, a stronger one when the configured one is
//! unsure or wrong ([`Escalation`]), a cheaper one once a budget is spent, or no model at all
//! ([`Route`]).

use std::sync::Arc;

use super::{TriageError, decision::Validated, llm::ChatModel};

/// A stronger model asked only for the hard cases: when the configured model's confidence is
/// below `below_confidence`, or its answer is still invalid after its repair.
#[derive(Clone)]
pub struct Escalation {
    /// The stronger model.
    pub model: Arc<dyn ChatModel>,
    /// Answers less confident than this go to the stronger model (0–1).
    pub below_confidence: f32,
}

impl std::fmt::Debug for Escalation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Escalation")
            .field("model", &self.model.model())
            .field("below_confidence", &self.below_confidence)
            .finish()
    }
}

/// Why a ticket went to the stronger model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationCause {
    /// The first answer was valid but not confident enough.
    LowConfidence,
    /// The first answer was still invalid after its repair.
    Invalid,
}

impl EscalationCause {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LowConfidence => "low_confidence",
            Self::Invalid => "invalid",
        }
    }
}

impl Escalation {
    /// Whether the first model's outcome calls for the stronger model, and why in words. Failures
    /// of the call itself (rate limits, outages) are not escalated: they are the worker's to retry.
    pub fn cause(&self, first: &Result<Validated, TriageError>) -> Option<(EscalationCause, String)> {
        match first {
            Ok(v) if v.decision.confidence < self.below_confidence => Some((
                EscalationCause::LowConfidence,
                format!("confidence {:.2} is below {:.2}", v.decision.confidence, self.below_confidence),
            )),
            Err(TriageError::InvalidDecision { error }) => {
                Some((EscalationCause::Invalid, format!("the answer failed validation: {error}")))
            }
            _ => None,
        }
    }
}

/// How one ticket is decided; the worker chooses it from the budgets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Route {
    /// The configured model, and the stronger one when it is configured and needed.
    #[default]
    Configured,
    /// The budget's fallback model alone (never escalated: the budget is spent).
    Fallback,
    /// No model: the rules decide, for this reason (the draft waits for a person).
    Rules(String),
}
