//! Living within an LLM provider's rate limits: a backlog of tickets through the worker against an
//! OpenAI-compatible double that enforces an account's requests and tokens per minute and answers
//! 429 with OpenAI's headers and error body beyond them; once with `[llm] limiter = "adaptive"`
//! and the account's limits configured, once with `limiter = "off"`.
//!
//! The worker runs in this process on the in-process bus and a SQLite store, against the sandbox
//! helpdesk (shadow mode), with the tickets and the LLM double of benches/worker. Each run prints:
//! - the request rate the double answered against the most the limits allowed over the run
//!   (a full minute's worth at the start, then the refill; tokens as the double counts them,
//!   characters / 4 plus the answer reserve);
//! - the share of calls answered 429;
//! - events sent to a retry tier (and tickets whose ledger records a failed attempt);
//! - the wall time from the first event to the last ticket done.
//!
//! Bar, for the run with the limiter: ≥ 90 % of the allowed rate, ≤ 5 % of calls answered 429, no
//! event in a retry tier. Exits non-zero when it is missed.
//!
//! Time is scaled to keep the run short: with `--scale 10` the limits are 600 requests and 200 000
//! tokens per 6 s instead of per minute, and the model's latency, the client's timeouts and the
//! retry tiers are a tenth of their real length, so every ratio is the real one.
//!
//! Run: `cargo bench --bench llm_limits` (`--profile dev` builds faster and is CPU enough at these
//! rates). Options after `--`: `--tickets 2000`, `--scale 10`, `--latency-ms 3000` (before
//! scaling), `--concurrency 64`, `--requests 600`, `--tokens 200000`, `--limiter-only` (skips the
//! run without the limiter), `--headers-only` (the limiter without the account's limits
//! configured: it goes by the server's headers alone).

#[path = "worker/llm.rs"]
mod llm;
#[path = "worker/tickets.rs"]
mod tickets;

use std::{
    io::Write,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use deskpilot::{
    app::{App, parts},
    bus::{Bus, memory::MemoryBus},
    config::Config,
    events::{EventKind, EventSource, TicketEvent},
    sandbox::{self, SandboxOptions},
    store::LedgerKey,
};
use llm::{Enforced, Seen};
use tokio_util::sync::CancellationToken;

const CONNECTION: &str = "demo";
const SANDBOX_KEY: &str = "bench";
const TARGET_PCT_OF_ALLOWED: f64 = 90.0;
const TARGET_PCT_429: f64 = 5.0;

struct Options {
    tickets: usize,
    scale: f64,
    latency: Duration,
    concurrency: usize,
    requests: u32,
    tokens: u32,
    without: bool,
    configured: bool,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut o = Options {
            tickets: 2000,
            scale: 10.0,
            latency: Duration::from_secs(3),
            concurrency: 64,
            requests: 600,
            tokens: 200_000,
            without: true,
            configured: true,
        };
        let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--tickets" => o.tickets = value()?.parse()?,
                "--scale" => o.scale = value()?.parse()?,
                "--latency-ms" => o.latency = Duration::from_millis(value()?.parse()?),
                "--concurrency" => o.concurrency = value()?.parse()?,
                "--requests" => o.requests = value()?.parse()?,
                "--tokens" => o.tokens = value()?.parse()?,
                "--limiter-only" => o.without = false,
                "--headers-only" => o.configured = false,
                other => bail!("unknown option {other}; see the header of benches/llm_limits.rs"),
            }
        }
        if !(1.0..=60.0).contains(&o.scale) {
            bail!("--scale {} must be between 1 and 60", o.scale);
        }
        Ok(o)
    }

    /// `real` on the bench's clock.
    fn scaled(&self, real: Duration) -> Duration {
        real.div_f64(self.scale)
    }

    /// Whole seconds of `real_secs` on the bench's clock, at least 1 (config keys take seconds).
    fn scaled_secs(&self, real_secs: u64) -> u64 {
        ((real_secs as f64 / self.scale).round() as u64).max(1)
    }
}

/// What one run measured.
struct Figures {
    label: &'static str,
    answered: usize,
    refused: u64,
    achieved_per_min: f64,
    allowed_per_min: f64,
    tokens_per_request: f64,
    retried_events: f64,
    tickets_retried: usize,
    /// Why tickets went to a retry tier (their last error, figures left out), and how many.
    reasons: std::collections::BTreeMap<String, usize>,
    wall: Duration,
    failed: u64,
}

impl Figures {
    fn pct_of_allowed(&self) -> f64 {
        100.0 * self.achieved_per_min / self.allowed_per_min
    }

    fn pct_429(&self) -> f64 {
        let calls = self.answered as f64 + self.refused as f64;
        if calls == 0.0 { 0.0 } else { 100.0 * self.refused as f64 / calls }
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    deskpilot::http::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench(options))
}

async fn bench(o: Options) -> anyhow::Result<()> {
    let metrics = deskpilot::telemetry::metrics().context("the metrics recorder")?;
    let sandbox = sandbox::spawn(SandboxOptions { api_key: SANDBOX_KEY.into(), ..SandboxOptions::default() })
        .await
        .context("sandbox")?;
    let window = o.scaled(Duration::from_secs(60));
    println!(
        "LLM rate limits: {} tickets, an account of {} requests and {} tokens per {} s (a minute scaled by \
         1/{}), model latency {} ms, worker concurrency {}, {} CPUs",
        o.tickets,
        o.requests,
        o.tokens,
        window.as_secs_f64(),
        o.scale,
        o.scaled(o.latency).as_millis(),
        o.concurrency,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let ticket_ids = tickets::create(&sandbox.base_url, SANDBOX_KEY, CONNECTION, o.tickets).await?;
    let mut all = Vec::new();
    let runs: &[(&str, bool)] =
        if o.without { &[("with limiter", true), ("without", false)] } else { &[("with limiter", true)] };
    for &(label, limiter) in runs {
        let before = metrics.render();
        let figures = run(&o, label, limiter, &sandbox.base_url, &ticket_ids, &before, &metrics)
            .await
            .with_context(|| label.to_owned())?;
        println!(
            "{:<13} {:>7.1} req/min of {:>6.1} allowed ({:>5.1} %)  {:>5.2} % answered 429 ({} of {})  {} events \
             to retry tiers ({} tickets)  wall {:.1} s{}",
            figures.label,
            figures.achieved_per_min,
            figures.allowed_per_min,
            figures.pct_of_allowed(),
            figures.pct_429(),
            figures.refused,
            figures.answered as u64 + figures.refused,
            figures.retried_events,
            figures.tickets_retried,
            figures.wall.as_secs_f64(),
            if figures.failed > 0 { format!("  FAILED {}", figures.failed) } else { String::new() },
        );
        for (reason, n) in figures.reasons.iter().rev().take(3) {
            println!("{:<13} retried {n}×: {reason}", "");
        }
        all.push(figures);
    }
    let f = &all[0];
    println!(
        "(per real minute; {:.0} tokens per request as the double counts them, so the tokens limit allows \
         {:.1} requests/min and the requests limit {})",
        f.tokens_per_request,
        f64::from(o.tokens) / f.tokens_per_request,
        o.requests
    );
    judge(f)
}

async fn run(
    o: &Options,
    label: &'static str,
    limiter: bool,
    sandbox_url: &str,
    ticket_ids: &[String],
    before: &str,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<Figures> {
    let enforced =
        Enforced { requests: o.requests, tokens: o.tokens, window: o.scaled(Duration::from_secs(60)) };
    let (llm_url, seen) = llm::spawn(o.scaled(o.latency), Some(enforced)).await?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let limits = if limiter && !o.configured {
        "limiter = \"adaptive\"".to_owned()
    } else if limiter {
        // The account's limits, per real minute on the bench's clock.
        format!(
            "limiter = \"adaptive\"\nrequests_per_minute = {}\ntokens_per_minute = {}",
            (f64::from(o.requests) * o.scale) as u64,
            (f64::from(o.tokens) * o.scale) as u64
        )
    } else {
        "limiter = \"off\"".to_owned()
    };
    let tiers: Vec<String> = [5, 30, 120, 600].iter().map(|s| o.scaled_secs(*s).to_string()).collect();
    let toml = format!(
        r#"
[llm]
base_url = "{llm_url}"
api_key = "bench"
model = "{model}"
request_timeout_secs = {request_timeout}
total_timeout_secs = {total_timeout}
max_retry_after_secs = {max_retry_after}
{limits}
[store]
url = "{store_url}"
[worker]
concurrency = {concurrency}
retry_delays_secs = [{tiers}]
[server]
addr = ""
[[connections]]
id = "{CONNECTION}"
backend = "unified"
base_url = "{sandbox_url}"
api_key = "{SANDBOX_KEY}"
mode = "shadow"
"#,
        model = llm::MODEL,
        request_timeout = o.scaled_secs(60),
        total_timeout = o.scaled_secs(180),
        max_retry_after = o.scaled_secs(60),
        concurrency = o.concurrency,
        tiers = tiers.join(", "),
    );
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile()?;
    file.write_all(toml.as_bytes())?;
    let config = Config::load_from(Some(file.path()), Vec::<(String, String)>::new())?;
    let bus = MemoryBus::new(parts::bus_settings(&config));
    let app = App::builder(&config).bus(Bus::Memory(bus.clone())).build().await?;
    let store = app.store().clone();
    let publisher = app.publisher().await?;
    let events: Vec<TicketEvent> = ticket_ids
        .iter()
        .map(|t| TicketEvent::new(EventKind::TicketCreated, CONNECTION, t, EventSource::Backfill))
        .collect();
    for event in &events {
        publisher.publish(event).await?;
    }

    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let serving = tokio::spawn(app.serve(None, shutdown.clone()));
    // Three times as long as the limits need at about 2 000 tokens a request, and a minute.
    let per_sec = f64::from(o.requests).min(f64::from(o.tokens) / 2000.0) / enforced.window.as_secs_f64();
    let cap = Duration::from_secs_f64(3.0 * events.len() as f64 / per_sec + 60.0);
    let stats = loop {
        let stats = store.stats(Some(CONNECTION)).await?;
        let s = stats.connection(CONNECTION).cloned().unwrap_or_default();
        if s.done + s.failed >= events.len() as u64 {
            break s;
        }
        if started.elapsed() > cap {
            shutdown.cancel();
            bail!("only {} of {} tickets done after {cap:?}", s.done, events.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = started.elapsed();
    let mut tickets_retried = 0;
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for event in &events {
        let entry = store.entry(&LedgerKey::from(event)).await?.context("a ticket without a ledger entry")?;
        tickets_retried += usize::from(entry.attempts > 0);
        if let Some(error) = entry.last_error.filter(|_| entry.attempts > 0) {
            // Figures differ from one error to the next; the words say which kind it was.
            let kind: String = error.chars().filter(|c| !c.is_ascii_digit()).take(140).collect();
            *reasons.entry(kind).or_default() += 1;
        }
    }
    // The app closes the store it opened.
    shutdown.cancel();
    serving.await??;
    let retried = |exposition: &str| counter(exposition, "deskpilot_events_total", "outcome=\"retried\"");
    let retried_events = retried(&metrics.render()) - retried(before);
    let seen: Seen = seen.lock().unwrap().clone();
    let (achieved_per_min, allowed_per_min, tokens_per_request) = rates(o, &enforced, &seen);
    Ok(Figures {
        label,
        answered: seen.answered.len(),
        refused: seen.refused,
        achieved_per_min,
        allowed_per_min,
        tokens_per_request,
        retried_events,
        tickets_retried,
        reasons,
        wall,
        failed: stats.failed,
    })
}

/// The answered request rate and the most the limits allowed over the same time, both per real
/// minute, and the mean tokens of a request.
fn rates(o: &Options, e: &Enforced, seen: &Seen) -> (f64, f64, f64) {
    let n = seen.answered.len();
    let (Some(first), Some(last)) = (seen.answered.iter().min(), seen.answered.iter().max()) else {
        return (0.0, 0.0, 0.0);
    };
    let span = last.duration_since(*first).as_secs_f64().max(f64::EPSILON);
    let per_request = seen.tokens as f64 / n as f64;
    let windows = span / e.window.as_secs_f64();
    // Full buckets at the start, then the refill: requests, and requests the tokens allow.
    let by_requests = f64::from(e.requests) * (1.0 + windows);
    let by_tokens = f64::from(e.tokens) * (1.0 + windows) / per_request;
    let real_minutes = span * o.scale / 60.0;
    // The first answered request opens the span; the others fall within it.
    ((n - 1) as f64 / real_minutes, by_requests.min(by_tokens) / real_minutes, per_request)
}

/// The sum of every series of counter `name` whose labels contain `labels`.
fn counter(exposition: &str, name: &str, labels: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Prints the bar's verdicts for the run with the limiter; an error when one is missed.
fn judge(f: &Figures) -> anyhow::Result<()> {
    let mut missed = 0;
    let mut verdict = |ok: bool, what: String| {
        println!("  {} {what}", if ok { "PASS" } else { "FAIL" });
        missed += usize::from(!ok);
    };
    println!("bar (with the limiter):");
    verdict(
        f.pct_of_allowed() >= TARGET_PCT_OF_ALLOWED,
        format!("≥ {TARGET_PCT_OF_ALLOWED} % of the allowed rate: {:.1} %", f.pct_of_allowed()),
    );
    verdict(
        f.pct_429() <= TARGET_PCT_429,
        format!("≤ {TARGET_PCT_429} % of calls answered 429: {:.2} %", f.pct_429()),
    );
    verdict(f.retried_events == 0.0, format!("no event in a retry tier: {}", f.retried_events));
    verdict(f.failed == 0, format!("no ticket failed: {}", f.failed));
    match missed {
        0 => Ok(()),
        n => bail!("{n} target(s) missed"),
    }
}
