//! The helpdesk client every backend sends through: one base URL and its credentials, requests
//! in flight capped, and every answer classified into a [`TicketingError`]. Timeouts, retries and
//! redaction come from the [`crate::http`] toolkit.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use reqwest::{
    Method, StatusCode,
    header::{self, HeaderMap, HeaderName, HeaderValue},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::Semaphore;
use url::Url;

use super::{Result, TicketingError};
use crate::http::{
    HttpSettings, RetryPolicy, RetryableError, StatusClass, client_builder, clip_with_ellipsis,
    describe_transport_error, error_chain, parse_reset_epoch, parse_retry_after, redact_secrets, redact_url,
};

/// A vendor's data region (`us`, `eu`, `au`; default `us`): a workspace's credentials only work
/// on its own region's API host, which each backend names (`unified::region_url`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// North America.
    #[default]
    Us,
    /// Europe.
    Eu,
    /// Australia.
    Au,
}

/// How a backend authenticates.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// HTTP basic auth.
    Basic {
        /// User name (for Zendesk `email/token`, for Freshdesk the API key).
        username: String,
        /// Password or token.
        password: SecretString,
    },
    /// A custom header carrying the secret.
    Header {
        /// Header name.
        name: HeaderName,
        /// Header value.
        value: SecretString,
    },
}

impl Auth {
    /// The secret sent, to mask it where the helpdesk's answer is quoted.
    fn secret(&self) -> &str {
        match self {
            Self::Bearer(secret)
            | Self::Basic { password: secret, .. }
            | Self::Header { value: secret, .. } => secret.expose_secret(),
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer([redacted])"),
            Self::Basic { username, .. } => write!(f, "Basic({username}:[redacted])"),
            Self::Header { name, .. } => write!(f, "Header({name}: [redacted])"),
        }
    }
}

/// One request: method, path segments (percent-encoded for you), query, optional JSON body.
#[derive(Debug)]
pub struct Call<'a> {
    method: Method,
    segments: Vec<&'a str>,
    params: Vec<(&'static str, String)>,
    body: Option<serde_json::Value>,
    resource: String,
    retry_ambiguous: bool,
}

impl<'a> Call<'a> {
    /// A call to `segments` (joined under the base URL); `resource` names the object for errors.
    pub fn new(method: Method, segments: &[&'a str], resource: impl Into<String>) -> Self {
        // GET/PUT/PATCH/DELETE are idempotent; POST is not, so its ambiguous failures are not retried.
        let retry_ambiguous = method != Method::POST;
        Self {
            method,
            segments: segments.to_vec(),
            params: Vec::new(),
            body: None,
            resource: resource.into(),
            retry_ambiguous,
        }
    }

    /// Adds query parameters.
    pub fn params(mut self, params: Vec<(&'static str, String)>) -> Self {
        self.params.extend(params);
        self
    }

    /// Marks a call that must not be sent twice (a PUT that adds a comment): its ambiguous
    /// failures are not retried, as for POST.
    pub fn once(mut self) -> Self {
        self.retry_ambiguous = false;
        self
    }

    /// Marks a POST that is safe to send twice (a search, adding a tag): its ambiguous failures
    /// are retried, as for GET.
    pub fn idempotent(mut self) -> Self {
        self.retry_ambiguous = true;
        self
    }

    /// Sets a JSON body.
    pub fn json<B: Serialize>(mut self, body: &B) -> Result<Self> {
        let value = serde_json::to_value(body)
            .map_err(|e| TicketingError::Invalid { detail: format!("could not encode request body: {e}") })?;
        self.body = Some(value);
        Ok(self)
    }
}

/// A reqwest client bound to one backend's base URL and credentials.
#[derive(Clone)]
pub struct HttpClient {
    backend: &'static str,
    client: reqwest::Client,
    base: Url,
    auth: Auth,
    retry: RetryPolicy,
    /// One permit per request in flight ([`HttpSettings::max_concurrent_requests`]).
    permits: Arc<Semaphore>,
    /// Largest answer body read ([`HttpSettings::max_response_bytes`]).
    max_body: usize,
    /// Headers sent with every request besides auth (an API version pin).
    extra_headers: HeaderMap,
    /// A header holding a rate limit's reset time (epoch seconds), read when a 429 has no
    /// `Retry-After`.
    reset_header: Option<&'static str>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("backend", &self.backend)
            .field("base", &self.base_url())
            .field("auth", &self.auth)
            .finish()
    }
}

/// Failure of one attempt, with whether sending the request again is safe.
struct AttemptError {
    error: TicketingError,
    /// False when the server may have acted on a request that must not be repeated.
    resend_safe: bool,
}

impl RetryableError for AttemptError {
    fn is_retryable(&self) -> bool {
        self.error.is_retryable() && self.resend_safe
    }

    fn retry_after(&self) -> Option<Duration> {
        self.error.retry_after()
    }
}

impl HttpClient {
    /// Builds a client for `base_url`. Fails with a message naming the bad value.
    pub fn new(backend: &'static str, base_url: &str, auth: Auth, settings: &HttpSettings) -> Result<Self> {
        let mut base = Url::parse(base_url).map_err(|e| TicketingError::Invalid {
            detail: format!(
                "base_url `{}` is not a valid URL ({e}); expected e.g. https://api.unified.to",
                redact_url(base_url)
            ),
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(TicketingError::Invalid {
                detail: format!("base_url `{}` must start with http:// or https://", redact_url(base_url)),
            });
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let max_in_flight = settings.max_concurrent_requests.max(1);
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let client = client_builder(settings.connect_timeout, settings.request_timeout)
            .default_headers(headers)
            .pool_max_idle_per_host(max_in_flight)
            .build()
            .map_err(|e| TicketingError::Invalid { detail: format!("could not build HTTP client: {e}") })?;
        let permits = Arc::new(Semaphore::new(max_in_flight));
        Ok(Self {
            backend,
            client,
            base,
            auth,
            retry: settings.retry.clone(),
            permits,
            max_body: settings.max_response_bytes.max(1),
            extra_headers: HeaderMap::new(),
            reset_header: None,
        })
    }

    /// Sends `name: value` with every request (e.g. `Intercom-Version`).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra_headers.insert(name, value);
        self
    }

    /// Reads the wait of a 429 without `Retry-After` from header `name`, a reset time in Unix
    /// epoch seconds (Intercom's `X-RateLimit-Reset`).
    pub fn with_reset_header(mut self, name: &'static str) -> Self {
        self.reset_header = Some(name);
        self
    }

    /// The base URL with any credentials masked.
    pub fn base_url(&self) -> String {
        redact_url(self.base.as_str())
    }

    /// Sends `call`, retrying transient failures, and decodes the JSON answer.
    pub async fn send<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        let bytes = self.send_raw(&call).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            let text = String::from_utf8_lossy(&bytes);
            let start = text.trim_start();
            let detail = if let Err(bad) = std::str::from_utf8(&bytes) {
                format!("a body that is not valid UTF-8 (at byte {}): {e}", bad.valid_up_to())
            } else if start.starts_with(['{', '[']) {
                format!("a body that does not match the expected shape: {e}")
            } else {
                // A proxy's or a login page's HTML, an empty body: the URL is not the API.
                format!(
                    "a body that is not JSON (it starts with `{}`); check that the connection's \
                     base_url points at the helpdesk's API",
                    snippet(start.as_bytes(), self.auth.secret()).chars().take(60).collect::<String>()
                )
            };
            TicketingError::Invalid {
                detail: format!("{} {} returned {detail}", call.method, self.path_of(&call)),
            }
        })
    }

    /// Sends `call`, retrying transient failures, and returns the body bytes.
    pub async fn send_raw(&self, call: &Call<'_>) -> Result<Bytes> {
        let retrying = |e: &AttemptError, delay: Duration| {
            tracing::warn!(
                backend = self.backend,
                method = %call.method,
                path = %self.path_of(call),
                error = %e.error,
                retry_in_ms = delay.as_millis() as u64,
                "helpdesk call failed, retrying"
            );
        };
        self.retry.run(|_| self.attempt(call), retrying).await.map_err(|e| e.error)
    }

    fn path_of(&self, call: &Call<'_>) -> String {
        let mut url = self.base.clone();
        extend_path(&mut url, &call.segments);
        url.path().to_owned()
    }

    async fn attempt(&self, call: &Call<'_>) -> std::result::Result<Bytes, AttemptError> {
        let mut url = self.base.clone();
        extend_path(&mut url, &call.segments);
        let mut req = self.client.request(call.method.clone(), url.clone());
        if !call.params.is_empty() {
            req = req.query(&call.params);
        }
        if !self.extra_headers.is_empty() {
            req = req.headers(self.extra_headers.clone());
        }
        req = match &self.auth {
            Auth::Bearer(token) => req.bearer_auth(token.expose_secret()),
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose_secret())),
            Auth::Header { name, value } => req.header(name.clone(), value.expose_secret()),
        };
        if let Some(body) = &call.body {
            req = req.json(body);
        }
        // GET/PUT/PATCH/DELETE are idempotent; a POST the server may have acted on is not resent.
        let resend_safe = |maybe_processed: bool| call.retry_ambiguous || !maybe_processed;
        // Held until the body is read: the connection is busy until then.
        let _permit = self.permits.acquire().await.map_err(|_| AttemptError {
            error: TicketingError::Transient { detail: "the helpdesk client is shutting down".into() },
            resend_safe: true,
        })?;
        let started = std::time::Instant::now();
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                let maybe_processed = !e.is_connect();
                return Err(AttemptError {
                    error: TicketingError::Transient {
                        detail: format!("{} {} {}", call.method, url.path(), describe_transport_error(e)),
                    },
                    resend_safe: resend_safe(maybe_processed),
                });
            }
        };
        let status = resp.status();
        tracing::debug!(
            backend = self.backend,
            method = %call.method,
            path = %url.path(),
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "helpdesk call"
        );
        let retry_after = parse_retry_after(resp.headers())
            .or_else(|| self.reset_header.and_then(|name| parse_reset_epoch(resp.headers(), name)));
        let body = match read_capped(resp, self.max_body).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Err(AttemptError {
                    error: TicketingError::Invalid {
                        detail: format!(
                            "{} {} answered more than {} MiB; raise [http] max_response_mb if answers \
                             this large are expected",
                            call.method,
                            url.path(),
                            self.max_body >> 20
                        ),
                    },
                    resend_safe: false,
                });
            }
            Err(BodyError::Read(e)) => {
                return Err(AttemptError {
                    error: TicketingError::Transient {
                        detail: format!(
                            "{} {}: reading the body failed: {}",
                            call.method,
                            url.path(),
                            error_chain(&e.without_url())
                        ),
                    },
                    resend_safe: resend_safe(true),
                });
            }
        };
        if status.is_success() {
            return Ok(body);
        }
        let detail = format!(
            "{} {} returned {status}: {}",
            call.method,
            url.path(),
            snippet(&body, self.auth.secret())
        );
        let error = classify(status, retry_after, detail, &call.resource);
        // A 429 means the server refused the request, so it is safe to send again even for POST.
        let maybe_processed = status != StatusCode::TOO_MANY_REQUESTS;
        Err(AttemptError { error, resend_safe: resend_safe(maybe_processed) })
    }
}

/// The address of a vendor-hosted site named `name`: a bare name is `https://{name}.{domain}`, a
/// host name gets `https://`, a full URL stays as given (without a trailing `/`).
pub fn site_url(name: &str, domain: &str) -> String {
    let n = name.trim().trim_end_matches('/');
    if n.starts_with("http://") || n.starts_with("https://") {
        n.to_owned()
    } else if n.contains('.') {
        format!("https://{n}")
    } else {
        format!("https://{n}.{domain}")
    }
}

/// Maps an HTTP status to the error class callers branch on.
pub fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: String,
    resource: &str,
) -> TicketingError {
    match StatusClass::of(status) {
        StatusClass::RateLimited => TicketingError::RateLimited { retry_after },
        StatusClass::Unauthorized => TicketingError::Unauthorized { detail },
        StatusClass::NotFound => TicketingError::NotFound { resource: resource.to_owned() },
        StatusClass::Transient => TicketingError::Transient { detail },
        StatusClass::Rejected => TicketingError::Invalid { detail },
    }
}

fn extend_path(url: &mut Url, segments: &[&str]) {
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        // `push` percent-encodes each segment, so an id like `a/b` cannot escape its place.
        for s in segments {
            path.push(s);
        }
    }
}

/// Why an answer's body was not read.
enum BodyError {
    /// It is larger than allowed.
    TooLarge,
    /// The connection failed while reading it.
    Read(reqwest::Error),
}

/// The body of `resp`, refused as soon as it is known to exceed `max` bytes (by its
/// `Content-Length`, or while reading), so a huge answer never fills memory.
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The start of an error body, for the error's message, with `secret` and anything shaped like a
/// token masked (a helpdesk or a proxy in front of it may echo what it was sent).
fn snippet(body: &[u8], secret: &str) -> String {
    let text = redact_secrets(&String::from_utf8_lossy(body), &[secret]);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    clip_with_ellipsis(text, 300).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        let c = |s: u16| classify(StatusCode::from_u16(s).unwrap(), None, "d".into(), "ticket 1");
        assert!(matches!(c(401), TicketingError::Unauthorized { .. }));
        assert!(matches!(c(403), TicketingError::Unauthorized { .. }));
        assert!(matches!(c(404), TicketingError::NotFound { .. }));
        assert!(matches!(c(429), TicketingError::RateLimited { .. }));
        assert!(matches!(c(503), TicketingError::Transient { .. }));
        assert!(matches!(c(422), TicketingError::Invalid { .. }));
        assert!(c(500).is_retryable() && !c(400).is_retryable());
    }

    #[test]
    fn base_urls_lose_credentials_and_segments_are_encoded() {
        let c = HttpClient::new(
            "t",
            "https://user:pw@example.com/base/?api_key=s3cret",
            Auth::Bearer("tok".into()),
            &HttpSettings::default(),
        )
        .unwrap();
        let shown = c.base_url();
        assert!(!shown.contains("pw") && !shown.contains("s3cret"), "{shown}");
        let mut base = Url::parse("https://example.com/api/").unwrap();
        extend_path(&mut base, &["ticketing", "conn 1", "ticket", "a/b"]);
        assert_eq!(base.path(), "/api/ticketing/conn%201/ticket/a%2Fb");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let a = Auth::Basic { username: "me@x.com/token".into(), password: SecretString::from("hunter2") };
        assert!(!format!("{a:?}").contains("hunter2"));
        let c = HttpClient::new(
            "t",
            "https://k:pw@example.com",
            Auth::Bearer("tok".into()),
            &HttpSettings::default(),
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("pw") && !dbg.contains("tok\""), "{dbg}");
    }

    #[test]
    fn error_bodies_are_clipped() {
        assert_eq!(snippet(b"  ", "tok"), "(empty body)");
        assert_eq!(snippet(b"bad token tok-123456 for user", "tok-123456"), "bad token *** for user");
        let long = "x".repeat(400);
        assert_eq!(snippet(long.as_bytes(), "tok"), format!("{}…", "x".repeat(300)));
    }
}
