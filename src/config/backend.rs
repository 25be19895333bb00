//! The helpdesk backends a connection can name, each with its own keys and credential.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::ticketing::{
    categories::DEFAULT_CATEGORY_TTL, freshdesk::FreshdeskClient, servicenow::ServiceNowClient,
    unified::Region,
};

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
pub const BUILT_BACKENDS: &[&str] = &["unified", "zendesk", "freshdesk", "intercom", "servicenow"];

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
        self.base_url
            .as_deref()
            .unwrap_or_else(|| crate::ticketing::unified::region_url(self.region.unwrap_or_default()))
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
    /// API base URL (a proxy, the sandbox's `/zendesk`); when unset, `https://{subdomain}.zendesk.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The agent email the API token belongs to (API token auth).
    #[serde(default)]
    pub email: Option<String>,
    /// The API token (sent as basic auth `{email}/token`).
    #[serde(default)]
    pub api_token: Option<SecretString>,
    /// Environment variable holding the API token.
    #[serde(default)]
    pub api_token_env: Option<String>,
    /// An OAuth access token (sent as `Authorization: Bearer`), instead of an API token.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// Environment variable holding the OAuth access token.
    #[serde(default)]
    pub access_token_env: Option<String>,
    /// How changed tickets are listed: `search` (any agent; default) or `incremental` (admins).
    #[serde(default)]
    pub ticket_export: ZendeskTicketExport,
    /// What plays category: `field` (a dropdown field's options), `groups` or `forms`; default
    /// `field` when `category_field_id` is set, else `groups`.
    #[serde(default)]
    pub category_source: Option<ZendeskCategorySource>,
    /// The id of the dropdown (tagger) ticket field whose options are the categories.
    #[serde(default)]
    pub category_field_id: Option<u64>,
    /// How long the category list is cached, seconds (0 = never cached).
    #[serde(default = "default_category_cache_secs")]
    pub category_cache_secs: u64,
}

/// `ticket_export` of a Zendesk connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZendeskTicketExport {
    /// `/api/v2/search/export`.
    #[default]
    Search,
    /// `/api/v2/incremental/tickets/cursor` (admin credentials).
    Incremental,
}

/// `category_source` of a Zendesk connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZendeskCategorySource {
    /// The options of the dropdown field `category_field_id`.
    Field,
    /// Groups.
    Groups,
    /// Ticket forms.
    Forms,
}

impl ZendeskConfig {
    /// The URL the client talks to.
    pub fn base_url(&self) -> String {
        self.base_url.clone().unwrap_or_else(|| format!("https://{}.zendesk.com", self.subdomain))
    }

    /// Whether the credential is an OAuth access token rather than an API token.
    pub fn uses_oauth(&self) -> bool {
        self.access_token.is_some() || self.access_token_env.as_deref().is_some_and(|n| !n.is_empty())
    }

    /// The category source, with its default.
    pub fn category_source(&self) -> ZendeskCategorySource {
        self.category_source.unwrap_or(if self.category_field_id.is_some() {
            ZendeskCategorySource::Field
        } else {
            ZendeskCategorySource::Groups
        })
    }

    /// How long the category list is cached.
    pub fn category_cache(&self) -> Duration {
        Duration::from_secs(self.category_cache_secs)
    }
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
    /// The access token (sent as `Authorization: Bearer`).
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// Environment variable holding the access token.
    #[serde(default)]
    pub access_token_env: Option<String>,
    /// The workspace's region (`us`, `eu`, `au`; default `us`); not together with `base_url`.
    #[serde(default)]
    pub region: Option<Region>,
    /// API base URL (a proxy, the sandbox's `/intercom`); when unset, the `region`'s URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The admin that notes and tags are written as; when unset, the token's own (`GET /me`).
    #[serde(default)]
    pub admin_id: Option<String>,
    /// How long the category list (the ticket types) is cached, seconds (0 = never cached).
    #[serde(default = "default_category_cache_secs")]
    pub category_cache_secs: u64,
}

impl IntercomConfig {
    /// The URL the client talks to.
    pub fn base_url(&self) -> String {
        self.base_url.clone().unwrap_or_else(|| {
            crate::ticketing::intercom::region_url(self.region.unwrap_or_default()).to_owned()
        })
    }

    /// How long the category list is cached.
    pub fn category_cache(&self) -> Duration {
        Duration::from_secs(self.category_cache_secs)
    }
}

/// `backend = "servicenow"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNowConfig {
    /// The instance name: `acme` for `acme.service-now.com`; not needed with `base_url`.
    #[serde(default)]
    pub instance: String,
    /// The instance's address when it is not `https://{instance}.service-now.com` (a proxy,
    /// tests, the sandbox's `/servicenow`); `/api/now` is added to it.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The integration user (basic auth, with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Its password.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// An OAuth access token (sent as `Authorization: Bearer`), instead of a user and password.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// Environment variable holding the OAuth access token.
    #[serde(default)]
    pub access_token_env: Option<String>,
    /// How long the category list (the incident category's choices) is cached, seconds (0 = never).
    #[serde(default = "default_category_cache_secs")]
    pub category_cache_secs: u64,
}

impl ServiceNowConfig {
    /// The instance's address (without `/api/now`).
    pub fn base_url(&self) -> String {
        self.base_url.clone().unwrap_or_else(|| ServiceNowClient::instance_url(&self.instance))
    }

    /// Whether the credential is an OAuth access token rather than a user's password.
    pub fn uses_oauth(&self) -> bool {
        self.access_token.is_some() || self.access_token_env.as_deref().is_some_and(|n| !n.is_empty())
    }

    /// How long the category list is cached.
    pub fn category_cache(&self) -> Duration {
        Duration::from_secs(self.category_cache_secs)
    }
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
            Self::Zendesk(z) => z.base_url(),
            Self::Freshdesk(f) => f.base_url(),
            Self::Intercom(i) => i.base_url(),
            Self::ServiceNow(s) => s.base_url(),
        }
    }

    /// Whether the backend's client posts every note as internal and its notes report their
    /// visibility, so drafts need no operator check (`notes_internal_verified`).
    pub fn notes_always_internal(&self) -> bool {
        matches!(self, Self::Zendesk(_) | Self::Freshdesk(_) | Self::Intercom(_) | Self::ServiceNow(_))
    }

    pub(super) fn credential(&self) -> Credential<'_> {
        let (key, value, env) = match self {
            Self::Unified(u) => ("api_key", &u.api_key, &u.api_key_env),
            Self::Zendesk(z) if z.uses_oauth() => ("access_token", &z.access_token, &z.access_token_env),
            Self::Zendesk(z) => ("api_token", &z.api_token, &z.api_token_env),
            Self::Freshdesk(f) => ("api_key", &f.api_key, &f.api_key_env),
            Self::Intercom(i) => ("access_token", &i.access_token, &i.access_token_env),
            Self::ServiceNow(s) if s.uses_oauth() => ("access_token", &s.access_token, &s.access_token_env),
            Self::ServiceNow(s) => ("password", &s.password, &s.password_env),
        };
        Credential { key, value: value.as_ref(), env: env.as_deref() }
    }
}

/// What is wrong with a Zendesk connection's own keys.
pub(super) fn zendesk_problems(z: &ZendeskConfig, out: &mut Vec<String>) {
    use secrecy::ExposeSecret;
    if z.subdomain.trim().is_empty() {
        out.push("backend `zendesk` needs `subdomain` (e.g. subdomain = \"acme\")".into());
    }
    if z.subdomain.contains('.') {
        out.push(format!(
            "subdomain = {:?} must be the bare subdomain (`acme` for acme.zendesk.com)",
            z.subdomain
        ));
    }
    if let Some(url) = z.base_url.as_deref().filter(|u| !super::validate::is_http_url(u)) {
        out.push(format!("base_url = {url:?} must be an http:// or https:// URL"));
    }
    let token_given = z.api_token.as_ref().is_some_and(|t| !t.expose_secret().is_empty())
        || z.api_token_env.as_deref().is_some_and(|n| !n.is_empty());
    if z.uses_oauth() && token_given {
        out.push(
            "set either an API token (`api_token`, `email`) or an OAuth `access_token`, not both".into(),
        );
    }
    if !z.uses_oauth() && z.email.as_deref().is_none_or(|e| e.trim().is_empty()) {
        out.push(
            "backend `zendesk` needs `email` with an API token (the agent the token belongs to, e.g. \
             email = \"agent@acme.com\"), or an OAuth `access_token` instead"
                .into(),
        );
    }
    match (z.category_source(), z.category_field_id) {
        (ZendeskCategorySource::Field, None) => out.push(
            "category_source = \"field\" needs `category_field_id` (the id of the dropdown ticket field \
             whose options are the categories)"
                .into(),
        ),
        (ZendeskCategorySource::Groups | ZendeskCategorySource::Forms, Some(_)) => out.push(
            "category_field_id is only read with category_source = \"field\"; remove one of them".into(),
        ),
        _ => {}
    }
}

/// What is wrong with a ServiceNow connection's own keys.
pub(super) fn servicenow_problems(s: &ServiceNowConfig, out: &mut Vec<String>) {
    use secrecy::ExposeSecret;
    match s.base_url.as_deref() {
        Some(url) if !super::validate::is_http_url(url) => {
            out.push(format!("base_url = {url:?} must be an http:// or https:// URL"));
        }
        Some(_) => {}
        None if s.instance.trim().is_empty() => out.push(
            "backend `servicenow` needs `instance` (e.g. instance = \"acme\" for acme.service-now.com) \
             or `base_url`"
                .into(),
        ),
        None => {}
    }
    let password_given = s.password.as_ref().is_some_and(|p| !p.expose_secret().is_empty())
        || s.password_env.as_deref().is_some_and(|n| !n.is_empty());
    if s.uses_oauth() && password_given {
        out.push(
            "set either a user's `password` (with `username`) or an OAuth `access_token`, not both".into(),
        );
    }
    if !s.uses_oauth() && s.username.as_deref().is_none_or(|u| u.trim().is_empty()) {
        out.push(
            "backend `servicenow` needs `username` with a password (the integration user, e.g. \
             username = \"deskpilot.integration\"), or an OAuth `access_token` instead"
                .into(),
        );
    }
}
