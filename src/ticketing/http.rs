//! Shared HTTP plumbing for every backend: auth, timeouts, retries with jitter for 429/5xx/timeouts
//! (honouring a capped `Retry-After`), error classes, and credentials kept out of logs and errors.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use backon::{ExponentialBuilder, Retryable};
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

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer([redacted])"),
            Self::Basic { username, .. } => write!(f, "Basic({username}:[redacted])"),
            Self::Header { name, .. } => write!(f, "Header({name}: [redacted])"),
        }
    }
}

/// Retry behaviour for transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: usize,
    /// First backoff delay; doubles each retry, with jitter.
    pub base_delay: Duration,
    /// Longest backoff delay between two attempts.
    pub max_delay: Duration,
    /// Longest `Retry-After` we wait in-process; a longer one is returned to the caller as
    /// `RateLimited` so the worker can park the event instead of holding a slot.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// Timeouts and retries of one backend client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, per attempt.
    pub request_timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Requests in flight to the backend at once; more wait their turn. Also the connections
    /// kept open: without a cap, a burst opens a connection per concurrent request (and keeps
    /// their buffers), and helpdesks rate-limit per account anyway.
    pub max_concurrent_requests: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_concurrent_requests: 16,
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
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("backend", &self.backend)
            .field("base", &redact_url(&self.base))
            .field("auth", &self.auth)
            .finish()
    }
}

/// Failure of one attempt, with whether the server may have acted on it.
struct AttemptError {
    error: TicketingError,
    maybe_processed: bool,
}

impl HttpClient {
    /// Builds a client for `base_url`. Fails with a message naming the bad value.
    pub fn new(backend: &'static str, base_url: &str, auth: Auth, settings: &HttpSettings) -> Result<Self> {
        let mut base = Url::parse(base_url).map_err(|e| TicketingError::Invalid {
            detail: format!(
                "base_url `{base_url}` is not a valid URL ({e}); expected e.g. https://api.unified.to"
            ),
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(TicketingError::Invalid {
                detail: format!("base_url `{}` must start with http:// or https://", redact_url(&base)),
            });
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let max_in_flight = settings.max_concurrent_requests.max(1);
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let client = reqwest::Client::builder()
            .user_agent(concat!("deskpilot/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(max_in_flight)
            .build()
            .map_err(|e| TicketingError::Invalid { detail: format!("could not build HTTP client: {e}") })?;
        let permits = Arc::new(Semaphore::new(max_in_flight));
        Ok(Self { backend, client, base, auth, retry: settings.retry.clone(), permits })
    }

    /// The base URL with any credentials removed.
    pub fn base_url(&self) -> String {
        redact_url(&self.base)
    }

    /// Sends `call`, retrying transient failures, and decodes the JSON answer.
    pub async fn send<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        let bytes = self.send_raw(&call).await?;
        serde_json::from_slice(&bytes).map_err(|e| TicketingError::Invalid {
            detail: format!(
                "{} {} returned a body that does not match the expected shape: {e}",
                call.method,
                self.path_of(&call)
            ),
        })
    }

    /// Sends `call`, retrying transient failures, and returns the body bytes.
    pub async fn send_raw(&self, call: &Call<'_>) -> Result<Bytes> {
        let policy = &self.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.base_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_retries)
            .with_jitter();
        let cap = policy.max_retry_after;
        let attempt = || self.attempt(call);
        attempt
            .retry(backoff)
            .when(|e: &AttemptError| e.error.is_retryable() && (call.retry_ambiguous || !e.maybe_processed))
            .adjust(move |e: &AttemptError, delay| match e.error.retry_after() {
                // A wait longer than the cap is handed to the caller rather than slept through here.
                Some(wait) if wait > cap => None,
                Some(wait) => Some(wait),
                None => delay,
            })
            .notify(|e: &AttemptError, delay| {
                tracing::warn!(
                    backend = self.backend,
                    method = %call.method,
                    path = %self.path_of(call),
                    error = %e.error,
                    retry_in_ms = delay.as_millis() as u64,
                    "helpdesk call failed, retrying"
                );
            })
            .await
            .map_err(|e| e.error)
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
        req = match &self.auth {
            Auth::Bearer(token) => req.bearer_auth(token.expose_secret()),
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose_secret())),
            Auth::Header { name, value } => req.header(name.clone(), value.expose_secret()),
        };
        if let Some(body) = &call.body {
            req = req.json(body);
        }
        // Held until the body is read: the connection is busy until then.
        let _permit = self.permits.acquire().await.map_err(|_| AttemptError {
            error: TicketingError::Transient { detail: "the helpdesk client is shutting down".into() },
            maybe_processed: false,
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
                    maybe_processed,
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
        let retry_after = parse_retry_after(resp.headers());
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err(AttemptError {
                    error: TicketingError::Transient {
                        detail: format!(
                            "{} {}: reading the body failed: {}",
                            call.method,
                            url.path(),
                            error_chain(&e.without_url())
                        ),
                    },
                    maybe_processed: true,
                });
            }
        };
        if status.is_success() {
            return Ok(body);
        }
        let detail = format!("{} {} returned {status}: {}", call.method, url.path(), snippet(&body));
        let error = classify(status, retry_after, detail, &call.resource);
        // A 429 means the server refused the request, so it is safe to send again even for POST.
        let maybe_processed = status != StatusCode::TOO_MANY_REQUESTS;
        Err(AttemptError { error, maybe_processed })
    }
}

/// Maps an HTTP status to the error class callers branch on.
pub fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: String,
    resource: &str,
) -> TicketingError {
    match status {
        StatusCode::TOO_MANY_REQUESTS => TicketingError::RateLimited { retry_after },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => TicketingError::Unauthorized { detail },
        StatusCode::NOT_FOUND | StatusCode::GONE => {
            TicketingError::NotFound { resource: resource.to_owned() }
        }
        StatusCode::REQUEST_TIMEOUT => TicketingError::Transient { detail },
        s if s.is_server_error() => TicketingError::Transient { detail },
        _ => TicketingError::Invalid { detail },
    }
}

/// Reads `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
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

/// The URL without user info or query string (which may carry secrets).
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// An error and its causes on one line, skipping causes whose text is already included.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A failed HTTP exchange in words (timed out / could not connect / failed), without the URL,
/// which may carry credentials.
pub fn describe_transport_error(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{what}: {}", error_chain(&e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        let future = SystemTime::now() + Duration::from_secs(120);
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&httpdate::fmt_http_date(future)).unwrap());
        let d = parse_retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }

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
    fn urls_lose_credentials_and_segments_are_encoded() {
        let u = Url::parse("https://user:pw@example.com/base/?api_key=s3cret").unwrap();
        assert_eq!(redact_url(&u), "https://example.com/base/");
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
}
