//! `deskpilot demo`: the whole pipeline in one process on the embedded defaults — the sandbox
//! helpdesk, the in-process bus, a SQLite store — over the demo helpdesk's untriaged tickets.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use tokio::time::Instant;

use crate::{
    app::App,
    bus::Bus,
    config::{BackendConfig, Config, ConnectionConfig, Dsn, Mode, UnifiedConfig},
    events::{EventKind, EventSource, TicketEvent},
    sandbox::{self, SandboxOptions},
    store::ProposalFilter,
    ticketing::{ListQuery, TicketStatus, Ticketing, all_tickets, collect_all},
    triage::decision::Decision,
};

/// The sandbox connection the demo runs on.
const DEMO_CONNECTION: &str = "demo";

/// The key of the demo's own sandbox.
const SANDBOX_KEY: &str = "demo";

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Triage at most this many of the untriaged tickets
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// `shadow` stores proposals; `apply` writes triage and internal notes into the sandbox
    #[arg(long, default_value = "shadow", value_parser = parse_mode)]
    mode: Mode,

    /// SQLite file of this demo's ledger and proposals (recreated on every run)
    #[arg(long, default_value = "data/demo.db", value_name = "FILE")]
    store: PathBuf,
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
    let sb = sandbox::spawn(SandboxOptions { api_key: SANDBOX_KEY.into(), ..SandboxOptions::default() })
        .await
        .context("could not start the sandbox helpdesk")?;
    // A fresh ledger each run: the sandbox starts from its bundled data every time.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", args.store.display()));
    }
    let config = demo_config(config, &sb.base_url, &args);
    let app = App::build(&config).await?;
    let Bus::Memory(memory) = app.bus().clone() else { unreachable!("the demo config empties bus.url") };
    let helpdesk = app.helpdesk(DEMO_CONNECTION).expect("the demo connection is configured").clone();
    let publisher = app.publisher().await?;
    let store = app.store().clone();
    let engine = app.engine().clone();

    let untriaged: Vec<_> =
        collect_all(all_tickets(helpdesk.as_ref() as &dyn Ticketing, ListQuery::default()))
            .await?
            .into_iter()
            .filter(|t| t.category_id.is_none() && t.status != Some(TicketStatus::Closed))
            .filter_map(|t| t.id)
            .take(args.limit.unwrap_or(usize::MAX))
            .collect();
    let by = match engine.model() {
        Some(model) => format!("LLM {model}"),
        None => "the fallback rules (no LLM configured: set OPENAI_API_KEY or [llm])".to_owned(),
    };
    println!(
        "demo: sandbox helpdesk at {}, {} untriaged tickets, mode {}, decided by {by}",
        sb.base_url,
        untriaged.len(),
        args.mode.as_str()
    );
    for id in &untriaged {
        let event = TicketEvent::new(EventKind::TicketCreated, DEMO_CONNECTION, id, EventSource::Backfill);
        publisher.publish(&event).await?;
    }

    let stop = shutdown.child_token();
    let running = tokio::spawn(app.worker().run_until_stopped(memory.consumer(), stop.clone()));
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let idle = memory.ready() == 0 && memory.unacked() == 0 && memory.scheduled() == 0;
        if idle || shutdown.is_cancelled() {
            break;
        }
    }
    stop.cancel();
    running.await.context("worker task")?;
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
            s.latency_p50_ms.map(|ms| format!(", LLM p50 {ms} ms")).unwrap_or_default()
        );
    }
    store.close().await;
    drop(sb);
    Ok(())
}

/// The demo's configuration: the user's, with the `demo` connection pointed at this run's sandbox
/// in the chosen mode, the in-process bus with short retry tiers, a fresh SQLite store and no HTTP
/// server (the demo ends by itself).
fn demo_config(config: &Config, sandbox_url: &str, args: &DemoArgs) -> Config {
    let mut config = config.clone();
    config.bus.url = Dsn::default();
    config.worker.retry_delays_secs = vec![1, 5];
    config.store.url = Dsn::from(format!("sqlite://{}", args.store.display()));
    config.server.addr = String::new();
    let backend = BackendConfig::Unified(UnifiedConfig {
        base_url: Some(sandbox_url.to_owned()),
        region: None,
        api_key: Some(SANDBOX_KEY.into()),
        api_key_env: None,
        category_cache_secs: 300,
    });
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
    config.connections = vec![demo];
    config
}
