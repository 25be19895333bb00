//! deskpilot: an AI support-agent worker over one normalized ticketing layer.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod sandbox;
pub mod shutdown;
pub mod telemetry;
pub mod ticketing;
pub mod triage;
