//! Reading the layers: embedded defaults, the optional file, `DESKPILOT__*` variables; then the LLM
//! key is resolved and the result validated.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Serialized, Toml},
    value::{Dict, Map, Value},
};
use secrecy::ExposeSecret;

use super::{Config, DEFAULTS, DEFAULTS_SOURCE, ENV_PREFIX, ENV_SOURCE, LlmConfig, report, secrets::EnvVars};

/// A provider under another name, so errors say "in the embedded defaults" or name the variable.
struct Named<P> {
    inner: P,
    name: String,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        let mut md = self.inner.metadata();
        md.name = self.name.clone().into();
        md.source = None;
        md
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

impl Config {
    /// Loads from the defaults, `file` and the process environment, then validates.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        // `vars()` panics on a non-UTF-8 variable; such a variable cannot be one of ours anyway.
        let env =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::load_from(file, env)
    }

    /// Loads from the defaults, `file` and the given environment (not the process's), then
    /// validates. The seam tests use.
    pub fn load_from<I, K, V>(file: Option<&Path>, env: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let env: EnvVars = env.into_iter().collect();
        let mut figment =
            Figment::new().merge(Named { inner: Toml::string(DEFAULTS), name: DEFAULTS_SOURCE.to_owned() });
        let mut sources = vec!["embedded defaults".to_owned()];
        if let Some(path) = file {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot read config file `{}`", path.display()))?;
            if !meta.is_file() {
                bail!("config file `{}` is not a file", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
            sources.push(path.display().to_string());
        }
        for (name, value) in env.with_prefix(ENV_PREFIX) {
            let key = name[ENV_PREFIX.len()..].to_ascii_lowercase().replace("__", ".");
            let value: Value = value.parse().unwrap_or_else(|never| match never {});
            figment = figment.merge(Named {
                inner: Serialized::default(&key, value),
                name: format!("{ENV_SOURCE} {name}"),
            });
            sources.push(name.clone());
        }

        let mut config: Config =
            figment.extract().map_err(|e| anyhow!(report::describe(e))).context("invalid configuration")?;
        let base_url_from_defaults =
            figment.find_metadata("llm.base_url").is_some_and(|md| md.name == DEFAULTS_SOURCE);
        config.llm.resolve(base_url_from_defaults, &env);
        config.env = env;
        config.sources = sources;
        config.validate()?;
        Ok(config)
    }
}

impl LlmConfig {
    /// Fills in the key (from `api_key`, `api_key_env` or the environment) and, when only the
    /// defaults set `base_url`, `OPENAI_BASE_URL`.
    fn resolve(&mut self, base_url_from_defaults: bool, env: &EnvVars) {
        if base_url_from_defaults && let Some(url) = env.non_empty("OPENAI_BASE_URL") {
            self.base_url = url.to_owned();
            self.resolved.base_url_from_env = true;
        }
        let explicit = self.api_key.as_ref().filter(|k| !k.expose_secret().is_empty());
        let named = self.api_key_env.as_deref().filter(|n| !n.is_empty());
        (self.resolved.key, self.resolved.origin) = match (explicit, named) {
            (Some(key), _) => (Some(key.clone()), "llm.api_key".to_owned()),
            (None, Some(name)) => match env.non_empty(name) {
                Some(key) => (Some(key.into()), format!("environment variable {name}")),
                None => (None, format!("environment variable {name} is not set")),
            },
            (None, None) => (None, "neither llm.api_key nor llm.api_key_env is set".to_owned()),
        };
    }
}
