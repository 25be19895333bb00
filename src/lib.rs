//! deskpilot: an AI support-agent worker over one normalized ticketing layer.
#![forbid(unsafe_code)]

pub mod act;
pub mod app;
pub mod bus;
pub mod cli;
pub mod config;
pub mod events;
pub mod http;
pub mod runtime;
pub mod sandbox;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod ticketing;
pub mod triage;
pub mod worker;

pub use app::{App, run};

/// The allocator of every binary built on this crate (the service, its tests and benchmarks).
/// Each event allocates and frees thousands of small short-lived objects (JSON, prompts, HTTP)
/// from several threads; jemalloc's thread caches take them with less CPU than glibc malloc and
/// hand freed memory back instead of keeping it in per-thread arenas (measured with
/// `cargo bench --bench worker`: CPU per ticket and peak RSS both lower).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
