//! What acting writes to a ticket: the decision's fields, except where a person has the say.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::ActPolicy;
use crate::{
    ticketing::{Capabilities, Ticket, TicketField, TicketPatch},
    triage::decision::{Decision, normalize_tag},
};

/// The fields of a ticket that triage reads and acting may write: what a person may change
/// while deskpilot decides. Recorded with the decision (the ledger's `ticket_before`), so a
/// resumed or replayed attempt compares against the same snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriageFields {
    /// Priority as the backend spells it.
    #[serde(default)]
    pub priority: Option<String>,
    /// Category.
    #[serde(default)]
    pub category_id: Option<String>,
    /// Assignee.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl TriageFields {
    /// The fields of `ticket`.
    pub fn of(ticket: &Ticket) -> Self {
        Self {
            priority: ticket.priority.clone(),
            category_id: ticket.category_id.clone(),
            user_id: ticket.user_id.clone(),
            tags: ticket.tags.clone(),
        }
    }
}

/// The changes to make to `ticket` as re-read just before writing: the decision's priority,
/// category, assignee and tags, except where a person has the say. A field that changed since
/// triage read the ticket (`before`) was changed by a person and stays; a category or assignee
/// already set stays; a tag a person removed is not added back. What is left alone is said in
/// `kept`.
///
/// With a `vocabulary` (the connection lists no `allowed_tags`), only tags the helpdesk already
/// uses are added.
pub fn patch_for(
    ticket: &Ticket,
    before: Option<&TriageFields>,
    d: &Decision,
    policy: &ActPolicy,
    vocabulary: Option<&BTreeSet<String>>,
    kept: &mut Vec<String>,
) -> TicketPatch {
    let mut patch = TicketPatch::default();
    let changed = |now: &Option<String>, then: fn(&TriageFields) -> &Option<String>| {
        before.is_some_and(|b| then(b) != now)
    };
    if let Some(value) = policy.priority_value(d.priority)
        && ticket.priority.as_deref() != Some(value.as_str())
    {
        if changed(&ticket.priority, |b| &b.priority) {
            kept.push(format!(
                "priority `{}` set by a person during triage kept (proposed `{value}`)",
                ticket.priority.as_deref().unwrap_or("none")
            ));
        } else {
            patch.priority = Some(value);
        }
    }
    match (&ticket.category_id, &d.category_id) {
        (None, Some(c)) if changed(&ticket.category_id, |b| &b.category_id) => {
            kept.push(format!("category cleared by a person during triage left clear (proposed `{c}`)"));
        }
        (None, Some(c)) => patch.category_id = Some(c.clone()),
        (Some(current), Some(c)) if current != c => {
            kept.push(format!("category `{current}` set by a person kept (proposed `{c}`)"));
        }
        _ => {}
    }
    let route = d.category_id.as_ref().and_then(|c| policy.routing.get(c));
    match (&ticket.user_id, route) {
        (None, Some(user)) if changed(&ticket.user_id, |b| &b.user_id) => {
            kept.push(format!(
                "assignee cleared by a person during triage left clear (routing says `{user}`)"
            ));
        }
        (None, Some(user)) => patch.user_id = Some(user.clone()),
        (Some(current), Some(user)) if current != user => {
            kept.push(format!("assignee `{current}` kept (routing says `{user}`)"));
        }
        _ => {}
    }
    let has = |tags: &[String], t: &str| tags.iter().any(|x| x.eq_ignore_ascii_case(t));
    let mut tags = ticket.tags.clone();
    for t in &d.tags {
        if has(&tags, t) {
            continue;
        }
        if before.is_some_and(|b| has(&b.tags, t)) {
            kept.push(format!("tag `{t}` removed by a person during triage not added back"));
            continue;
        }
        if vocabulary.is_some_and(|v| !normalize_tag(t).is_some_and(|n| v.contains(&n))) {
            kept.push(format!(
                "tag `{t}` not written: not used on this helpdesk yet (list it in allowed_tags to allow it)"
            ));
            continue;
        }
        tags.push(t.clone());
    }
    if tags != ticket.tags {
        patch.tags = Some(tags);
    }
    patch
}

/// `patch` without the fields the backend cannot write; each one left out is said in `kept` (the
/// ledger's outcome) and logged with the backend's reason.
pub fn supported_only(mut patch: TicketPatch, caps: &Capabilities, kept: &mut Vec<String>) -> TicketPatch {
    let mut drop = |field: TicketField, proposed: Option<String>| {
        let (Some(proposed), Some(why)) = (proposed, caps.unsupported(field)) else { return };
        tracing::info!(%field, %proposed, reason = why, "field not written: the helpdesk does not support it");
        kept.push(format!("{field} `{proposed}` not written: {why}"));
    };
    if !caps.supports(TicketField::Priority) {
        drop(TicketField::Priority, patch.priority.take());
    }
    if !caps.supports(TicketField::Category) {
        drop(TicketField::Category, patch.category_id.take());
    }
    if !caps.supports(TicketField::Assignee) {
        drop(TicketField::Assignee, patch.user_id.take());
    }
    if !caps.supports(TicketField::Tags) {
        drop(TicketField::Tags, patch.tags.take().map(|t| t.join(", ")));
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::tests::decision;

    #[test]
    fn patch_merges_tags_and_keeps_what_a_person_set() {
        let policy = ActPolicy {
            routing: [("cat-outage".to_owned(), "u-01".to_owned())].into(),
            ..ActPolicy::default()
        };
        let ticket =
            Ticket { tags: vec!["vip".into()], priority: Some("normal".into()), ..Ticket::default() };
        let mut kept = Vec::new();
        let p = patch_for(&ticket, None, &decision(), &policy, None, &mut kept);
        assert_eq!(p.tags, Some(vec!["vip".into(), "outage".into()]));
        assert_eq!(p.priority.as_deref(), Some("urgent"));
        assert_eq!(p.category_id.as_deref(), Some("cat-outage"));
        assert_eq!(p.user_id.as_deref(), Some("u-01"));
        assert!(kept.is_empty());

        let triaged = Ticket {
            category_id: Some("cat-billing".into()),
            user_id: Some("u-05".into()),
            priority: Some("urgent".into()),
            tags: vec!["outage".into(), "vip".into()],
            ..Ticket::default()
        };
        let mut kept = Vec::new();
        let p = patch_for(&triaged, None, &decision(), &policy, None, &mut kept);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(kept.len(), 2, "{kept:?}");
    }

    #[test]
    fn what_a_person_changed_during_triage_stays() {
        let policy = ActPolicy {
            routing: [("cat-outage".to_owned(), "u-01".to_owned())].into(),
            ..ActPolicy::default()
        };
        let read = Ticket {
            priority: Some("normal".into()),
            tags: vec!["vip".into(), "outage".into()],
            ..Ticket::default()
        };
        let before = TriageFields::of(&read);
        // Meanwhile a person lowered the priority, removed `vip` and assigned someone.
        let now = Ticket {
            priority: Some("low".into()),
            tags: vec!["outage".into()],
            user_id: Some("u-07".into()),
            ..Ticket::default()
        };
        let mut kept = Vec::new();
        let p = patch_for(&now, Some(&before), &decision(), &policy, None, &mut kept);
        assert_eq!(p.priority, None, "{kept:?}");
        assert_eq!(p.tags, None, "`VIP` is not added back: {kept:?}");
        assert_eq!(p.user_id, None);
        assert_eq!(p.category_id.as_deref(), Some("cat-outage"), "the category no person touched");
        assert_eq!(
            kept,
            [
                "priority `low` set by a person during triage kept (proposed `urgent`)",
                "assignee `u-07` kept (routing says `u-01`)",
                "tag `VIP` removed by a person during triage not added back",
            ]
        );

        // Nothing changed since triage read it: the decision is applied whole.
        let mut kept = Vec::new();
        let p = patch_for(&read, Some(&before), &decision(), &policy, None, &mut kept);
        assert_eq!(p.priority.as_deref(), Some("urgent"));
        assert_eq!(p.tags, None, "both proposed tags are there already");
        assert!(kept.is_empty(), "{kept:?}");
    }

    #[test]
    fn fields_the_backend_lacks_are_left_out_with_the_reason() {
        let mut kept = vec!["earlier".to_owned()];
        let patch = patch_for(&Ticket::default(), None, &decision(), &ActPolicy::default(), None, &mut kept);
        let caps = Capabilities::all()
            .without(TicketField::Priority, "tickets have no priority")
            .without(TicketField::Tags, "incidents have no tags");
        let p = supported_only(patch.clone(), &caps, &mut kept);
        assert_eq!((p.priority, p.tags), (None, None));
        assert_eq!(p.category_id.as_deref(), Some("cat-outage"), "supported fields stay");
        assert_eq!(
            kept,
            [
                "earlier",
                "priority `urgent` not written: tickets have no priority",
                "tags `outage, VIP` not written: incidents have no tags",
            ]
        );

        // Nothing proposed for an unsupported field: nothing to say.
        let mut kept = Vec::new();
        let p = supported_only(TicketPatch::default(), &caps, &mut kept);
        assert!(p.is_empty() && kept.is_empty(), "{kept:?}");
        // Every field supported: the patch is unchanged.
        assert_eq!(supported_only(patch.clone(), &Capabilities::all(), &mut kept), patch);
        assert!(kept.is_empty());
    }

    #[test]
    fn without_allowed_tags_only_tags_in_use_are_written() {
        let vocabulary: BTreeSet<String> = ["outage".to_owned(), "billing".to_owned()].into();
        let mut kept = Vec::new();
        let p = patch_for(
            &Ticket::default(),
            None,
            &decision(),
            &ActPolicy::default(),
            Some(&vocabulary),
            &mut kept,
        );
        assert_eq!(p.tags, Some(vec!["outage".to_owned()]));
        assert_eq!(
            kept,
            ["tag `VIP` not written: not used on this helpdesk yet (list it in allowed_tags to allow it)"]
        );
    }
}
