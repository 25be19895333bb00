//! ServiceNow's values and the normalized model's, both ways: priority through impact × urgency,
//! status through `state`, a journal entry's visibility through its `element`, and ServiceNow's
//! `YYYY-MM-DD HH:MM:SS` UTC dates; and a patch as the body of an incident update.

use serde_json::{Map, Value};
use time::{
    OffsetDateTime, PrimitiveDateTime, format_description::BorrowedFormatItem, macros::format_description,
};

use crate::ticketing::{NoteVisibility, Result, TicketPatch, TicketStatus, TicketingError};

/// ServiceNow's date-time format for actual values (always UTC).
const GLIDE_TIME: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// The journal element of an internal note (agents only).
pub const WORK_NOTES: &str = "work_notes";
/// The journal element of a customer-visible comment ("Additional comments").
pub const COMMENTS: &str = "comments";

/// A time in ServiceNow's `YYYY-MM-DD HH:MM:SS` (UTC) form.
pub fn parse_glide_time(text: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(text.trim(), GLIDE_TIME).ok().map(PrimitiveDateTime::assume_utc)
}

/// An instant as ServiceNow writes it: UTC, whole seconds (the fraction is dropped).
pub fn format_glide_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    PrimitiveDateTime::new(t.date(), t.time()).format(GLIDE_TIME).unwrap_or_default()
}

/// The normalized priority word of a ServiceNow priority: 1 Critical is urgent, 2 High high,
/// 3 Moderate normal, 4 Low and 5 Planning low (platforms.md §6.1).
pub fn priority_word(priority: &str) -> Option<&'static str> {
    match priority.trim() {
        "1" => Some("urgent"),
        "2" => Some("high"),
        "3" => Some("normal"),
        "4" | "5" => Some("low"),
        _ => None,
    }
}

/// The impact and urgency that make ServiceNow compute a priority (it derives `priority` from
/// them and overwrites a written one): urgent (1,1) → 1, high (1,2) → 2, normal (2,2) → 3,
/// low (2,3) → 4; also ServiceNow's own numbers and words, and planning (3,3) → 5.
pub fn impact_urgency(value: &str) -> Result<(u8, u8)> {
    let v = value.trim().to_ascii_lowercase();
    let pair = match v.as_str() {
        "1" | "urgent" | "critical" | "1 - critical" => (1, 1),
        "2" | "high" | "2 - high" => (1, 2),
        "3" | "normal" | "medium" | "moderate" | "3 - moderate" => (2, 2),
        "4" | "low" | "4 - low" => (2, 3),
        "5" | "planning" | "5 - planning" => (3, 3),
        _ => {
            return Err(TicketingError::Invalid {
                detail: format!(
                    "priority `{value}` has no ServiceNow impact and urgency; use low, normal, high or \
                     urgent (or ServiceNow's 1-5) in priority_values"
                ),
            });
        }
    };
    Ok(pair)
}

/// The normalized status of an incident: Resolved (6), Closed (7), Canceled (8) and any state
/// at or past 7 (ServiceNow's rule for inactive states), or `active = false`, are closed.
pub fn status_of(state: Option<&str>, active: Option<&str>) -> TicketStatus {
    let state: Option<i64> = state.and_then(|s| s.trim().parse().ok());
    if active == Some("false") || state.is_some_and(|s| s == 6 || s >= 7) {
        TicketStatus::Closed
    } else {
        TicketStatus::Active
    }
}

/// The `state` for a normalized status: `ACTIVE` 2 In Progress, `CLOSED` 6 Resolved (an agent
/// resolves; Closed follows by ServiceNow's own rules), and the ServiceNow words `NEW` 1,
/// `ON_HOLD`/`PENDING` 3, `RESOLVED` 6, `CANCELED` 8, or a state number as is.
pub fn state_value(status: &TicketStatus) -> Result<String> {
    let n: i64 = match status {
        TicketStatus::Active => 2,
        TicketStatus::Closed => 6,
        TicketStatus::Unknown(s) => match s.trim().to_ascii_uppercase().replace([' ', '-'], "_").as_str() {
            "NEW" => 1,
            "IN_PROGRESS" | "OPEN" => 2,
            "ON_HOLD" | "PENDING" => 3,
            "RESOLVED" => 6,
            "CANCELED" | "CANCELLED" => 8,
            _ => s.trim().parse().map_err(|_| TicketingError::Invalid {
                detail: format!(
                    "status `{s}` has no ServiceNow state; use ACTIVE, CLOSED, NEW, ON_HOLD, RESOLVED, \
                     CANCELED or a state number"
                ),
            })?,
        },
    };
    Ok(n.to_string())
}

/// The visibility of a journal entry: work notes are internal, comments customer-visible.
pub fn visibility_of(element: Option<&str>) -> NoteVisibility {
    match element {
        Some(WORK_NOTES) => NoteVisibility::Internal,
        Some(COMMENTS) => NoteVisibility::Public,
        _ => NoteVisibility::Unknown,
    }
}

/// The body of `PATCH /table/incident/{sys_id}` for a patch: priority as impact and urgency,
/// status as `state`, the category, the assignee as `assigned_to` (empty clears it), and any
/// vendor fields from `raw`. Incidents have no tags; a patch with tags is refused.
pub fn update_body(patch: &TicketPatch) -> Result<Map<String, Value>> {
    let mut body = match &patch.raw {
        Some(Value::Object(raw)) => raw.clone(),
        _ => Map::new(),
    };
    if patch.tags.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(TicketingError::Invalid {
            detail: "ServiceNow incidents have no tags; leave tags out of a ServiceNow update".into(),
        });
    }
    if let Some(p) = &patch.priority {
        let (impact, urgency) = impact_urgency(p)?;
        body.insert("impact".into(), impact.to_string().into());
        body.insert("urgency".into(), urgency.to_string().into());
    }
    if let Some(s) = &patch.status {
        body.insert("state".into(), state_value(s)?.into());
    }
    if let Some(c) = &patch.category_id {
        body.insert("category".into(), c.clone().into());
    }
    if let Some(user) = &patch.user_id {
        body.insert("assigned_to".into(), user.clone().into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ticketing::PriorityLevel;

    #[test]
    fn priorities_map_both_ways_through_impact_and_urgency() {
        // ServiceNow's lookup: (impact, urgency) → priority.
        let matrix = |(i, u): (u8, u8)| match i + u {
            2 => "1",
            3 => "2",
            4 => "3",
            5 => "4",
            _ => "5",
        };
        for (word, level) in [
            ("urgent", PriorityLevel::Urgent),
            ("high", PriorityLevel::High),
            ("normal", PriorityLevel::Normal),
            ("low", PriorityLevel::Low),
        ] {
            let computed = matrix(impact_urgency(word).unwrap());
            assert_eq!(priority_word(computed), Some(word), "{word} round-trips");
            assert_eq!(PriorityLevel::from_backend(priority_word(computed).unwrap()), level);
        }
        assert_eq!(impact_urgency("urgent").unwrap(), (1, 1));
        assert_eq!(impact_urgency("High").unwrap(), (1, 2));
        assert_eq!(impact_urgency("3").unwrap(), (2, 2));
        assert_eq!(impact_urgency("low").unwrap(), (2, 3));
        assert_eq!(priority_word("5"), Some("low"), "planning reads as low");
        assert!(impact_urgency("whenever").unwrap_err().to_string().contains("priority_values"));
    }
    #[test]
    fn states_map_both_ways() {
        for (state, active, status) in [
            ("1", "true", TicketStatus::Active),
            ("2", "true", TicketStatus::Active),
            ("3", "true", TicketStatus::Active),
            ("6", "true", TicketStatus::Closed),
            ("7", "false", TicketStatus::Closed),
            ("8", "false", TicketStatus::Closed),
            ("9", "false", TicketStatus::Closed),
            ("-5", "true", TicketStatus::Active),
        ] {
            assert_eq!(status_of(Some(state), Some(active)), status, "state {state}");
        }
        assert_eq!(state_value(&TicketStatus::Active).unwrap(), "2");
        assert_eq!(state_value(&TicketStatus::Closed).unwrap(), "6");
        assert_eq!(status_of(Some(&state_value(&TicketStatus::Closed).unwrap()), None), TicketStatus::Closed);
        assert_eq!(state_value(&TicketStatus::Unknown("on hold".into())).unwrap(), "3");
        assert_eq!(state_value(&TicketStatus::Unknown("PENDING".into())).unwrap(), "3");
        assert_eq!(state_value(&TicketStatus::Unknown("CANCELED".into())).unwrap(), "8");
        assert_eq!(state_value(&TicketStatus::Unknown("-40".into())).unwrap(), "-40");
        assert!(state_value(&TicketStatus::Unknown("LOST".into())).is_err());
    }
    #[test]
    fn journal_elements_carry_the_visibility() {
        assert_eq!(visibility_of(Some("work_notes")), NoteVisibility::Internal);
        assert_eq!(visibility_of(Some("comments")), NoteVisibility::Public);
        assert_eq!(visibility_of(Some("close_notes")), NoteVisibility::Unknown);
    }
    #[test]
    fn glide_times_are_utc_whole_seconds() {
        let t = time::macros::datetime!(2026-11-02 10:14:07.900 +01:00);
        assert_eq!(format_glide_time(t), "2026-11-02 09:14:07");
        assert_eq!(
            parse_glide_time("2026-11-02 09:14:07"),
            Some(time::macros::datetime!(2026-11-02 09:14:07 UTC))
        );
        assert_eq!(parse_glide_time("2026-11-02"), None);
    }
    #[test]
    fn an_update_writes_impact_urgency_and_refuses_tags() {
        let patch = TicketPatch {
            priority: Some("high".into()),
            status: Some(TicketStatus::Closed),
            category_id: Some("network".into()),
            user_id: Some("681b".into()),
            ..TicketPatch::default()
        };
        assert_eq!(
            Value::Object(update_body(&patch).unwrap()),
            json!({"impact": "1", "urgency": "2", "state": "6", "category": "network", "assigned_to": "681b"})
        );
        let tagged = TicketPatch { tags: Some(vec!["vip".into()]), ..TicketPatch::default() };
        assert!(update_body(&tagged).unwrap_err().to_string().contains("no tags"));
    }
}
