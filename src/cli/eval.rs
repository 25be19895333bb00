//! `deskpilot eval`: a labelled dataset through the engine, with a progress bar on stderr, a text
//! report on stdout and the JSON report on request. Reads the helpdesk's categories; writes
//! nothing to any helpdesk.

use std::{fmt::Write as _, io::IsTerminal, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{print_json, tickets::connection_client};
use crate::{
    app::parts,
    config::Config,
    triage::{
        decision::Origin,
        eval::{
            EvalReport, dataset,
            metrics::Confusion,
            run::{CaseOutcome, NO_CATEGORY},
            run_cases,
        },
    },
};

/// Options of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Labelled cases, one JSON object a line (e.g. data/eval/demo.jsonl)
    #[arg(long, value_name = "FILE.jsonl")]
    dataset: PathBuf,

    /// Connection whose helpdesk lists the categories and whose policy applies (optional when
    /// only one is configured)
    #[arg(long, env = "DESKPILOT_CONNECTION", value_name = "ID")]
    connection: Option<String>,

    /// Print the JSON report on stdout instead of the text report
    #[arg(long)]
    json: bool,

    /// Also write the JSON report to this file
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Cases triaged at once (LLM requests in flight)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
}

pub(super) async fn run(config: &Config, args: EvalArgs) -> anyhow::Result<()> {
    let path = args.dataset.display().to_string();
    let cases = dataset::load(&args.dataset)?;
    let (id, helpdesk) = connection_client(config, args.connection.as_deref())?;
    let categories = helpdesk
        .list_categories()
        .await
        .with_context(|| format!("could not read the categories of connection `{id}`"))?;
    dataset::check_categories(&cases, &categories, &path, &id)?;
    let policy = parts::triage_policy(config, config.connection(&id)?)?;
    let engine = Arc::new(parts::engine(config)?);

    let bar = progress_bar(cases.len() as u64, "cases");
    let mut failed = 0usize;
    let outcomes = run_cases(&engine, &cases, &categories, &policy, usize::from(args.concurrency), |o| {
        failed += usize::from(o.proposed.is_none());
        bar.set_message(format!("{failed} failed"));
        bar.inc(1);
    })
    .await;
    bar.finish_and_clear();

    let report = EvalReport::new(path, id, engine.model(), outcomes);
    save_report(&report, args.out.as_deref())?;
    if args.json {
        return print_json(&report, false);
    }
    print!("{}", render(&report));
    Ok(())
}

/// Items done of all (`unit`: cases, tickets), the failures so far and an ETA; drawn on stderr
/// when it is a terminal.
pub(super) fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let style = ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {unit}, {{msg}} (ETA {{eta}})"
    ))
    .expect("a valid template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// The report as text for a terminal.
fn render(r: &EvalReport) -> String {
    let header = format!(
        "eval of {} on connection {}: {} cases decided by {}",
        r.dataset, r.connection, r.cases, r.decided_by
    );
    render_with(&header, r, true)
}

/// `header` and the report's figures as text; `lines`: name each differing case by its line too.
pub(super) fn render_with(header: &str, r: &EvalReport, lines: bool) -> String {
    let mut out = String::new();
    let pct = |a: f64| format!("{:.1}%", a * 100.0);
    let _ = writeln!(out, "{header}");
    let c = &r.category.accuracy;
    let _ = writeln!(
        out,
        "  category   accuracy {} ({}/{}), macro-F1 {:.3}",
        pct(c.accuracy),
        c.correct,
        c.total,
        r.category.macro_f1
    );
    if r.category.unscored > 0 {
        let _ = writeln!(
            out,
            "             {} closed without a category: scored on priority only",
            r.category.unscored
        );
    }
    let p = &r.priority.accuracy;
    let _ = writeln!(out, "  priority   accuracy {} ({}/{})", pct(p.accuracy), p.correct, p.total);
    if let Some(l) = &r.language {
        let _ = writeln!(
            out,
            "  language   accuracy {} ({}/{} cases labelled with one)",
            pct(l.accuracy),
            l.correct,
            l.total
        );
    }
    if let Some(t) = &r.tags {
        let _ =
            writeln!(out, "  tags       recall {} ({}/{} expected tags)", pct(t.recall), t.found, t.expected);
    }
    let _ = writeln!(out, "  failures   {} of {} (counted as wrong above)", r.failures, r.cases);
    let cost =
        r.cost_usd.map_or("unknown (no LLM, or no price for the model)".to_owned(), |c| format!("${c:.5}"));
    let _ = writeln!(
        out,
        "  tokens     prompt {} ({} cached), completion {}; {} LLM calls, {} decided by the rules after an LLM failure; cost {cost}",
        r.tokens.prompt, r.tokens.cached, r.tokens.completion, r.llm_calls, r.rules_fallbacks
    );
    let l = &r.latency_ms;
    let _ = writeln!(
        out,
        "  latency    p50 {} ms, p90 {} ms, p99 {} ms, max {} ms per case",
        l.p50, l.p90, l.p99, l.max
    );

    let _ = writeln!(out, "\ncategory confusion (rows expected, columns proposed):");
    table(&mut out, &r.category.confusion);
    let _ = writeln!(out, "\nper category:        precision  recall     F1  support");
    for s in &r.category.per_category {
        let _ = writeln!(
            out,
            "  {:<20} {:>7.3} {:>7.3} {:>6.3} {:>8}",
            s.label, s.precision, s.recall, s.f1, s.support
        );
    }
    let _ = writeln!(out, "\npriority confusion (rows expected, columns proposed):");
    table(&mut out, &r.priority.confusion);

    let misses: Vec<&CaseOutcome> = r.results.iter().filter(|o| o.differs()).collect();
    if !misses.is_empty() {
        let _ = writeln!(out, "\ncases that differ ({}):", misses.len());
        for o in misses {
            let _ = writeln!(out, "  {}", miss(o, lines));
        }
    }
    out
}

/// One case that differs from its labels: what was expected, what was proposed and by what.
fn miss(o: &CaseOutcome, lines: bool) -> String {
    let label = |c: &Option<String>| c.as_deref().unwrap_or(NO_CATEGORY).to_owned();
    let expected_category =
        if o.category_scored { label(&o.expected.category) } else { "(no category at close)".to_owned() };
    let expected = format!("{expected_category} {}", o.expected.priority);
    let name = if lines { format!("{} (line {})", o.id, o.line) } else { o.id.clone() };
    match (&o.proposed, &o.error) {
        (Some(p), _) => {
            let by = match &p.origin {
                Origin::Llm { .. } => "the LLM".to_owned(),
                Origin::Rules { rule } => format!("rule `{rule}`"),
            };
            format!("{name}: expected {expected}, proposed {} {} by {by}", label(&p.category), p.priority)
        }
        (None, error) => format!("{name}: expected {expected}, failed: {}", error.as_deref().unwrap_or("")),
    }
}

/// A confusion table with numbered columns (labels are too long for headers).
fn table(out: &mut String, c: &Confusion) {
    // "[NN] " before each row's label.
    let width = c.labels.iter().map(String::len).max().unwrap_or(0) + 5;
    let _ = write!(out, "  {:<width$}", "");
    for i in 0..c.labels.len() {
        let _ = write!(out, " {:>4}", format!("[{}]", i + 1));
    }
    let _ = writeln!(out);
    for (i, (label, row)) in c.labels.iter().zip(&c.counts).enumerate() {
        let _ = write!(out, "  {:<width$}", format!("[{}] {label}", i + 1));
        for n in row {
            let _ = write!(out, " {:>4}", if *n == 0 { ".".to_owned() } else { n.to_string() });
        }
        let _ = writeln!(out);
    }
}

/// Writes `report` as pretty JSON to `out`, when asked for (`--out`).
pub(super) fn save_report<T: serde::Serialize>(
    report: &T,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let Some(out) = out else { return Ok(()) };
    let json = serde_json::to_vec_pretty(report)?;
    std::fs::write(out, json).with_context(|| format!("could not write the report to {}", out.display()))
}
