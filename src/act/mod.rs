//! Turning a validated Decision into effects: apply (update the ticket, post the draft as an
//! internal note), shadow (store the proposal for review), or apply when confident.
//!
//! Every step is recorded in the ledger before the next starts, so a redelivered event resumes
//! where the last attempt stopped. The note carries a marker derived from the ledger key, and the
//! note step first looks for an earlier note with that marker, so a retry after an ambiguous
//! failure (timeout after the POST) never posts a second note.

mod approval;
mod fence;
mod patch;
mod vocabulary;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use serde::Deserialize;
use sha1::{Digest, Sha1};

use crate::{
    store::{DecidedBy, DecisionRecord, LedgerKey, NewProposal, Step, Store, StoreError},
    ticketing::{
        ListQuery, NewNote, PriorityLevel, Ticket, TicketField, TicketStatus, Ticketing, TicketingError,
        all_notes, collect_all,
    },
    triage::{
        Report,
        decision::{Decision, Origin},
    },
};

pub use crate::config::Mode;
pub use approval::{Approved, apply_approved};
pub use fence::{Fence, Stop};
pub use patch::{TriageFields, patch_for, supported_only};
pub use vocabulary::TagVocabulary;

/// How one connection acts.
#[derive(Debug, Clone, Default)]
pub struct ActPolicy {
    /// The mode.
    pub mode: Mode,
    /// Minimum confidence for `apply_if_confident`.
    pub confidence_threshold: f64,
    /// Categories `apply_if_confident` may apply at `confidence_threshold`; none listed here or
    /// in `category_thresholds` = always shadow.
    pub automated_categories: BTreeSet<String>,
    /// Categories `apply_if_confident` may apply, each at its own minimum confidence (which
    /// takes precedence over `confidence_threshold`).
    pub category_thresholds: BTreeMap<String, f64>,
    /// Notes created through this connection are known to be internal (agent-only). Without it a
    /// draft is never posted: the triage fields are applied and the draft stays in the store.
    pub notes_internal_verified: bool,
    /// Assignee (`user_id`) per category; the LLM never picks one.
    pub routing: BTreeMap<String, String>,
    /// The helpdesk's word for each priority level (default: lowercase `low`/`normal`/`high`/`urgent`).
    pub priority_values: BTreeMap<PriorityLevel, String>,
    /// Agent to post notes as, if the backend needs one.
    pub note_user_id: Option<String>,
    /// Set when the connection lists no `allowed_tags`: only tags the helpdesk already uses are
    /// written (triage filtered the others out already when there is a list).
    pub tag_vocabulary: Option<Arc<TagVocabulary>>,
}

impl ActPolicy {
    /// The backend's spelling of a level; `None` for `NONE` (leave the priority alone).
    pub fn priority_value(&self, level: PriorityLevel) -> Option<String> {
        if level == PriorityLevel::None {
            return None;
        }
        Some(self.priority_values.get(&level).cloned().unwrap_or_else(|| level.as_str().to_ascii_lowercase()))
    }

    /// Whether this decision is applied (`Ok`) or shadowed, and why.
    ///
    /// A decision that asks for a person is never applied, whatever the mode: it is how the model
    /// says it suspects instructions hidden in the customer's text, or cannot tell what is wanted.
    pub fn verdict(&self, d: &Decision) -> Result<(), String> {
        if self.mode != Mode::Shadow && d.needs_human {
            return Err("the decision asks for a human".into());
        }
        match self.mode {
            Mode::Shadow => Err("connection is in shadow mode".into()),
            Mode::Apply => Ok(()),
            Mode::ApplyIfConfident => {
                let Some(c) = &d.category_id else {
                    return Err("no category was proposed".into());
                };
                let (threshold, whose) = match self.category_thresholds.get(c) {
                    Some(t) => (*t, format!(" of category `{c}`")),
                    None if self.automated_categories.contains(c) => {
                        (self.confidence_threshold, String::new())
                    }
                    None => return Err(format!("category `{c}` is not enabled for automation")),
                };
                if d.confidence < threshold as f32 {
                    return Err(format!(
                        "confidence {:.2} is below the threshold {threshold:.2}{whose}",
                        d.confidence
                    ));
                }
                Ok(())
            }
        }
    }
}

/// What acting did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The ticket was updated and/or the note posted.
    Applied {
        /// The note posted (or found from an earlier attempt); `None` when the draft was kept back.
        note_id: Option<String>,
        /// What was left alone and why (a person's category, the draft guard, ...).
        kept: Vec<String>,
    },
    /// Nothing was written; the proposal is stored for review.
    Shadowed {
        /// Proposal id.
        proposal_id: i64,
        /// Why it was not applied.
        why: String,
    },
}

impl Outcome {
    /// One line for the ledger and logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Applied { note_id, kept } => {
                let mut s = match note_id {
                    Some(id) => format!("applied; note {id}"),
                    None => "applied; no note".to_owned(),
                };
                for k in kept {
                    s.push_str("; ");
                    s.push_str(k);
                }
                s
            }
            Self::Shadowed { proposal_id, why } => shadowed(&proposal_id.to_string(), why),
        }
    }
}

/// The outcome text of a shadowed decision.
fn shadowed(proposal_id: &str, why: &str) -> String {
    format!("shadowed as proposal {proposal_id}: {why}")
}

/// Why acting failed.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// The helpdesk refused or failed.
    #[error(transparent)]
    Helpdesk(#[from] TicketingError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The attempt was stopped before its next helpdesk write.
    #[error("stopped before the next helpdesk write: {0}")]
    Stopped(Stop),
}

impl ActError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Helpdesk(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Stopped(_) => true,
        }
    }
}

/// Everything `act` needs about the event.
#[derive(Debug, Clone, Copy)]
pub struct ActContext<'a> {
    /// Ledger key.
    pub key: &'a LedgerKey,
    /// The event that first claimed the key (a duplicate event resumes under it, so a proposal
    /// is stored once).
    pub event_id: &'a str,
    /// This worker's id (lease holder).
    pub worker: &'a str,
    /// The step the ledger had reached when this attempt started.
    pub step: Step,
    /// The ticket as this attempt read it for triage, if it did (a resumed attempt did not).
    pub ticket: Option<&'a Ticket>,
    /// Checked before every helpdesk write.
    pub fence: &'a Fence,
}

/// Carries out a validated decision (`record` is how the store keeps it), resuming after
/// `ctx.step`. The ledger reaches `Done` on success.
///
/// A decision the ledger has not recorded yet (`ctx.step` is `Claimed`) is recorded before the
/// first helpdesk write when applying, and in the key's last commit when shadowing (nothing is
/// written to the helpdesk in between, so one commit does).
pub async fn act(
    store: &Store,
    helpdesk: &dyn Ticketing,
    policy: &ActPolicy,
    ctx: ActContext<'_>,
    decision: &Decision,
    record: &DecisionRecord,
) -> Result<Outcome, ActError> {
    let undecided = ctx.step < Step::Decided;
    if let Err(why) = policy.verdict(decision) {
        // Only for the proposal's subject and link: the ticket read for triage will do.
        let fetched = match ctx.ticket {
            Some(_) => None,
            None => helpdesk.get_ticket(&ctx.key.ticket_id).await.ok(),
        };
        let ticket = ctx.ticket.or(fetched.as_ref());
        let proposal = proposal(ctx, record, policy, &why, ticket);
        let describe = |proposal_id: &str| shadowed(proposal_id, &why);
        let decided = undecided.then_some(record);
        let proposal_id =
            store.finish_with_proposal(ctx.key, ctx.worker, decided, &proposal, describe).await?;
        return Ok(Outcome::Shadowed { proposal_id, why });
    }
    if undecided {
        // Durable before the helpdesk is touched: a retry acts on this decision, not a new one.
        store.record_decision(ctx.key, ctx.worker, record).await?;
    }

    let mut kept = Vec::new();
    if ctx.step < Step::TicketUpdated {
        let fields = TriageWrite {
            ticket_id: &ctx.key.ticket_id,
            before: record.ticket_before.as_ref(),
            decision,
            while_: "while deskpilot decided",
        };
        if let Err(Untouched { why, ticket }) = fields.write(helpdesk, policy, ctx.fence, &mut kept).await? {
            return leave_alone(store, policy, ctx, record, &why, ticket.as_ref()).await;
        }
        store.advance(ctx.key, ctx.worker, Step::TicketUpdated, Some(&kept.join("; "))).await?;
    }

    let mut note_id = None;
    let mut kept_back = None;
    match (&decision.draft_reply, policy.notes_internal_verified) {
        // Recorded with `Done` below: a retry in between finds the note by its marker.
        (Some(draft), true) => note_id = Some(post_note_once(helpdesk, ctx, draft, policy).await?),
        (Some(_), false) => {
            let why = "draft kept for review: notes of this connection are not verified internal \
                       (set notes_internal_verified once checked)";
            kept_back = Some(proposal(ctx, record, policy, why, None));
            kept.push(why.to_owned());
        }
        (None, _) => {}
    }
    let outcome = Outcome::Applied { note_id: note_id.clone(), kept };
    let describe = outcome.describe();
    match &kept_back {
        Some(p) => {
            store.finish_with_proposal(ctx.key, ctx.worker, None, p, |_| describe).await?;
        }
        None => store.finish(ctx.key, ctx.worker, note_id.as_deref(), &describe).await?,
    }
    Ok(outcome)
}

/// The triage fields of a decision, written to a ticket re-read just before writing.
struct TriageWrite<'a> {
    ticket_id: &'a str,
    /// The ticket's triage fields as triage read them (`TriageFields` JSON), if recorded.
    before: Option<&'a serde_json::Value>,
    decision: &'a Decision,
    /// When a person may have changed the ticket, for the reasons given (`while deskpilot decided`).
    while_: &'a str,
}

/// Why a ticket was left untouched, and the ticket as re-read (if it still exists).
struct Untouched {
    why: String,
    ticket: Option<Ticket>,
}

impl TriageWrite<'_> {
    /// Re-reads the ticket (a person may have triaged, closed or deleted it since triage read it)
    /// and writes what is the decision's to write; says in `kept` what it left alone. A closed or
    /// deleted ticket gets nothing.
    async fn write(
        &self,
        helpdesk: &dyn Ticketing,
        policy: &ActPolicy,
        fence: &Fence,
        kept: &mut Vec<String>,
    ) -> Result<Result<Ticket, Untouched>, ActError> {
        let ticket = match helpdesk.get_ticket(self.ticket_id).await {
            Ok(ticket) => ticket,
            Err(TicketingError::NotFound { .. }) => {
                let why = format!("the ticket was deleted (or merged away) {}; nothing written", self.while_);
                return Ok(Err(Untouched { why, ticket: None }));
            }
            Err(e) => return Err(e.into()),
        };
        if ticket.status == Some(TicketStatus::Closed) {
            let why = format!("the ticket is closed (a person closed it {}); nothing written", self.while_);
            return Ok(Err(Untouched { why, ticket: Some(ticket) }));
        }
        // Decisions recorded before snapshots were kept compare with nothing: the older rules
        // (a category or assignee already set stays) still hold.
        let before = self.before.and_then(|v| TriageFields::deserialize(v).ok());
        let caps = helpdesk.capabilities();
        // A helpdesk without tags has no vocabulary to learn: the tags are left out below, once.
        let vocabulary = match &policy.tag_vocabulary {
            Some(v) if caps.supports(TicketField::Tags) => Some(v.get(helpdesk).await?),
            _ => None,
        };
        let patch = patch_for(&ticket, before.as_ref(), self.decision, policy, vocabulary.as_deref(), kept);
        let patch = supported_only(patch, &caps, kept);
        if patch.is_empty() {
            return Ok(Ok(ticket));
        }
        fence.pass()?;
        Ok(Ok(helpdesk.update_ticket(self.ticket_id, &patch).await?))
    }
}

/// Finishes a decided key without writing to the helpdesk: the decision is kept as a proposal
/// that says `why`.
async fn leave_alone(
    store: &Store,
    policy: &ActPolicy,
    ctx: ActContext<'_>,
    record: &DecisionRecord,
    why: &str,
    ticket: Option<&Ticket>,
) -> Result<Outcome, ActError> {
    let proposal = proposal(ctx, record, policy, why, ticket.or(ctx.ticket));
    let describe = |proposal_id: &str| shadowed(proposal_id, why);
    let proposal_id = store.finish_with_proposal(ctx.key, ctx.worker, None, &proposal, describe).await?;
    Ok(Outcome::Shadowed { proposal_id, why: why.to_owned() })
}

/// The marker a deskpilot note carries, stable for a ledger key.
pub fn note_marker(key: &LedgerKey) -> String {
    marker_of(&[&key.connection_id, &key.ticket_id, key.kind.as_str()])
}

/// A note marker from the parts that identify what the note belongs to.
fn marker_of(parts: &[&str]) -> String {
    let mut h = Sha1::new();
    h.update(parts.join("\u{1f}").as_bytes());
    format!("deskpilot-ref:{}", &hex::encode(h.finalize())[..16])
}

/// The note body: the draft, then a footer that marks it as deskpilot's.
pub fn note_body(draft: &str, marker: &str) -> String {
    format!(
        "{draft}\n\n— Draft reply proposed by deskpilot for agent review; not sent to the customer. [{marker}]"
    )
}

async fn post_note_once(
    helpdesk: &dyn Ticketing,
    ctx: ActContext<'_>,
    draft: &str,
    policy: &ActPolicy,
) -> Result<String, ActError> {
    // An attempt records its decision (durably) before its first helpdesk write, so when this
    // attempt found no decision recorded, no earlier one can have posted a note: only a resumed
    // attempt has to look for one.
    let note = MarkedNote { ticket_id: &ctx.key.ticket_id, marker: note_marker(ctx.key), draft };
    note.post_once(helpdesk, policy, ctx.step >= Step::Decided, ctx.fence).await
}

/// A draft posted as an internal note that carries `marker`, so a retry finds it.
struct MarkedNote<'a> {
    ticket_id: &'a str,
    marker: String,
    draft: &'a str,
}

impl MarkedNote<'_> {
    /// Posts the note, unless `resumed` and an earlier attempt's note with the marker is there.
    async fn post_once(
        &self,
        helpdesk: &dyn Ticketing,
        policy: &ActPolicy,
        resumed: bool,
        fence: &Fence,
    ) -> Result<String, ActError> {
        if resumed {
            let notes = collect_all(all_notes(helpdesk, ListQuery::notes_of(self.ticket_id))).await?;
            if let Some(existing) =
                notes.iter().find(|n| n.description.as_deref().is_some_and(|d| d.contains(&self.marker)))
            {
                tracing::info!(ticket = %self.ticket_id, "found the note of an earlier attempt; not posting again");
                return Ok(existing.id.clone().unwrap_or_default());
            }
        }
        let note = NewNote {
            ticket_id: self.ticket_id.to_owned(),
            description: note_body(self.draft, &self.marker),
            user_id: policy.note_user_id.clone(),
            raw: None,
        };
        fence.pass()?;
        let created = helpdesk.create_note(&note).await?;
        Ok(created.id.unwrap_or_default())
    }
}

/// The proposal stored for review when a decision is not applied (or its draft is kept back).
fn proposal(
    ctx: ActContext<'_>,
    record: &DecisionRecord,
    policy: &ActPolicy,
    why: &str,
    ticket: Option<&Ticket>,
) -> NewProposal {
    NewProposal {
        connection_id: ctx.key.connection_id.clone(),
        ticket_id: ctx.key.ticket_id.clone(),
        event_id: ctx.event_id.to_owned(),
        decision: record.decision.clone(),
        report: record.report.clone(),
        mode: policy.mode.as_str().to_owned(),
        why_shadowed: why.to_owned(),
        ticket_subject: ticket.and_then(|t| t.subject.clone()),
        ticket_url: ticket.and_then(|t| t.url.clone()),
        ticket_before: record.ticket_before.clone(),
    }
}

/// How the store keeps a validated decision and its triage report: both as JSON, and the
/// figures its stats sum. Tokens are the server-reported usage; when a server reports none
/// although the LLM was called, prompt tokens fall back to our own count.
pub fn record_of(decision: &Decision, report: &Report) -> DecisionRecord {
    let mut prompt_tokens = u64::from(report.usage.prompt_tokens);
    if prompt_tokens == 0 && report.llm_calls > 0 {
        prompt_tokens = report.prompt_tokens.map_or(0, |n| n as u64);
    }
    DecisionRecord {
        // Plain data with string keys: serialising them cannot fail.
        decision: serde_json::to_value(decision).unwrap_or_default(),
        report: serde_json::to_value(report).unwrap_or_default(),
        decided_by: match decision.origin {
            Origin::Llm { .. } => DecidedBy::Llm,
            Origin::Rules { .. } => DecidedBy::Rules,
        },
        prompt_version: Some(report.prompt_version.clone()),
        prompt_tokens: Some(prompt_tokens),
        completion_tokens: Some(u64::from(report.usage.completion_tokens)),
        cost_usd: report.cost_usd,
        latency_ms: Some(report.llm_latency_ms),
        ticket_before: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{events::EventKind, triage::decision::Sentiment, triage::llm::Usage};

    /// A confident LLM decision: outage, urgent, tags `outage` and `VIP`, with a draft.
    pub(super) fn decision() -> Decision {
        Decision {
            category_id: Some("cat-outage".into()),
            priority: PriorityLevel::Urgent,
            tags: vec!["outage".into(), "VIP".into()],
            language: "en".into(),
            sentiment: Sentiment::Angry,
            summary: "s".into(),
            draft_reply: Some("d".into()),
            confidence: 0.9,
            needs_human: false,
            reason: "r".into(),
            origin: Origin::Llm { model: "m".into() },
        }
    }

    #[test]
    fn apply_if_confident_needs_confidence_and_an_automated_category() {
        let mut policy =
            ActPolicy { mode: Mode::ApplyIfConfident, confidence_threshold: 0.85, ..ActPolicy::default() };
        assert!(policy.verdict(&decision()).unwrap_err().contains("not enabled"));
        policy.automated_categories.insert("cat-outage".into());
        assert!(policy.verdict(&decision()).is_ok());
        let unsure = Decision { confidence: 0.5, ..decision() };
        assert!(policy.verdict(&unsure).unwrap_err().contains("below the threshold"));
        let human = Decision { needs_human: true, ..decision() };
        assert!(policy.verdict(&human).is_err());
        assert!(ActPolicy::default().verdict(&decision()).unwrap_err().contains("shadow"));
        let none = Decision { category_id: None, ..decision() };
        assert_eq!(policy.verdict(&none).unwrap_err(), "no category was proposed");
    }

    #[test]
    fn a_category_s_own_threshold_takes_precedence_over_the_global_one() {
        let policy = ActPolicy {
            mode: Mode::ApplyIfConfident,
            confidence_threshold: 0.5,
            automated_categories: BTreeSet::from(["cat-outage".to_owned(), "cat-billing".to_owned()]),
            category_thresholds: BTreeMap::from([
                ("cat-outage".to_owned(), 0.9),
                ("cat-bug".to_owned(), 0.8),
            ]),
            ..ActPolicy::default()
        };
        let at = |category: &str, confidence: f32| {
            policy.verdict(&Decision { category_id: Some(category.into()), confidence, ..decision() })
        };
        assert_eq!(
            at("cat-outage", 0.86).unwrap_err(),
            "confidence 0.86 is below the threshold 0.90 of category `cat-outage`"
        );
        assert!(at("cat-outage", 0.9).is_ok());
        // Listed only in the table: automated at its own threshold.
        assert!(at("cat-bug", 0.8).is_ok());
        assert!(at("cat-bug", 0.79).unwrap_err().contains("below the threshold 0.80 of category `cat-bug`"));
        // Listed only in automated_categories: the global threshold, as before.
        assert!(at("cat-billing", 0.6).is_ok());
        assert_eq!(at("cat-billing", 0.4).unwrap_err(), "confidence 0.40 is below the threshold 0.50");
        assert!(at("cat-refunds", 0.99).unwrap_err().contains("not enabled for automation"));
    }

    #[test]
    fn the_record_keeps_the_report_s_figures() {
        let report = Report {
            prompt_version: "v1".into(),
            prompt_tokens: Some(900),
            llm_calls: 1,
            cost_usd: Some(0.5),
            usage: Usage { prompt_tokens: 1000, completion_tokens: 80, cached_tokens: 0 },
            llm_latency_ms: 700,
            ..Report::default()
        };
        let r = record_of(&decision(), &report);
        assert_eq!((r.decided_by, r.prompt_version.as_deref()), (DecidedBy::Llm, Some("v1")));
        assert_eq!((r.prompt_tokens, r.completion_tokens, r.latency_ms), (Some(1000), Some(80), Some(700)));
        assert_eq!(r.cost_usd, Some(0.5));
        assert_eq!(r.decision, serde_json::to_value(decision()).unwrap());
        assert_eq!(r.report["usage"]["prompt_tokens"], 1000);

        // The server reported no usage: our own count stands in for the prompt.
        let unreported = Report { usage: Usage::default(), ..report.clone() };
        assert_eq!(record_of(&decision(), &unreported).prompt_tokens, Some(900));

        // Rules that never called the LLM: no tokens; our count of a prompt never sent does not
        // stand in.
        let rules = Decision { origin: Origin::Rules { rule: "r".into() }, ..decision() };
        let r = record_of(&rules, &Report { prompt_tokens: Some(900), ..Report::default() });
        assert_eq!(
            (r.decided_by, r.prompt_tokens, r.cost_usd, r.latency_ms),
            (DecidedBy::Rules, Some(0), None, Some(0))
        );
    }

    #[test]
    fn the_marker_is_stable_per_key_and_in_the_note() {
        let key = LedgerKey {
            connection_id: "demo".into(),
            ticket_id: "1044".into(),
            kind: EventKind::TicketCreated,
        };
        let m = note_marker(&key);
        assert_eq!(m, note_marker(&key.clone()));
        let other = LedgerKey { ticket_id: "1045".into(), ..key };
        assert_ne!(m, note_marker(&other));
        assert!(note_body("hello", &m).contains(&m));
    }
}
