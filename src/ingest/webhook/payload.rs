//! Reading payload fields the way helpdesks write them: ids as strings or numbers, times as
//! RFC 3339, epoch seconds or ServiceNow's `YYYY-MM-DD HH:MM:SS` (UTC).

use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{Change, Rejection, Report};
use crate::events::EventKind;

/// An id: a non-empty string, or a number written as one.
pub(super) fn id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A time: RFC 3339, epoch seconds (a number or a string of digits), or `YYYY-MM-DD HH:MM:SS`
/// in UTC.
pub(super) fn time_of(value: &Value) -> Option<OffsetDateTime> {
    match value {
        Value::Number(n) => OffsetDateTime::from_unix_timestamp(n.as_i64()?).ok(),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
                return Some(t);
            }
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return OffsetDateTime::from_unix_timestamp(s.parse().ok()?).ok();
            }
            crate::ticketing::servicenow::parse_glide_time(s)
        }
        _ => None,
    }
}

/// The body as a JSON object.
pub(super) fn object(
    backend: &'static str,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, Rejection> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Rejection::malformed(backend, "the body is not a JSON object")),
        Err(e) => Err(Rejection::malformed(backend, format!("the body is not JSON: {e}"))),
    }
}

/// A report of one change, or of one ignored object when the id or the time is missing.
pub(super) fn one(kind: Option<EventKind>, id: Option<String>, updated_at: Option<OffsetDateTime>) -> Report {
    match (kind, id, updated_at) {
        (Some(kind), Some(ticket_id), Some(updated_at)) => {
            Report { changes: vec![Change { kind, ticket_id, updated_at }], ignored: 0 }
        }
        _ => Report { changes: Vec::new(), ignored: 1 },
    }
}

/// The body a helpdesk rule is set up to send where the vendor has no fixed payload (Freshdesk
/// rules, Zendesk triggers): `{"event": "ticket.created"|"ticket.updated", "ticket_id": "..",
/// "updated_at": ".."}`.
pub(super) fn rule_body(map: &serde_json::Map<String, Value>) -> Report {
    let kind = match map.get("event").and_then(Value::as_str) {
        Some(e) if e.ends_with("created") => Some(EventKind::TicketCreated),
        Some(e) if e.ends_with("deleted") => None,
        Some(_) => Some(EventKind::TicketUpdated),
        None => None,
    };
    one(kind, map.get("ticket_id").and_then(id_of), map.get("updated_at").and_then(time_of))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    #[test]
    fn times_in_every_vendor_shape() {
        let at = datetime!(2024-05-01 09:30:00 UTC);
        for v in [
            json!("2024-05-01T09:30:00Z"),
            json!("2024-05-01T11:30:00+02:00"),
            json!(1_714_555_800),
            json!("1714555800"),
            json!("2024-05-01 09:30:00"),
        ] {
            assert_eq!(time_of(&v), Some(at), "{v}");
        }
        assert_eq!(time_of(&json!("yesterday")), None);
        assert_eq!(time_of(&json!(null)), None);
    }

    #[test]
    fn ids_are_strings_or_numbers() {
        assert_eq!(id_of(&json!(" 42 ")).as_deref(), Some("42"));
        assert_eq!(id_of(&json!(42)).as_deref(), Some("42"));
        assert_eq!(id_of(&json!("")), None);
        assert_eq!(id_of(&json!({"id": 1})), None);
    }

    #[test]
    fn a_rule_body_names_one_change() {
        let body = json!({"event": "ticket.created", "ticket_id": "7", "updated_at": "2024-05-01T09:30:00Z"});
        let report = rule_body(body.as_object().unwrap());
        assert_eq!(report.changes[0].kind, EventKind::TicketCreated);
        assert_eq!(report.changes[0].ticket_id, "7");
        let body = json!({"event": "ticket.updated", "ticket_id": "7"});
        assert_eq!(rule_body(body.as_object().unwrap()), Report { changes: vec![], ignored: 1 });
    }
}
