//! Timeouts and limits of one outbound client.

use std::time::Duration;

use super::RetryPolicy;

/// Timeouts and retries of one client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, per attempt.
    pub request_timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Requests in flight to the server at once; more wait their turn. Also the connections
    /// kept open: without a cap, a burst opens a connection per concurrent request (and keeps
    /// their buffers), and helpdesks rate-limit per account anyway.
    pub max_concurrent_requests: usize,
    /// Largest answer body read; a larger one fails the call instead of filling memory.
    pub max_response_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_concurrent_requests: 16,
            max_response_bytes: 8 << 20,
        }
    }
}

/// Makes ring the process's TLS provider, for every client that speaks TLS (helpdesks, the LLM,
/// RabbitMQ, PostgreSQL). Only ring is built in; reqwest refuses to build a client until a
/// provider is installed. Idempotent; [`client_builder`] calls it.
pub fn install_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Err: a provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client builder with deskpilot's user agent, the connect timeout, the timeout of one
/// attempt, and idle connections kept for 90 s.
pub fn client_builder(connect_timeout: Duration, request_timeout: Duration) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("deskpilot/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
}
