//! Freshdesk and ServiceNow: their webhooks carry no signature (platforms.md §2.6, §4.6), so the
//! automation rule or business rule is set up to send a shared secret, compared in constant time:
//! `X-Webhook-Secret: <secret>`, `Authorization: Bearer <secret>`, or HTTP Basic with the secret
//! as the user name or the password (Freshdesk's "requires authentication" with an API key sends
//! `key:X`). Their bodies are the project's rule conventions.

use axum::http::{HeaderMap, HeaderName, header::AUTHORIZATION};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::Value;

use super::{
    Rejection, Report,
    payload::{id_of, object, one, rule_body, time_of},
    signature::secret_matches,
};
use crate::events::EventKind;

/// The header a rule sends the secret in.
pub(super) const SECRET_HEADER: &str = "x-webhook-secret";

const WHAT: &str = "shared secret (X-Webhook-Secret, Authorization: Bearer or Basic)";

/// Checks the shared secret wherever the request carries it.
fn authenticate(secret: &[u8], headers: &HeaderMap) -> Result<(), Rejection> {
    let value = |name: HeaderName| headers.get(name).map(|v| v.as_bytes()).filter(|v| !v.is_empty());
    let mut offered = Vec::new();
    if let Some(v) = value(HeaderName::from_static(SECRET_HEADER)) {
        offered.push(v.to_vec());
    }
    if let Some(auth) = value(AUTHORIZATION) {
        let auth = String::from_utf8_lossy(auth);
        match auth.trim().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                offered.push(token.trim().into())
            }
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("basic") => {
                if let Ok(pair) = STANDARD.decode(token.trim()) {
                    let (user, password) = match pair.iter().position(|b| *b == b':') {
                        Some(i) => (pair[..i].to_vec(), pair[i + 1..].to_vec()),
                        None => (pair.clone(), Vec::new()),
                    };
                    offered.extend([user, password]);
                }
            }
            _ => {}
        }
    }
    if offered.is_empty() {
        return Err(Rejection::MissingSignature(WHAT));
    }
    // Every offer is compared, so the time taken does not tell which one was close.
    let matched = offered.iter().fold(false, |any, given| any | secret_matches(given, secret));
    if matched { Ok(()) } else { Err(Rejection::BadSignature("shared secret")) }
}

/// A Freshdesk rule's webhook: `{"event", "ticket_id", "updated_at"}`.
pub(super) fn read_freshdesk(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<Report, Rejection> {
    authenticate(secret, headers)?;
    Ok(rule_body(&object("freshdesk", body)?))
}

/// A ServiceNow business rule's message: `{"event": "incident.updated", "sys_id", "number",
/// "sys_updated_on", "operation": "insert"|"update"|"delete"}`.
pub(super) fn read_servicenow(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<Report, Rejection> {
    authenticate(secret, headers)?;
    let map = object("servicenow", body)?;
    let word = |key| map.get(key).and_then(Value::as_str).unwrap_or_default();
    let kind = match (word("operation"), word("event")) {
        ("insert", _) => Some(EventKind::TicketCreated),
        ("update", _) => Some(EventKind::TicketUpdated),
        ("delete", _) => None,
        (_, e) if e.ends_with(".created") || e.ends_with(".inserted") => Some(EventKind::TicketCreated),
        (_, e) if e.ends_with(".updated") => Some(EventKind::TicketUpdated),
        _ => None,
    };
    let id = map.get("sys_id").and_then(id_of);
    Ok(one(kind, id, map.get("sys_updated_on").and_then(time_of)))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use time::macros::datetime;

    use super::*;

    const SECRET: &[u8] = b"rule-secret";

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_secret_is_accepted_in_each_documented_place() {
        let basic = |pair: &str| format!("Basic {}", STANDARD.encode(pair));
        for headers in [
            with(SECRET_HEADER, "rule-secret"),
            with("authorization", "Bearer rule-secret"),
            with("authorization", &basic("rule-secret:X")),
            with("authorization", &basic("deskpilot:rule-secret")),
        ] {
            assert_eq!(authenticate(SECRET, &headers), Ok(()), "{headers:?}");
        }
        for (headers, reason) in [
            (HeaderMap::new(), "missing_signature"),
            (with(SECRET_HEADER, "rule-secre"), "bad_signature"),
            (with("authorization", "Bearer nope"), "bad_signature"),
            (with("authorization", &basic("rule:secret")), "bad_signature"),
            (with("authorization", "Digest rule-secret"), "missing_signature"),
        ] {
            assert_eq!(authenticate(SECRET, &headers).unwrap_err().reason(), reason, "{headers:?}");
        }
    }

    #[test]
    fn freshdesk_rule_bodies_name_the_ticket() {
        let body = br#"{"event":"ticket.created","ticket_id":"1001","updated_at":"2024-05-01T09:30:00Z"}"#;
        let report = read_freshdesk(SECRET, &with(SECRET_HEADER, "rule-secret"), body).unwrap();
        assert_eq!(report.changes[0].ticket_id, "1001");
        assert_eq!(report.changes[0].kind, EventKind::TicketCreated);
    }

    #[test]
    fn servicenow_messages_name_the_incident() {
        let body = br#"{"event":"incident.updated","sys_id":"ef43c6d4","number":"INC0010001",
                        "sys_updated_on":"2024-05-01 09:30:00","operation":"update"}"#;
        let report = read_servicenow(SECRET, &with("authorization", "Bearer rule-secret"), body).unwrap();
        let c = &report.changes[0];
        assert_eq!(
            (c.kind, c.ticket_id.as_str(), c.updated_at),
            (EventKind::TicketUpdated, "ef43c6d4", datetime!(2024-05-01 09:30:00 UTC))
        );
        let unsigned = read_servicenow(SECRET, &HeaderMap::new(), body).unwrap_err();
        assert_eq!(unsigned.status(), axum::http::StatusCode::UNAUTHORIZED);
    }
}
