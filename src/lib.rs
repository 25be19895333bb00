//! deskpilot: an AI support-agent worker over one normalized ticketing layer.
#![forbid(unsafe_code)]

pub mod act;
pub mod app;
pub mod bus;
pub mod cli;
pub mod config;
pub mod events;
pub mod http;
pub mod ingest;
pub mod review;
pub mod runtime;
pub mod sandbox;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod ticketing;
pub mod triage;
pub mod worker;

pub use app::{App, run};
