//! A reviewer's input: the edits made before approving, and a rejection's reason.

use serde_json::json;

use super::ReviewError;
use crate::{
    ticketing::{Category, PriorityLevel},
    triage::decision::{Decision, TagPolicy, normalize_tag},
};

/// Longest draft a reviewer may approve, in characters.
const MAX_DRAFT_CHARS: usize = 20_000;

/// Why a proposal is rejected: the short list a reviewer picks from (code, label).
pub const REJECT_REASONS: &[(&str, &str)] = &[
    ("wrong_category", "Wrong category"),
    ("wrong_priority", "Wrong priority"),
    ("bad_draft", "Draft reply wrong or unhelpful"),
    ("needs_person", "Needs a person's judgement"),
    ("spam", "Spam or duplicate"),
    ("other", "Other"),
];

/// A rejection's stored reason, `code: text`; `other` needs the text.
pub fn reject_reason(code: &str, text: &str) -> Result<String, ReviewError> {
    let codes = || REJECT_REASONS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
    if !REJECT_REASONS.iter().any(|(c, _)| *c == code) {
        return Err(ReviewError::Invalid(format!(
            "`{code}` is not a rejection reason; use one of {}",
            codes()
        )));
    }
    let text = text.trim();
    match (code, text.is_empty()) {
        ("other", true) => {
            Err(ReviewError::Invalid("a rejection for `other` needs a few words of why".into()))
        }
        (_, true) => Ok(code.to_owned()),
        (_, false) => Ok(format!("{code}: {text}")),
    }
}

/// What a reviewer changed before approving; `None` fields are kept as proposed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edits {
    /// Another category (an active category id of the helpdesk), or `Some("")` for none.
    pub category_id: Option<String>,
    /// Another priority.
    pub priority: Option<PriorityLevel>,
    /// The tags instead of the proposed ones.
    pub tags: Option<Vec<String>>,
    /// The draft instead of the proposed one (empty: post no draft).
    pub draft: Option<String>,
}

impl Edits {
    /// Whether nothing was changed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The edits as the review record keeps them.
    pub fn describe(&self) -> serde_json::Value {
        json!({
            "category_id": self.category_id,
            "priority": self.priority,
            "tags": self.tags,
            "draft_edited": self.draft.is_some(),
        })
    }

    /// Applies the edits to `d`, checked against the helpdesk's `categories` and the tag policy.
    pub(super) fn apply_to(
        &self,
        d: &mut Decision,
        categories: &[Category],
        tags: &TagPolicy,
    ) -> Result<(), ReviewError> {
        if let Some(c) = &self.category_id {
            let c = c.trim();
            if c.is_empty() {
                d.category_id = None;
            } else if categories.iter().any(|x| x.id.as_deref() == Some(c) && x.active()) {
                d.category_id = Some(c.to_owned());
            } else {
                return Err(ReviewError::Invalid(format!("`{c}` is not an active category of the helpdesk")));
            }
        }
        if let Some(p) = self.priority {
            d.priority = p;
        }
        if let Some(raw) = &self.tags {
            let mut kept = Vec::new();
            for tag in raw.iter().filter(|t| !t.trim().is_empty()) {
                let Some(t) = normalize_tag(tag) else {
                    return Err(ReviewError::Invalid(format!("`{tag}` is not a usable tag")));
                };
                if !tags.allows(&t) {
                    return Err(ReviewError::Invalid(format!(
                        "tag `{t}` is not in this connection's allowed_tags"
                    )));
                }
                if !kept.contains(&t) {
                    kept.push(t);
                }
            }
            d.tags = kept;
        }
        if let Some(draft) = &self.draft {
            let draft = draft.trim();
            if draft.chars().count() > MAX_DRAFT_CHARS {
                return Err(ReviewError::Invalid(format!(
                    "the draft is longer than {MAX_DRAFT_CHARS} characters"
                )));
            }
            d.draft_reply = (!draft.is_empty()).then(|| draft.to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_names_a_listed_reason() {
        assert_eq!(
            reject_reason("wrong_category", " it is billing ").unwrap(),
            "wrong_category: it is billing"
        );
        assert_eq!(reject_reason("spam", "").unwrap(), "spam");
        assert!(reject_reason("other", " ").unwrap_err().to_string().contains("needs a few words"));
        let e = reject_reason("meh", "x").unwrap_err().to_string();
        assert!(e.contains("use one of wrong_category, wrong_priority"), "{e}");
    }
}
