//! Applying a proposal a reviewer approved, with the guards of apply mode: the ticket is re-read
//! just before writing, a closed or deleted ticket is left alone (the proposal is superseded), a
//! field a person changed since triage read the ticket stays theirs, and the draft goes out only
//! as an internal note where the connection's notes are verified internal. The note carries a
//! marker of the proposal, so applying again after a failure finds it instead of posting twice.

use super::{ActError, ActPolicy, Fence, MarkedNote, TriageWrite, Untouched, marker_of};
use crate::{
    store::{Proposal, ProposalStatus, Store, Transition},
    ticketing::Ticketing,
    triage::decision::Decision,
};

/// What applying an approved proposal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approved {
    /// The ticket was updated and/or the note posted.
    Applied {
        /// The note posted (or found from an earlier attempt); `None` when there was none to post.
        note_id: Option<String>,
        /// What was left alone and why.
        kept: Vec<String>,
    },
    /// Nothing was written: the ticket was closed or deleted meanwhile.
    Superseded {
        /// Why.
        why: String,
    },
}

/// Applies `proposal` (status `approved`) with `decision`, by `actor`, and records the outcome:
/// `applied` with the note's id, or `superseded` when the ticket is gone or closed. `resumed`
/// says an earlier attempt may have posted the note already. An error leaves the proposal
/// approved, with an `apply_failed` record, so approving again resumes.
pub async fn apply_approved(
    store: &Store,
    helpdesk: &dyn Ticketing,
    policy: &ActPolicy,
    proposal: &Proposal,
    decision: &Decision,
    actor: &str,
    resumed: bool,
) -> Result<Approved, ActError> {
    match write(helpdesk, policy, proposal, decision, resumed).await {
        Ok(Approved::Superseded { why }) => {
            let t = Transition {
                reason: Some(&why),
                ..Transition::new(ProposalStatus::Approved, ProposalStatus::Superseded, actor)
            };
            store.review_proposal(proposal.id, &t).await?;
            Ok(Approved::Superseded { why })
        }
        Ok(Approved::Applied { note_id, kept }) => {
            let detail = serde_json::json!({ "note_id": note_id, "kept": kept });
            let t = Transition {
                note_id: note_id.as_deref(),
                detail: Some(&detail),
                ..Transition::new(ProposalStatus::Approved, ProposalStatus::Applied, actor)
            };
            store.review_proposal(proposal.id, &t).await?;
            Ok(Approved::Applied { note_id, kept })
        }
        Err(e) => {
            let why = crate::http::error_chain(&e);
            store.record_review_action(proposal.id, "apply_failed", actor, Some(&why), None).await?;
            Err(e)
        }
    }
}

async fn write(
    helpdesk: &dyn Ticketing,
    policy: &ActPolicy,
    proposal: &Proposal,
    decision: &Decision,
    resumed: bool,
) -> Result<Approved, ActError> {
    // Nobody else writes for this proposal: the approval's conditional update let one reviewer in.
    let fence = Fence::default();
    let mut kept = Vec::new();
    let fields = TriageWrite {
        ticket_id: &proposal.ticket_id,
        before: proposal.ticket_before.as_ref(),
        decision,
        while_: "before the proposal was approved",
    };
    if let Err(Untouched { why, .. }) = fields.write(helpdesk, policy, &fence, &mut kept).await? {
        return Ok(Approved::Superseded { why });
    }
    let note_id = match (&decision.draft_reply, policy.notes_internal_verified) {
        (Some(draft), true) => {
            let id = proposal.id.to_string();
            let marker = marker_of(&[&proposal.connection_id, &proposal.ticket_id, "proposal", &id]);
            let note = MarkedNote { ticket_id: &proposal.ticket_id, marker, draft };
            Some(note.post_once(helpdesk, policy, resumed, &fence).await?)
        }
        (Some(_), false) => {
            kept.push(
                "draft not posted: notes of this connection are not verified internal (set \
                 notes_internal_verified once checked)"
                    .to_owned(),
            );
            None
        }
        (None, _) => None,
    };
    Ok(Approved::Applied { note_id, kept })
}
