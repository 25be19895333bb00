//! `[[connections]]`: one helpdesk each, with the settings every backend shares plus the backend's
//! own keys, chosen by `backend = "unified" | "zendesk" | "freshdesk" | "intercom" | "servicenow"`.
//!
//! The `backend` key selects a [`BackendConfig`] variant, so a Zendesk connection cannot carry a
//! Unified `region` and a Unified one cannot lack its key. Serde's own internal tagging would do the
//! selection too, but it buffers the table first and its errors then lose the failing key's name; so
//! [`ConnectionConfig`] splits the table itself and lets serde read each part in place.

use std::{collections::BTreeMap, fmt, time::Duration};

use figment::{
    error::Kind,
    value::{Dict, Value},
};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, de::Error as _};

use super::backend::{BACKENDS, BUILT_BACKENDS, BackendConfig};
use super::privacy::PrivacyConfig;
use super::{
    secrets::{EnvVars, resolve_secret},
    validate::is_http_url,
};
use crate::ticketing::PriorityLevel;

/// What deskpilot does with triage decisions on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Write nothing to the helpdesk; store the proposal for review.
    #[default]
    Shadow,
    /// Update the ticket and post the draft as an internal note.
    Apply,
    /// Apply when confidence ≥ `confidence_threshold` and the category is automated, shadow otherwise.
    ApplyIfConfident,
}

impl Mode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shadow => "shadow",
            Self::Apply => "apply",
            Self::ApplyIfConfident => "apply_if_confident",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One helpdesk connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Unique name; for `unified` it is also the Unified.to `connection_id`.
    pub id: String,
    /// What to do with decisions.
    pub mode: Mode,
    /// Minimum confidence for `apply_if_confident` to write (0–1).
    pub confidence_threshold: f64,
    /// Someone checked that notes deskpilot creates through this connection are internal
    /// (agent-only) in the helpdesk; Unified.to does not report a note's visibility.
    pub notes_internal_verified: bool,
    /// Tags deskpilot may propose and write; empty = any (normalised) tag is proposed, and only
    /// tags the helpdesk already uses are written.
    pub allowed_tags: Vec<String>,
    /// Categories `apply_if_confident` may apply at `confidence_threshold`; empty = none.
    pub automated_categories: Vec<String>,
    /// `[connections.automation]`: categories `apply_if_confident` may apply, each at its own
    /// threshold (0–1), which takes precedence over `confidence_threshold`.
    pub automation: BTreeMap<String, f64>,
    /// Assignee (helpdesk user id) per category id.
    pub routing: BTreeMap<String, String>,
    /// The helpdesk's priority word per level (`LOW`, `NORMAL`, `HIGH`, `URGENT`); default lowercase.
    pub priority_values: BTreeMap<PriorityLevel, String>,
    /// Agent user id to post notes as, if the backend needs one.
    pub note_user_id: Option<String>,
    /// Decide with the fallback rules when the LLM fails past its retry budget, instead of
    /// retrying the event later.
    pub rules_fallback: bool,
    /// The secret webhook deliveries of this connection are verified with (Unified.to's workspace
    /// secret, Zendesk's signing secret, Intercom's client secret, or a shared secret); without
    /// one the connection takes no webhooks.
    pub webhook_secret: Option<SecretString>,
    /// Environment variable holding the webhook secret.
    pub webhook_secret_env: Option<String>,
    /// Seconds between polls of the helpdesk's changed tickets; `0` = no polling. Unset: polled
    /// every [`DEFAULT_POLL_INTERVAL`] without a webhook secret, not polled with one.
    pub poll_interval_secs: Option<u64>,
    /// Seconds each poll reaches back before where the last one ended, for helpdesks whose lists
    /// lag behind their writes and for clock skew; unset = [`DEFAULT_POLL_OVERLAP`].
    pub poll_overlap_secs: Option<u64>,
    /// This connection's `privacy = { ... }` over `[privacy]`; `None` = the global settings.
    pub privacy: Option<PrivacyConfig>,
    /// Most US dollars this connection's LLM calls may cost per UTC day; unset = no limit of its own.
    pub daily_budget_usd: Option<f64>,
    /// Most US dollars this connection's LLM calls may cost per UTC calendar month.
    pub monthly_budget_usd: Option<f64>,
    /// The backend and its own settings.
    pub backend: BackendConfig,
}

/// Default polling interval of a connection without a webhook secret.
pub const DEFAULT_POLL_INTERVAL: Duration = crate::ingest::poll::DEFAULT_INTERVAL;
/// Default `poll_overlap_secs`.
pub const DEFAULT_POLL_OVERLAP: Duration = crate::ingest::poll::DEFAULT_OVERLAP;
/// Longest `poll_interval_secs` and `poll_overlap_secs`.
const MAX_POLL_SECS: u64 = 86_400;

/// Default `confidence_threshold`.
pub const DEFAULT_CONFIDENCE_THRESHOLD: f64 = 0.85;

/// The keys every connection takes besides `backend`; the rest belongs to the backend.
const COMMON_KEYS: &[&str] = &[
    "id",
    "mode",
    "confidence_threshold",
    "notes_internal_verified",
    "allowed_tags",
    "rules_fallback",
    "automated_categories",
    "automation",
    "routing",
    "priority_values",
    "note_user_id",
    "webhook_secret",
    "webhook_secret_env",
    "poll_interval_secs",
    "poll_overlap_secs",
    "privacy",
    "daily_budget_usd",
    "monthly_budget_usd",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonFields {
    id: String,
    #[serde(default)]
    mode: Mode,
    #[serde(default = "default_confidence_threshold")]
    confidence_threshold: f64,
    #[serde(default)]
    notes_internal_verified: bool,
    #[serde(default)]
    allowed_tags: Vec<String>,
    #[serde(default)]
    rules_fallback: bool,
    #[serde(default)]
    automated_categories: Vec<String>,
    #[serde(default)]
    automation: BTreeMap<String, f64>,
    #[serde(default)]
    routing: BTreeMap<String, String>,
    #[serde(default)]
    priority_values: BTreeMap<PriorityLevel, String>,
    #[serde(default)]
    note_user_id: Option<String>,
    #[serde(default)]
    webhook_secret: Option<SecretString>,
    #[serde(default)]
    webhook_secret_env: Option<String>,
    #[serde(default)]
    poll_interval_secs: Option<u64>,
    #[serde(default)]
    poll_overlap_secs: Option<u64>,
    #[serde(default)]
    privacy: Option<PrivacyConfig>,
    #[serde(default)]
    daily_budget_usd: Option<f64>,
    #[serde(default)]
    monthly_budget_usd: Option<f64>,
}

fn default_confidence_threshold() -> f64 {
    DEFAULT_CONFIDENCE_THRESHOLD
}

impl ConnectionConfig {
    /// A connection with this id and backend, and the defaults for everything else (shadow mode).
    pub fn new(id: impl Into<String>, backend: BackendConfig) -> Self {
        Self {
            id: id.into(),
            mode: Mode::default(),
            confidence_threshold: DEFAULT_CONFIDENCE_THRESHOLD,
            notes_internal_verified: false,
            allowed_tags: Vec::new(),
            automated_categories: Vec::new(),
            automation: BTreeMap::new(),
            routing: BTreeMap::new(),
            priority_values: BTreeMap::new(),
            note_user_id: None,
            rules_fallback: false,
            webhook_secret: None,
            webhook_secret_env: None,
            poll_interval_secs: None,
            poll_overlap_secs: None,
            privacy: None,
            daily_budget_usd: None,
            monthly_budget_usd: None,
            backend,
        }
    }

    /// Whether a webhook secret is set (by value or by variable), i.e. the connection takes webhooks.
    pub fn takes_webhooks(&self) -> bool {
        self.webhook_secret.as_ref().is_some_and(|s| !secrecy::ExposeSecret::expose_secret(s).is_empty())
            || self.webhook_secret_env.as_deref().is_some_and(|n| !n.is_empty())
    }

    /// How often the helpdesk is polled for changed tickets, or `None` when it is not: the
    /// fallback where no webhooks come (on by default without a webhook secret), and the recovery
    /// path where they do (`poll_interval_secs` set beside a secret).
    pub fn poll_interval(&self) -> Option<Duration> {
        match self.poll_interval_secs {
            Some(0) => None,
            Some(secs) => Some(Duration::from_secs(secs)),
            None => (!self.takes_webhooks()).then_some(DEFAULT_POLL_INTERVAL),
        }
    }

    /// How far each poll reaches back before where the last one ended.
    pub fn poll_overlap(&self) -> Duration {
        self.poll_overlap_secs.map_or(DEFAULT_POLL_OVERLAP, Duration::from_secs)
    }

    /// The webhook secret, given by value or by environment variable; `None` when neither is set.
    pub(super) fn webhook_secret(&self, env: &EnvVars) -> anyhow::Result<Option<SecretString>> {
        if !self.takes_webhooks() {
            return Ok(None);
        }
        resolve_secret(
            "webhook_secret",
            self.webhook_secret.as_ref(),
            self.webhook_secret_env.as_deref(),
            env,
        )
        .map(Some)
        .map_err(|e| e.context(format!("connection `{}`", self.id)))
    }

    /// The credential (key, token or password), given by value or by environment variable.
    pub(super) fn credential(&self, env: &EnvVars) -> anyhow::Result<SecretString> {
        let cred = self.backend.credential();
        resolve_secret(cred.key, cred.value, cred.env, env)
            .map_err(|e| e.context(format!("connection `{}`", self.id)))
    }

    /// What is wrong with this connection beyond types (empty names, both or neither credential).
    pub(super) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut need = |ok: bool, problem: String| {
            if !ok {
                out.push(problem);
            }
        };
        need(!self.id.trim().is_empty(), "`id` must not be empty".into());
        let name = self.backend.name();
        need(
            BUILT_BACKENDS.contains(&name),
            format!(
                "backend `{name}` is not available in this build of deskpilot (it has: {})",
                BUILT_BACKENDS.join(", ")
            ),
        );
        need(!self.id.contains(char::is_whitespace), "`id` must not contain spaces".into());
        need(
            (0.0..=1.0).contains(&self.confidence_threshold),
            format!("confidence_threshold = {} must be between 0 and 1", self.confidence_threshold),
        );
        for (category, threshold) in &self.automation {
            need(
                (0.0..=1.0).contains(threshold),
                format!(
                    "[connections.automation] {category} = {threshold} must be between 0 and 1 \
                     (the confidence from which category `{category}` is applied)"
                ),
            );
        }
        let cred = self.backend.credential();
        let given = |v: Option<&str>| v.is_some_and(|v| !v.is_empty());
        let (by_value, by_env) =
            (given(cred.value.map(secrecy::ExposeSecret::expose_secret)), given(cred.env));
        let key = cred.key;
        need(by_value || by_env, format!("backend `{name}` needs `{key}` or `{key}_env`"));
        need(!(by_value && by_env), format!("set only one of `{key}` and `{key}_env`"));
        need(
            !(self
                .webhook_secret
                .as_ref()
                .is_some_and(|s| !secrecy::ExposeSecret::expose_secret(s).is_empty())
                && self.webhook_secret_env.as_deref().is_some_and(|n| !n.is_empty())),
            "set only one of `webhook_secret` and `webhook_secret_env`".into(),
        );

        if let Some(secs) = self.poll_interval_secs.filter(|s| *s > MAX_POLL_SECS) {
            out.push(format!(
                "poll_interval_secs = {secs} must be at most {MAX_POLL_SECS} (a day); 0 = no polling"
            ));
        }
        if let Some(Err(bad)) = self.privacy.as_ref().map(PrivacyConfig::compiled_patterns) {
            out.extend(bad);
        }
        if let Some(secs) = self.poll_overlap_secs.filter(|s| *s > MAX_POLL_SECS) {
            out.push(format!("poll_overlap_secs = {secs} must be at most {MAX_POLL_SECS} (a day)"));
        }

        let mut non_empty = |value: &str, key: &str, example: &str| {
            if value.trim().is_empty() {
                out.push(format!("backend `{name}` needs `{key}` (e.g. {key} = {example:?})"));
            }
        };
        match &self.backend {
            BackendConfig::Unified(u) => {
                if let Some(url) = &u.base_url {
                    if !is_http_url(url) {
                        out.push(format!("base_url = {url:?} must be an http:// or https:// URL"));
                    }
                    if u.region.is_some() {
                        out.push("set either `base_url` or `region`, not both".into());
                    }
                }
            }
            BackendConfig::Zendesk(z) => super::backend::zendesk_problems(z, &mut out),
            BackendConfig::Freshdesk(f) => match &f.base_url {
                Some(url) if !is_http_url(url) => {
                    out.push(format!("base_url = {url:?} must be an http:// or https:// URL"));
                }
                Some(_) => {}
                None => non_empty(&f.domain, "domain", "acme.freshdesk.com"),
            },
            BackendConfig::Intercom(i) => {
                if let Some(url) = i.base_url.as_deref().filter(|u| !is_http_url(u)) {
                    out.push(format!("base_url = {url:?} must be an http:// or https:// URL"));
                }
                if i.base_url.is_some() && i.region.is_some() {
                    out.push("set either `base_url` or `region`, not both".into());
                }
                if i.admin_id.as_deref().is_some_and(|a| a.trim().is_empty()) {
                    out.push(
                        "admin_id must not be empty (the id of the admin notes are written as, or leave it \
                         out to write as the token's own admin)"
                            .into(),
                    );
                }
            }
            BackendConfig::ServiceNow(s) => super::backend::servicenow_problems(s, &mut out),
        }
        out
    }
}

impl<'de> Deserialize<'de> for ConnectionConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Under figment this keeps every value's source, so errors still name the file.
        let value = <Value as Deserialize>::deserialize(d)?;
        from_value(value).map_err(D::Error::custom)
    }
}

fn from_value(value: Value) -> Result<ConnectionConfig, String> {
    let tag = value.tag();
    let Value::Dict(_, mut dict) = value else {
        return Err(format!(
            "expected a table such as {{ id = \"demo\", backend = \"unified\", ... }}, found {}",
            value.to_actual()
        ));
    };
    // Messages start with the id so a reader can tell `connections[3]` apart from the others.
    let id = dict.get("id").and_then(Value::as_str).map(str::to_owned);
    let at = |msg: String| match &id {
        Some(id) => format!("(id = {id:?}): {msg}"),
        None => msg,
    };

    let mut common = Dict::new();
    for key in COMMON_KEYS {
        if let Some(v) = dict.remove(*key) {
            common.insert((*key).to_owned(), v);
        }
    }
    let common = CommonFields::deserialize(&Value::Dict(tag, common)).map_err(|e| at(explain(&e, None)))?;

    let backend = match dict.remove("backend") {
        Some(Value::String(_, name)) => name,
        Some(other) => {
            return Err(at(format!(
                "`backend` must be a string, one of {}; found {}",
                BACKENDS.join(", "),
                other.to_actual()
            )));
        }
        None => return Err(at(format!("missing key `backend` (one of {})", BACKENDS.join(", ")))),
    };
    // Re-keyed as `{ <backend> = { ...rest } }`: serde then reads the variant's fields in place.
    let mut tagged = Dict::new();
    tagged.insert(backend.clone(), Value::Dict(tag, dict));
    let backend_config =
        BackendConfig::deserialize(&Value::Dict(tag, tagged)).map_err(|e| at(explain(&e, Some(&backend))))?;
    Ok(ConnectionConfig {
        id: common.id,
        mode: common.mode,
        confidence_threshold: common.confidence_threshold,
        notes_internal_verified: common.notes_internal_verified,
        allowed_tags: common.allowed_tags,
        rules_fallback: common.rules_fallback,
        automated_categories: common.automated_categories,
        automation: common.automation,
        routing: common.routing,
        priority_values: common.priority_values,
        note_user_id: common.note_user_id,
        webhook_secret: common.webhook_secret,
        webhook_secret_env: common.webhook_secret_env,
        poll_interval_secs: common.poll_interval_secs,
        poll_overlap_secs: common.poll_overlap_secs,
        privacy: common.privacy,
        daily_budget_usd: common.daily_budget_usd,
        monthly_budget_usd: common.monthly_budget_usd,
        backend: backend_config,
    })
}

/// Words for an error from reading one part of a connection table.
fn explain(e: &figment::Error, backend: Option<&str>) -> String {
    // Inside a backend the first path element is the variant name we added.
    let path: Vec<&str> = e.path.iter().skip(usize::from(backend.is_some())).map(String::as_str).collect();
    let key = path.join(".");
    match (&e.kind, backend) {
        (Kind::UnknownVariant(found, _), Some(_)) if key.is_empty() => {
            format!("unknown backend `{found}`; expected one of {}", BACKENDS.join(", "))
        }
        (Kind::UnknownVariant(found, expected), _) => {
            format!("`{key}`: unknown value `{found}`; expected one of {}", expected.join(", "))
        }
        (Kind::MissingField(field), Some(backend)) => format!("backend `{backend}` needs `{field}`"),
        (Kind::MissingField(field), None) => format!("missing key `{field}`"),
        (Kind::UnknownField(found, expected), Some(backend)) => format!(
            "unknown key `{found}` for backend `{backend}`; its keys are {}, and every connection takes \
             backend, {}",
            expected.join(", "),
            COMMON_KEYS.join(", ")
        ),
        (kind, _) if key.is_empty() => kind.to_string(),
        (kind, _) => format!("`{key}`: {kind}"),
    }
}

#[cfg(test)]
mod tests {
    use figment::{
        Figment,
        providers::{Format, Toml},
    };

    use super::*;

    fn parse(lines: &[&str]) -> Result<ConnectionConfig, String> {
        let value: Value =
            Figment::from(Toml::string(&lines.join("\n"))).extract().map_err(|e| e.to_string())?;
        from_value(value)
    }

    #[test]
    fn common_keys_are_the_common_fields() {
        let c = parse(&[
            r#"id = "x""#,
            r#"backend = "unified""#,
            r#"api_key = "k""#,
            r#"mode = "apply_if_confident""#,
            "confidence_threshold = 0.5",
            "notes_internal_verified = true",
        ])
        .unwrap();
        assert_eq!(c.mode, Mode::ApplyIfConfident);
        assert_eq!(c.confidence_threshold, 0.5);
        assert!(c.notes_internal_verified);
        assert_eq!(c.backend.name(), "unified");
    }

    #[test]
    fn automation_takes_a_threshold_per_category_and_refuses_one_outside_0_to_1() {
        let toml = "[[connections]]\nid = \"x\"\nbackend = \"unified\"\napi_key = \"k\"\n\
                    mode = \"apply_if_confident\"\nautomated_categories = [\"cat-billing\"]\n\n\
                    [connections.automation]\ncat-outage = 0.85\n\"cat-bug\" = 1\n";
        #[derive(Deserialize)]
        struct File {
            connections: Vec<ConnectionConfig>,
        }
        let file: File = Figment::from(Toml::string(toml)).extract().unwrap();
        let c = &file.connections[0];
        assert_eq!(c.automation, BTreeMap::from([("cat-outage".into(), 0.85), ("cat-bug".into(), 1.0)]));
        assert_eq!(c.automated_categories, ["cat-billing"]);
        assert!(c.problems().is_empty(), "{:?}", c.problems());

        let base = [r#"id = "x""#, r#"backend = "unified""#, r#"api_key = "k""#];
        let high = parse(&[&base[..], &[r#"automation = { "cat-outage" = 1.5 }"#]].concat()).unwrap();
        let problems = high.problems();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("[connections.automation] cat-outage = 1.5 must be between 0 and 1")),
            "{problems:?}"
        );
        let e = parse(&[&base[..], &[r#"automation = { "cat-outage" = "high" }"#]].concat()).unwrap_err();
        assert!(e.contains("automation.cat-outage"), "{e}");
    }

    #[test]
    fn backend_keys_stay_with_their_backend() {
        let zd = [r#"id = "zd""#, r#"backend = "zendesk""#, r#"email = "a@b.c""#];
        let e = parse(&[&zd[..], &[r#"region = "eu""#]].concat()).unwrap_err();
        assert!(e.contains("unknown key `region` for backend `zendesk`"), "{e}");
        let e = parse(&zd).unwrap_err();
        assert_eq!(e, r#"(id = "zd"): backend `zendesk` needs `subdomain`"#);
        let e = parse(&[r#"id = "x""#, r#"backend = "zendsk""#]).unwrap_err();
        assert!(e.contains("unknown backend `zendsk`"), "{e}");
        let e =
            parse(&[r#"id = "x""#, r#"backend = "unified""#, r#"category_cache_secs = "soon""#]).unwrap_err();
        assert!(e.contains("`category_cache_secs`: invalid type"), "{e}");
    }

    #[test]
    fn polling_is_the_default_only_without_a_webhook_secret() {
        let base = [r#"id = "x""#, r#"backend = "unified""#, r#"api_key = "k""#];
        let plain = parse(&base).unwrap();
        assert_eq!(
            (plain.poll_interval(), plain.poll_overlap()),
            (Some(DEFAULT_POLL_INTERVAL), DEFAULT_POLL_OVERLAP)
        );
        let hooked = parse(&[&base[..], &[r#"webhook_secret = "s""#]].concat()).unwrap();
        assert_eq!(hooked.poll_interval(), None);
        let both =
            parse(&[&base[..], &[r#"webhook_secret = "s""#, "poll_interval_secs = 300"]].concat()).unwrap();
        assert_eq!(both.poll_interval(), Some(Duration::from_secs(300)));
        let off = parse(&[&base[..], &["poll_interval_secs = 0", "poll_overlap_secs = 5"]].concat()).unwrap();
        assert_eq!((off.poll_interval(), off.poll_overlap()), (None, Duration::from_secs(5)));
        let long = parse(&[&base[..], &["poll_interval_secs = 90000"]].concat()).unwrap();
        assert!(
            long.problems().iter().any(|p| p.contains("poll_interval_secs = 90000 must be at most 86400"))
        );
    }
}
