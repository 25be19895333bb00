//! The helpdesk backends a connection can name, each with its own keys and credential.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::ticketing::{categories::DEFAULT_CATEGORY_TTL, freshdesk::FreshdeskClient, unified::Region};

/// The backend of a connection and its own keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendConfig {
    /// Unified.to's Ticketing API (or the sandbox, which speaks it).
    Unified(UnifiedConfig),
    /// Zendesk Support API.
    Zendesk(ZendeskConfig),
    /// Freshdesk API v2.
    Freshdesk(FreshdeskConfig),
    /// Intercom API.
    Intercom(IntercomConfig),
    /// ServiceNow Table API.
    #[serde(rename = "servicenow")]
    ServiceNow(ServiceNowConfig),
}

/// The `backend` values, for messages.
pub const BACKENDS: &[&str] = &["unified", "zendesk", "freshdesk", "intercom", "servicenow"];

/// The backends this build has a client for; a connection on another one is rejected when the
/// configuration is loaded, before anything tries to reach it.
pub const BUILT_BACKENDS: &[&str] = &["unified", "freshdesk"];

/// `backend = "unified"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnifiedConfig {
    /// API base URL (the sandbox, a proxy); when unset, the `region`'s URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Unified.to region (`us`, `eu`, `au`; default `us`); not together with `base_url`.
    #[serde(default)]
    pub region: Option<Region>,
    /// The workspace API key (sent as `Authorization: Bearer`).
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// How long the category list is cached, seconds (0 = never cached).
    #[serde(default = "default_category_cache_secs")]
    pub category_cache_secs: u64,
}

fn default_category_cache_secs() -> u64 {
    DEFAULT_CATEGORY_TTL.as_secs()
}

impl UnifiedConfig {
    /// The URL the client talks to.
    pub fn base_url(&self) -> &str {
        self.base_url.as_deref().unwrap_or_else(|| self.region.unwrap_or_default().base_url())
    }

    /// How long the category list is cached.
    pub fn category_cache(&self) -> Duration {
        Duration::from_secs(self.category_cache_secs)
    }
}

/// `backend = "zendesk"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskConfig {
    /// The account's subdomain: `acme` for `acme.zendesk.com`.
    pub subdomain: String,
    /// The agent email the API token belongs to.
    pub email: String,
    /// The API token.
    #[serde(default)]
    pub api_token: Option<SecretString>,
    /// Environment variable holding the API token.
    #[serde(default)]
    pub api_token_env: Option<String>,
}

/// `backend = "freshdesk"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshdeskConfig {
    /// The helpdesk domain, e.g. `acme.freshdesk.com` (or `acme`); not needed with `base_url`.
    #[serde(default)]
    pub domain: String,
    /// The helpdesk's address when it is not `https://{domain}` (a proxy, tests, the sandbox's
    /// `/freshdesk`); `/api/v2` is added to it.
    #[serde(default)]
    pub base_url: Option<String>,
    /// How long the category list (the ticket type's choices) is cached, seconds (0 = never).
    #[serde(default = "default_category_cache_secs")]
    pub category_cache_secs: u64,
    /// The agent API key.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

impl FreshdeskConfig {
    /// The helpdesk's address (without `/api/v2`).
    pub fn base_url(&self) -> String {
        self.base_url.clone().unwrap_or_else(|| FreshdeskClient::domain_url(&self.domain))
    }

    /// How long the category list is cached.
    pub fn category_cache(&self) -> Duration {
        Duration::from_secs(self.category_cache_secs)
    }
}

/// `backend = "intercom"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntercomConfig {
    /// The access token.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// Environment variable holding the access token.
    #[serde(default)]
    pub access_token_env: Option<String>,
    /// API base URL for a non-US workspace (`https://api.eu.intercom.io`, `https://api.au.intercom.io`).
    #[serde(default)]
    pub base_url: Option<String>,
}

/// `backend = "servicenow"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNowConfig {
    /// The instance name: `acme` for `acme.service-now.com`.
    pub instance: String,
    /// The integration user.
    pub username: String,
    /// Its password.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// A credential slot: its key name, the value if given, the variable name if given.
pub(super) struct Credential<'a> {
    pub(super) key: &'static str,
    pub(super) value: Option<&'a SecretString>,
    pub(super) env: Option<&'a str>,
}

impl BackendConfig {
    /// The `backend` value.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Unified(_) => "unified",
            Self::Zendesk(_) => "zendesk",
            Self::Freshdesk(_) => "freshdesk",
            Self::Intercom(_) => "intercom",
            Self::ServiceNow(_) => "servicenow",
        }
    }

    /// Where the helpdesk is, for summaries (never carries a secret).
    pub fn location(&self) -> String {
        match self {
            Self::Unified(u) => u.base_url().to_owned(),
            Self::Zendesk(z) => format!("{}.zendesk.com", z.subdomain),
            Self::Freshdesk(f) => f.base_url(),
            Self::Intercom(i) => i.base_url.clone().unwrap_or_else(|| "https://api.intercom.io".into()),
            Self::ServiceNow(s) => format!("{}.service-now.com", s.instance),
        }
    }

    /// Whether the backend's client posts every note as internal and its notes report their
    /// visibility, so drafts need no operator check (`notes_internal_verified`).
    pub fn notes_always_internal(&self) -> bool {
        matches!(self, Self::Freshdesk(_))
    }

    pub(super) fn credential(&self) -> Credential<'_> {
        let (key, value, env) = match self {
            Self::Unified(u) => ("api_key", &u.api_key, &u.api_key_env),
            Self::Zendesk(z) => ("api_token", &z.api_token, &z.api_token_env),
            Self::Freshdesk(f) => ("api_key", &f.api_key, &f.api_key_env),
            Self::Intercom(i) => ("access_token", &i.access_token, &i.access_token_env),
            Self::ServiceNow(s) => ("password", &s.password, &s.password_env),
        };
        Credential { key, value: value.as_ref(), env: env.as_deref() }
    }
}
