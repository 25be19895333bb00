//! Webhook deliveries: each backend's authentication and payload, read into ticket changes.
//!
//! A connection's backend decides the [`Scheme`]: how a request proves it comes from the helpdesk
//! (checked on the raw bytes before anything is parsed) and how its payload names the tickets that
//! changed. Every scheme is a pure function of the headers, the raw body, the connection's secret
//! and the clock, so it is tested without a server; [`WebhookReceiver`] mounts them on the router
//! and publishes what they read.
//!
//! - `unified`: `sig` in the body = HMAC-SHA1(workspace secret, `data` + `nonce`), base64 or hex.
//! - `zendesk`: `X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(secret, timestamp + body)),
//!   the timestamp within `ingest.webhook_timestamp_tolerance_secs` of now.
//! - `intercom`: `X-Hub-Signature: sha1=<hex HMAC-SHA1(client secret, body)>`.
//! - `freshdesk`, `servicenow`: the vendor signs nothing, so the rule or business rule sends the
//!   shared secret (`X-Webhook-Secret`, `Authorization: Bearer` or Basic).

mod intercom;
mod payload;
mod receiver;
mod shared_secret;
mod signature;
pub mod subscribe;
mod unified;
mod zendesk;

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use time::OffsetDateTime;

use crate::events::EventKind;

pub use receiver::{WebhookConnection, WebhookReceiver, WebhookSettings};

/// One ticket change a delivery reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Created or updated.
    pub kind: EventKind,
    /// The ticket's id in the helpdesk.
    pub ticket_id: String,
    /// The ticket's `updated_at` as reported (part of the event id, so a duplicate delivery of
    /// the same change is the same event).
    pub updated_at: OffsetDateTime,
}

/// What an authenticated delivery says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Ticket changes to publish.
    pub changes: Vec<Change>,
    /// Objects that are not ticket changes (other object types, deletions, pings, items without
    /// an id or a time): counted, not published.
    pub ignored: usize,
}

/// Why a delivery is refused; nothing of it is published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No connection has this id.
    #[error("no connection `{0}` is configured here")]
    UnknownConnection(String),
    /// The connection has no webhook secret, so no delivery can be authenticated.
    #[error("connection `{0}` takes no webhooks: set its webhook_secret or webhook_secret_env")]
    NotConfigured(String),
    /// The body is larger than `ingest.webhook_max_body_bytes`.
    #[error("the body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The signature (or shared secret) is absent.
    #[error("missing {0}")]
    MissingSignature(&'static str),
    /// The signature does not match the body, or the shared secret is wrong.
    #[error("the {0} does not match")]
    BadSignature(&'static str),
    /// The signed timestamp is too far from now (a replay, or a badly wrong clock).
    #[error("the signature timestamp {timestamp} is more than {tolerance_secs}s from now")]
    Stale {
        /// The header's value.
        timestamp: String,
        /// The window.
        tolerance_secs: u64,
    },
    /// The body is not a delivery of this backend.
    #[error("not a {backend} webhook delivery: {detail}")]
    Malformed {
        /// The scheme's backend.
        backend: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl Rejection {
    /// The `reason` label of `deskpilot_webhook_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownConnection(_) => "unknown_connection",
            Self::NotConfigured(_) => "not_configured",
            Self::TooLarge { .. } => "too_large",
            Self::MissingSignature(_) => "missing_signature",
            Self::BadSignature(_) => "bad_signature",
            Self::Stale { .. } => "stale",
            Self::Malformed { .. } => "malformed",
        }
    }

    /// The answer's status: 404 for a connection that takes no webhooks, 413 for a large body,
    /// 401 for anything unauthenticated, 400 for an authenticated body that cannot be read.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownConnection(_) | Self::NotConfigured(_) => StatusCode::NOT_FOUND,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MissingSignature(_) | Self::BadSignature(_) | Self::Stale { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Self::Malformed { .. } => StatusCode::BAD_REQUEST,
        }
    }

    fn malformed(backend: &'static str, detail: impl Into<String>) -> Self {
        Self::Malformed { backend, detail: detail.into() }
    }
}

/// How a connection's deliveries are authenticated and read: one per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Unified.to (and the sandbox).
    Unified,
    /// Zendesk webhooks (event subscriptions or triggers).
    Zendesk,
    /// Intercom app webhooks.
    Intercom,
    /// A Freshdesk automation rule's webhook.
    Freshdesk,
    /// A ServiceNow business rule's outbound REST message.
    ServiceNow,
}

impl Scheme {
    /// The scheme of a `backend` name.
    pub fn for_backend(backend: &str) -> Option<Self> {
        match backend {
            "unified" => Some(Self::Unified),
            "zendesk" => Some(Self::Zendesk),
            "intercom" => Some(Self::Intercom),
            "freshdesk" => Some(Self::Freshdesk),
            "servicenow" => Some(Self::ServiceNow),
            _ => None,
        }
    }

    /// The backend name.
    pub fn backend(self) -> &'static str {
        match self {
            Self::Unified => "unified",
            Self::Zendesk => "zendesk",
            Self::Intercom => "intercom",
            Self::Freshdesk => "freshdesk",
            Self::ServiceNow => "servicenow",
        }
    }

    /// Authenticates a delivery on its raw bytes with `secret`, then reads it. `tolerance` bounds
    /// the age of a signed timestamp (Zendesk's).
    pub fn read(
        self,
        secret: &[u8],
        headers: &HeaderMap,
        body: &[u8],
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<Report, Rejection> {
        match self {
            Self::Unified => unified::read(secret, body),
            Self::Zendesk => zendesk::read(secret, headers, body, now, tolerance),
            Self::Intercom => intercom::read(secret, headers, body),
            Self::Freshdesk => shared_secret::read_freshdesk(secret, headers, body),
            Self::ServiceNow => shared_secret::read_servicenow(secret, headers, body),
        }
    }
}
