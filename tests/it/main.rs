//! The integration tests: one binary (one link instead of one per area), a module per area and
//! the shared harness in `helpers/`.
//!
//! RabbitMQ (127.0.0.1:5672, guest/guest; `DESKPILOT_TEST_AMQP_URL`) and PostgreSQL
//! (`postgres://postgres@127.0.0.1:5432/test`; `DESKPILOT_TEST_PG_URL`) must be running: the bus,
//! store and worker tests use the real servers and fail, saying how to start them, when they are
//! down. Every test has its own broker names, database, sandbox and LLM mock, so they run in
//! parallel. `TEST_LOG=deskpilot=debug` shows the logs.

mod helpers;

mod app;
mod backtest;
mod bus_amqp;
mod bus_memory;
mod cli;
mod config;
mod container;
mod decision;
mod eval;
mod freshdesk_http;
mod freshdesk_sandbox;
mod ingest_backfill;
mod ingest_loop_guard;
mod ingest_poll;
mod ingest_serve;
mod ingest_webhook_loop;
mod intercom_config;
mod intercom_http;
mod intercom_sandbox;
mod llm_limits;
mod metrics;
mod readme;
mod review_page;
mod sandbox;
mod serve;
mod servicenow_config;
mod servicenow_http;
mod servicenow_sandbox;
mod store;
mod store_disk_full;
mod triage_context;
mod triage_injection;
mod triage_llm;
mod triage_local;
mod triage_models;
mod triage_privacy;
mod unified_http;
mod unified_sandbox;
mod webhook;
mod webhook_props;
mod worker;
mod zendesk_config;
mod zendesk_http;
mod zendesk_sandbox;
