//! The triage [`Decision`]: the JSON schema the LLM is asked to follow, and the validation that
//! turns its untrusted answer into a decision nothing downstream needs to re-check.
//!
//! **Trust.** The answer is attacker-influenced text (tickets carry prompt injections), and
//! servers differ in what they enforce (OpenAI strict mode, vLLM/llama.cpp grammars, Ollama Cloud
//! nothing). [`validate`] therefore re-checks everything the schema says and more: a [`Validated`]
//! decision only ever holds an active listed category or `None`, a priority on the scale,
//! policy-conforming tags, bounded strings without control characters, and a confidence in 0..=1.
//!
//! **What [`validate`] accepts.** Strict, with a few practical leniencies, each recorded in
//! [`Validated::notes`]:
//! - the answer text, trimmed, optionally wrapped in *one* markdown code fence (```` ```json ````
//!   or ```` ``` ````, closing fence last); no other prose, no second fence;
//! - exactly the ten fields of [`FIELDS`], each once (unknown and duplicate fields are problems:
//!   the model never decides assignee, status or anything else);
//! - `priority` and `sentiment` case-insensitively (`"urgent"` → `URGENT`);
//! - `category_id` `"null"`/`"none"` (when no category has that id) as `null`;
//! - surrounding whitespace and control characters removed from the texts;
//! - `language` normalised (`pt_BR` → `pt-br`); a value that is no language code becomes `und`;
//! - tags normalised and filtered by [`normalize_tags`] (never a problem, only notes).
//!
//! Everything else is a [`Problem`], and all problems are collected in one pass so that one
//! repair round trip (the `prompts/triage/repair.j2` message, one line per problem) can fix them all.
//!
//! **Schema vs validation.** [`response_schema`] uses only keywords OpenAI documents for strict
//! mode: `type`, `properties`, `required`, `additionalProperties`, `items`, `enum`, `anyOf`,
//! `description`, `minimum`/`maximum` (confidence) and `maxItems` (tags). String lengths are NOT in
//! the schema: OpenAI does not list `maxLength`/`minLength` as supported in strict mode and some
//! compatible servers reject them; the limits are stated in the property descriptions and enforced
//! here. Tag characters (no `pattern`) are likewise enforced here only.

use std::{
    collections::{BTreeSet, HashSet},
    fmt,
};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{IgnoredAny, MapAccess, Visitor},
};
use serde_json::{Map, Value, json};

use crate::ticketing::model::{Category, PriorityLevel};

/// The answer's fields, in the order the model is asked to write them.
pub const FIELDS: [&str; 10] = [
    "category_id",
    "priority",
    "tags",
    "language",
    "sentiment",
    "summary",
    "draft_reply",
    "confidence",
    "needs_human",
    "reason",
];

/// How many listed ids a problem message names before it says "and N more".
const MAX_IDS_IN_MESSAGE: usize = 40;
/// How many tag notes one answer can produce before the rest are counted.
const MAX_TAG_NOTES: usize = 20;
/// Longest language code accepted (BCP 47 practical maximum).
const MAX_LANGUAGE_LEN: usize = 35;
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
/// value becomes a [`Problem`] rather than a serde error; use [`validate`], not this type's
/// `Deserialize`, on model output (it stops at the first error and does not catch duplicates).
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
    /// Longest reply draft, in characters.
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

/// Which tags a connection accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TagPolicy {
    /// Any tag that survives normalisation.
    #[default]
    Free,
    /// Only these (normalised) tags; others are dropped with a note.
    AllowList(BTreeSet<String>),
}

impl TagPolicy {
    /// An allow-list of the given tags, normalised the way answers are (unusable entries skipped).
    pub fn allow_list<I, S>(tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::AllowList(tags.into_iter().filter_map(|t| normalize_tag(t.as_ref())).collect())
    }

    fn allows(&self, tag: &str) -> bool {
        match self {
            Self::Free => true,
            Self::AllowList(set) => set.contains(tag),
        }
    }
}

/// A validated decision plus the non-fatal adjustments made on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The decision.
    pub decision: Decision,
    /// What was changed or dropped (tags, whitespace, case), in words a reviewer understands.
    pub notes: Vec<String>,
}

/// One thing wrong with an answer, worded so the model can fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The field (`category_id`, an unknown field's name, or `$` for the whole answer).
    pub field: String,
    /// What is wrong and, where useful, what to do instead.
    pub message: String,
}

impl Problem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
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

/// `response_format.json_schema.name`.
pub fn schema_name() -> &'static str {
    "triage_decision"
}

/// The JSON schema for OpenAI strict structured outputs (also fine for vLLM, Ollama, llama.cpp).
///
/// Every property is required, `additionalProperties` is false, `category_id` is
/// `anyOf [string enum of the active ids, null]` (only `null` when no category is active). See the
/// module docs for which limits live here and which only in [`validate`].
///
/// OpenAI caps enum values (1000 in total; above 250 values in one enum, their total length is
/// limited); a helpdesk with that many categories needs a narrower list per request.
///
/// Note: without serde_json's `preserve_order` feature the properties serialise alphabetically,
/// and OpenAI generates fields in schema order; `required` keeps [`FIELDS`] order regardless.
pub fn response_schema(categories: &[Category], limits: &Limits) -> Value {
    let ids = active_ids(categories);
    let category_id = if ids.is_empty() {
        json!({"type": "null", "description": "No categories are available: always null."})
    } else {
        json!({"anyOf": [
            {"type": "string", "enum": ids, "description": "One of the listed category ids; null if none fits."},
            {"type": "null"}
        ]})
    };
    json!({
        "type": "object",
        "properties": {
            "category_id": category_id,
            "priority": {"type": "string", "enum": PriorityLevel::ALL.map(PriorityLevel::as_str)},
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "maxItems": limits.max_tags,
                "description": format!(
                    "Lowercase tags of a-z, 0-9, - and _; at most {} tags of at most {} characters.",
                    limits.max_tags, limits.max_tag_len
                ),
            },
            "language": {
                "type": "string",
                "description": "Lowercase language code of the customer's messages such as en, de or pt-br; und if unknown.",
            },
            "sentiment": {"type": "string", "enum": Sentiment::ALL.map(Sentiment::as_str)},
            "summary": {
                "type": "string",
                "description": format!("At most {} characters.", limits.max_summary_chars),
            },
            "draft_reply": {
                "type": "string",
                "description": format!(
                    "Reply draft for an agent to review; {} to {} characters.",
                    limits.min_draft_chars.max(1), limits.max_draft_chars
                ),
            },
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "needs_human": {"type": "boolean"},
            "reason": {
                "type": "string",
                "description": format!("At most {} characters.", limits.max_reason_chars),
            },
        },
        "required": FIELDS,
        "additionalProperties": false,
    })
}

/// The ids of the active categories, in list order, without duplicates.
fn active_ids(categories: &[Category]) -> Vec<&str> {
    let mut seen = HashSet::new();
    categories
        .iter()
        .filter(|c| c.active())
        .filter_map(|c| c.id.as_deref())
        .filter(|id| seen.insert(*id))
        .collect()
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

/// Strips surrounding whitespace and one markdown code fence (info string empty or `json`).
fn strip_fence(raw: &str) -> (&str, bool) {
    let text = raw.trim();
    let inner = text.strip_prefix("```").and_then(|rest| rest.strip_suffix("```"));
    let Some((info, body)) = inner.and_then(|inner| inner.split_once('\n')) else {
        return (text, false);
    };
    let info = info.trim();
    if (info.is_empty() || info.eq_ignore_ascii_case("json")) && !body.contains("```") {
        (body.trim(), true)
    } else {
        (text, false)
    }
}

/// The top-level keys of a JSON object in order, duplicates included.
struct TopKeys(Vec<String>);

impl<'de> Deserialize<'de> for TopKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = TopKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(TopKeys(keys))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// Reads the typed fields out of the object. Fields that are missing or of the wrong type get a
/// problem, a placeholder value, and an entry in the returned skip set.
fn read_fields(
    map: &Map<String, Value>,
    problems: &mut Vec<Problem>,
) -> (LlmDecision, BTreeSet<&'static str>) {
    let mut raw = LlmDecision::default();
    let mut skip = BTreeSet::new();
    for field in FIELDS {
        let Some(value) = map.get(field) else {
            problems.push(Problem::new(field, format!("missing field `{field}`")));
            skip.insert(field);
            continue;
        };
        let ok = match (field, value) {
            ("category_id", Value::Null) => true,
            ("category_id", Value::String(s)) => {
                raw.category_id = Some(s.clone());
                true
            }
            ("tags", Value::Array(items)) => {
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => raw.tags.push(s.clone()),
                        other => {
                            problems.push(Problem::new(
                                field,
                                format!("tags[{i}] must be a string, got {}", kind(other)),
                            ));
                            ok = false;
                        }
                    }
                }
                if !ok {
                    skip.insert(field);
                }
                continue;
            }
            ("confidence", Value::Number(n)) => match n.as_f64() {
                Some(c) => {
                    raw.confidence = c;
                    true
                }
                None => false,
            },
            ("needs_human", Value::Bool(b)) => {
                raw.needs_human = *b;
                true
            }
            (_, Value::String(s)) => match field {
                "priority" => set(&mut raw.priority, s),
                "language" => set(&mut raw.language, s),
                "sentiment" => set(&mut raw.sentiment, s),
                "summary" => set(&mut raw.summary, s),
                "draft_reply" => set(&mut raw.draft_reply, s),
                "reason" => set(&mut raw.reason, s),
                _ => false,
            },
            _ => false,
        };
        if !ok {
            let expected = match field {
                "category_id" => "a string or null",
                "tags" => "an array of strings",
                "confidence" => "a number from 0 to 1",
                "needs_human" => "true or false",
                _ => "a string",
            };
            problems.push(Problem::new(field, format!("{field} must be {expected}, got {}", kind(value))));
            skip.insert(field);
        }
    }
    (raw, skip)
}

fn set(slot: &mut String, value: &str) -> bool {
    value.clone_into(slot);
    true
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

/// C0/C1 controls except tab and newlines, and the bidirectional overrides that can disguise text
/// on the review page. PostgreSQL text cannot store NUL at all.
fn is_unwanted_control(c: char) -> bool {
    (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
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

/// Why a raw tag yields nothing.
enum TagDrop {
    /// Letters outside ASCII: stripping them would change the word, so the tag goes.
    NonAscii,
    /// Nothing left after normalisation.
    Empty,
}

fn normalize(raw: &str) -> Result<String, TagDrop> {
    let raw = raw.trim();
    if raw.chars().any(|c| !c.is_ascii() && c.is_alphanumeric()) {
        return Err(TagDrop::NonAscii);
    }
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_whitespace() { '-' } else { c.to_ascii_lowercase() };
        match c {
            'a'..='z' | '0'..='9' => out.push(c),
            '-' | '_' if !out.ends_with(['-', '_']) => out.push(c),
            _ => {}
        }
    }
    let out = out.trim_matches(['-', '_']);
    if out.is_empty() { Err(TagDrop::Empty) } else { Ok(out.to_owned()) }
}

/// One tag in canonical form: trimmed, ASCII-lowercased, whitespace as `-`, only `[a-z0-9_-]`
/// kept, runs of `-`/`_` collapsed to their first character, `-`/`_` trimmed from the ends.
/// `None` when nothing is left, or when the tag has non-ASCII letters or digits (`café`, `日本語`,
/// look-alike Cyrillic): dropping those characters would change the word rather than tidy it.
/// Idempotent. Length limits are applied by [`normalize_tags`].
pub fn normalize_tag(raw: &str) -> Option<String> {
    normalize(raw).ok()
}

/// Normalises a tag list: [`normalize_tag`] each, drop those longer than `max_tag_len`, dedupe
/// keeping the first, drop what the policy does not allow, keep the first `max_tags`.
/// Returns the tags and one note per adjustment (bounded; the rest are counted).
pub fn normalize_tags(raw: &[String], policy: &TagPolicy, limits: &Limits) -> (Vec<String>, Vec<String>) {
    let mut kept: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    for tag in raw {
        let normal = match normalize(tag) {
            Ok(normal) => normal,
            Err(TagDrop::NonAscii) => {
                notes.push(format!("tag {} has non-ASCII letters; dropped", show(tag)));
                continue;
            }
            Err(TagDrop::Empty) => {
                notes.push(format!("tag {} has no usable characters; dropped", show(tag)));
                continue;
            }
        };
        if normal.len() > limits.max_tag_len {
            notes.push(format!(
                "tag {} is longer than {} characters; dropped",
                show(tag),
                limits.max_tag_len
            ));
        } else if kept.contains(&normal) {
            notes.push(format!("tag {} repeats `{normal}`; dropped", show(tag)));
        } else if !policy.allows(&normal) {
            notes.push(format!("tag `{normal}` is not on the allow-list; dropped"));
        } else {
            let lost_characters = normal.len() < tag.trim().chars().filter(|c| !c.is_whitespace()).count();
            if lost_characters {
                notes.push(format!("tag {} normalised to `{normal}`", show(tag)));
            }
            kept.push(normal);
        }
    }
    if notes.len() > MAX_TAG_NOTES {
        let more = notes.len() - MAX_TAG_NOTES;
        notes.truncate(MAX_TAG_NOTES);
        notes.push(format!("and {more} more tag adjustments"));
    }
    if kept.len() > limits.max_tags {
        let dropped = kept.split_off(limits.max_tags);
        notes.push(format!(
            "kept the first {} tags; dropped {} more: {}",
            limits.max_tags,
            dropped.len(),
            list_ids(&dropped.iter().map(String::as_str).collect::<Vec<_>>())
        ));
    }
    (kept, notes)
}

/// "cat-a, cat-b, … and 3 more".
fn list_ids(ids: &[&str]) -> String {
    let shown = ids.iter().take(MAX_IDS_IN_MESSAGE).copied().collect::<Vec<_>>().join(", ");
    match ids.len().saturating_sub(MAX_IDS_IN_MESSAGE) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// A model-supplied value for a message: at most 64 characters, no control characters or
/// backticks, in backticks. Messages go back to the model and into logs; the value is untrusted.
fn show(value: &str) -> String {
    format!("`{}`", clip(value))
}

fn clip(value: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = value
        .chars()
        .take(MAX)
        .map(|c| if c == '`' || c.is_control() || is_unwanted_control(c) { '?' } else { c })
        .collect();
    if value.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(id: &str, active: Option<bool>) -> Category {
        Category { id: Some(id.into()), is_active: active, ..Category::default() }
    }

    fn categories() -> Vec<Category> {
        vec![
            cat("cat-billing", Some(true)),
            cat("cat-refunds", None),
            cat("cat-legacy", Some(false)),
            Category { id: None, ..Category::default() },
            cat("cat-billing", Some(true)),
        ]
    }

    /// Every object node in the schema, with its JSON pointer.
    fn objects<'v>(path: String, v: &'v Value, out: &mut Vec<(String, &'v Map<String, Value>)>) {
        match v {
            Value::Object(map) => {
                if map.get("type") == Some(&json!("object")) {
                    out.push((path.clone(), map));
                }
                for (k, child) in map {
                    objects(format!("{path}/{k}"), child, out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    objects(format!("{path}/{i}"), child, out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn schema_requires_every_property_and_forbids_extras_at_every_level() {
        let schema = response_schema(&categories(), &Limits::default());
        let mut found = Vec::new();
        objects(String::new(), &schema, &mut found);
        assert_eq!(found.len(), 1, "only the root is an object today");
        for (path, obj) in found {
            assert_eq!(obj.get("additionalProperties"), Some(&json!(false)), "{path}");
            let mut props: Vec<&str> =
                obj["properties"].as_object().unwrap().keys().map(String::as_str).collect();
            let mut required: Vec<&str> =
                obj["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            props.sort_unstable();
            required.sort_unstable();
            assert_eq!(props, required, "{path}");
        }
        assert_eq!(schema["required"], json!(FIELDS));
    }

    #[test]
    fn schema_category_enum_is_the_active_ids_then_null() {
        let schema = response_schema(&categories(), &Limits::default());
        assert_eq!(
            schema["properties"]["category_id"]["anyOf"],
            json!([
                {"type": "string", "enum": ["cat-billing", "cat-refunds"],
                 "description": "One of the listed category ids; null if none fits."},
                {"type": "null"}
            ])
        );
        let none = response_schema(&[cat("cat-legacy", Some(false))], &Limits::default());
        assert_eq!(none["properties"]["category_id"]["type"], json!("null"));
    }

    #[test]
    fn schema_enums_and_bounds() {
        let limits = Limits { max_tags: 5, ..Limits::default() };
        let p = &response_schema(&categories(), &limits)["properties"];
        assert_eq!(p["priority"]["enum"], json!(["NONE", "LOW", "NORMAL", "HIGH", "URGENT"]));
        assert_eq!(p["sentiment"]["enum"], json!(["positive", "neutral", "negative", "angry"]));
        assert_eq!(p["confidence"], json!({"type": "number", "minimum": 0, "maximum": 1}));
        assert_eq!(p["tags"]["maxItems"], json!(5));
        assert_eq!(p["tags"]["items"], json!({"type": "string"}));
        assert_eq!(p["needs_human"], json!({"type": "boolean"}));
    }

    #[test]
    fn schema_uses_only_keywords_openai_strict_documents() {
        const ALLOWED: [&str; 11] = [
            "type",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "enum",
            "anyOf",
            "description",
            "minimum",
            "maximum",
            "maxItems",
        ];
        fn walk(v: &Value, in_properties: bool) {
            if let Value::Object(map) = v {
                for (k, child) in map {
                    if !in_properties {
                        assert!(ALLOWED.contains(&k.as_str()), "keyword `{k}` is not in the strict subset");
                    }
                    match (k.as_str(), child) {
                        ("enum" | "required", _) => {}
                        ("properties", _) => walk(child, true),
                        ("anyOf", Value::Array(items)) => items.iter().for_each(|i| walk(i, false)),
                        _ => walk(child, false),
                    }
                }
            }
        }
        walk(&response_schema(&categories(), &Limits::default()), false);
    }

    #[test]
    fn schema_properties_match_the_wire_type() {
        let wire = serde_json::to_value(LlmDecision::default()).unwrap();
        let schema = response_schema(&categories(), &Limits::default());
        let wire_keys: BTreeSet<&String> = wire.as_object().unwrap().keys().collect();
        let schema_keys: BTreeSet<&String> = schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(wire_keys, schema_keys);
        assert_eq!(wire_keys.len(), FIELDS.len());
        assert_eq!(schema_name(), "triage_decision");
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

    #[test]
    fn tag_normalisation_rules() {
        for (raw, want) in [
            ("  Billing Issue ", Some("billing-issue")),
            ("VIP!!!", Some("vip")),
            ("<script>", Some("script")),
            ("a--b__c", Some("a-b_c")),
            ("a - _ b", Some("a-b")),
            ("--x--", Some("x")),
            ("refund_request", Some("refund_request")),
            ("cat-security; DROP TABLE", Some("cat-security-drop-table")),
            ("café", None),
            ("日本語", None),
            ("v\u{0456}p", None), // Cyrillic і
            ("!!!", None),
            ("   ", None),
        ] {
            assert_eq!(normalize_tag(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn tag_normalisation_is_idempotent() {
        for raw in ["  Billing Issue ", "VIP!!!", "a--b__c", "x_-_y", "--x--", "Hello\tWorld"] {
            let once = normalize_tag(raw).unwrap();
            assert_eq!(normalize_tag(&once).as_deref(), Some(once.as_str()), "{raw:?}");
        }
    }

    #[test]
    fn tags_dedupe_filter_then_cap() {
        let raw: Vec<String> =
            ["Refund", "refund", "spam", "x".repeat(40).as_str(), "a", "b", "c"].map(str::to_owned).to_vec();
        let policy = TagPolicy::allow_list(["REFUND", "a", "b", "c"]);
        let limits = Limits { max_tags: 3, ..Limits::default() };
        let (tags, notes) = normalize_tags(&raw, &policy, &limits);
        assert_eq!(tags, ["refund", "a", "b"]);
        assert_eq!(
            notes,
            [
                "tag `refund` repeats `refund`; dropped",
                "tag `spam` is not on the allow-list; dropped",
                "tag `xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx` is longer than 32 characters; dropped",
                "kept the first 3 tags; dropped 1 more: c",
            ]
        );
    }

    #[test]
    fn language_codes() {
        for (code, ok) in [("en", true), ("pt-br", true), ("zh-hant-tw", true), ("und", true), ("e", false)] {
            assert_eq!(is_language_code(code), ok, "{code}");
        }
        assert!(!is_language_code("english"));
        assert!(!is_language_code("en-"));
        assert!(!is_language_code("de-123456789"));
    }

    #[test]
    fn fence_stripping_is_single_and_exact() {
        assert_eq!(strip_fence("  ```json\n{\"a\":1}\n```  "), ("{\"a\":1}", true));
        assert_eq!(strip_fence("```\n{}\n```"), ("{}", true));
        assert_eq!(strip_fence("```JSON\n{}\n```"), ("{}", true));
        assert_eq!(strip_fence("```python\n{}\n```"), ("```python\n{}\n```", false));
        assert_eq!(strip_fence("```{}```"), ("```{}```", false));
        assert!(!strip_fence("```json\n{}\n```\n```json\n{}\n```").1);
        assert!(!strip_fence("Sure! ```json\n{}\n```").1);
        assert_eq!(strip_fence("\n{}\n"), ("{}", false));
    }

    #[test]
    fn shown_values_are_clipped_and_defanged() {
        assert_eq!(show("a`b\u{0}c"), "`a?b?c`");
        assert_eq!(show(&"x".repeat(70)), format!("`{}…`", "x".repeat(64)));
    }

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
    fn every_error_is_permanent() {
        assert!(DecisionError::NotJson { detail: "x".into() }.is_permanent());
        assert!(DecisionError::Schema { problems: vec![] }.is_permanent());
    }
}
