//! Webhook → confirmed publish, as operators run it: `deskpilot ingest` in a process of its own
//! over the real RabbitMQ (a virtual host per run, publisher confirms on a quorum queue), driven
//! over loopback with signed Unified deliveries of one new ticket each.
//!
//! Two phases, each request answered only after the broker confirmed its event:
//! - **saturation**: `--clients` connections (default 64) post back to back for `--secs`; prints
//!   requests per second and latency p50/p99;
//! - **fixed rate**: `--rate` requests per second (default 1000) sent on schedule for `--secs`,
//!   whatever the answers do; prints the rate reached and latency p50/p99.
//!
//! Between them, deskpilot's publisher alone at the fixed rate (no HTTP), to show what of the
//! latency is the broker's confirm. Then the work queue is counted: every 200 must be one message. Targets: ≥ 2000 requests/s at
//! saturation, p99 ≤ 20 ms at 1000 requests/s; exits non-zero when one is missed.
//!
//! The bench client runs on one thread, so that it, RabbitMQ and the ingest process do not all
//! fight for the same two cores more than a real sender would make them.
//!
//! Run: `cargo bench --bench webhook` (release build; RabbitMQ on 127.0.0.1:5672 with
//! `rabbitmqctl` at hand). Options after `--`: `--clients 64`, `--rate 1000`, `--secs 10`,
//! `--threads 1` (`worker.threads` of the ingest process).

#[allow(dead_code)]
#[path = "worker/process.rs"]
mod process;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use deskpilot::sandbox::sign_delivery;
use process::{VirtualHost, WorkerProcess};
use serde_json::json;
use tokio::sync::Mutex;

const SECRET: &str = "bench-secret";
const TARGET_RPS: f64 = 2000.0;
const TARGET_P99_MS_AT_RATE: f64 = 20.0;

struct Options {
    clients: usize,
    rate: u64,
    secs: u64,
    threads: usize,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut o = Options { clients: 64, rate: 1000, secs: 10, threads: 1 };
        let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--clients" => o.clients = value()?.parse()?,
                "--rate" => o.rate = value()?.parse()?,
                "--secs" => o.secs = value()?.parse()?,
                "--threads" => o.threads = value()?.parse()?,
                other => bail!("unknown option {other}; see the header of benches/webhook.rs"),
            }
        }
        Ok(o)
    }
}

/// Signed deliveries, one new ticket each, numbered from `first`.
struct Bodies {
    next: std::sync::atomic::AtomicU64,
}

impl Bodies {
    fn next(&self) -> Vec<u8> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = json!([{"id": format!("b{n}"), "subject": "Charged twice", "status": "ACTIVE",
                           "created_at": "2026-03-01T10:00:00Z", "updated_at": "2026-03-01T10:00:00Z"}]);
        let nonce = format!("n{n}");
        let sig = sign_delivery(SECRET, &data, &nonce);
        json!({"data": data, "nonce": nonce, "sig": sig, "type": "VIRTUAL",
               "webhook": {"id": "wh-bench", "connection_id": "demo", "object_type": "ticketing_ticket",
                           "event": "created"}})
        .to_string()
        .into_bytes()
    }
}

/// Latencies of the 200s, and how many answers were something else.
#[derive(Default)]
struct Tally {
    ok: Vec<Duration>,
    failed: usize,
}

impl Tally {
    fn percentile_ms(&mut self, p: f64) -> f64 {
        self.ok.sort_unstable();
        let i = ((self.ok.len() as f64 * p).ceil() as usize).clamp(1, self.ok.len().max(1)) - 1;
        self.ok.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<Duration, ()> {
    let started = Instant::now();
    match client.post(url).header("content-type", "application/json").body(body).send().await {
        Ok(r) if r.status().is_success() => Ok(started.elapsed()),
        _ => Err(()),
    }
}

async fn saturate(
    client: &reqwest::Client,
    url: &str,
    bodies: &Arc<Bodies>,
    clients: usize,
    secs: u64,
) -> (Tally, Duration) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, bodies, tally) =
                (client.clone(), url.to_owned(), bodies.clone(), tally.clone());
            tokio::spawn(async move {
                let mut mine = Tally::default();
                while Instant::now() < deadline {
                    match post(&client, &url, bodies.next()).await {
                        Ok(d) => mine.ok.push(d),
                        Err(()) => mine.failed += 1,
                    }
                }
                let mut all = tally.lock().await;
                all.ok.extend(mine.ok);
                all.failed += mine.failed;
            })
        })
        .collect();
    for t in tasks {
        t.await.ok();
    }
    let elapsed = started.elapsed();
    let tally = std::mem::take(&mut *tally.lock().await);
    (tally, elapsed)
}

async fn fixed_rate(
    client: &reqwest::Client,
    url: &str,
    bodies: &Arc<Bodies>,
    rate: u64,
    secs: u64,
) -> (Tally, Duration) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity((rate * secs) as usize);
    for _ in 0..rate * secs {
        tick.tick().await;
        let (client, url, body, tally) = (client.clone(), url.to_owned(), bodies.next(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = post(&client, &url, body).await;
            let mut all = tally.lock().await;
            match outcome {
                Ok(d) => all.ok.push(d),
                Err(()) => all.failed += 1,
            }
        }));
    }
    for t in tasks {
        t.await.ok();
    }
    let elapsed = started.elapsed();
    let tally = std::mem::take(&mut *tally.lock().await);
    (tally, elapsed)
}

/// The broker alone at `rate`: publish → confirm latency of deskpilot's publisher, for comparison.
async fn broker_alone(url: &str, rate: u64, secs: u64) -> anyhow::Result<Tally> {
    use deskpilot::events::{EventKind, EventSource, TicketEvent};
    let (publisher, mut consumer) =
        deskpilot::bus::connect(url, &deskpilot::bus::BusSettings::default()).await?;
    consumer.close().await;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for n in 0..rate * secs {
        tick.tick().await;
        let (publisher, tally) = (publisher.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let event =
                TicketEvent::new(EventKind::TicketCreated, "demo", format!("p{n}"), EventSource::Manual);
            let started = Instant::now();
            let outcome = publisher.publish(&event).await;
            let mut all = tally.lock().await;
            match outcome {
                Ok(()) => all.ok.push(started.elapsed()),
                Err(_) => all.failed += 1,
            }
        }));
    }
    for t in tasks {
        t.await.ok();
    }
    publisher.close().await;
    let tally = std::mem::take(&mut *tally.lock().await);
    Ok(tally)
}

/// How long the process's main thread (the whole runtime at `worker.threads = 1`) has waited for
/// a CPU so far, from /proc/<pid>/schedstat.
fn runqueue_wait(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    let waited: u64 = stat.split_whitespace().nth(1).context("unexpected schedstat")?.parse()?;
    Ok(Duration::from_nanos(waited))
}

/// Messages in `queue` of `vhost`.
fn queued(vhost: &str, queue: &str) -> anyhow::Result<u64> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "-p", vhost, "name", "messages"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .find(|(name, _)| *name == queue)
        .and_then(|(_, n)| n.trim().parse().ok())
        .with_context(|| format!("queue {queue} not listed: {text}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let opts = Options::parse()?;
    deskpilot::http::install_crypto_provider();
    let vhost_name = format!("deskpilot-bench-webhook-{}", uuid::Uuid::new_v4().simple());
    let vhost = VirtualHost::create(&vhost_name)?;
    let dir = tempfile::tempdir()?;
    // /readyz asks each connection's helpdesk, so the connection points at a sandbox.
    let helpdesk = deskpilot::sandbox::spawn(deskpilot::sandbox::SandboxOptions {
        api_key: "bench".into(),
        ..Default::default()
    })
    .await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let config = format!(
        "[bus]\nurl = \"{}\"\n\n[store]\nurl = \"sqlite://{}\"\n\n[server]\naddr = \"{addr}\"\n\n\
         [worker]\nconcurrency = 32\nthreads = {}\n\n\
         [[connections]]\nid = \"demo\"\nbackend = \"unified\"\nbase_url = \"{}\"\n\
         api_key = \"bench\"\nwebhook_secret = \"{SECRET}\"\n",
        vhost.url(),
        dir.path().join("bench.db").display(),
        opts.threads,
        helpdesk.base_url,
    );
    let ingest = WorkerProcess::start_command("ingest", &config, &addr).await?;
    // The phases in a block of their own, so that the ingest process is stopped whatever happens.
    let phases = async {
        let url = format!("http://{addr}/webhooks/demo");
        let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(1024).build()?;
        let bodies = Arc::new(Bodies { next: 0.into() });

        // Warm the connections and the broker's channel.
        let (warm, _) = saturate(&client, &url, &bodies, opts.clients, 1).await;

        // The fixed rate first, on a quiet broker; then saturation.
        let waited_before = runqueue_wait(ingest.pid())?;
        let (mut fixed, fixed_time) = fixed_rate(&client, &url, &bodies, opts.rate, opts.secs).await;
        let waited = runqueue_wait(ingest.pid())? - waited_before;
        let reached = fixed.ok.len() as f64 / fixed_time.as_secs_f64();
        let p99 = fixed.percentile_ms(0.99);
        println!(
            "fixed rate ({} requests/s for {}s): {reached:.0} requests/s answered, p50 {:.2} ms, p99 {p99:.2} ms, {} failed; \
             ingest waited {:.0} ms for a CPU ({:.1} % of the phase)",
            opts.rate,
            opts.secs,
            fixed.percentile_ms(0.50),
            fixed.failed,
            waited.as_secs_f64() * 1000.0,
            100.0 * waited.as_secs_f64() / fixed_time.as_secs_f64()
        );

        let mut alone = broker_alone(&vhost.url(), opts.rate, opts.secs).await?;
        println!(
            "broker alone ({} publishes/s for {}s, deskpilot's publisher): confirm p50 {:.2} ms, p99 {:.2} ms, {} failed",
            opts.rate,
            opts.secs,
            alone.percentile_ms(0.50),
            alone.percentile_ms(0.99),
            alone.failed
        );

        let cpu_before = ingest.cpu_seconds()?;
        let (mut sat, sat_time) = saturate(&client, &url, &bodies, opts.clients, opts.secs).await;
        let rps = sat.ok.len() as f64 / sat_time.as_secs_f64();
        let cpu_ms = (ingest.cpu_seconds()? - cpu_before) * 1000.0 / sat.ok.len().max(1) as f64;
        println!(
            "saturation ({} clients, {}s): {rps:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} failed; ingest CPU {cpu_ms:.3} ms per request",
            opts.clients,
            opts.secs,
            sat.percentile_ms(0.50),
            sat.percentile_ms(0.99),
            sat.failed
        );

        let sent = bodies.next.load(std::sync::atomic::Ordering::Relaxed);
        let accepted = (warm.ok.len() + fixed.ok.len() + sat.ok.len() + alone.ok.len()) as u64;
        // The broker's message count is refreshed every few seconds: wait for it to settle.
        let mut in_queue = queued(&vhost_name, "deskpilot.triage")?;
        for _ in 0..30 {
            if in_queue == accepted {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            in_queue = queued(&vhost_name, "deskpilot.triage")?;
        }
        println!(
            "work queue: {in_queue} messages for {accepted} accepted deliveries ({sent} sent, {} refused while warming up)",
            warm.failed
        );
        anyhow::Ok((rps, p99, sat.failed + fixed.failed, in_queue, accepted))
    }
    .await;
    ingest.stop().await?;
    let (rps, p99, failed, in_queue, accepted) = phases?;

    let mut missed = Vec::new();
    if rps < TARGET_RPS {
        missed.push(format!("saturation {rps:.0} requests/s < {TARGET_RPS}"));
    }
    if p99 > TARGET_P99_MS_AT_RATE {
        missed.push(format!("p99 {p99:.2} ms > {TARGET_P99_MS_AT_RATE} ms at {} requests/s", opts.rate));
    }
    if failed > 0 {
        missed.push(format!("{failed} requests failed"));
    }
    if in_queue != accepted {
        missed.push(format!("{in_queue} messages queued for {accepted} accepted deliveries"));
    }
    if !missed.is_empty() {
        bail!("targets missed: {}", missed.join("; "));
    }
    println!(
        "targets met: ≥ {TARGET_RPS} requests/s, p99 ≤ {TARGET_P99_MS_AT_RATE} ms at {} requests/s",
        opts.rate
    );
    Ok(())
}
