//! Secrets and the strings that may carry them: credentials given by value or by environment
//! variable, connection strings with passwords, and the environment snapshot they resolve from.

use std::{collections::BTreeMap, fmt, sync::Arc};

use anyhow::bail;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A connection string that may carry a password: `Debug` and [`Dsn::redacted`] hide it.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Dsn(String);

impl From<String> for Dsn {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl Dsn {
    /// The full string, password included. Pass it to the client; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The string with any password replaced by `***` and a query naming a secret dropped.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// The one redactor of URLs and connection strings, shared with every HTTP client.
pub use crate::http::redact_url;

/// A snapshot of the environment, for `*_env` credentials and the `OPENAI_*` fallbacks.
#[derive(Clone, Default)]
pub(crate) struct EnvVars(Arc<BTreeMap<String, String>>);

impl EnvVars {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The variables whose name starts with `prefix`, in name order.
    pub(super) fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a String)> {
        self.0.iter().filter(move |(k, _)| k.starts_with(prefix))
    }

    /// The variable's value, treating an empty one as unset.
    pub(super) fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EnvVars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(Arc::new(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect()))
    }
}

impl fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvVars({} variables)", self.0.len())
    }
}

/// Resolves a credential given by value (`key`) or by environment variable (`key_env`).
pub(super) fn resolve_secret(
    key: &str,
    value: Option<&SecretString>,
    env_name: Option<&str>,
    env: &EnvVars,
) -> anyhow::Result<SecretString> {
    if let Some(v) = value.filter(|v| !v.expose_secret().is_empty()) {
        return Ok(v.clone());
    }
    let Some(name) = env_name.filter(|n| !n.is_empty()) else {
        bail!("set `{key}` or `{key}_env`");
    };
    match env.get(name) {
        Some(v) if !v.is_empty() => Ok(SecretString::from(v)),
        Some(_) => bail!("{key}_env = {name:?} but that environment variable is empty"),
        None => bail!("{key}_env = {name:?} but that environment variable is not set"),
    }
}
