//! The triage engine: from a ticket id to a validated Decision, writing nothing anywhere.
//!
//! `context` gathers (read only) and fits the ticket to a token budget after `clean`ing it,
//! `prompt` renders the templates (`system` keeps each rendered system message), `llm` asks an OpenAI-compatible model, `decision` validates
//! the answer, `rules` decide when no LLM can, `route` chooses the model, and `engine` ties them together; `eval` measures the engine
//! on a labelled dataset.

pub mod budget;
pub mod clean;
pub mod context;
pub mod decision;
pub mod engine;
pub mod eval;
pub mod llm;
pub mod privacy;
pub mod prompt;
pub mod route;
pub mod rules;
pub mod system;
pub mod tokens;

pub use engine::{
    Budget, Engine, EngineSettings, ModelUsage, Policy, Report, TokenCounting, Triage, TriageError,
};
pub use route::{Escalation, Route};
