//! Zendesk webhooks (platforms.md §1.7): `X-Zendesk-Webhook-Signature` =
//! base64(HMAC-SHA256(signing secret, `X-Zendesk-Webhook-Signature-Timestamp` + raw body)).
//!
//! Zendesk prescribes no replay window; a timestamp further than the configured tolerance from
//! now is refused (after the signature, so a refusal as stale means the delivery was genuine).
//! Event-subscription bodies (`zen:event-type:ticket.*`) and trigger bodies set up with the rule
//! convention (`{event, ticket_id, updated_at}`) are both read.

use std::time::Duration;

use axum::http::HeaderMap;
use hmac::Hmac;
use serde_json::Value;
use sha2::Sha256;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    Rejection, Report,
    payload::{id_of, object, one, rule_body, time_of},
    signature::{decode_digest, hmac_matches},
};
use crate::events::EventKind;

const BACKEND: &str = "zendesk";
/// The signature header.
pub(super) const SIGNATURE: &str = "x-zendesk-webhook-signature";
/// The signed timestamp header.
pub(super) const TIMESTAMP: &str = "x-zendesk-webhook-signature-timestamp";

pub(super) fn read(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<Report, Rejection> {
    let header =
        |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let signature =
        header(SIGNATURE).ok_or(Rejection::MissingSignature("X-Zendesk-Webhook-Signature header"))?;
    let timestamp = header(TIMESTAMP)
        .ok_or(Rejection::MissingSignature("X-Zendesk-Webhook-Signature-Timestamp header"))?;
    let tag = decode_digest(signature, 32).ok_or(Rejection::BadSignature("X-Zendesk-Webhook-Signature"))?;
    if !hmac_matches::<Hmac<Sha256>>(secret, &[timestamp.as_bytes(), body], &tag) {
        return Err(Rejection::BadSignature("X-Zendesk-Webhook-Signature"));
    }
    let stale = || Rejection::Stale { timestamp: timestamp.to_owned(), tolerance_secs: tolerance.as_secs() };
    let signed_at = OffsetDateTime::parse(timestamp, &Rfc3339).map_err(|_| stale())?;
    if (now - signed_at).unsigned_abs() > tolerance {
        return Err(stale());
    }

    let map = object(BACKEND, body)?;
    let Some(kind) = map.get("type").and_then(Value::as_str) else { return Ok(rule_body(&map)) };
    let Some(event) = kind.strip_prefix("zen:event-type:ticket.") else {
        return Ok(Report { changes: Vec::new(), ignored: 1 });
    };
    let kind = match event {
        "created" => Some(EventKind::TicketCreated),
        "deleted" | "soft_deleted" | "permanently_deleted" => None,
        _ => Some(EventKind::TicketUpdated),
    };
    let detail = &map.get("detail").cloned().unwrap_or_default();
    let id = id_of(&detail["id"]).or_else(|| {
        map.get("subject")
            .and_then(Value::as_str)
            .and_then(|s| s.strip_prefix("zen:ticket:"))
            .map(str::to_owned)
    });
    let updated_at = time_of(&detail["updated_at"]).or_else(|| map.get("time").and_then(time_of));
    Ok(one(kind, id, updated_at))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const SECRET: &[u8] = b"dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==";
    const NOW: OffsetDateTime = datetime!(2024-04-17 17:18:30 UTC);
    const WINDOW: Duration = Duration::from_secs(300);

    /// Signed as Zendesk's current docs say: base64(HMAC-SHA256(secret, timestamp + body)).
    fn signed(body: &[u8], timestamp: &str) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(timestamp.as_bytes());
        mac.update(body);
        let mut headers = HeaderMap::new();
        headers
            .insert(SIGNATURE, HeaderValue::from_str(&STANDARD.encode(mac.finalize().into_bytes())).unwrap());
        headers.insert(TIMESTAMP, HeaderValue::from_str(timestamp).unwrap());
        headers
    }

    fn event(kind: &str) -> Vec<u8> {
        json!({"type": kind, "account_id": 88888888, "id": "01HN", "time": "2024-04-17T17:18:10Z",
               "zendesk_event_version": "2022-11-06", "subject": "zen:ticket:35436",
               "detail": {"id": "35436", "subject": "Printer on fire", "status": "Open",
                          "created_at": "2024-04-17T17:18:00Z", "updated_at": "2024-04-17T17:18:05Z"},
               "event": {"meta": {"sequence": {"id": "s", "position": 1}}}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn event_subscription_deliveries_name_the_ticket() {
        let body = event("zen:event-type:ticket.created");
        let report = read(SECRET, &signed(&body, "2024-04-17T17:18:10Z"), &body, NOW, WINDOW).unwrap();
        assert_eq!(report.changes.len(), 1);
        let c = &report.changes[0];
        assert_eq!(
            (c.kind, c.ticket_id.as_str(), c.updated_at),
            (EventKind::TicketCreated, "35436", datetime!(2024-04-17 17:18:05 UTC))
        );
        let body = event("zen:event-type:ticket.priority_changed");
        let report = read(SECRET, &signed(&body, "2024-04-17T17:18:10Z"), &body, NOW, WINDOW).unwrap();
        assert_eq!(report.changes[0].kind, EventKind::TicketUpdated);
        let body = event("zen:event-type:user.created");
        assert_eq!(
            read(SECRET, &signed(&body, "2024-04-17T17:18:10Z"), &body, NOW, WINDOW).unwrap().ignored,
            1
        );
    }

    #[test]
    fn trigger_bodies_follow_the_rule_convention() {
        let body = br#"{"event":"ticket.updated","ticket_id":"9","updated_at":"2024-04-17T17:00:00Z"}"#;
        let report = read(SECRET, &signed(body, "2024-04-17T17:18:10Z"), body, NOW, WINDOW).unwrap();
        assert_eq!(report.changes[0].ticket_id, "9");
    }

    #[test]
    fn missing_wrong_tampered_and_stale_are_refused() {
        let body = event("zen:event-type:ticket.created");
        let headers = signed(&body, "2024-04-17T17:18:10Z");
        assert_eq!(
            read(SECRET, &HeaderMap::new(), &body, NOW, WINDOW).unwrap_err().reason(),
            "missing_signature"
        );
        let mut no_time = headers.clone();
        no_time.remove(TIMESTAMP);
        assert_eq!(read(SECRET, &no_time, &body, NOW, WINDOW).unwrap_err().reason(), "missing_signature");
        assert_eq!(read(b"other", &headers, &body, NOW, WINDOW).unwrap_err().reason(), "bad_signature");
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert_eq!(read(SECRET, &headers, &tampered, NOW, WINDOW).unwrap_err().reason(), "bad_signature");
        let mut moved = headers.clone();
        moved.insert(TIMESTAMP, HeaderValue::from_static("2024-04-17T17:18:11Z"));
        assert_eq!(
            read(SECRET, &moved, &body, NOW, WINDOW).unwrap_err().reason(),
            "bad_signature",
            "the timestamp is signed"
        );
        let old = signed(&body, "2024-04-17T17:10:00Z");
        let err = read(SECRET, &old, &body, NOW, WINDOW).unwrap_err();
        assert_eq!(err.reason(), "stale");
        assert_eq!(err.status(), axum::http::StatusCode::UNAUTHORIZED);
        let future = signed(&body, "2024-04-17T17:30:00Z");
        assert_eq!(read(SECRET, &future, &body, NOW, WINDOW).unwrap_err().reason(), "stale");
    }
}
