//! `deskpilot backtest`: a connection's closed tickets replayed through the engine as they were
//! opened, scored against what people left on them at close; the report of `eval`, with a
//! progress bar on stderr. Reads the helpdesk; writes nothing to it.

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, bail};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::{
    backfill::parse_time,
    eval::{progress_bar, render_with, save_report},
    print_json,
    tickets::connection_client,
};
use crate::{
    app::parts,
    config::Config,
    ticketing::{DynTicketReader, model::format_timestamp},
    triage::eval::{
        EvalReport,
        backtest::{self, BacktestReport, Selection},
        run_inputs,
    },
};

/// Options of `backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Connection whose closed tickets are replayed (optional when only one is configured)
    #[arg(long, env = "DESKPILOT_CONNECTION", value_name = "ID")]
    connection: Option<String>,

    /// Only tickets closed at or after this RFC 3339 time (2026-11-01T08:00:00Z) or date
    /// (2026-11-01, midnight UTC); default: every closed ticket
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    closed_since: Option<OffsetDateTime>,

    /// At most this many tickets, the first closed in the helpdesk's oldest-first listing
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,

    /// Tickets triaged at once (LLM requests in flight)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,

    /// Print the JSON report on stdout instead of the text report
    #[arg(long)]
    json: bool,

    /// Also write the JSON report to this file
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(super) async fn run(config: &Config, args: BacktestArgs) -> anyhow::Result<()> {
    let (id, client) = connection_client(config, args.connection.as_deref())?;
    // Read only: nothing below can write to the helpdesk.
    let helpdesk: DynTicketReader = client;
    let policy = parts::triage_policy(config, config.connection(&id)?)?;
    let engine = Arc::new(parts::engine(config)?);
    let categories = helpdesk
        .list_categories()
        .await
        .with_context(|| format!("could not read the categories of connection `{id}`"))?;

    let selection = Selection { closed_since: args.closed_since, limit: args.limit.map(|n| n as usize) };
    let since = || args.closed_since.map_or_else(String::new, |t| format!(" since {}", format_timestamp(t)));
    let tickets = backtest::closed_tickets(helpdesk.as_ref(), selection)
        .await
        .with_context(|| format!("could not list the closed tickets of connection `{id}`"))?;
    if tickets.is_empty() {
        bail!(
            "connection `{id}` has no ticket closed{}; nothing to replay (try an earlier --closed-since)",
            since()
        );
    }
    // Only tickets with an empty description cost a request here.
    let concurrency = usize::from(args.concurrency);
    let reader = helpdesk.as_ref();
    let firsts: Vec<Option<String>> = futures::stream::iter(&tickets)
        .map(|t| async move {
            backtest::first_message(reader, t).await.with_context(|| {
                format!("could not read the first message of ticket `{}`", t.id.as_deref().unwrap_or("?"))
            })
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let inputs = tickets
        .iter()
        .zip(firsts)
        .enumerate()
        .map(|(i, (t, first))| backtest::input(i + 1, t, first, &categories))
        .collect();

    let bar = progress_bar(tickets.len() as u64, "tickets");
    let mut failed = 0usize;
    let outcomes = run_inputs(&engine, inputs, &policy, concurrency, |o| {
        failed += usize::from(o.proposed.is_none());
        bar.set_message(format!("{failed} failed"));
        bar.inc(1);
    })
    .await;
    bar.finish_and_clear();

    let figures =
        EvalReport::new(format!("closed tickets of {id}{}", since()), id.clone(), engine.model(), outcomes);
    let report = BacktestReport::new(args.closed_since, figures);
    save_report(&report, args.out.as_deref())?;
    if args.json {
        return print_json(&report, false);
    }
    let header = format!("{}: decided by {}", report.title(), report.figures.decided_by);
    print!("{}", render_with(&header, &report.figures, false));
    Ok(())
}
