//! The triage engine: from a ticket id to a validated Decision, writing nothing anywhere.

pub mod clean;
pub mod context;
pub mod decision;
pub mod llm;
pub mod prompt;
pub mod tokens;
