//! Offline evaluation: a labelled dataset (`dataset`) run through the engine (`run`) and the
//! agreement figures (`metrics`: accuracy, confusion, macro-F1, percentiles) that any report
//! comparing proposals with people's choices can reuse.

pub mod backtest;
pub mod dataset;
pub mod metrics;
pub mod run;

pub use dataset::{Case, DatasetError, Expected};
pub use run::{CaseOutcome, EvalReport, Input, run_cases, run_inputs};
