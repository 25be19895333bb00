//! `deskpilot demo`: the whole pipeline in one process on the embedded defaults — the sandbox
//! helpdesk, the in-process bus, a SQLite store — over the demo helpdesk's untriaged tickets.
//!
//! After the backlog, new tickets are created in the sandbox about once a second and shown as
//! they are decided ([`stream`]), until `--tickets N` of them or Ctrl-C; `--once` stops after the
//! backlog with a summary.
//!
//! The tickets travel the real path: the demo subscribes to the sandbox's webhooks with
//! `include_all` (as `deskpilot webhooks register --include-all` does), the sandbox posts them,
//! signed, to the service's `POST /webhooks/demo`, and the receiver publishes them to the bus the
//! worker consumes. The sandbox keeps only the tickets the demo triages, so its initial sync
//! carries exactly those.

mod stream;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use tokio::time::Instant;

use crate::{
    app::{App, Services, parts::http_settings},
    bus::Bus,
    config::{
        BackendConfig, Config, ConnectionConfig, Dsn, FreshdeskConfig, IntercomConfig, Mode,
        ServiceNowConfig, UnifiedConfig, ZendeskConfig, ZendeskTicketExport,
    },
    events::{EventKind, EventSource, TicketEvent},
    ingest::webhook::subscribe::UnifiedSubscriptions,
    sandbox::{self, SandboxOptions},
    store::{ProposalFilter, Store},
    ticketing::{ListQuery, TicketStatus, Ticketing, all_tickets, collect_all},
    triage::decision::Decision,
};

/// The sandbox connection the demo runs on.
const DEMO_CONNECTION: &str = "demo";

/// The key of the demo's own sandbox.
const SANDBOX_KEY: &str = "demo";

/// The workspace secret the demo's sandbox signs its webhooks with.
const WEBHOOK_SECRET: &str = "demo-webhook-secret";

/// How long the demo waits for the next ticket to be handled before it gives up waiting.
const STALL: Duration = Duration::from_secs(120);

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Triage at most this many of the untriaged tickets
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// `shadow` stores proposals; `apply` writes triage and internal notes into the sandbox
    #[arg(long, default_value = "shadow", value_parser = parse_mode)]
    mode: Mode,

    /// The connector the demo talks to the sandbox through: `unified` (its Unified.to API, tickets
    /// arriving by signed webhook), `freshdesk`, `zendesk`, `intercom` or `servicenow` (its vendor
    /// flavours, tickets published by hand)
    #[arg(long, default_value = "unified", value_parser = ["unified", "freshdesk", "zendesk", "intercom", "servicenow"])]
    backend: String,

    /// SQLite file of this demo's ledger and proposals (recreated on every run)
    #[arg(long, default_value = "data/demo.db", value_name = "FILE")]
    store: PathBuf,

    /// Where the demo's service listens: the webhooks it receives and the review page (a
    /// loopback address: the page needs no sign-in there)
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: String,

    /// After the backlog, create this many new tickets (about one a second) and show each as it
    /// is decided; without it, until Ctrl-C
    #[arg(long, value_name = "N")]
    tickets: Option<usize>,

    /// Triage the backlog, print a summary and exit (no new tickets, no review page after)
    #[arg(long)]
    once: bool,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "shadow" => Ok(Mode::Shadow),
        "apply" => Ok(Mode::Apply),
        other => Err(format!("`{other}` is not a demo mode; use shadow or apply")),
    }
}

pub(super) async fn run(config: &Config, args: DemoArgs) -> anyhow::Result<()> {
    let shutdown = crate::shutdown::on_signals();
    let sb = sandbox::spawn(SandboxOptions {
        api_key: SANDBOX_KEY.into(),
        webhook_secret: Some(WEBHOOK_SECRET.into()),
        ..SandboxOptions::default()
    })
    .await
    .context("could not start the sandbox helpdesk")?;
    // A fresh ledger each run: the sandbox starts from its bundled data every time.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", args.store.display()));
    }
    let listener = tokio::net::TcpListener::bind(&args.listen).await.with_context(|| {
        format!("could not listen on {} (in use?); pick another with --listen", args.listen)
    })?;
    let addr = listener.local_addr()?;
    let config = demo_config(config, &sb.base_url, &args, &addr.to_string());
    let store = Store::connect(config.store.url.expose()).await.context("could not open the store")?;
    let app = App::builder(&config).services(Services::ALL).store(store.clone()).build().await?;
    let Bus::Memory(memory) = app.bus().clone() else { unreachable!("the demo config empties bus.url") };
    let helpdesk = app.helpdesk(DEMO_CONNECTION).expect("the demo connection is configured").clone();
    let engine = app.engine().clone();

    let (untriaged, others): (Vec<_>, Vec<_>) =
        collect_all(all_tickets(helpdesk.as_ref() as &dyn Ticketing, ListQuery::default()))
            .await?
            .into_iter()
            .filter_map(|t| {
                let open = t.category_id.is_none() && t.status != Some(TicketStatus::Closed);
                t.id.map(|id| (id, open))
            })
            .partition(|(_, open)| *open);
    let limit = args.limit.unwrap_or(usize::MAX);
    let keep: Vec<String> = untriaged.iter().take(limit).map(|(id, _)| id.clone()).collect();
    let drop_ids = others.into_iter().chain(untriaged.into_iter().skip(limit)).map(|(id, _)| id);
    // The connectors see the sandbox's own ticket ids, but for ServiceNow's sys_ids.
    let sample_ids: std::collections::HashMap<String, String> = match args.backend.as_str() {
        "servicenow" => sb
            .snapshot(DEMO_CONNECTION)
            .await
            .map(|desk| {
                desk.tickets.keys().map(|k| (sandbox::servicenow_sys_id("incident", k), k.clone())).collect()
            })
            .unwrap_or_default(),
        _ => Default::default(),
    };
    let drop_ids = drop_ids.map(|id| sample_ids.get(&id).cloned().unwrap_or(id));
    remove_tickets(&sb.base_url, drop_ids).await?;

    let by = match engine.model() {
        Some(model) => format!("LLM {model}"),
        None => "the fallback rules (no LLM configured: set OPENAI_API_KEY or [llm])".to_owned(),
    };
    println!(
        "demo: sandbox helpdesk at {}, {} untriaged tickets, mode {}, decided by {by}",
        sb.base_url,
        keep.len(),
        args.mode.as_str()
    );

    let hook_url = format!("http://{addr}/webhooks/{DEMO_CONNECTION}");
    let review_url = format!("http://{addr}/review");
    println!("demo: review the proposals at {review_url}");
    let stop = shutdown.child_token();
    let serving = tokio::spawn(app.serve(Some(listener), stop.clone()));
    if args.backend == "unified" {
        let subscriptions =
            UnifiedSubscriptions::new(&sb.base_url, SANDBOX_KEY.into(), &http_settings(&config))?;
        let sub = subscriptions.create(DEMO_CONNECTION, &hook_url, "created", true).await?;
        println!(
            "demo: subscribed {} to the sandbox's ticket webhooks; they arrive signed at {hook_url}",
            sub["id"].as_str().unwrap_or("?")
        );
    } else {
        // The sandbox signs its webhooks Unified-style only, so a native connector's tickets are
        // published as `deskpilot publish` would.
        let publisher = memory.publisher();
        for id in &keep {
            let event = TicketEvent::new(EventKind::TicketCreated, DEMO_CONNECTION, id, EventSource::Manual);
            publisher.publish(&event).await.context("could not publish a demo ticket")?;
        }
        println!("demo: published {} tickets through the {} connector", keep.len(), args.backend);
    }

    let started = Instant::now();
    let (mut handled, mut progress_at) = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stats = store.stats(Some(DEMO_CONNECTION)).await?;
        let now_handled = stats.connection(DEMO_CONNECTION).map_or(0, |s| s.done + s.failed) as usize
            + memory.dead_letters(usize::MAX).len();
        if now_handled != handled {
            (handled, progress_at) = (now_handled, Instant::now());
        }
        let idle = memory.ready() == 0 && memory.unacked() == 0 && memory.scheduled() == 0;
        if (idle && handled >= keep.len()) || shutdown.is_cancelled() {
            break;
        }
        if progress_at.elapsed() > STALL {
            println!(
                "demo: {handled} of {} tickets handled; nothing moved for {}s, stopping",
                keep.len(),
                STALL.as_secs()
            );
            break;
        }
    }
    let elapsed = started.elapsed();

    let proposals = store
        .proposals(&ProposalFilter {
            connection: Some(DEMO_CONNECTION.into()),
            limit: 500,
            ..ProposalFilter::default()
        })
        .await?;
    println!("{:<6} {:<20} {:<8} {:>5} {:<6} subject", "ticket", "category", "priority", "conf", "human");
    for p in proposals.iter().rev() {
        let Ok(d) = Decision::deserialize(&p.decision) else {
            println!("{:<6} (a stored decision this build cannot read)", p.ticket_id);
            continue;
        };
        println!(
            "{:<6} {:<20} {:<8} {:>5.2} {:<6} {}",
            p.ticket_id,
            d.category_id.as_deref().unwrap_or("-"),
            d.priority.as_str(),
            d.confidence,
            if d.needs_human { "yes" } else { "no" },
            p.ticket_subject.as_deref().unwrap_or("").chars().take(60).collect::<String>()
        );
    }
    let dead = memory.dead_letters(100);
    for d in &dead {
        println!("dead-lettered: {}", d.reason);
    }
    let stats = store.stats(Some(DEMO_CONNECTION)).await?;
    println!(
        "done in {:.1}s: {} proposals stored, {} dead-lettered; ledger and proposals in {}",
        elapsed.as_secs_f64(),
        proposals.len(),
        dead.len(),
        args.store.display()
    );
    let mut per_category: BTreeMap<String, usize> = BTreeMap::new();
    for p in &proposals {
        let category = p.decision["category_id"].as_str().unwrap_or("(none)").to_owned();
        *per_category.entry(category).or_default() += 1;
    }
    let per_category: Vec<String> = per_category.iter().map(|(c, n)| format!("{c} {n}")).collect();
    println!("per category: {}", per_category.join(", "));
    let mut latencies = Vec::new();
    for id in &keep {
        let key = crate::store::LedgerKey::new(DEMO_CONNECTION, id, EventKind::TicketCreated);
        if let Some(ms) = store.entry(&key).await?.and_then(|e| e.decision).and_then(|d| d.latency_ms) {
            latencies.push(ms);
        }
    }
    let latency = (!latencies.is_empty()).then(|| crate::triage::eval::metrics::Percentiles::of(&latencies));
    if let Some(s) = stats.connection(DEMO_CONNECTION) {
        println!(
            "figures: {} decided ({} by the LLM, {} by rules), {} done, {} failed; {} prompt + {} completion tokens, ${:.4}{}",
            s.decided,
            s.decided_by_llm,
            s.decided_by_rules,
            s.done,
            s.failed,
            s.prompt_tokens,
            s.completion_tokens,
            s.cost_usd,
            latency
                .map(|l| format!(", decision latency p50 {} ms, p99 {} ms", l.p50, l.p99))
                .unwrap_or_default()
        );
    }
    if !args.once && !shutdown.is_cancelled() {
        let customers: Vec<String> = sb
            .snapshot(DEMO_CONNECTION)
            .await
            .map(|d| d.customers.keys().cloned().collect())
            .unwrap_or_default();
        let publish: Option<stream::ByHand> = match args.backend.as_str() {
            "unified" => None,
            "servicenow" => Some((memory.publisher(), |id| sandbox::servicenow_sys_id("incident", id))),
            _ => Some((memory.publisher(), str::to_owned)),
        };
        let live = stream::Stream {
            sandbox_url: &sb.base_url,
            api_key: SANDBOX_KEY,
            connection: DEMO_CONNECTION,
            customers,
            publish,
        };
        println!(
            "demo: new tickets arrive about once a second{}; review them at {review_url}; Ctrl-C stops",
            args.tickets.map(|n| format!(" ({n} of them)")).unwrap_or_default()
        );
        let (created, decided) = live.run(&store, args.tickets, &shutdown).await?;
        if !shutdown.is_cancelled() {
            println!(
                "demo: {decided} of {created} new tickets decided; the review page stays at {review_url} until Ctrl-C"
            );
            shutdown.cancelled().await;
        }
    }
    stop.cancel();
    serving.await.context("service task")??;
    store.close().await;
    drop(sb);
    Ok(())
}

/// The demo's configuration: the user's, with the `demo` connection pointed at this run's sandbox
/// in the chosen mode, the in-process bus with short retry tiers, a fresh SQLite store, and the
/// service (webhooks and the review page, open without sign-in on loopback) on `addr`.
fn demo_config(config: &Config, sandbox_url: &str, args: &DemoArgs, addr: &str) -> Config {
    let mut config = config.clone();
    config.bus.url = Dsn::default();
    config.worker.retry_delays_secs = vec![1, 5];
    config.store.url = Dsn::from(format!("sqlite://{}", args.store.display()));
    // The demo binds its listener itself; the address tells the review page whether it is loopback.
    config.server.addr = addr.to_owned();
    config.review.allow_anonymous_loopback = true;
    let backend = match args.backend.as_str() {
        "freshdesk" => BackendConfig::Freshdesk(FreshdeskConfig {
            domain: String::new(),
            base_url: Some(format!("{sandbox_url}/freshdesk")),
            api_key: Some(SANDBOX_KEY.into()),
            api_key_env: None,
            category_cache_secs: 300,
        }),
        "intercom" => BackendConfig::Intercom(IntercomConfig {
            access_token: Some(SANDBOX_KEY.into()),
            access_token_env: None,
            region: None,
            base_url: Some(format!("{sandbox_url}/intercom")),
            admin_id: None,
            category_cache_secs: 300,
        }),
        "zendesk" => BackendConfig::Zendesk(ZendeskConfig {
            subdomain: "sandbox".into(),
            base_url: Some(format!("{sandbox_url}/zendesk")),
            email: Some("agent@sandbox.example".into()),
            api_token: Some(SANDBOX_KEY.into()),
            api_token_env: None,
            access_token: None,
            access_token_env: None,
            ticket_export: ZendeskTicketExport::Search,
            category_source: None,
            category_field_id: Some(crate::sandbox::ZENDESK_CATEGORY_FIELD_ID as u64),
            category_cache_secs: 300,
        }),
        "servicenow" => BackendConfig::ServiceNow(ServiceNowConfig {
            instance: String::new(),
            base_url: Some(format!("{sandbox_url}/servicenow")),
            username: Some("deskpilot.demo".into()),
            password: Some(SANDBOX_KEY.into()),
            password_env: None,
            access_token: None,
            access_token_env: None,
            category_cache_secs: 300,
        }),
        _ => BackendConfig::Unified(UnifiedConfig {
            base_url: Some(sandbox_url.to_owned()),
            region: None,
            api_key: Some(SANDBOX_KEY.into()),
            api_key_env: None,
            category_cache_secs: 300,
        }),
    };
    let mut demo = config
        .connections
        .iter()
        .find(|c| c.id == DEMO_CONNECTION)
        .cloned()
        .unwrap_or_else(|| ConnectionConfig::new(DEMO_CONNECTION, backend.clone()));
    demo.backend = backend;
    demo.mode = args.mode;
    // The sandbox's notes are agent-only by construction, so drafts may be posted in apply mode.
    demo.notes_internal_verified = true;
    demo.webhook_secret = Some(WEBHOOK_SECRET.into());
    demo.webhook_secret_env = None;
    config.connections = vec![demo];
    config
}

/// Deletes these tickets from the sandbox (a deletion sends no webhook).
async fn remove_tickets(base_url: &str, ids: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let client = crate::http::client_builder(Duration::from_secs(5), Duration::from_secs(30)).build()?;
    for id in ids {
        let url = format!("{base_url}/ticketing/{DEMO_CONNECTION}/ticket/{id}");
        let response = client.delete(&url).bearer_auth(SANDBOX_KEY).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "could not set the sandbox up: DELETE {url}: {}",
            response.status()
        );
    }
    Ok(())
}
