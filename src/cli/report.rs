//! `deskpilot report`: how often deskpilot's proposals agree with what people finally set, per
//! connection and category, and which categories are ready for `apply_if_confident`.

use clap::Args;
use time::OffsetDateTime;

use super::{backfill::parse_time, print_json};
use crate::{app::App, config::Config, review::report::Bar};

/// Options of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only this connection
    #[arg(long, value_name = "ID")]
    connection: Option<String>,

    /// Only proposals stored since then (RFC 3339 time or date; default: all)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<OffsetDateTime>,

    /// Do not read the tickets whose outcome is not final yet before reporting (the outcomes
    /// consumer records them as their changes arrive)
    #[arg(long)]
    no_refresh: bool,

    /// Closed tickets a category needs before automation is recommended
    #[arg(long, value_name = "N", default_value_t = Bar::default().min_closed)]
    min_closed: usize,

    /// Share of them that must agree (0 to 1)
    #[arg(long, value_name = "X", default_value_t = Bar::default().min_precision, value_parser = parse_share)]
    min_precision: f64,

    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

fn parse_share(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|x| (0.0..=1.0).contains(x))
        .ok_or_else(|| format!("`{s}` is not a share from 0 to 1, e.g. 0.95"))
}

/// `deskpilot report`.
pub(super) async fn run(config: &Config, args: ReportArgs) -> anyhow::Result<()> {
    if let Some(c) = &args.connection {
        config.connection(c)?;
    }
    let app = App::build(config).await?;
    let reviews = app.reviews();
    let since = args.since.unwrap_or(OffsetDateTime::UNIX_EPOCH);
    if !args.no_refresh {
        let read = reviews.refresh_outcomes(args.connection.as_deref(), since).await?;
        tracing::info!(tickets = read, "outcomes refreshed");
    }
    let bar = Bar { min_closed: args.min_closed, min_precision: args.min_precision };
    let report = reviews.report(args.connection.as_deref(), since, bar).await?;
    app.store().close().await;
    if args.json {
        print_json(&report, false)
    } else {
        print!("{}", report.to_text());
        Ok(())
    }
}
