//! Outcomes: what people finally set on the tickets deskpilot proposed for. On a ticket's change
//! the ticket is read again and a person's category, priority and tags are recorded against the
//! newest proposal for it, final once the ticket is closed.
//!
//! deskpilot's own writes never count as a person's: while the ticket is open, a value is a
//! person's only when it differs both from what triage read and from what deskpilot applied. At
//! close, whatever the ticket carries is what the people left, and that is the label (a value
//! deskpilot applied and nobody changed until close counts as kept).

use serde::Serialize;

use crate::{
    act::TriageFields,
    store::{NewOutcome, Proposal, ProposalStatus, Store, StoreError},
    ticketing::{PriorityLevel, TicketReader, TicketStatus, TicketingError},
    triage::decision::Decision,
};

/// What was recorded for a ticket's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// The proposal it was recorded against.
    pub proposal_id: i64,
    /// A person's category, if any.
    pub category_id: Option<String>,
    /// A person's priority (`LOW` … `URGENT`), if any.
    pub priority: Option<String>,
    /// Whether the ticket is closed: the outcome is final.
    pub closed: bool,
    /// Whether the record changed (a final outcome is never changed again).
    pub changed: bool,
}

/// Why an outcome could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The helpdesk failed.
    #[error(transparent)]
    Helpdesk(#[from] TicketingError),
}

impl OutcomeError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Helpdesk(e) => e.is_retryable(),
        }
    }
}

/// Reads ticket `ticket_id` of `connection` now and records what people set on it against the
/// newest proposal for it. `None` when deskpilot made no proposal for the ticket, or the ticket
/// no longer exists.
pub async fn observe(
    store: &Store,
    helpdesk: &dyn TicketReader,
    connection: &str,
    ticket_id: &str,
) -> Result<Option<Observed>, OutcomeError> {
    let Some(proposal) = store.latest_proposal_for(connection, ticket_id).await? else { return Ok(None) };
    observe_proposal(store, helpdesk, &proposal).await
}

/// As [`observe`], for a given proposal.
pub async fn observe_proposal(
    store: &Store,
    helpdesk: &dyn TicketReader,
    proposal: &Proposal,
) -> Result<Option<Observed>, OutcomeError> {
    let ticket = match helpdesk.get_ticket(&proposal.ticket_id).await {
        Ok(t) => t,
        Err(TicketingError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let closed = ticket.status == Some(TicketStatus::Closed);
    let (category_id, priority) = people_s(proposal, &TriageFields::of(&ticket), closed);
    let changed = store
        .record_outcome(&NewOutcome {
            proposal_id: proposal.id,
            connection_id: &proposal.connection_id,
            ticket_id: &proposal.ticket_id,
            category_id: category_id.as_deref(),
            priority: priority.as_deref(),
            tags: &ticket.tags,
            closed,
        })
        .await?;
    Ok(Some(Observed { proposal_id: proposal.id, category_id, priority, closed, changed }))
}

/// The category and priority people set, given the ticket's triage fields `now`.
fn people_s(p: &Proposal, now: &TriageFields, closed: bool) -> (Option<String>, Option<String>) {
    let before =
        p.ticket_before.as_ref().and_then(|v| serde_json::from_value::<TriageFields>(v.clone()).ok());
    // What deskpilot wrote itself, when the proposal was applied.
    let written = (p.status == ProposalStatus::Applied)
        .then(|| serde_json::from_value::<Decision>(p.decision_to_apply().clone()).ok())
        .flatten();
    let level = |s: &Option<String>| {
        s.as_deref().map(PriorityLevel::from_backend).filter(|l| *l != PriorityLevel::None)
    };
    let category = person_value(
        now.category_id.clone(),
        before.as_ref().map(|b| b.category_id.clone()),
        written.as_ref().map(|d| d.category_id.clone()),
        closed,
    );
    let priority = person_value(
        level(&now.priority),
        before.as_ref().map(|b| level(&b.priority)),
        written.as_ref().map(|d| Some(d.priority).filter(|l| *l != PriorityLevel::None)),
        closed,
    );
    (category, priority.map(|l| l.as_str().to_owned()))
}

/// A field's value as a person's: at close whatever is there; while open, only a value that is
/// neither what triage read (`before`) nor what deskpilot wrote (`written`).
fn person_value<T: PartialEq>(
    now: Option<T>,
    before: Option<Option<T>>,
    written: Option<Option<T>>,
    closed: bool,
) -> Option<T> {
    let now = now?;
    if closed {
        return Some(now);
    }
    let same = |other: &Option<Option<T>>| matches!(other, Some(Some(v)) if *v == now);
    (!same(&before) && !same(&written)).then_some(now)
}

#[cfg(test)]
mod tests {
    use super::person_value;

    #[test]
    fn only_a_person_s_change_counts_until_close() {
        let s = |v: &str| Some(v.to_owned());
        // Shadow: nobody changed it since triage, so it is not a person's answer yet.
        assert_eq!(person_value(s("billing"), Some(s("billing")), None, false), None);
        assert_eq!(person_value(s("bug"), Some(None), None, false), s("bug"));
        // Applied: deskpilot's own write is not a person's until the ticket closes with it.
        assert_eq!(person_value(s("billing"), Some(None), Some(s("billing")), false), None);
        assert_eq!(person_value(s("bug"), Some(None), Some(s("billing")), false), s("bug"));
        assert_eq!(person_value(s("billing"), Some(None), Some(s("billing")), true), s("billing"));
        assert_eq!(person_value(None::<String>, Some(None), None, true), None);
    }
}
