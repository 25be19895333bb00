//! URLs, connection strings and servers' answers fit to print: credentials masked.

use std::sync::LazyLock;

use regex::Regex;
use url::Url;

/// Secrets a server may echo in an error answer: a bearer token, an OpenAI-style key.
static ECHOED_SECRET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer\s+|sk-)[A-Za-z0-9._~+/=-]{8,}").expect("a valid pattern"));

/// `text` (a server's answer, an error) with `known` secrets and anything shaped like a bearer
/// token or an API key replaced by `***`. Some servers echo the key they were sent, and proxies the
/// `Authorization` header, in their error answers.
pub fn redact_secrets(text: &str, known: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in known.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "***");
    }
    ECHOED_SECRET.replace_all(&out, "${1}***").into_owned()
}

/// `raw` with its credentials masked, for logs, errors and `check`: a password (or a user name
/// standing alone, which then is the credential) becomes `***`, and a query that names a secret
/// (`password`, `secret`, `token`, `key`) becomes `[redacted]`. A string that does not parse as a
/// URL with a host (`user:pw@host` reads as scheme `user`) is hidden whole when it has an `@`.
pub fn redact_url(raw: &str) -> String {
    let parsed = Url::parse(raw).ok().filter(|url| !url.cannot_be_a_base());
    let Some(mut url) = parsed else {
        return if raw.contains('@') { "[redacted]".to_owned() } else { raw.to_owned() };
    };
    let secret_query = url.query_pairs().any(|(k, _)| {
        let k = k.to_ascii_lowercase();
        ["password", "secret", "token", "key"].iter().any(|s| k.contains(s))
    });
    let password = url.password().is_some();
    let lone_user = !password && !url.username().is_empty();
    if !password && !lone_user && !secret_query {
        // Unchanged, not re-serialised (which would add a trailing `/`).
        return raw.to_owned();
    }
    if password {
        let _ = url.set_password(Some("***"));
    } else if lone_user {
        let _ = url.set_username("***");
    }
    if secret_query {
        url.set_query(Some("[redacted]"));
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked() {
        assert_eq!(
            redact_url("https://user:pw@example.com/base/?api_key=s3cret"),
            "https://user:***@example.com/base/?[redacted]"
        );
        assert_eq!(redact_url("amqp://user:pw@rabbit:5672/%2f"), "amqp://user:***@rabbit:5672/%2f");
        assert_eq!(redact_url("https://sk-abc@api.example.com/v1"), "https://***@api.example.com/v1");
        assert_eq!(redact_url("https://example.com/?token=t"), "https://example.com/?[redacted]");
    }

    #[test]
    fn echoed_secrets_are_masked() {
        assert_eq!(redact_secrets("bad key: abc123secret", &["abc123secret"]), "bad key: ***");
        assert_eq!(
            redact_secrets("Authorization: Bearer eyJhbGciOi.x-y_z", &[]),
            "Authorization: Bearer ***"
        );
        assert_eq!(redact_secrets("key sk-live-9b8c7d6e5f4a is revoked", &[]), "key sk-*** is revoked");
        assert_eq!(redact_secrets("model not found", &["", "k"]), "model not found");
    }

    #[test]
    fn urls_without_credentials_print_as_given() {
        assert_eq!(redact_url("http://127.0.0.1:8081"), "http://127.0.0.1:8081");
        assert_eq!(redact_url("https://x.example/?page=2"), "https://x.example/?page=2");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("user:pw@host"), "[redacted]");
    }
}
