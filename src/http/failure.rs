//! What a failed exchange means: the class of an error status, and transport failures in words.

use reqwest::StatusCode;

/// What a non-success status means for the caller; each client maps it onto its own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 429: slow down, maybe for as long as `Retry-After` says.
    RateLimited,
    /// 401, 403: the credentials were refused; retrying will not help until they are fixed.
    Unauthorized,
    /// 404, 410: no such object.
    NotFound,
    /// 408 and 5xx: may pass.
    Transient,
    /// Any other status: the request is wrong in a way a retry cannot fix.
    Rejected,
}

impl StatusClass {
    /// The class of a non-success `status`.
    pub fn of(status: StatusCode) -> Self {
        match status {
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Self::Unauthorized,
            StatusCode::NOT_FOUND | StatusCode::GONE => Self::NotFound,
            StatusCode::REQUEST_TIMEOUT => Self::Transient,
            s if s.is_server_error() => Self::Transient,
            _ => Self::Rejected,
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::RateLimited | Self::Transient)
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
    fn statuses_map_to_classes() {
        let c = |s: u16| StatusClass::of(StatusCode::from_u16(s).unwrap());
        assert_eq!(c(401), StatusClass::Unauthorized);
        assert_eq!(c(403), StatusClass::Unauthorized);
        assert_eq!(c(404), StatusClass::NotFound);
        assert_eq!(c(410), StatusClass::NotFound);
        assert_eq!(c(429), StatusClass::RateLimited);
        assert_eq!(c(408), StatusClass::Transient);
        assert_eq!(c(503), StatusClass::Transient);
        assert_eq!(c(422), StatusClass::Rejected);
        assert!(c(500).is_retryable() && !c(400).is_retryable());
    }

    #[test]
    fn a_chain_skips_causes_already_said() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: inner")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("inner")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("top")]
        struct Top(#[source] Outer);
        assert_eq!(error_chain(&Top(Outer(Inner))), "top: outer: inner");
    }
}
