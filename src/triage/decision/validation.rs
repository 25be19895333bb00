//! Validation: the model's untrusted answer, or a decision built elsewhere, checked against a
//! connection's categories, tag policy and limits.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use super::{
    answer::{TopKeys, read_fields, strip_fence},
    numbers::lenient_numbers,
    problem::{DecisionError, Problem},
    schema::active_ids,
    tags::{TagPolicy, normalize_tags},
    types::{Decision, FIELDS, Limits, LlmDecision, Origin, Sentiment, UNKNOWN_LANGUAGE},
    wording::{clip, is_unwanted_control, kind, list_ids, show},
};
use crate::ticketing::model::{Category, PriorityLevel};

/// Longest language code accepted (BCP 47 practical maximum).
const MAX_LANGUAGE_LEN: usize = 35;

/// A validated decision plus the non-fatal adjustments made on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The decision.
    pub decision: Decision,
    /// What was changed or dropped (tags, whitespace, case), in words a reviewer understands.
    pub notes: Vec<String>,
}

/// Why a decision recorded earlier no longer fits today's categories and tag policy (a retry or
/// a replay hours later), if it does not: its category was removed or deactivated, or one of its
/// tags is no longer allowed.
pub fn no_longer_fits(d: &Decision, categories: &[Category], tags: &TagPolicy) -> Option<String> {
    if let Some(c) = &d.category_id
        && !categories.iter().any(|x| x.id.as_deref() == Some(c.as_str()) && x.active())
    {
        return Some(format!("category `{c}` is no longer an active category of the helpdesk"));
    }
    d.tags.iter().find(|t| !tags.allows(t)).map(|t| format!("tag `{t}` is no longer in allowed_tags"))
}

/// Validates the model's raw answer against this connection's categories, tag policy and limits.
///
/// Returns the decision with `origin` set as given, or every problem found. See the module docs
/// for what is accepted; `NotJson` positions refer to the text after fence stripping.
pub fn validate(
    raw_json: &str,
    categories: &[Category],
    policy: &TagPolicy,
    limits: &Limits,
    origin: Origin,
) -> Result<Validated, DecisionError> {
    let mut pass = Pass::new(categories, policy, limits);
    let (body, fenced) = strip_fence(raw_json);
    if fenced {
        pass.notes.push("removed a markdown code fence around the answer".to_owned());
    }
    let body = lenient_numbers(body);
    let body = body.as_ref();
    let value: Value =
        serde_json::from_str(body).map_err(|e| DecisionError::NotJson { detail: e.to_string() })?;
    let Value::Object(map) = value else {
        let problem = Problem::new("$", format!("the answer must be a JSON object, got {}", kind(&value)));
        return Err(DecisionError::Schema { problems: vec![problem] });
    };
    let (raw, skip) = read_fields(&map, &mut pass.problems);
    for key in map.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        pass.problems.push(Problem::new(clip(key), format!("unknown field {}; remove it", show(key))));
    }
    // serde_json's `Value` keeps the last of duplicate keys silently; a second, key-only parse finds them.
    if let Ok(TopKeys(keys)) = serde_json::from_str::<TopKeys>(body) {
        let mut seen = HashSet::new();
        let mut reported = HashSet::new();
        for key in keys {
            if !seen.insert(key.clone()) && reported.insert(key.clone()) {
                pass.problems.push(Problem::new(
                    clip(&key),
                    format!("duplicate field {}; give each field once", show(&key)),
                ));
            }
        }
    }
    pass.finish(&raw, &skip, origin)
}

impl Decision {
    /// Re-validates a decision built or stored elsewhere (the rules fallback, a shadow proposal
    /// approved later) against today's categories, policy and limits before anything acts on it.
    /// `draft_reply: None` is accepted from rules only.
    pub fn recheck(
        &self,
        categories: &[Category],
        policy: &TagPolicy,
        limits: &Limits,
    ) -> Result<Validated, DecisionError> {
        let raw = LlmDecision {
            category_id: self.category_id.clone(),
            priority: self.priority.as_str().to_owned(),
            tags: self.tags.clone(),
            language: self.language.clone(),
            sentiment: self.sentiment.as_str().to_owned(),
            summary: self.summary.clone(),
            draft_reply: self.draft_reply.clone().unwrap_or_default(),
            confidence: f64::from(self.confidence),
            needs_human: self.needs_human,
            reason: self.reason.clone(),
        };
        let mut skip = BTreeSet::new();
        if self.draft_reply.is_none() && matches!(self.origin, Origin::Rules { .. }) {
            skip.insert("draft_reply");
        }
        Pass::new(categories, policy, limits).finish(&raw, &skip, self.origin.clone())
    }
}

/// The checks that apply to well-typed values, shared by [`validate`] and [`Decision::recheck`].
struct Pass<'a> {
    active: Vec<&'a str>,
    policy: &'a TagPolicy,
    limits: &'a Limits,
    problems: Vec<Problem>,
    notes: Vec<String>,
}

impl<'a> Pass<'a> {
    fn new(categories: &'a [Category], policy: &'a TagPolicy, limits: &'a Limits) -> Self {
        Self { active: active_ids(categories), policy, limits, problems: Vec::new(), notes: Vec::new() }
    }

    /// Checks every field not in `skip` and returns the decision if nothing is wrong.
    fn finish(
        mut self,
        raw: &LlmDecision,
        skip: &BTreeSet<&str>,
        origin: Origin,
    ) -> Result<Validated, DecisionError> {
        let checked = |f: &str| !skip.contains(f);
        let limits = self.limits;
        let category_id = checked("category_id").then(|| self.category(raw.category_id.as_deref())).flatten();
        let priority = checked("priority").then(|| self.priority(&raw.priority)).flatten();
        let tags = checked("tags").then(|| {
            let (tags, notes) = normalize_tags(&raw.tags, self.policy, limits);
            self.notes.extend(notes);
            tags
        });
        let language = checked("language").then(|| self.language(&raw.language));
        let sentiment = checked("sentiment").then(|| self.sentiment(&raw.sentiment)).flatten();
        let summary = checked("summary")
            .then(|| self.text("summary", &raw.summary, 1, limits.max_summary_chars))
            .flatten();
        let draft_reply = if checked("draft_reply") {
            let min = limits.min_draft_chars.max(1);
            self.text("draft_reply", &raw.draft_reply, min, limits.max_draft_chars).map(Some)
        } else {
            // Skipped either because it failed to read (a problem is recorded) or, in a recheck,
            // because rules produce no draft.
            Some(None)
        };
        let confidence = checked("confidence").then(|| self.confidence(raw.confidence)).flatten();
        let needs_human = checked("needs_human").then_some(raw.needs_human);
        let reason =
            checked("reason").then(|| self.text("reason", &raw.reason, 1, limits.max_reason_chars)).flatten();

        // Every `None` above was recorded as a problem.
        let (
            Some(category_id),
            Some(priority),
            Some(tags),
            Some(language),
            Some(sentiment),
            Some(summary),
            Some(draft_reply),
            Some(confidence),
            Some(needs_human),
            Some(reason),
        ) = (
            category_id,
            priority,
            tags,
            language,
            sentiment,
            summary,
            draft_reply,
            confidence,
            needs_human,
            reason,
        )
        else {
            debug_assert!(!self.problems.is_empty(), "a field failed without a problem");
            return Err(self.into_error());
        };
        if !self.problems.is_empty() {
            return Err(self.into_error());
        }
        let decision = Decision {
            category_id,
            priority,
            tags,
            language,
            sentiment,
            summary,
            draft_reply,
            confidence,
            needs_human,
            reason,
            origin,
        };
        Ok(Validated { decision, notes: self.notes })
    }

    /// The problems in [`FIELDS`] order (unknown fields last, in answer order).
    fn into_error(mut self) -> DecisionError {
        let rank = |p: &Problem| FIELDS.iter().position(|f| *f == p.field).unwrap_or(FIELDS.len());
        self.problems.sort_by_key(rank);
        DecisionError::Schema { problems: self.problems }
    }

    fn problem(&mut self, field: &str, message: String) {
        self.problems.push(Problem::new(field, message));
    }

    fn category(&mut self, id: Option<&str>) -> Option<Option<String>> {
        let Some(id) = id else { return Some(None) };
        let trimmed = id.trim();
        if self.active.contains(&trimmed) {
            if trimmed != id {
                self.notes.push("trimmed whitespace around category_id".to_owned());
            }
            return Some(Some(trimmed.to_owned()));
        }
        if trimmed.eq_ignore_ascii_case("null") || trimmed.eq_ignore_ascii_case("none") {
            self.notes.push(format!("category_id {} read as null", show(id)));
            return Some(None);
        }
        let message = if trimmed.is_empty() {
            "category_id is an empty string; use null if none fits".to_owned()
        } else if self.active.is_empty() {
            format!("category_id {} is not allowed: no categories are listed; use null", show(id))
        } else {
            format!(
                "category_id {} is not one of the listed ids: {}; use null if none fits",
                show(id),
                list_ids(&self.active)
            )
        };
        self.problem("category_id", message);
        None
    }

    fn priority(&mut self, value: &str) -> Option<PriorityLevel> {
        self.one_of("priority", value, PriorityLevel::ALL, PriorityLevel::as_str)
    }

    fn sentiment(&mut self, value: &str) -> Option<Sentiment> {
        self.one_of("sentiment", value, Sentiment::ALL, Sentiment::as_str)
    }

    /// Reads an enumeration case-insensitively (noting a case change), or records a problem
    /// listing the allowed values.
    fn one_of<T: Copy, const N: usize>(
        &mut self,
        field: &'static str,
        value: &str,
        all: [T; N],
        name: fn(T) -> &'static str,
    ) -> Option<T> {
        match all.into_iter().find(|v| name(*v).eq_ignore_ascii_case(value.trim())) {
            Some(v) => {
                if name(v) != value {
                    self.notes.push(format!("{field} {} read as {}", show(value), name(v)));
                }
                Some(v)
            }
            None => {
                let allowed = all.map(name).join(", ");
                self.problem(field, format!("{field} {} is not one of {allowed}", show(value)));
                None
            }
        }
    }

    fn language(&mut self, value: &str) -> String {
        let code = value.trim().to_ascii_lowercase().replace('_', "-");
        if code.is_empty() {
            self.notes.push(format!("language is empty; recorded as {UNKNOWN_LANGUAGE}"));
            return UNKNOWN_LANGUAGE.to_owned();
        }
        if !is_language_code(&code) {
            self.notes.push(format!(
                "language {} is not a language code such as en or pt-br; recorded as {UNKNOWN_LANGUAGE}",
                show(value)
            ));
            return UNKNOWN_LANGUAGE.to_owned();
        }
        if code != value {
            self.notes.push(format!("language {} read as {code}", show(value)));
        }
        code
    }

    /// Removes control characters and surrounding whitespace, then checks the length in characters.
    fn text(&mut self, field: &str, value: &str, min: usize, max: usize) -> Option<String> {
        let cleaned: String = value.chars().filter(|c| !is_unwanted_control(*c)).collect();
        let removed = value.chars().count() - cleaned.chars().count();
        if removed > 0 {
            self.notes.push(format!("removed {removed} control characters from {field}"));
        }
        let trimmed = cleaned.trim();
        if trimmed.len() != cleaned.len() && !trimmed.is_empty() {
            self.notes.push(format!("trimmed whitespace around {field}"));
        }
        let len = trimmed.chars().count();
        if len == 0 {
            self.problem(field, format!("{field} is empty"));
            None
        } else if len < min {
            self.problem(field, format!("{field} is {len} characters; the minimum is {min}"));
            None
        } else if len > max {
            self.problem(field, format!("{field} is {len} characters; the limit is {max}"));
            None
        } else {
            Some(trimmed.to_owned())
        }
    }

    fn confidence(&mut self, value: f64) -> Option<f32> {
        if value.is_finite() && (0.0..=1.0).contains(&value) {
            // In range, so the narrowing cannot overflow; it may round 0.99999999 to 1.0.
            Some(value as f32)
        } else {
            self.problem("confidence", format!("confidence {value} is outside 0..=1"));
            None
        }
    }
}

/// `xx`/`xxx` then subtags of 1–8 letters or digits, all lowercase ASCII.
fn is_language_code(code: &str) -> bool {
    let mut parts = code.split('-');
    let primary = parts.next().unwrap_or_default();
    code.len() <= MAX_LANGUAGE_LEN
        && (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| {
            (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes() {
        for (code, ok) in [("en", true), ("pt-br", true), ("zh-hant-tw", true), ("und", true), ("e", false)] {
            assert_eq!(is_language_code(code), ok, "{code}");
        }
        assert!(!is_language_code("english"));
        assert!(!is_language_code("en-"));
        assert!(!is_language_code("de-123456789"));
    }
}
