//! `deskpilot triage`: the decision the engine would propose for one ticket. Writes nothing.

use std::{fmt::Write as _, time::Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::{print_json, tickets::connection_client};
use crate::{
    app::parts,
    config::Config,
    ticketing::DynTicketReader,
    triage::{TokenCounting, Triage, decision::Origin},
};

/// Options of `triage`.
#[derive(Debug, Args)]
pub struct TriageArgs {
    /// Connection id from the config (optional when only one is configured)
    #[arg(long, env = "DESKPILOT_CONNECTION", value_name = "ID")]
    connection: Option<String>,

    /// The ticket's id in the helpdesk
    #[arg(long, value_name = "TICKET_ID")]
    ticket: String,

    /// Print {"decision", "notes", "report"} as JSON instead of text (the report lists each model
    /// asked with its cost; the decision's origin names the one that answered)
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(config: &Config, args: TriageArgs) -> anyhow::Result<()> {
    let (id, helpdesk) = connection_client(config, args.connection.as_deref())?;
    let helpdesk: DynTicketReader = helpdesk;
    let policy = parts::triage_policy(config, config.connection(&id)?)?;
    // This command is where a person reads each part's token figures: count every prompt.
    let mut config = config.clone();
    config.triage.count_tokens = TokenCounting::Always;
    let engine = parts::engine(&config)?;
    let started = Instant::now();
    let triage = engine
        .triage(helpdesk.as_ref(), &args.ticket, &policy)
        .await
        .with_context(|| format!("could not triage ticket `{}` of connection `{id}`", args.ticket))?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if args.json {
        return print_json(
            &json!({ "decision": triage.decision, "notes": triage.notes, "report": triage.report, "elapsed_ms": elapsed_ms }),
            false,
        );
    }
    print!("{}", render(&id, &args.ticket, &triage, elapsed_ms));
    Ok(())
}

/// The decision and its figures as text for a terminal.
fn render(connection: &str, ticket: &str, t: &Triage, elapsed_ms: u64) -> String {
    let d = &t.decision;
    let r = &t.report;
    let mut out = String::new();
    let by = match &d.origin {
        Origin::Llm { model } => format!("LLM {model}"),
        Origin::Rules { rule } => format!("rules (rule `{rule}`)"),
    };
    let _ = writeln!(out, "ticket {ticket} on connection {connection}: decided by {by}");
    if let Some(why) = &r.fallback {
        let _ = writeln!(out, "note: {why}; this is the rules-based decision");
        if why.contains("no LLM is configured") {
            let _ = writeln!(
                out,
                "      set OPENAI_API_KEY, or llm.base_url/llm.model (DESKPILOT__LLM__*) for a compatible server"
            );
        }
    }
    let field = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "  {name:<12} {value}");
    };
    field(&mut out, "category", d.category_id.as_deref().unwrap_or("(none)"));
    field(&mut out, "priority", d.priority.as_str());
    field(&mut out, "tags", &if d.tags.is_empty() { "(none)".to_owned() } else { d.tags.join(", ") });
    field(&mut out, "language", &d.language);
    field(&mut out, "sentiment", d.sentiment.as_str());
    field(&mut out, "confidence", &format!("{:.2}", d.confidence));
    field(&mut out, "needs human", if d.needs_human { "yes" } else { "no" });
    field(&mut out, "summary", &d.summary);
    field(&mut out, "reason", &d.reason);
    match &d.draft_reply {
        Some(draft) => {
            let _ = writeln!(out, "  draft reply (internal, for review):");
            for line in draft.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        None => field(&mut out, "draft reply", "(none)"),
    }
    for note in &t.notes {
        let _ = writeln!(out, "  adjusted:    {note}");
    }
    let c = &r.context;
    let _ = writeln!(
        out,
        "tokens: prompt {} of {} ({}, prompt {}); ticket {}, notes kept {}, {} notes dropped ({} tokens), {} characters removed by cleaning",
        r.prompt_tokens.map_or("not counted".to_owned(), |t| t.to_string()),
        r.prompt_budget,
        r.encoding,
        r.prompt_version,
        c.ticket,
        c.notes_kept,
        c.notes_dropped,
        c.dropped_tokens,
        c.chars_removed_by_cleaning
    );
    let p = &r.privacy;
    let replaced = p.replaced.iter().map(|(kind, n)| format!("{kind} {n}")).collect::<Vec<_>>();
    let _ = writeln!(
        out,
        "privacy: {}; replaced {} ({} places in the prompt); {} put back in the draft{}",
        p.mode.as_str(),
        if replaced.is_empty() { "nothing".to_owned() } else { replaced.join(", ") },
        p.occurrences,
        p.restored,
        if p.invented.is_empty() {
            String::new()
        } else {
            format!("; invented by the model: {}", p.invented.join(", "))
        }
    );
    if r.llm_calls > 0 {
        let cost = r.cost_usd.map_or("unknown (no price for this model)".to_owned(), |c| format!("${c:.5}"));
        let _ = writeln!(
            out,
            "llm: {} call(s), {} attempt(s){}, {} ms; server counted {} prompt ({} cached) + {} completion tokens; cost {cost}",
            r.llm_calls,
            r.llm_attempts,
            if r.repaired { ", answer repaired once" } else { "" },
            r.llm_latency_ms,
            r.usage.prompt_tokens,
            r.usage.cached_tokens,
            r.usage.completion_tokens
        );
    }
    if let Some(why) = &r.escalated {
        let _ = writeln!(out, "escalated to the stronger model: {why}");
    }
    if r.models.len() > 1 {
        for m in &r.models {
            let cost = m.cost_usd.map_or("unknown".to_owned(), |c| format!("${c:.5}"));
            let _ = writeln!(
                out,
                "  {}: {} call(s), {} prompt + {} completion tokens, cost {cost}",
                m.model, m.calls, m.usage.prompt_tokens, m.usage.completion_tokens
            );
        }
    }
    let _ = writeln!(out, "latency: {elapsed_ms} ms in all");
    out
}
