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
//! - tags normalised and filtered by [`normalize_tags`] (never a problem, only notes);
//! - a number too large for an f64 (a grammar that ignores `maximum` lets it through), read as
//!   an out-of-range value of its field rather than as invalid JSON.
//!
//! Everything else is a [`Problem`], and all problems are collected in one pass so that one
//! repair round trip (`prompts/triage/repair.j2`, one line per problem) can fix them all.
//!
//! **Schema vs validation.** [`response_schema`] uses only keywords OpenAI documents for strict
//! mode: `type`, `properties`, `required`, `additionalProperties`, `items`, `enum`, `anyOf`,
//! `description`, `minimum`/`maximum` (confidence) and `maxItems` (tags). String lengths are NOT in
//! the schema: OpenAI does not list `maxLength`/`minLength` as supported in strict mode and some
//! compatible servers reject them; the limits are stated in the property descriptions and enforced
//! here. Tag characters (no `pattern`) are likewise enforced here only.
//!
//! **Layout.** `types` holds the decision, its wire form and the limits; `schema` the response
//! schema; `answer` reads the answer text into wire fields; `numbers` keeps numbers an f64 cannot hold; `validation` checks them (and rechecks
//! decisions made elsewhere); `problem` says what is wrong; `tags` is the tag policy and the tag
//! normalisation; `wording` quotes untrusted values in problems and notes.

mod answer;
mod numbers;
mod problem;
mod schema;
mod tags;
mod types;
mod validation;
mod wording;

pub use problem::{DecisionError, Problem};
pub use schema::{response_schema, schema_name};
pub use tags::{TagPolicy, normalize_tag, normalize_tags};
pub use types::{Decision, FIELDS, Limits, LlmDecision, Origin, Sentiment, UNKNOWN_LANGUAGE};
pub use validation::{Validated, no_longer_fits, validate};
