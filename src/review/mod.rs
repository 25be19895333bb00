//! Review of shadow proposals: list them, open one against the ticket as the helpdesk has it now,
//! approve it (as proposed or edited) through the same guarded writes as apply mode, or reject it
//! with a reason. The review page and `deskpilot proposals` both go through [`Reviews`], so their
//! effects and records are the same.

mod edits;
pub mod outcomes;
pub mod page;
pub mod report;

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde::Serialize;
use time::OffsetDateTime;

pub use edits::{Edits, REJECT_REASONS, reject_reason};

use crate::{
    act::{self, ActError, Approved, TriageFields},
    store::{Proposal, ProposalFilter, ProposalStatus, ReviewAction, Store, StoreError, Transition},
    ticketing::{Category, ListQuery, Note, Ticket, TicketStatus, TicketingError, all_notes, collect_all},
    triage::decision::Decision,
    worker::Connection,
};

/// Who deskpilot is in review records (steps it took on its own, like superseding).
pub const DESKPILOT: &str = "deskpilot";

/// How long an approval may be applying before approving it again resumes it (a process that
/// stopped mid-way); before that, a second approval is told to wait, so two never write at once.
const APPLY_GRACE: Duration = Duration::from_secs(120);

/// Tickets read at once when outcomes are refreshed: well under any helpdesk's rate limit.
const REFRESH_CONCURRENCY: usize = 4;

/// Most notes shown with a ticket, newest kept.
const MAX_NOTES: usize = 200;

/// Why a review action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No proposal has this id.
    #[error("there is no proposal {0}; `deskpilot proposals list` shows their ids")]
    NotFound(i64),
    /// The proposal's connection is not in this configuration.
    #[error(
        "proposal {id} belongs to connection `{connection}`, which this configuration does not have; \
         review it with that connection configured"
    )]
    UnknownConnection {
        /// The proposal.
        id: i64,
        /// Its connection.
        connection: String,
    },
    /// The reviewer's edit or reason is not acceptable; nothing changed.
    #[error("{0}; nothing changed")]
    Invalid(String),
    /// The proposal is past the step asked for (rejected, superseded, being applied); nothing changed.
    #[error("proposal {id} {state}; nothing changed")]
    Settled {
        /// The proposal.
        id: i64,
        /// What it is, e.g. `was rejected by ana at 2026-12-03T10:00:00Z`.
        state: String,
    },
    /// The stored decision cannot be read back.
    #[error("the decision stored with proposal {id} cannot be read ({detail}); it can only be rejected")]
    Unreadable {
        /// The proposal.
        id: i64,
        /// Why.
        detail: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The helpdesk failed.
    #[error(transparent)]
    Helpdesk(#[from] TicketingError),
    /// An outcome could not be read or recorded.
    #[error(transparent)]
    Outcome(#[from] outcomes::OutcomeError),
    /// Applying failed; the proposal stays approved and approving it again resumes.
    #[error("applying the approved proposal failed ({0}); approve it again to retry")]
    Apply(ActError),
}

/// What approving did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Approval {
    /// Written to the helpdesk.
    Applied {
        /// The internal note posted; `None` when there was no draft or it was kept back.
        note_id: Option<String>,
        /// What was left alone and why.
        kept: Vec<String>,
    },
    /// Nothing written: the ticket was closed or deleted first.
    Superseded {
        /// Why.
        why: String,
    },
    /// It had been applied before; nothing changed.
    AlreadyApplied {
        /// Who approved it.
        by: Option<String>,
        /// When it was applied.
        #[serde(with = "time::serde::rfc3339::option")]
        at: Option<OffsetDateTime>,
        /// The note posted then.
        note_id: Option<String>,
    },
}

/// A proposal opened for review, with the ticket as the helpdesk has it now.
#[derive(Debug, Clone, Serialize)]
pub struct Opened {
    /// The proposal (superseded now if a person had triaged the ticket first).
    pub proposal: Proposal,
    /// Its decision as stored (`None` if it cannot be read).
    pub decision: Option<Decision>,
    /// Its review steps, oldest first.
    pub actions: Vec<ReviewAction>,
    /// The ticket now; `None` when it no longer exists.
    pub ticket: Option<Ticket>,
    /// The ticket's conversation, oldest first (at most the newest 200).
    pub notes: Vec<Note>,
    /// What a person changed on the ticket since triage read it.
    pub changed: Vec<String>,
    /// The helpdesk's categories (empty when they could not be read), to name the proposed one
    /// and offer the others.
    #[serde(skip)]
    pub categories: Vec<Category>,
}

/// The review of every configured connection's proposals.
#[derive(Clone)]
pub struct Reviews {
    store: Store,
    connections: Arc<HashMap<String, Connection>>,
}

impl Reviews {
    /// Reviews over `store`, applying through `connections`.
    pub fn new(store: Store, connections: HashMap<String, Connection>) -> Self {
        Self { store, connections: Arc::new(connections) }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One page of proposals (newest first) and the count of each status under the same filter.
    pub async fn list(
        &self,
        filter: &ProposalFilter,
    ) -> Result<(Vec<Proposal>, std::collections::BTreeMap<ProposalStatus, u64>), ReviewError> {
        let (page, counts) =
            tokio::try_join!(self.store.proposals(filter), self.store.proposal_counts(filter))?;
        Ok((page, counts))
    }

    /// Opens proposal `id`: reads the ticket and its conversation now, and supersedes a pending
    /// proposal whose ticket a person has triaged, closed or deleted since triage read it.
    pub async fn open(&self, id: i64) -> Result<Opened, ReviewError> {
        let mut proposal = self.proposal(id).await?;
        let conn = self.connection(&proposal)?;
        let ticket = match conn.helpdesk.get_ticket(&proposal.ticket_id).await {
            Ok(t) => Some(t),
            Err(TicketingError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let mut notes = match &ticket {
            Some(_) => {
                collect_all(all_notes(conn.helpdesk.as_ref(), ListQuery::notes_of(&proposal.ticket_id)))
                    .await?
            }
            None => Vec::new(),
        };
        notes.sort_by_key(|n| n.created_at);
        notes.drain(..notes.len().saturating_sub(MAX_NOTES));
        let before = proposal
            .ticket_before
            .as_ref()
            .and_then(|v| serde_json::from_value::<TriageFields>(v.clone()).ok());
        let changed = match (&before, &ticket) {
            (Some(before), Some(now)) => changes(before, &TriageFields::of(now)),
            _ => Vec::new(),
        };
        if proposal.status == ProposalStatus::Pending
            && let Some(why) = supersedes(ticket.as_ref(), &changed)
        {
            let t = Transition {
                reason: Some(&why),
                ..Transition::new(ProposalStatus::Pending, ProposalStatus::Superseded, DESKPILOT)
            };
            if self.store.review_proposal(id, &t).await? {
                tracing::info!(proposal = id, %why, "proposal superseded");
            }
            proposal = self.proposal(id).await?;
        }
        let decision = serde_json::from_value(proposal.decision.clone()).ok();
        let actions = self.store.review_actions(id).await?;
        let categories = conn.helpdesk.list_categories().await.unwrap_or_else(|e| {
            tracing::warn!(proposal = id, error = %e, "the helpdesk's categories could not be read");
            Vec::new()
        });
        Ok(Opened { proposal, decision, actions, ticket, notes, changed, categories })
    }

    /// Approves proposal `id` as `actor`, with `edits` if any, and applies it exactly as apply
    /// mode would. Approving an applied proposal changes nothing and says so; approving one whose
    /// earlier application failed resumes it.
    pub async fn approve(&self, id: i64, actor: &str, edits: &Edits) -> Result<Approval, ReviewError> {
        let proposal = self.proposal(id).await?;
        let conn = self.connection(&proposal)?;
        let resumed = match proposal.status {
            ProposalStatus::Pending => false,
            ProposalStatus::Applied => return Ok(already_applied(&proposal)),
            ProposalStatus::Approved => {
                if !edits.is_empty() {
                    return Err(settled(&proposal, "is approved already; its edits can no longer change"));
                }
                self.may_resume(&proposal).await?;
                true
            }
            ProposalStatus::Rejected | ProposalStatus::Superseded => return Err(settled(&proposal, "")),
        };
        let decision = if resumed {
            read_decision(&proposal, proposal.decision_to_apply())?
        } else {
            let mut decision = read_decision(&proposal, &proposal.decision)?;
            let categories = conn.helpdesk.list_categories().await?;
            edits.apply_to(&mut decision, &categories, &conn.triage.tags)?;
            if let Some(why) =
                crate::triage::decision::no_longer_fits(&decision, &categories, &conn.triage.tags)
            {
                return Err(ReviewError::Invalid(format!(
                    "{why}: edit the category or tags before approving"
                )));
            }
            let edited = (!edits.is_empty())
                .then(|| serde_json::to_value(&decision))
                .transpose()
                .map_err(|e| ReviewError::Unreadable { id, detail: e.to_string() })?;
            let detail = (!edits.is_empty()).then(|| edits.describe());
            let t = Transition {
                approved_decision: edited.as_ref(),
                detail: detail.as_ref(),
                ..Transition::new(ProposalStatus::Pending, ProposalStatus::Approved, actor)
            };
            if !self.store.review_proposal(id, &t).await? {
                // Another reviewer acted first.
                let now = self.proposal(id).await?;
                return match now.status {
                    ProposalStatus::Applied => Ok(already_applied(&now)),
                    _ => Err(settled(&now, "")),
                };
            }
            decision
        };
        let proposal = self.proposal(id).await?;
        let applied = act::apply_approved(
            &self.store,
            conn.helpdesk.as_ref(),
            &conn.act,
            &proposal,
            &decision,
            actor,
            resumed,
        )
        .await
        .map_err(ReviewError::Apply)?;
        Ok(match applied {
            Approved::Applied { note_id, kept } => Approval::Applied { note_id, kept },
            Approved::Superseded { why } => Approval::Superseded { why },
        })
    }

    /// Rejects proposal `id` as `actor` for `reason` (one of [`REJECT_REASONS`], and free text).
    pub async fn reject(&self, id: i64, actor: &str, code: &str, text: &str) -> Result<(), ReviewError> {
        let reason = reject_reason(code, text)?;
        let proposal = self.proposal(id).await?;
        let t = Transition {
            reason: Some(&reason),
            ..Transition::new(ProposalStatus::Pending, ProposalStatus::Rejected, actor)
        };
        if proposal.status != ProposalStatus::Pending || !self.store.review_proposal(id, &t).await? {
            return Err(settled(&self.proposal(id).await?, ""));
        }
        Ok(())
    }

    /// Reads ticket `ticket` of `connection` now and records what people set on it against
    /// deskpilot's newest proposal for it (see [`outcomes`]).
    pub async fn observe_outcome(
        &self,
        connection: &str,
        ticket: &str,
    ) -> Result<Option<outcomes::Observed>, ReviewError> {
        let Some(conn) = self.connections.get(connection) else {
            return Err(ReviewError::Invalid(format!("`{connection}` is not a configured connection")));
        };
        outcomes::observe(&self.store, conn.helpdesk.as_ref(), connection, ticket).await.map_err(Into::into)
    }

    /// Reads again the ticket of every proposal stored since `since` (of `connection`, or all)
    /// whose outcome is not final yet, and records it: the catch-up for changes whose events were
    /// missed. Returns how many tickets were read.
    pub async fn refresh_outcomes(
        &self,
        connection: Option<&str>,
        since: OffsetDateTime,
    ) -> Result<usize, ReviewError> {
        use futures::StreamExt;
        let rows = self.store.proposals_with_outcomes(connection, since).await?;
        let open: Vec<&Proposal> = rows
            .iter()
            .filter(|(_, o)| o.as_ref().is_none_or(|o| o.final_at.is_none()))
            .filter(|(p, _)| self.connections.contains_key(&p.connection_id))
            .map(|(p, _)| p)
            .collect();
        let read = futures::stream::iter(open.iter().map(|p| async move {
            let conn = &self.connections[&p.connection_id];
            outcomes::observe_proposal(&self.store, conn.helpdesk.as_ref(), p).await
        }))
        .buffer_unordered(REFRESH_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        for r in &read {
            if let Err(e) = r {
                tracing::warn!(error = %e, "an outcome could not be read");
            }
        }
        Ok(read.len())
    }

    /// The agreement report over the proposals stored since `since`.
    pub async fn report(
        &self,
        connection: Option<&str>,
        since: OffsetDateTime,
        bar: report::Bar,
    ) -> Result<report::Report, ReviewError> {
        let rows = self.store.proposals_with_outcomes(connection, since).await?;
        Ok(report::Report::new(connection.map(str::to_owned), since, bar, &rows))
    }

    async fn proposal(&self, id: i64) -> Result<Proposal, ReviewError> {
        self.store.proposal(id).await?.ok_or(ReviewError::NotFound(id))
    }

    fn connection(&self, p: &Proposal) -> Result<&Connection, ReviewError> {
        self.connections
            .get(&p.connection_id)
            .ok_or_else(|| ReviewError::UnknownConnection { id: p.id, connection: p.connection_id.clone() })
    }

    /// Refuses to resume an approval that may still be applying elsewhere: only one that failed,
    /// or that has been applying for longer than any write takes, is resumed.
    async fn may_resume(&self, p: &Proposal) -> Result<(), ReviewError> {
        let actions = self.store.review_actions(p.id).await?;
        let failed = actions.last().is_some_and(|a| a.action == "apply_failed");
        let approved_at = p.reviewed_at.unwrap_or(p.created_at);
        let stale = OffsetDateTime::now_utc() - approved_at > APPLY_GRACE;
        if failed || stale {
            return Ok(());
        }
        Err(settled(p, "is being applied; look again in a minute"))
    }
}

/// The proposal's decision, or why it cannot be read.
fn read_decision(p: &Proposal, value: &serde_json::Value) -> Result<Decision, ReviewError> {
    serde_json::from_value(value.clone())
        .map_err(|e| ReviewError::Unreadable { id: p.id, detail: e.to_string() })
}

fn already_applied(p: &Proposal) -> Approval {
    Approval::AlreadyApplied {
        by: p.reviewed_by.clone(),
        at: p.applied_at,
        note_id: p.applied_note_id.clone(),
    }
}

/// A [`ReviewError::Settled`] that says where the proposal stands (`what`, or its status).
fn settled(p: &Proposal, what: &str) -> ReviewError {
    let state = if !what.is_empty() {
        what.to_owned()
    } else {
        let by = p.reviewed_by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
        let at = p
            .reviewed_at
            .map(|t| format!(" at {}", crate::ticketing::model::format_timestamp(t)))
            .unwrap_or_default();
        let why = p.review_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        format!("was {}{by}{at}{why}", p.status)
    };
    ReviewError::Settled { id: p.id, state }
}

/// What differs between the triage fields triage read and the ticket's now.
fn changes(before: &TriageFields, now: &TriageFields) -> Vec<String> {
    let mut out = Vec::new();
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "nothing".into());
    for (name, b, n) in [
        ("category", &before.category_id, &now.category_id),
        ("priority", &before.priority, &now.priority),
        ("assignee", &before.user_id, &now.user_id),
    ] {
        if b != n {
            out.push(format!("{name} changed from {} to {}", show(b), show(n)));
        }
    }
    let added: Vec<_> = now.tags.iter().filter(|t| !before.tags.contains(t)).cloned().collect();
    let removed: Vec<_> = before.tags.iter().filter(|t| !now.tags.contains(t)).cloned().collect();
    if !added.is_empty() {
        out.push(format!("tags added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        out.push(format!("tags removed: {}", removed.join(", ")));
    }
    out
}

/// Why a pending proposal is superseded by what happened to its ticket, if it is: the ticket is
/// gone or closed, or a person set its category, priority or assignee. Tags alone do not: a tag a
/// person added does not answer the triage question.
fn supersedes(ticket: Option<&Ticket>, changed: &[String]) -> Option<String> {
    let Some(ticket) = ticket else {
        return Some("the ticket no longer exists in the helpdesk".into());
    };
    if ticket.status == Some(TicketStatus::Closed) {
        return Some("the ticket was closed before review".into());
    }
    let triaged: Vec<&str> = changed.iter().filter(|c| !c.starts_with("tags ")).map(String::as_str).collect();
    (!triaged.is_empty()).then(|| format!("a person triaged the ticket first: {}", triaged.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(category: Option<&str>, priority: Option<&str>, tags: &[&str]) -> TriageFields {
        TriageFields {
            category_id: category.map(Into::into),
            priority: priority.map(Into::into),
            user_id: None,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn a_person_s_triage_supersedes_and_tags_alone_do_not() {
        let before = fields(None, Some("normal"), &["a"]);
        let open = Ticket { status: Some(TicketStatus::Active), ..Ticket::default() };
        let tagged = changes(&before, &fields(None, Some("normal"), &["a", "b"]));
        assert_eq!(tagged, ["tags added: b"]);
        assert_eq!(supersedes(Some(&open), &tagged), None);
        let triaged = changes(&before, &fields(Some("billing"), Some("high"), &[]));
        assert_eq!(
            triaged,
            [
                "category changed from nothing to billing",
                "priority changed from normal to high",
                "tags removed: a"
            ]
        );
        let why = supersedes(Some(&open), &triaged).unwrap();
        assert!(why.contains("category changed") && !why.contains("tags"), "{why}");
        let closed = Ticket { status: Some(TicketStatus::Closed), ..Ticket::default() };
        assert!(supersedes(Some(&closed), &[]).unwrap().contains("closed"));
        assert!(supersedes(None, &[]).unwrap().contains("no longer exists"));
    }
}
