//! The `deskpilot` command line: argument parsing, the commands, and errors at the edge.
//!
//! `main.rs` only calls [`main`]. Every command loads what it needs and returns `anyhow::Result`;
//! an error prints as `error: <message>` followed by one `caused by:` line per cause, exit code 1.
//! Usage errors are clap's (exit code 2).

mod backfill;
mod backtest;
mod check;
mod demo;
mod eval;
mod proposals;
mod report;
mod sandbox;
mod serve;
mod tickets;
mod triage;
mod webhooks;
mod worker;

use std::{
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::{config::Config, telemetry::LogFormat};

/// deskpilot: an AI support-agent worker that triages helpdesk tickets.
#[derive(Debug, Parser)]
#[command(name = "deskpilot", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Start with `deskpilot sandbox` in one terminal and `deskpilot check` in another.")]
pub struct Cli {
    /// Configuration file, layered over the built-in defaults and under DESKPILOT__* variables
    /// (see config/example.toml)
    #[arg(long, global = true, env = "DESKPILOT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr (filter with DESKPILOT_LOG or RUST_LOG, e.g. `debug`)
    #[arg(long, global = true, env = "DESKPILOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sandbox helpdesk: Unified.to's Ticketing API over bundled sample data
    Sandbox(sandbox::SandboxArgs),
    /// Check the configuration and try every connection (run this first)
    Check,
    /// Read tickets through a connection; prints JSON on stdout
    #[command(subcommand)]
    Tickets(tickets::TicketsCommand),
    /// Propose a triage for one ticket (category, priority, tags, draft); writes nothing
    Triage(triage::TriageArgs),
    /// Measure triage on a labelled dataset (accuracy, macro-F1, confusion, tokens, cost,
    /// latency) through the same engine as the worker; writes nothing to any helpdesk
    Eval(eval::EvalArgs),
    /// Replay a connection's closed tickets through the worker's engine as they were opened and
    /// score the answers against the category and priority people left at close (the report of
    /// eval); writes nothing to the helpdesk
    Backtest(backtest::BacktestArgs),
    /// Run the whole pipeline in one process on the sandbox helpdesk (in-process bus, SQLite)
    Demo(demo::DemoArgs),
    /// Consume ticket events from RabbitMQ, triage and act on them until SIGTERM/Ctrl-C
    Worker,
    /// Receive helpdesk webhooks (POST /webhooks/<connection>) and poll, publishing ticket events
    /// to RabbitMQ, until SIGTERM/Ctrl-C
    Ingest,
    /// Run ingest and the worker in one process (a small team: the in-process bus or RabbitMQ)
    Serve,
    /// Review shadow proposals: list, show, approve (as proposed or edited) or reject them
    #[command(subcommand)]
    Proposals(proposals::ProposalsCommand),
    /// How often proposals agree with what people finally set, per connection and category, and
    /// which categories are ready for apply_if_confident
    Report(report::ReportArgs),
    /// Serve the review page alone (GET /review) until SIGTERM/Ctrl-C; approvals are applied
    /// from this process
    Review(serve::ReviewArgs),
    /// Helpdesk webhook subscriptions
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Publish an event per ticket changed in a window of the helpdesk's history (the initial
    /// sync), with a progress bar; resumes where a stopped run of the same window stood
    Backfill(backfill::BackfillArgs),
    /// Publish one ticket event by hand (confirmed by the broker); prints it
    Publish(worker::PublishArgs),
    /// Broker topology
    #[command(subcommand)]
    Bus(worker::BusCommand),
    /// The dead-letter queue
    #[command(subcommand)]
    Dead(worker::DeadCommand),
}

/// Parses the command line, runs the command and turns its outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::http::install_crypto_provider();
    let default_filter = match cli.command {
        Command::Demo(_) => "warn",
        _ => crate::telemetry::DEFAULT_FILTER,
    };
    if let Err(e) = crate::telemetry::init_with_default(cli.log_format, default_filter) {
        eprintln!("warning: {e:#}");
    }
    // The sandbox needs no configuration; every other command loads (and validates) it first,
    // and runs on `worker.threads` threads.
    let config = match &cli.command {
        Command::Sandbox(_) => None,
        _ => match Config::load(cli.config.as_deref()) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("{}", render_error(&e));
                return ExitCode::FAILURE;
            }
        },
    };
    let threads = config
        .as_ref()
        .map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |c| c.worker.threads);
    let runtime = match crate::runtime::build(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", render_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command with its configuration (loaded by [`main`] for every command but the
/// sandbox, which needs none).
pub async fn run(command: Command, config: Option<Config>) -> anyhow::Result<()> {
    // Taken by the one arm that runs; the sandbox's never looks.
    let config =
        config.ok_or_else(|| anyhow::anyhow!("this command needs the configuration, which was not loaded"));
    match command {
        Command::Sandbox(args) => sandbox::run(args).await,
        Command::Check => check::run(&config?).await,
        Command::Tickets(cmd) => tickets::run(&config?, cmd).await,
        Command::Triage(args) => triage::run(&config?, args).await,
        Command::Demo(args) => demo::run(&config?, args).await,
        Command::Eval(args) => eval::run(&config?, args).await,
        Command::Backtest(args) => backtest::run(&config?, args).await,
        Command::Worker => worker::worker(&config?).await,
        Command::Ingest => serve::ingest(&config?).await,
        Command::Serve => serve::serve(&config?).await,
        Command::Webhooks(cmd) => webhooks::run(&config?, cmd).await,
        Command::Proposals(cmd) => proposals::run(&config?, cmd).await,
        Command::Review(args) => serve::review(&config?, args).await,
        Command::Report(args) => report::run(&config?, args).await,
        Command::Backfill(args) => backfill::run(&config?, args).await,
        Command::Publish(args) => worker::publish(&config?, args).await,
        Command::Bus(cmd) => worker::bus(&config?, cmd).await,
        Command::Dead(cmd) => worker::dead(&config?, cmd).await,
    }
}

/// `error: <message>` and one `caused by:` line per cause; continuation lines indented.
pub fn render_error(e: &anyhow::Error) -> String {
    let indent = |s: String, by: &str| s.replace('\n', &format!("\n{by}"));
    let mut out = format!("error: {}", indent(e.to_string(), "  "));
    for cause in e.chain().skip(1) {
        out.push_str(&format!("\n  caused by: {}", indent(cause.to_string(), "    ")));
    }
    out
}

/// Writes `value` as JSON on stdout: pretty, or one line with `compact`.
fn print_json<T: Serialize>(value: &T, compact: bool) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    if compact {
        serde_json::to_writer(&mut out, value)?;
    } else {
        serde_json::to_writer_pretty(&mut out, value)?;
    }
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// `deskpilot tickets list | head` closing the pipe early is not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == io::ErrorKind::BrokenPipe)
    })
}
