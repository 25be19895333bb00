//! Intercom webhooks (platforms.md §3.7): `X-Hub-Signature: sha1=<hex HMAC-SHA1(client secret,
//! raw body)>`, a `notification_event` whose `topic` says what happened to `data.item`.
//!
//! Tickets (`ticket.*`) and conversations (`conversation.*`) are both read, since a deployment
//! may triage either; `ticket.created` and `conversation.user.created` are new work, other topics
//! of those objects are updates, deletions and everything else (the setup `ping`) are ignored.

use axum::http::HeaderMap;
use hmac::Hmac;
use serde_json::Value;
use sha1::Sha1;

use super::{
    Rejection, Report,
    payload::{id_of, object, one, time_of},
    signature::{decode_digest, hmac_matches},
};
use crate::events::EventKind;

const BACKEND: &str = "intercom";
/// The signature header.
pub(super) const SIGNATURE: &str = "x-hub-signature";

pub(super) fn read(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<Report, Rejection> {
    let header =
        headers.get(SIGNATURE).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let signature = header.ok_or(Rejection::MissingSignature("X-Hub-Signature header"))?;
    let tag = signature
        .strip_prefix("sha1=")
        .and_then(|hex| decode_digest(hex, 20))
        .ok_or(Rejection::BadSignature("X-Hub-Signature"))?;
    if !hmac_matches::<Hmac<Sha1>>(secret, &[body], &tag) {
        return Err(Rejection::BadSignature("X-Hub-Signature"));
    }

    let map = object(BACKEND, body)?;
    let topic = map.get("topic").and_then(Value::as_str).unwrap_or_default();
    let kind = match topic {
        "ticket.created" | "conversation.user.created" => Some(EventKind::TicketCreated),
        t if t.ends_with(".deleted") => None,
        t if t.starts_with("ticket.") || t.starts_with("conversation.") => Some(EventKind::TicketUpdated),
        _ => None,
    };
    let item = map.get("data").and_then(|d| d.get("item")).cloned().unwrap_or_default();
    let updated_at = time_of(&item["updated_at"])
        .or_else(|| time_of(&item["created_at"]))
        .or_else(|| map.get("created_at").and_then(time_of));
    Ok(one(kind, id_of(&item["id"]), updated_at))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const SECRET: &[u8] = b"client-secret";

    fn signed(body: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha1>::new_from_slice(SECRET).unwrap();
        mac.update(body);
        let mut headers = HeaderMap::new();
        let value = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
        headers.insert(SIGNATURE, HeaderValue::from_str(&value).unwrap());
        headers
    }

    fn notification(topic: &str) -> Vec<u8> {
        json!({"type": "notification_event", "id": "notif_78c122d0", "topic": topic, "app_id": "a86dr8yl",
               "created_at": 1_714_525_200, "delivery_attempts": 1, "first_sent_at": 1_714_525_200,
               "data": {"type": "notification_event_data",
                        "item": {"type": "ticket", "id": "633", "created_at": 1_714_525_100,
                                 "updated_at": 1_714_525_190}}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn ticket_topics_name_the_item() {
        let body = notification("ticket.created");
        let report = read(SECRET, &signed(&body), &body).unwrap();
        let c = &report.changes[0];
        assert_eq!(
            (c.kind, c.ticket_id.as_str(), c.updated_at),
            (EventKind::TicketCreated, "633", datetime!(2024-05-01 00:59:50 UTC))
        );
        let body = notification("ticket.state.updated");
        assert_eq!(read(SECRET, &signed(&body), &body).unwrap().changes[0].kind, EventKind::TicketUpdated);
        let body = notification("ping");
        assert_eq!(read(SECRET, &signed(&body), &body).unwrap(), Report { changes: vec![], ignored: 1 });
    }

    #[test]
    fn bad_signatures_are_refused() {
        let body = notification("ticket.created");
        assert_eq!(read(SECRET, &HeaderMap::new(), &body).unwrap_err().reason(), "missing_signature");
        assert_eq!(read(b"other", &signed(&body), &body).unwrap_err().reason(), "bad_signature");
        let mut bare = HeaderMap::new();
        let hex = signed(&body)[SIGNATURE].to_str().unwrap().trim_start_matches("sha1=").to_owned();
        bare.insert(SIGNATURE, HeaderValue::from_str(&hex).unwrap());
        assert_eq!(
            read(SECRET, &bare, &body).unwrap_err().reason(),
            "bad_signature",
            "the sha1= prefix is required"
        );
        let mut tampered = body.clone();
        tampered[5] ^= 1;
        assert_eq!(read(SECRET, &signed(&body), &tampered).unwrap_err().reason(), "bad_signature");
    }
}
