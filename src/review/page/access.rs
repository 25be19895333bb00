//! Who may use the review page, and who they are: a signed session cookie set by the sign-in
//! form, `Authorization: Bearer <token>` for scripts, or anonymous access on a loopback-bound
//! server. Forms carry a CSRF token bound to the session, and cross-site posts are refused.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// The session cookie's name.
pub(super) const COOKIE: &str = "deskpilot_review";

/// How long a sign-in lasts.
const SESSION: Duration = Duration::from_secs(12 * 3600);

/// Longest reviewer name kept, in characters.
const MAX_NAME_CHARS: usize = 64;

/// Who may use the page.
#[derive(Clone)]
pub struct Access {
    token: Option<SecretString>,
    anonymous: bool,
    /// Signs session cookies and CSRF tokens. Derived from the token when there is one, so a
    /// sign-in holds across restarts and replicas and ends when the token is changed.
    key: [u8; 32],
}

impl Default for Access {
    fn default() -> Self {
        Self::new(None, false, "")
    }
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Identity {
    /// Signed in with the form: the name they gave, and the session's signature (CSRF binding).
    Session { name: String, binding: String },
    /// A script presenting the token.
    Bearer,
    /// Anyone on a loopback-bound server, not signed in.
    Anonymous,
}

impl Identity {
    /// The name review records keep for this reviewer.
    pub(super) fn actor(&self) -> String {
        match self {
            Identity::Session { name, .. } => name.clone(),
            Identity::Bearer => "token".into(),
            Identity::Anonymous => "local reviewer".into(),
        }
    }

    /// Whether the request comes from a browser that holds a form's CSRF token.
    pub(super) fn needs_csrf(&self) -> bool {
        !matches!(self, Identity::Bearer)
    }

    fn binding(&self) -> &str {
        match self {
            Identity::Session { binding, .. } => binding,
            _ => "anonymous",
        }
    }
}

fn mac(key: &[u8], parts: &[&str]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p.as_bytes());
        mac.update(b"\n");
    }
    mac
}

fn sign(key: &[u8], parts: &[&str]) -> String {
    hex::encode(mac(key, parts).finalize().into_bytes())
}

fn equal(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Access {
    /// Access as configured, for a server listening on `addr`: anonymous access is granted only
    /// when asked for and the address is a loopback one.
    pub fn new(token: Option<SecretString>, allow_anonymous_loopback: bool, addr: &str) -> Self {
        let loopback = addr
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip().is_loopback())
            .unwrap_or_else(|_| addr.starts_with("localhost:"));
        let key = match &token {
            Some(t) => {
                let mut key = [0u8; 32];
                key.copy_from_slice(
                    &mac(t.expose_secret().as_bytes(), &["deskpilot review sessions"])
                        .finalize()
                        .into_bytes(),
                );
                key
            }
            None => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                key
            }
        };
        Self { token, anonymous: allow_anonymous_loopback && loopback, key }
    }

    /// Whether signing in asks for the token (it does not on an anonymous loopback server).
    pub(super) fn asks_token(&self) -> bool {
        !self.anonymous
    }

    /// Whether `presented` is the configured token.
    pub(super) fn token_matches(&self, presented: &str) -> bool {
        self.token.as_ref().is_some_and(|t| equal(presented.trim(), t.expose_secret()))
    }

    /// Who sends `headers`, or `None` when they may not use the page.
    pub(super) fn identify(&self, headers: &HeaderMap) -> Option<Identity> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|b| self.token_matches(b)) {
            return Some(Identity::Bearer);
        }
        if let Some(session) = self.session(headers) {
            return Some(session);
        }
        self.anonymous.then_some(Identity::Anonymous)
    }

    /// The session the cookie holds, if it is ours and current.
    fn session(&self, headers: &HeaderMap) -> Option<Identity> {
        let value = cookie(headers, COOKIE)?;
        let mut parts = value.splitn(3, '.');
        let (expires, name, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if !equal(signature, &sign(&self.key, &["session", expires, name])) {
            return None;
        }
        if expires.parse::<i64>().ok()? < OffsetDateTime::now_utc().unix_timestamp() {
            return None;
        }
        let name = String::from_utf8(hex::decode(name).ok()?).ok()?;
        Some(Identity::Session { name, binding: signature.to_owned() })
    }

    /// The `Set-Cookie` value that signs `name` in; `secure` when the page is served over HTTPS.
    pub(super) fn sign_in(&self, name: &str, secure: bool) -> HeaderValue {
        let expires = (OffsetDateTime::now_utc() + SESSION).unix_timestamp().to_string();
        let name = hex::encode(name);
        let signature = sign(&self.key, &["session", &expires, &name]);
        let secure = if secure { "; Secure" } else { "" };
        let value = format!(
            "{COOKIE}={expires}.{name}.{signature}; Path=/review; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            SESSION.as_secs()
        );
        HeaderValue::from_str(&value).expect("hex and digits make a valid header")
    }

    /// The `Set-Cookie` value that ends a session.
    pub(super) fn sign_out() -> HeaderValue {
        HeaderValue::from_static("deskpilot_review=; Path=/review; Max-Age=0; HttpOnly; SameSite=Strict")
    }

    /// The CSRF token the forms of `who`'s pages carry.
    pub(super) fn csrf(&self, who: &Identity) -> String {
        sign(&self.key, &["csrf", who.binding()])
    }

    /// Whether a form post from `who` is genuine: same origin, with the right CSRF token.
    pub(super) fn form_is_genuine(&self, who: &Identity, headers: &HeaderMap, token: Option<&str>) -> bool {
        if !who.needs_csrf() {
            return true;
        }
        same_origin(headers) && token.is_some_and(|t| equal(t, &self.csrf(who)))
    }
}

/// A cookie's value from the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser says the request comes from the page itself: `Sec-Fetch-Site` where the
/// browser sends it, else `Origin` against `Host`. A request with neither is not a browser's
/// cross-site post (browsers send at least one on every form post).
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| !host.is_empty() && o == host)
}

/// Whether the request reached us over HTTPS (directly or through a proxy that says so).
pub(super) fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// A reviewer's name as records keep it: trimmed, without control characters, at most 64
/// characters; `None` when nothing is left.
pub(super) fn clean_name(raw: &str) -> Option<String> {
    let name: String =
        raw.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect::<String>().trim().to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {pair}")).unwrap());
        h
    }

    #[test]
    fn a_signed_in_session_names_its_reviewer_and_a_forged_one_does_not_pass() {
        let access = Access::new(Some("s3cret".to_owned().into()), false, "0.0.0.0:8080");
        assert_eq!(access.identify(&HeaderMap::new()), None);
        let headers = with_cookie(&access.sign_in("Ana Lima", false));
        let who = access.identify(&headers).unwrap();
        assert_eq!(who.actor(), "Ana Lima");
        // Another name under the same signature, or a cookie from another token, is refused.
        let forged = headers
            .get(header::COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .replace(&hex::encode("Ana Lima"), &hex::encode("Bob"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&forged).unwrap());
        assert_eq!(access.identify(&h), None);
        let other = Access::new(Some("another".to_owned().into()), false, "0.0.0.0:8080");
        assert_eq!(other.identify(&headers), None);
        // The same token on another replica accepts it.
        let replica = Access::new(Some("s3cret".to_owned().into()), false, "0.0.0.0:8080");
        assert_eq!(replica.identify(&headers).unwrap().actor(), "Ana Lima");
    }

    #[test]
    fn forms_need_the_session_s_csrf_token_and_the_same_origin() {
        let access = Access::new(Some("s3cret".to_owned().into()), false, "0.0.0.0:8080");
        let mut headers = with_cookie(&access.sign_in("ana", false));
        headers.insert(header::HOST, HeaderValue::from_static("review.example:8080"));
        let who = access.identify(&headers).unwrap();
        let csrf = access.csrf(&who);
        assert!(access.form_is_genuine(&who, &headers, Some(&csrf)));
        assert!(!access.form_is_genuine(&who, &headers, None));
        assert!(!access.form_is_genuine(&who, &headers, Some("00")));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!access.form_is_genuine(&who, &headers, Some(&csrf)));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://review.example:8080"));
        assert!(access.form_is_genuine(&who, &headers, Some(&csrf)));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!access.form_is_genuine(&who, &headers, Some(&csrf)));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(access.form_is_genuine(&who, &headers, Some(&csrf)));
        headers.remove("sec-fetch-site");
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!access.form_is_genuine(&who, &headers, Some(&csrf)));
        // Scripts presenting the token need no form token.
        assert!(access.form_is_genuine(&Identity::Bearer, &HeaderMap::new(), None));
    }

    #[test]
    fn anonymous_access_is_only_for_loopback_servers() {
        assert_eq!(
            Access::new(None, true, "127.0.0.1:8080").identify(&HeaderMap::new()),
            Some(Identity::Anonymous)
        );
        assert_eq!(
            Access::new(None, true, "[::1]:8080").identify(&HeaderMap::new()),
            Some(Identity::Anonymous)
        );
        assert_eq!(Access::new(None, true, "0.0.0.0:8080").identify(&HeaderMap::new()), None);
        assert_eq!(clean_name("  a\u{7}b  "), Some("ab".to_owned()));
        assert_eq!(clean_name(" \n "), None);
    }
}
