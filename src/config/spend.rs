//! Which models answer: `[llm.escalation]`, the stronger model for the hard cases.

use secrecy::SecretString;
use serde::Deserialize;

use super::{Config, secrets::resolve_secret, validate::is_http_url};

/// `[llm.escalation]`: a stronger model asked when the configured model's confidence is below
/// `below_confidence` or its answer is still invalid after its repair.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// The stronger model's name.
    pub model: String,
    /// Answers less confident than this (0–1) go to the stronger model.
    pub below_confidence: f64,
    /// Its OpenAI-compatible base URL; unset = `[llm] base_url`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Its API key; unset (with `api_key_env`) = `[llm]`'s key when `base_url` is unset, none
    /// otherwise.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// The environment variable holding its API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

impl Config {
    /// The stronger model's base URL and key: its own when set, else `[llm]`'s.
    pub fn escalation_endpoint(&self) -> anyhow::Result<Option<(String, Option<SecretString>)>> {
        let Some(e) = &self.llm.escalation else { return Ok(None) };
        let own_key = e.api_key.is_some() || e.api_key_env.as_deref().is_some_and(|n| !n.is_empty());
        let key = match (&e.base_url, own_key) {
            (_, true) => Some(resolve_secret(
                "llm.escalation.api_key",
                e.api_key.as_ref(),
                e.api_key_env.as_deref(),
                &self.env,
            )?),
            (None, false) => self.llm.api_key().cloned(),
            (Some(_), false) => None,
        };
        Ok(Some((e.base_url.clone().unwrap_or_else(|| self.llm.base_url.clone()), key)))
    }

    /// What is wrong with the escalation.
    pub(super) fn spend_problems(&self) -> Vec<String> {
        let llm = &self.llm;
        let mut out = Vec::new();
        if let Some(e) = &llm.escalation {
            if e.model.trim().is_empty() {
                out.push("llm.escalation.model must name the stronger model (e.g. \"gpt-4o\")".into());
            }
            if !(e.below_confidence > 0.0 && e.below_confidence <= 1.0) {
                out.push(format!(
                    "llm.escalation.below_confidence = {} must be above 0 and at most 1 (answers less \
                     confident than this go to the stronger model)",
                    e.below_confidence
                ));
            }
            if let Some(url) = e.base_url.as_deref().filter(|u| !is_http_url(u)) {
                out.push(format!("llm.escalation.base_url = {url:?} must be an http:// or https:// URL"));
            }
            if e.api_key.is_some() && e.api_key_env.as_deref().is_some_and(|n| !n.is_empty()) {
                out.push("set only one of llm.escalation.api_key and llm.escalation.api_key_env".into());
            }
        }

        out
    }
}
