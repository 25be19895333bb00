//! `deskpilot backfill`: the initial sync of a connection's history, with a progress bar.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use time::OffsetDateTime;

use super::print_json;
use crate::{
    App,
    config::Config,
    ingest::{
        Tally,
        backfill::{
            Backfill, BackfillKind, BackfillOutcome, BackfillProgress, BackfillSettings, BackfillSpec,
            ProgressSink,
        },
        poll::replica_id,
    },
    ticketing::{DynTicketReader, model::format_timestamp},
};

/// Options of `backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Connection id from the config
    #[arg(long, value_name = "ID")]
    connection: String,
    /// Start of the window: an RFC 3339 time (2026-11-01T08:00:00Z) or a date (2026-11-01,
    /// midnight UTC)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: OffsetDateTime,
    /// End of the window (default: as far as the helpdesk's list goes)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<OffsetDateTime>,
    /// `created`: only tickets created in the window, as ticket.created; `all` (default): every
    /// change in it, as ticket.created or ticket.updated
    #[arg(long, value_enum, default_value_t = KindArg::All)]
    kind: KindArg,
    /// Tickets per page (Unified.to returns at most 100)
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=100))]
    page_size: u32,
    /// Most list requests per second (default: as fast as the helpdesk answers; its rate limits
    /// are waited out either way)
    #[arg(long, value_name = "N")]
    max_rps: Option<f64>,
    /// Walk the window again from its start, forgetting where an earlier run of the same
    /// backfill stopped or that it finished
    #[arg(long)]
    restart: bool,
}

/// `--kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KindArg {
    All,
    Created,
}

/// An RFC 3339 time, or a date at midnight UTC.
pub(super) fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    crate::ticketing::model::parse_time_or_date(s)
}

/// `deskpilot backfill`: publishes an event per ticket change in the window to RabbitMQ, resuming
/// where an earlier run of the same arguments stopped.
pub(super) async fn run(config: &Config, args: BackfillArgs) -> anyhow::Result<()> {
    // On the in-process bus nobody else could consume what this process publishes.
    super::worker::amqp_url(config)?;
    config.connection(&args.connection)?;
    if let Some(until) = args.until.filter(|until| *until < args.since) {
        bail!("--until {} is before --since {}", format_timestamp(until), format_timestamp(args.since));
    }
    if args.max_rps.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--max-rps must be above 0");
    }
    let spec = BackfillSpec {
        connection_id: args.connection.clone(),
        since: args.since,
        until: args.until,
        kind: match args.kind {
            KindArg::All => BackfillKind::All,
            KindArg::Created => BackfillKind::Created,
        },
    };
    let app = App::build(config).await?;
    let name = spec.cursor_name();
    if args.restart && !app.store().forget_cursor(&name).await? && app.store().cursor(&name).await?.is_some()
    {
        bail!("a run of this backfill is in progress (its claim on `{name}` is live); stop it first");
    }
    let reader: DynTicketReader =
        app.helpdesk(&args.connection).context("the connection's helpdesk client")?.clone();
    let publisher = app.publisher().await?;
    let settings = BackfillSettings {
        page_size: args.page_size,
        max_requests_per_sec: args.max_rps,
        ..BackfillSettings::default()
    };
    let backfill = Backfill::new(reader, app.store().clone(), publisher.clone(), settings, replica_id());
    let mut bar = Bar::new(&spec);
    let stop = crate::shutdown::on_signals();
    let outcome = backfill.run(&spec, &mut bar, &stop).await;
    bar.done(matches!(outcome, Ok(BackfillOutcome::Finished { .. })));
    publisher.close().await;
    app.store().close().await;

    let window = json!({
        "connection": spec.connection_id,
        "since": format_timestamp(spec.since),
        "until": spec.until.map(format_timestamp),
        "kind": spec.kind.as_str(),
    });
    let (status, tally, progress) = match outcome.with_context(|| {
        format!("the backfill stopped; run the same command again to resume where it stood ({name})")
    })? {
        BackfillOutcome::Finished { tally, progress } => ("finished", tally, progress),
        BackfillOutcome::Stopped { tally, progress } => {
            eprintln!("stopped; run the same command again to resume");
            ("stopped", tally, progress)
        }
        BackfillOutcome::AlreadyFinished(cursor) => {
            eprintln!("this backfill finished earlier; add --restart to walk the window again");
            let progress = BackfillProgress {
                position: cursor.position,
                tickets_seen: cursor.tickets_seen,
                published: cursor.published,
            };
            ("already_finished", Tally::default(), progress)
        }
        BackfillOutcome::Busy { holder, until } => bail!(
            "another run of this backfill is in progress ({holder}, its claim ends at {} unless renewed)",
            format_timestamp(until)
        ),
    };
    print_json(
        &json!({
            "window": window,
            "status": status,
            "position": progress.position.map(format_timestamp),
            "tickets_seen": progress.tickets_seen,
            "published": progress.published,
            "this_run": {
                "tickets_seen": tally.tickets,
                "published": tally.published,
                "unrouted": tally.unrouted,
                "own_writes_skipped": tally.own_writes,
                "out_of_scope": tally.out_of_scope,
            },
        }),
        false,
    )
}

/// The progress bar: how far through the window the walk is (by `updated_at`), with tickets
/// seen, events published, the rate and an ETA. Drawn on stderr when it is a terminal.
struct Bar {
    bar: ProgressBar,
    since: OffsetDateTime,
    started: Instant,
    /// Tickets seen when this run started (a resumed run counts on from there).
    seen_before: u64,
}

impl Bar {
    /// A bar over `spec`'s window; with no `until`, the window ends now.
    fn new(spec: &BackfillSpec) -> Self {
        let end = spec.until.unwrap_or_else(OffsetDateTime::now_utc);
        let span = u64::try_from((end - spec.since).whole_seconds()).unwrap_or(0).max(1);
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(span), target);
        let style =
            ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {percent:>3}% {msg} (ETA {eta})")
                .expect("a valid template")
                .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(250));
        Self { bar, since: spec.since, started: Instant::now(), seen_before: 0 }
    }

    /// Leaves the bar where it stands (full when the window was walked to its end) and ends
    /// its line, so what follows starts on a line of its own.
    fn done(&self, finished: bool) {
        if finished && let Some(length) = self.bar.length() {
            self.bar.set_position(length);
        }
        self.bar.abandon();
        if !self.bar.is_hidden() {
            eprintln!();
        }
    }
}

impl ProgressSink for Bar {
    fn started(&mut self, p: BackfillProgress) {
        self.seen_before = p.tickets_seen;
        self.started = Instant::now();
        self.advanced(p);
    }

    fn advanced(&mut self, p: BackfillProgress) {
        if let Some(position) = p.position {
            let at = u64::try_from((position - self.since).whole_seconds()).unwrap_or(0);
            self.bar.set_position(at.min(self.bar.length().unwrap_or(at)));
        }
        let rate = p.tickets_seen.saturating_sub(self.seen_before) as f64
            / self.started.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!(
            "{} tickets seen, {} published, {rate:.1} tickets/s",
            p.tickets_seen, p.published
        ));
    }

    fn pausing(&mut self, why: &str, pause: Duration) {
        self.bar.println(format!("{why}; asking again in {:.1}s", pause.as_secs_f64()));
    }
}
