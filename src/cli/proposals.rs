//! `deskpilot proposals list|show|approve|reject`: the review of shadow proposals from a terminal,
//! with the same effects and records as the review page.

use std::fmt::Write as _;

use clap::{Args, Subcommand};

use super::print_json;
use crate::{
    app::App,
    config::Config,
    review::{Approval, Edits, Opened},
    store::{Proposal, ProposalFilter, ProposalStatus},
    ticketing::PriorityLevel,
};

/// `deskpilot proposals ...`.
#[derive(Debug, Subcommand)]
pub enum ProposalsCommand {
    /// List proposals, newest first, with the count of each status
    List(ListArgs),
    /// Show one proposal with its ticket as the helpdesk has it now (a pending proposal whose
    /// ticket a person has triaged, closed or deleted becomes superseded)
    Show(ShowArgs),
    /// Approve a proposal and apply it as apply mode would (once: approving again changes nothing)
    Approve(ApproveArgs),
    /// Reject a proposal with a reason
    Reject(RejectArgs),
}

/// Options of `proposals list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this status
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    status: Option<ProposalStatus>,
    /// Only this connection
    #[arg(long, value_name = "ID")]
    connection: Option<String>,
    /// Only this proposed category id
    #[arg(long, value_name = "ID")]
    category: Option<String>,
    /// Only a confidence at or above this (0–1)
    #[arg(long, value_name = "X")]
    min_confidence: Option<f64>,
    /// Only a confidence at or below this (0–1)
    #[arg(long, value_name = "X")]
    max_confidence: Option<f64>,
    /// Only proposals whose ticket id is this, or whose subject or decision contains it
    #[arg(long, value_name = "TEXT")]
    text: Option<String>,
    /// Proposals per page (1–500)
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    limit: u32,
    /// The next page: proposals older than this id (the last id of a page)
    #[arg(long, value_name = "ID")]
    before: Option<i64>,
    /// Print JSON ({"proposals", "counts"}) instead of a table
    #[arg(long)]
    json: bool,
}

/// Options of `proposals show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The proposal's id
    id: i64,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

/// Options of `proposals approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The proposal's id
    id: i64,
    /// Apply this category id instead (an active category of the helpdesk; "" for none)
    #[arg(long, value_name = "ID")]
    category: Option<String>,
    /// Apply this priority instead (none, low, normal, high, urgent)
    #[arg(long, value_name = "LEVEL", value_parser = parse_priority)]
    priority: Option<PriorityLevel>,
    /// Apply these tags instead of the proposed ones (repeat the option; --tag "" for none)
    #[arg(long = "tag", value_name = "TAG")]
    tags: Option<Vec<String>>,
    /// Post this draft instead of the proposed one ("" posts none)
    #[arg(long, value_name = "TEXT")]
    draft: Option<String>,
    /// Who approves, for the record (default: $USER)
    #[arg(long = "as", value_name = "NAME")]
    actor: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

/// Options of `proposals reject`.
#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The proposal's id
    id: i64,
    /// Why: wrong_category, wrong_priority, bad_draft, needs_person, spam or other
    #[arg(long, value_name = "REASON")]
    reason: String,
    /// A few words more (needed with --reason other)
    #[arg(long, value_name = "TEXT", default_value = "")]
    note: String,
    /// Who rejects, for the record (default: $USER)
    #[arg(long = "as", value_name = "NAME")]
    actor: Option<String>,
}

pub(super) async fn run(config: &Config, cmd: ProposalsCommand) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    let reviews = app.reviews();
    let result = async {
        match cmd {
            ProposalsCommand::List(args) => {
                let filter = ProposalFilter {
                    connection: args.connection,
                    status: args.status,
                    category: args.category,
                    min_confidence: args.min_confidence,
                    max_confidence: args.max_confidence,
                    text: args.text,
                    limit: args.limit,
                    before_id: args.before,
                };
                let (page, counts) = reviews.list(&filter).await?;
                if args.json {
                    let counts: std::collections::BTreeMap<_, _> =
                        counts.iter().map(|(s, n)| (s.as_str(), n)).collect();
                    return print_json(&serde_json::json!({ "proposals": page, "counts": counts }), false);
                }
                print!("{}", list_text(&page, &counts));
                Ok(())
            }
            ProposalsCommand::Show(args) => {
                let opened = reviews.open(args.id).await?;
                if args.json {
                    return print_json(&opened, false);
                }
                print!("{}", show_text(&opened));
                Ok(())
            }
            ProposalsCommand::Approve(args) => {
                let edits = Edits {
                    category_id: args.category,
                    priority: args.priority,
                    tags: args.tags,
                    draft: args.draft,
                };
                let approval = reviews.approve(args.id, &actor(args.actor), &edits).await?;
                if args.json {
                    return print_json(&approval, false);
                }
                println!("{}", approval_text(args.id, &approval));
                Ok(())
            }
            ProposalsCommand::Reject(args) => {
                reviews.reject(args.id, &actor(args.actor), &args.reason, &args.note).await?;
                println!("proposal {} rejected", args.id);
                Ok(())
            }
        }
    }
    .await;
    app.store().close().await;
    result
}

fn actor(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "cli".into())
}

fn parse_status(s: &str) -> Result<ProposalStatus, String> {
    ProposalStatus::parse(s).ok_or_else(|| {
        let all: Vec<_> = ProposalStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("`{s}` is not a status; use one of {}", all.join(", "))
    })
}

fn parse_priority(s: &str) -> Result<PriorityLevel, String> {
    PriorityLevel::ALL
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("`{s}` is not a priority; use none, low, normal, high or urgent"))
}

/// Ticket text is untrusted: control characters (terminal escapes among them) are shown escaped.
fn inert(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\n' { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

fn field<'a>(d: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    d.get(name).unwrap_or(&serde_json::Value::Null)
}

fn list_text(page: &[Proposal], counts: &std::collections::BTreeMap<ProposalStatus, u64>) -> String {
    let mut out = String::new();
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let _ = writeln!(out, "{}", counts.join(" · "));
    let _ = writeln!(
        out,
        "{:>6}  {:<10}  {:<14}  {:<10}  {:<18}  {:>5}  subject",
        "id", "status", "connection", "ticket", "category", "conf"
    );
    for p in page {
        let d = p.decision_to_apply();
        let category = field(d, "category_id").as_str().unwrap_or("-");
        let confidence = field(d, "confidence").as_f64().map_or("-".into(), |c| format!("{c:.2}"));
        let subject = p.ticket_subject.as_deref().unwrap_or("");
        let _ = writeln!(
            out,
            "{:>6}  {:<10}  {:<14}  {:<10}  {:<18}  {:>5}  {}",
            p.id,
            p.status.as_str(),
            inert(&p.connection_id),
            inert(&p.ticket_id),
            inert(category),
            confidence,
            inert(&subject.replace('\n', " ")),
        );
    }
    if let Some(last) = page.last() {
        let _ = writeln!(out, "next page: --before {}", last.id);
    }
    out
}

fn show_text(o: &Opened) -> String {
    let p = &o.proposal;
    let d = p.decision_to_apply();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "proposal {} · {} · connection {} · ticket {}",
        p.id,
        p.status,
        inert(&p.connection_id),
        inert(&p.ticket_id)
    );
    if let Some(reason) = &p.review_reason {
        let _ = writeln!(out, "review: {}", inert(reason));
    }
    let _ = writeln!(out, "shadowed because: {}", inert(&p.why_shadowed));
    if let Some(url) = &p.ticket_url {
        let _ = writeln!(out, "ticket link: {}", inert(url));
    }
    match &o.ticket {
        Some(t) => {
            let _ = writeln!(out, "\nsubject: {}", inert(t.subject.as_deref().unwrap_or("")));
            for n in &o.notes {
                let visibility = match n.visibility {
                    Some(crate::ticketing::NoteVisibility::Internal) => "internal",
                    Some(crate::ticketing::NoteVisibility::Public) => "public",
                    _ => "visibility unknown",
                };
                let _ = writeln!(
                    out,
                    "--- {:?} ({visibility})\n{}",
                    n.author(),
                    inert(n.description.as_deref().unwrap_or(""))
                );
            }
        }
        None => {
            let _ = writeln!(out, "\nthe ticket no longer exists in the helpdesk");
        }
    }
    for change in &o.changed {
        let _ = writeln!(out, "changed by a person since triage: {}", inert(change));
    }
    let _ = writeln!(out, "\nproposed:");
    for name in
        ["category_id", "priority", "tags", "language", "sentiment", "confidence", "summary", "reason"]
    {
        let _ = writeln!(out, "  {name}: {}", inert(&field(d, name).to_string()));
    }
    if let Some(draft) = field(d, "draft_reply").as_str() {
        let _ = writeln!(out, "  draft:\n{}", inert(draft));
    }
    for a in &o.actions {
        let at = crate::ticketing::model::format_timestamp(a.at);
        let why = a.reason.as_deref().map(|r| format!(": {}", inert(r))).unwrap_or_default();
        let _ = writeln!(out, "{at} {} by {}{why}", a.action, inert(&a.actor));
    }
    out
}

fn approval_text(id: i64, a: &Approval) -> String {
    match a {
        Approval::Applied { note_id, kept } => {
            let note =
                note_id.as_deref().map_or("no note posted".into(), |n| format!("internal note {n} posted"));
            let kept =
                if kept.is_empty() { String::new() } else { format!("; left alone: {}", kept.join("; ")) };
            format!("proposal {id} approved and applied: {note}{kept}")
        }
        Approval::Superseded { why } => format!("proposal {id} superseded, nothing written: {why}"),
        Approval::AlreadyApplied { by, note_id, .. } => format!(
            "proposal {id} was applied already{}{}; nothing changed",
            by.as_deref().map(|b| format!(" (approved by {b})")).unwrap_or_default(),
            note_id.as_deref().map(|n| format!(", note {n}")).unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_in_ticket_text_are_shown_not_run() {
        assert_eq!(inert("a\u{1b}[31mred\u{7}\nb"), "a\\u{1b}[31mred\\u{7}\nb");
        assert_eq!(inert("<script>{{ x }}</script>"), "<script>{{ x }}</script>");
    }
}
