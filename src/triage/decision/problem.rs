//! What is wrong with an answer: one [`Problem`] per fault, and the [`DecisionError`] that carries them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One thing wrong with an answer, worded so the model can fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The field (`category_id`, an unknown field's name, or `$` for the whole answer).
    pub field: String,
    /// What is wrong and, where useful, what to do instead.
    pub message: String,
}

impl Problem {
    pub(super) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionError {
    /// Not parseable as JSON (truncated, prose around it, ...); `detail` has serde's position.
    #[error("the answer is not valid JSON: {detail}")]
    NotJson {
        /// serde_json's message, e.g. "EOF while parsing an object at line 1 column 57".
        detail: String,
    },
    /// JSON, but not a decision this connection accepts; every problem found is listed.
    #[error("the answer breaks the decision contract: {}", join_problems(problems))]
    Schema {
        /// All problems, in field order.
        problems: Vec<Problem>,
    },
}

fn join_problems(problems: &[Problem]) -> String {
    problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ")
}

impl DecisionError {
    /// Every error is permanent once the one repair round trip has failed: the same answer will
    /// not get better by retrying, so the worker dead-letters with this error as the reason.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::NotJson { .. } | Self::Schema { .. } => true,
        }
    }

    /// The problems found (one `$` problem for non-JSON).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Self::NotJson { detail } => {
                vec![Problem::new("$", format!("the answer is not valid JSON: {detail}"))]
            }
            Self::Schema { problems } => problems.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_permanent() {
        assert!(DecisionError::NotJson { detail: "x".into() }.is_permanent());
        assert!(DecisionError::Schema { problems: vec![] }.is_permanent());
    }
}
