//! The worker end to end, as operators run it: `deskpilot worker` in a process of its own, over
//! the real RabbitMQ (a virtual host per run) and a SQLite store, against the sandbox helpdesk and
//! an OpenAI-compatible double that answers after a fixed latency.
//!
//! Each run creates `waves × c` tickets, starts the worker with `worker.concurrency = c`, waits
//! until it is ready, publishes one `ticket.created` per ticket at once and waits until the ledger
//! has every ticket done. It prints:
//! - throughput over the steady window (completions #c to #(N−c)) against the ideal, c / latency;
//! - claim → done latency (the ledger's times), p50 and p99;
//! - the worker's CPU per ticket (user + system, from its readiness to the last ticket done);
//! - the worker's peak resident memory.
//!
//! Targets, in shadow mode: throughput ≥ 95 % of the ideal at 64 and 256, CPU ≤ 2 ms per ticket,
//! peak RSS ≤ 96 MB at 256. Apply mode at 64 (twice the helpdesk requests, a note per ticket) is
//! printed beside them. Exits non-zero when a target is missed.
//!
//! Run: `cargo bench --bench worker` (release build; RabbitMQ on 127.0.0.1:5672 with `rabbitmqctl`
//! at hand). Options after `--`: `--concurrency 16,64,256`, `--waves 10`, `--latency-ms 500`,
//! `--no-apply`.

mod llm;
mod process;
mod tickets;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deskpilot::{
    bus::{self, BusSettings},
    events::{EventKind, EventSource, TicketEvent},
    sandbox::{self, SandboxOptions},
    store::{LedgerKey, Store},
};
use futures::{StreamExt, TryStreamExt, stream};
use process::{VirtualHost, WorkerProcess};

const CONNECTION: &str = "demo";
const SANDBOX_KEY: &str = "bench";
const TARGET_PCT_OF_IDEAL: f64 = 95.0;
const TARGET_CPU_MS_PER_TICKET: f64 = 2.0;
const TARGET_PEAK_RSS_MB_AT_256: f64 = 96.0;

struct Options {
    concurrency: Vec<usize>,
    waves: usize,
    latency: Duration,
    apply: bool,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut o = Options {
            concurrency: vec![16, 64, 256],
            waves: 10,
            latency: Duration::from_millis(500),
            apply: true,
        };
        let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--concurrency" => {
                    o.concurrency = value()?
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::parse)
                        .collect::<Result<_, _>>()?
                }
                "--waves" => o.waves = value()?.parse()?,
                "--latency-ms" => o.latency = Duration::from_millis(value()?.parse()?),
                "--no-apply" => o.apply = false,
                other => bail!("unknown option {other}; see the header of benches/worker/main.rs"),
            }
        }
        Ok(o)
    }
}

/// One configuration.
#[derive(Debug, Clone, Copy)]
struct Run {
    concurrency: usize,
    apply: bool,
}

impl Run {
    fn label(&self) -> String {
        format!("{} c={}", if self.apply { "apply" } else { "shadow" }, self.concurrency)
    }
}

/// What one run measured.
struct Figures {
    run: Run,
    tickets: usize,
    pct_of_ideal: f64,
    latency_p50_ms: i64,
    latency_p99_ms: i64,
    cpu_ms_per_ticket: f64,
    peak_rss_mb: f64,
    failed: u64,
    inside: Inside,
}

/// Where a ticket's time went inside the worker, from its own metrics: means in milliseconds.
#[derive(Debug, Default)]
struct Inside {
    event_ms: f64,
    decide_ms: f64,
    llm_ms: f64,
    act_ms: f64,
    store_writes: f64,
    store_write_ms: f64,
    claim_ms: f64,
    finish_ms: f64,
}

impl Inside {
    fn read(exposition: &str) -> Self {
        // (sum, count) of every series of a histogram whose labels contain `labels`.
        let mean = |name: &str, labels: &str| {
            let total = |suffix: &str| -> f64 {
                exposition
                    .lines()
                    .filter(|l| l.starts_with(&format!("{name}_{suffix}")) && l.contains(labels))
                    .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                    .sum()
            };
            let (sum, count) = (total("sum"), total("count"));
            (if count > 0.0 { 1000.0 * sum / count } else { 0.0 }, count)
        };
        let (store_write_ms, store_writes) = mean("deskpilot_store_commit_seconds", "");
        Inside {
            event_ms: mean("deskpilot_event_seconds", "acked").0,
            decide_ms: mean("deskpilot_stage_seconds", "decide").0,
            llm_ms: mean("deskpilot_llm_seconds", "").0,
            act_ms: mean("deskpilot_stage_seconds", "act").0,
            store_writes,
            store_write_ms,
            claim_ms: mean("deskpilot_store_commit_seconds", "op=\"claim\"").0,
            finish_ms: mean("deskpilot_store_commit_seconds", "op=\"finish\"").0,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    deskpilot::http::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench(options))
}

async fn bench(o: Options) -> anyhow::Result<()> {
    let sandbox = sandbox::spawn(SandboxOptions { api_key: SANDBOX_KEY.into(), ..SandboxOptions::default() })
        .await
        .context("sandbox")?;
    let (llm_url, _) = llm::spawn(o.latency, None).await?;
    let mut runs: Vec<Run> = o.concurrency.iter().map(|&c| Run { concurrency: c, apply: false }).collect();
    if o.apply {
        runs.push(Run { concurrency: 64, apply: true });
    }
    println!(
        "worker benchmark: LLM latency {} ms, {} waves per run, {} CPUs",
        o.latency.as_millis(),
        o.waves,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut all = Vec::new();
    for run in runs {
        let figures = measure(run, &o, &sandbox.base_url, &llm_url).await.with_context(|| run.label())?;
        println!(
            "{:<14} {:>5} tickets  {:>5.1} % of ideal  claim→done p50 {} ms, p99 {} ms  CPU {:.3} ms/ticket  \
             peak RSS {:.1} MB{}",
            run.label(),
            figures.tickets,
            figures.pct_of_ideal,
            figures.latency_p50_ms,
            figures.latency_p99_ms,
            figures.cpu_ms_per_ticket,
            figures.peak_rss_mb,
            if figures.failed > 0 { format!("  FAILED {}", figures.failed) } else { String::new() },
        );
        let i = &figures.inside;
        println!(
            "{:<14} per event {:.0} ms = decide {:.0} (LLM {:.0}) + act {:.0}; {:.1} store writes per ticket, {:.2} ms each (claim {:.2}, finish {:.2})",
            "",
            i.event_ms,
            i.decide_ms,
            i.llm_ms,
            i.act_ms,
            i.store_writes / figures.tickets as f64,
            i.store_write_ms,
            i.claim_ms,
            i.finish_ms
        );
        all.push(figures);
    }
    judge(&all)
}

async fn measure(run: Run, o: &Options, sandbox_url: &str, llm_url: &str) -> anyhow::Result<Figures> {
    let c = run.concurrency;
    let vhost = VirtualHost::create(&format!("deskpilot-bench-{}", uuid::Uuid::new_v4().simple()))?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let tickets = tickets::create(sandbox_url, SANDBOX_KEY, CONNECTION, o.waves * c).await?;
    let addr = free_addr()?;
    let config = format!(
        r#"
[llm]
base_url = "{llm_url}"
api_key = "bench"
model = "{model}"
[bus]
url = "{bus}"
[store]
url = "{store_url}"
[worker]
concurrency = {c}

[server]
addr = "{addr}"
[[connections]]
id = "{CONNECTION}"
backend = "unified"
base_url = "{sandbox_url}"
api_key = "{SANDBOX_KEY}"
mode = "{mode}"
notes_internal_verified = true
"#,
        model = llm::MODEL,
        bus = vhost.url(),
        mode = if run.apply { "apply" } else { "shadow" },
    );
    let worker = WorkerProcess::start(&config, &addr).await?;
    let store = Store::connect(&store_url).await?;
    let (publisher, mut consumer) = bus::connect(&vhost.url(), &BusSettings::default()).await?;
    consumer.close().await;

    let cpu_before = worker.cpu_seconds()?;
    let events: Vec<TicketEvent> = tickets
        .iter()
        .map(|t| TicketEvent::new(EventKind::TicketCreated, CONNECTION, t, EventSource::Backfill))
        .collect();
    stream::iter(&events).map(|e| publisher.publish(e)).buffer_unordered(256).try_collect::<()>().await?;
    let ideal_seconds = tickets.len() as f64 * o.latency.as_secs_f64() / c as f64;
    let cap = Duration::from_secs_f64(ideal_seconds * 3.0 + 30.0);
    let started = Instant::now();
    let stats = loop {
        let stats = store.stats(Some(CONNECTION)).await?;
        let s = stats.connection(CONNECTION).cloned().unwrap_or_default();
        if s.done + s.failed >= tickets.len() as u64 {
            break s;
        }
        if started.elapsed() > cap {
            bail!("only {} of {} tickets done after {cap:?}", s.done, tickets.len());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu = worker.cpu_seconds()? - cpu_before;
    let peak_rss_mb = worker.peak_rss_mb()?;
    let inside = Inside::read(&worker.metrics(&addr).await?);
    worker.stop().await?;
    publisher.close().await;

    let mut finished = Vec::new();
    let mut latencies = Vec::new();
    for event in &events {
        let entry = store.entry(&LedgerKey::from(event)).await?.context("a ticket without a ledger entry")?;
        let done = entry.finished_at.context("a ticket without a finish time")?;
        finished.push(done);
        latencies.push((done - entry.created_at).whole_milliseconds() as i64);
    }
    store.close().await;
    finished.sort();
    latencies.sort_unstable();
    let n = finished.len();
    if n < 3 * c {
        bail!("{n} tickets are too few to measure at concurrency {c}: run at least 3 waves");
    }
    // Completions #c to #(N−c): the first and last concurrency-worth, where the worker fills up
    // and runs dry, are left out.
    let window = (finished[n - c] - finished[c]).as_seconds_f64();
    let throughput = (n - 2 * c) as f64 / window;
    let percentile = |p: f64| latencies[((n - 1) as f64 * p).round() as usize];
    Ok(Figures {
        run,
        tickets: n,
        pct_of_ideal: 100.0 * throughput / (c as f64 / o.latency.as_secs_f64()),
        latency_p50_ms: percentile(0.5),
        latency_p99_ms: percentile(0.99),
        cpu_ms_per_ticket: cpu * 1000.0 / n as f64,
        peak_rss_mb,
        failed: stats.failed,
        inside,
    })
}

/// Prints each target's verdict; an error when one is missed.
fn judge(all: &[Figures]) -> anyhow::Result<()> {
    let mut missed = 0;
    let mut verdict = |ok: bool, what: String| {
        println!("  {} {what}", if ok { "PASS" } else { "FAIL" });
        missed += usize::from(!ok);
    };
    println!("targets (shadow mode):");
    for f in all.iter().filter(|f| !f.run.apply) {
        let c = f.run.concurrency;
        verdict(f.failed == 0, format!("no failed ticket at c={c}: {}", f.failed));
        if c == 64 || c == 256 {
            verdict(
                f.pct_of_ideal >= TARGET_PCT_OF_IDEAL,
                format!("throughput ≥ {TARGET_PCT_OF_IDEAL} % of ideal at c={c}: {:.1} %", f.pct_of_ideal),
            );
        }
        verdict(
            f.cpu_ms_per_ticket <= TARGET_CPU_MS_PER_TICKET,
            format!(
                "worker CPU ≤ {TARGET_CPU_MS_PER_TICKET} ms/ticket at c={c}: {:.3} ms",
                f.cpu_ms_per_ticket
            ),
        );
        if c == 256 {
            verdict(
                f.peak_rss_mb <= TARGET_PEAK_RSS_MB_AT_256,
                format!("peak RSS ≤ {TARGET_PEAK_RSS_MB_AT_256} MB at c=256: {:.1} MB", f.peak_rss_mb),
            );
        }
    }
    match missed {
        0 => Ok(()),
        n => bail!("{n} target(s) missed"),
    }
}

/// A free local address for the worker's HTTP server.
fn free_addr() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}
