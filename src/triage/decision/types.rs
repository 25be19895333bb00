//! The decision's types: what the model answers on the wire, what triage hands on, and the
//! limits an answer must fit.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ticketing::model::PriorityLevel;

/// The answer's fields, in the order the model is asked to write them (the schema's properties
/// go out in this order): the reasoning first, so that a grammar-constrained model has written
/// why before it commits to a category, a priority and a confidence; the long draft last. Keep
/// it stable: the schema is part of the cached prompt prefix.
pub const FIELDS: [&str; 10] = [
    "reason",
    "summary",
    "language",
    "sentiment",
    "category_id",
    "priority",
    "tags",
    "needs_human",
    "confidence",
    "draft_reply",
];

/// The language recorded when it is unknown.
pub const UNKNOWN_LANGUAGE: &str = "und";

/// Customer sentiment (lowercase on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sentiment {
    /// Pleased.
    Positive,
    /// Matter-of-fact.
    Neutral,
    /// Unhappy.
    Negative,
    /// Angry.
    Angry,
}

impl Sentiment {
    /// Every sentiment, in wire order.
    pub const ALL: [Sentiment; 4] = [Self::Positive, Self::Neutral, Self::Negative, Self::Angry];

    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Positive => "positive",
            Self::Neutral => "neutral",
            Self::Negative => "negative",
            Self::Angry => "angry",
        }
    }
}

impl fmt::Display for Sentiment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who produced a decision. Set by the engine, never read from the model's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// The LLM, by model name.
    Llm {
        /// Model name as configured.
        model: String,
    },
    /// The rules fallback, by rule name.
    Rules {
        /// The rule that fired.
        rule: String,
    },
}

/// The triage proposed for one ticket (validated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// One of the listed active category ids, or `None`.
    pub category_id: Option<String>,
    /// Priority on the normalized scale.
    pub priority: PriorityLevel,
    /// Normalised, policy-filtered tags.
    pub tags: Vec<String>,
    /// Lowercase language code (`en`, `de`, `pt-br`), `und` if unknown.
    pub language: String,
    /// Customer sentiment.
    pub sentiment: Sentiment,
    /// 1..=`max_summary_chars` characters.
    pub summary: String,
    /// The reply draft (non-empty, within limits) from the LLM; `None` from rules.
    pub draft_reply: Option<String>,
    /// 0..=1.
    pub confidence: f32,
    /// A person must look before anything is done.
    pub needs_human: bool,
    /// Why, 1..=`max_reason_chars` characters.
    pub reason: String,
    /// Who decided.
    pub origin: Origin,
}

/// The model's answer as it is on the wire (no `origin`). Enumerations are strings so that a bad
/// value becomes a [`Problem`](super::Problem) rather than a serde error; use
/// [`validate`](super::validate), not this type's `Deserialize`, on model output (it stops at the
/// first error and does not catch duplicates).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmDecision {
    /// A listed category id or `null` (required, may be `null`).
    #[serde(deserialize_with = "Option::deserialize")]
    pub category_id: Option<String>,
    /// `NONE`, `LOW`, `NORMAL`, `HIGH` or `URGENT`.
    pub priority: String,
    /// Free tags, normalised during validation.
    pub tags: Vec<String>,
    /// Language code.
    pub language: String,
    /// `positive`, `neutral`, `negative` or `angry`.
    pub sentiment: String,
    /// Short summary.
    pub summary: String,
    /// Reply draft.
    pub draft_reply: String,
    /// 0..=1.
    pub confidence: f64,
    /// Whether a person must look.
    pub needs_human: bool,
    /// Why.
    pub reason: String,
}

/// Size limits on an answer (per connection; from config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Tags kept at most (schema `maxItems`; extra tags are dropped with a note).
    pub max_tags: usize,
    /// Longest tag kept, in characters after normalisation.
    pub max_tag_len: usize,
    /// Longest summary, in characters.
    pub max_summary_chars: usize,
    /// Longest reason, in characters.
    pub max_reason_chars: usize,
    /// Longest reply draft, in characters, as the model wrote it: with personal data put back
    /// in place of its placeholders, a draft may be longer.
    pub max_draft_chars: usize,
    /// Shortest reply draft, in characters (an empty draft is always rejected).
    pub min_draft_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_tags: 8,
            max_tag_len: 32,
            max_summary_chars: 500,
            max_reason_chars: 500,
            max_draft_chars: 4000,
            min_draft_chars: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn origin_and_enums_on_the_wire() {
        assert_eq!(
            serde_json::to_value(Origin::Llm { model: "gpt-4o".into() }).unwrap(),
            json!({"kind": "llm", "model": "gpt-4o"})
        );
        assert_eq!(
            serde_json::to_value(Origin::Rules { rule: "vip".into() }).unwrap(),
            json!({"kind": "rules", "rule": "vip"})
        );
        assert_eq!(serde_json::to_value(Sentiment::Angry).unwrap(), json!("angry"));
    }

    #[test]
    fn wire_type_requires_category_id_even_though_it_is_optional() {
        let err = serde_json::from_value::<LlmDecision>(json!({
            "priority": "LOW", "tags": [], "language": "en", "sentiment": "neutral", "summary": "s",
            "draft_reply": "d", "confidence": 0.5, "needs_human": false, "reason": "r"
        }))
        .unwrap_err();
        assert!(err.to_string().starts_with("missing field `category_id`"), "{err}");
    }
}
