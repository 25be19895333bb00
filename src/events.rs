//! `TicketEvent`, the one message on the bus.
//!
//! The JSON shape is a contract other tools rely on (DESIGN.md, "Event on the bus"):
//! `{"event_id", "kind": "ticket.created"|"ticket.updated", "connection_id", "ticket_id",
//! "occurred_at": RFC 3339, "source": "webhook"|"poll"|"backfill"|"manual"}`. Published with
//! `content_type: application/json`, `message_id = event_id`, persistent, routing key = `kind`.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What happened to the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    /// A new ticket.
    #[serde(rename = "ticket.created")]
    TicketCreated,
    /// A ticket changed.
    #[serde(rename = "ticket.updated")]
    TicketUpdated,
}

impl EventKind {
    /// The wire value, also the routing key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TicketCreated => "ticket.created",
            Self::TicketUpdated => "ticket.updated",
        }
    }

    /// Parses the wire value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ticket.created" => Some(Self::TicketCreated),
            "ticket.updated" => Some(Self::TicketUpdated),
            _ => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    /// A signed helpdesk webhook.
    Webhook,
    /// The `updated_gte` poller.
    Poll,
    /// A backfill of existing tickets.
    Backfill,
    /// Published by hand (`deskpilot publish`).
    Manual,
}

impl EventSource {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Poll => "poll",
            Self::Backfill => "backfill",
            Self::Manual => "manual",
        }
    }
}

/// A ticket event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketEvent {
    /// Unique id of the event (also the AMQP `message_id`).
    pub event_id: String,
    /// What happened.
    pub kind: EventKind,
    /// The connection (config id) the ticket belongs to.
    pub connection_id: String,
    /// The ticket's id in the helpdesk.
    pub ticket_id: String,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// Where the event came from.
    pub source: EventSource,
}

/// A message body that is not a valid event.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a ticket event: {0}")]
pub struct EventDecodeError(pub String);

impl TicketEvent {
    /// A new event with a fresh time-ordered id.
    pub fn new(
        kind: EventKind,
        connection_id: impl Into<String>,
        ticket_id: impl Into<String>,
        source: EventSource,
    ) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7().to_string(),
            kind,
            connection_id: connection_id.into(),
            ticket_id: ticket_id.into(),
            occurred_at: OffsetDateTime::now_utc(),
            source,
        }
    }

    /// An event for a ticket change a helpdesk reported (a webhook, a poll, a backfill), whose id
    /// is derived from what was observed: the connection, the ticket, the kind and the ticket's
    /// `updated_at`. A duplicate delivery of the same change, or a poll overlapping a webhook,
    /// yields the same id, and the worker's ledger drops the second.
    pub fn observed(
        kind: EventKind,
        connection_id: impl Into<String>,
        ticket_id: impl Into<String>,
        updated_at: OffsetDateTime,
        source: EventSource,
    ) -> Self {
        use sha1::{Digest, Sha1};
        let (connection_id, ticket_id) = (connection_id.into(), ticket_id.into());
        let mut h = Sha1::new();
        let nanos = updated_at.unix_timestamp_nanos();
        h.update(format!("{connection_id}\u{1f}{ticket_id}\u{1f}{}\u{1f}{nanos}", kind.as_str()).as_bytes());
        let digest: [u8; 20] = h.finalize().into();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self {
            event_id: uuid::Builder::from_sha1_bytes(bytes).into_uuid().to_string(),
            kind,
            connection_id,
            ticket_id,
            occurred_at: updated_at,
            source,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a TicketEvent always serialises")
    }

    /// Parses and checks a JSON body: ids must be non-empty.
    pub fn from_json(body: &[u8]) -> Result<Self, EventDecodeError> {
        let event: Self = serde_json::from_slice(body).map_err(|e| EventDecodeError(e.to_string()))?;
        for (name, value) in [
            ("event_id", &event.event_id),
            ("connection_id", &event.connection_id),
            ("ticket_id", &event.ticket_id),
        ] {
            if value.trim().is_empty() {
                return Err(EventDecodeError(format!("`{name}` is empty")));
            }
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wire_shape_is_the_contract() {
        let body = json!({"event_id": "e1", "kind": "ticket.created", "connection_id": "demo", "ticket_id": "1044",
                          "occurred_at": "2026-11-17T07:35:00Z", "source": "webhook"});
        let e = TicketEvent::from_json(body.to_string().as_bytes()).unwrap();
        assert_eq!(e.kind, EventKind::TicketCreated);
        assert_eq!(serde_json::to_value(&e).unwrap(), body);
    }

    #[test]
    fn bad_bodies_say_why() {
        let err = TicketEvent::from_json(b"{not json").unwrap_err();
        assert!(err.to_string().starts_with("not a ticket event"));
        let body = json!({"event_id": "", "kind": "ticket.created", "connection_id": "demo", "ticket_id": "1",
                          "occurred_at": "2026-11-17T07:35:00Z", "source": "poll"});
        assert!(
            TicketEvent::from_json(body.to_string().as_bytes()).unwrap_err().to_string().contains("event_id")
        );
        let body = json!({"event_id": "e", "kind": "ticket.deleted", "connection_id": "demo", "ticket_id": "1",
                          "occurred_at": "2026-11-17T07:35:00Z", "source": "poll"});
        assert!(TicketEvent::from_json(body.to_string().as_bytes()).is_err());
    }

    #[test]
    fn new_events_get_unique_ids() {
        let a = TicketEvent::new(EventKind::TicketCreated, "demo", "1", EventSource::Manual);
        let b = TicketEvent::new(EventKind::TicketCreated, "demo", "1", EventSource::Manual);
        assert_ne!(a.event_id, b.event_id);
    }

    #[test]
    fn an_observed_change_has_one_id_whoever_reports_it() {
        let at = time::macros::datetime!(2026-11-17 07:35:00.123 UTC);
        let hook = TicketEvent::observed(EventKind::TicketCreated, "demo", "1044", at, EventSource::Webhook);
        let poll = TicketEvent::observed(EventKind::TicketCreated, "demo", "1044", at, EventSource::Poll);
        assert_eq!(hook.event_id, poll.event_id, "a poll overlapping a webhook is the same event");
        assert_eq!(hook.occurred_at, at);
        let later = TicketEvent::observed(
            EventKind::TicketCreated,
            "demo",
            "1044",
            at + time::Duration::SECOND,
            EventSource::Webhook,
        );
        let updated =
            TicketEvent::observed(EventKind::TicketUpdated, "demo", "1044", at, EventSource::Webhook);
        let other = TicketEvent::observed(EventKind::TicketCreated, "acme", "1044", at, EventSource::Webhook);
        for e in [later, updated, other] {
            assert_ne!(e.event_id, hook.event_id, "{e:?}");
        }
        assert!(uuid::Uuid::parse_str(&hook.event_id).is_ok(), "{}", hook.event_id);
    }
}
