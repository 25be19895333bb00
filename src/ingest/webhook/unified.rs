//! Unified.to deliveries (unified-ticketing.md §6.3): `{data, webhook, nonce, sig, type}` with
//! `sig` = HMAC-SHA1(workspace secret, `data` + `nonce`).
//!
//! The signature is inside the body, so the envelope is read first, but `data` is kept as the
//! bytes that came (compacted, [`compact_json`]) and only parsed once they verified. Unified
//! does not say how `sig` is encoded: base64 (what the sandbox sends) and hex are both accepted.

use hmac::Hmac;
use serde::Deserialize;
use serde_json::{Value, value::RawValue};
use sha1::Sha1;

use super::{
    Rejection, Report,
    payload::{id_of, one, time_of},
    signature::{compact_json, decode_digest, hmac_matches},
};
use crate::events::EventKind;

const BACKEND: &str = "unified";

/// The delivery types Unified documents (`INITIAL-*` pages of an `include_all` backfill, polled
/// `VIRTUAL` changes, `NATIVE` pushes from the vendor).
const TYPES: [&str; 4] = ["INITIAL-PARTIAL", "INITIAL-COMPLETE", "VIRTUAL", "NATIVE"];

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    webhook: Subscription,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    sig: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// The fields of the subscription object (§6.1) a delivery is read by.
#[derive(Deserialize, Default)]
struct Subscription {
    #[serde(default)]
    object_type: Option<String>,
    #[serde(default)]
    event: Option<String>,
}

pub(super) fn read(secret: &[u8], body: &[u8]) -> Result<Report, Rejection> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| {
        Rejection::malformed(BACKEND, format!("expected {{data, webhook, nonce, sig, type}}: {e}"))
    })?;
    if envelope.sig.trim().is_empty() {
        return Err(Rejection::MissingSignature("`sig`"));
    }
    let tag = decode_digest(&envelope.sig, 20).ok_or(Rejection::BadSignature("`sig`"))?;
    let data = compact_json(envelope.data.get());
    if !hmac_matches::<Hmac<Sha1>>(secret, &[data.as_bytes(), envelope.nonce.as_bytes()], &tag) {
        return Err(Rejection::BadSignature("`sig`"));
    }

    if let Some(kind) = envelope.kind.as_deref().filter(|k| !TYPES.contains(k)) {
        tracing::debug!(kind, "unified delivery of an undocumented type; read like the others");
    }
    let Ok(Value::Array(objects)) = serde_json::from_str::<Value>(&data) else {
        return Err(Rejection::malformed(BACKEND, "`data` is not an array"));
    };
    if envelope.webhook.object_type.as_deref() != Some("ticketing_ticket") {
        return Ok(Report { changes: Vec::new(), ignored: objects.len() });
    }
    let event = envelope.webhook.event.as_deref();
    Ok(objects.iter().map(|ticket| change(event, ticket)).fold(Report::default(), merge))
}

/// One ticket of `data`: created or updated as the subscription's `event` says, or, without one,
/// created when `created_at` = `updated_at`. Deletions are not work.
fn change(event: Option<&str>, ticket: &Value) -> Report {
    let (created_at, updated_at) = (time_of(&ticket["created_at"]), time_of(&ticket["updated_at"]));
    let kind = match event {
        Some("created") => Some(EventKind::TicketCreated),
        Some("updated") => Some(EventKind::TicketUpdated),
        Some(_) => None,
        None if created_at.is_some() && created_at == updated_at => Some(EventKind::TicketCreated),
        None => Some(EventKind::TicketUpdated),
    };
    one(kind, id_of(&ticket["id"]), updated_at.or(created_at))
}

fn merge(mut a: Report, b: Report) -> Report {
    a.changes.extend(b.changes);
    a.ignored += b.ignored;
    a
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;
    use crate::sandbox::sign_delivery;

    const SECRET: &str = "whsec";

    fn delivery(event: &str, object_type: &str, data: Value) -> Value {
        let sig = sign_delivery(SECRET, &data, "n0nce");
        json!({"data": data, "webhook": {"object_type": object_type, "event": event, "connection_id": "demo"},
               "nonce": "n0nce", "sig": sig, "type": "VIRTUAL"})
    }

    fn ticket(id: &str, created: &str, updated: &str) -> Value {
        json!({"id": id, "subject": "Refund", "created_at": created, "updated_at": updated})
    }

    #[test]
    fn a_signed_delivery_names_every_ticket() {
        let data = json!([
            ticket("1", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
            ticket("2", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00.5Z")
        ]);
        let body = delivery("created", "ticketing_ticket", data).to_string();
        let report = read(SECRET.as_bytes(), body.as_bytes()).unwrap();
        assert_eq!(report.ignored, 0);
        let got: Vec<_> =
            report.changes.iter().map(|c| (c.kind, c.ticket_id.as_str(), c.updated_at)).collect();
        assert_eq!(
            got,
            [
                (EventKind::TicketCreated, "1", datetime!(2026-01-01 00:00 UTC)),
                (EventKind::TicketCreated, "2", datetime!(2026-01-02 00:00:00.5 UTC))
            ]
        );
    }

    #[test]
    fn hex_signatures_and_pretty_bodies_verify_too() {
        let data = json!([ticket("1", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z")]);
        let mut body = delivery("updated", "ticketing_ticket", data);
        let b64 = body["sig"].as_str().unwrap().to_owned();
        body["sig"] = json!(hex::encode(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap()
        ));
        let pretty = serde_json::to_string_pretty(&body).unwrap();
        let report = read(SECRET.as_bytes(), pretty.as_bytes()).unwrap();
        assert_eq!(report.changes[0].kind, EventKind::TicketUpdated);
    }

    #[test]
    fn without_an_event_created_means_both_times_equal() {
        let same = change(None, &ticket("1", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"));
        let later = change(None, &ticket("1", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"));
        assert_eq!(same.changes[0].kind, EventKind::TicketCreated);
        assert_eq!(later.changes[0].kind, EventKind::TicketUpdated);
        assert_eq!(
            change(Some("deleted"), &ticket("1", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")).ignored,
            1
        );
    }

    #[test]
    fn other_objects_are_counted_not_read() {
        let body = delivery("created", "ticketing_note", json!([{"id": "n1"}, {"id": "n2"}])).to_string();
        assert_eq!(read(SECRET.as_bytes(), body.as_bytes()).unwrap(), Report { changes: vec![], ignored: 2 });
    }

    #[test]
    fn forged_tampered_and_unsigned_deliveries_are_refused() {
        let body = delivery(
            "created",
            "ticketing_ticket",
            json!([ticket("1", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")]),
        );
        let wrong_secret = read(b"guess", body.to_string().as_bytes()).unwrap_err();
        assert_eq!(wrong_secret.reason(), "bad_signature");
        let tampered = body.to_string().replace(r#""id":"1""#, r#""id":"2""#);
        assert_eq!(read(SECRET.as_bytes(), tampered.as_bytes()).unwrap_err().reason(), "bad_signature");
        let mut unsigned = body.clone();
        unsigned["sig"] = json!("");
        assert_eq!(
            read(SECRET.as_bytes(), unsigned.to_string().as_bytes()).unwrap_err().reason(),
            "missing_signature"
        );
        let mut other_nonce = body;
        other_nonce["nonce"] = json!("replayed");
        assert_eq!(
            read(SECRET.as_bytes(), other_nonce.to_string().as_bytes()).unwrap_err().reason(),
            "bad_signature"
        );
        assert_eq!(read(SECRET.as_bytes(), b"[]").unwrap_err().reason(), "malformed");
    }
}
