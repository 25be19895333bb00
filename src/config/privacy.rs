//! `[privacy]` and a connection's `privacy = { ... }`: what personal data is kept from the LLM.
//!
//! A connection's table overrides the global one key by key: its `mode` and `kinds` replace the
//! global ones when set, and its `patterns` are added to the global patterns.

use serde::Deserialize;

use crate::triage::privacy::{Kind, Mode, Pattern};

/// Privacy settings, globally (`[privacy]`) or for one connection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// `off`, `pseudonymise` (the default: placeholders, put back into the draft) or `redact`
    /// (the kind alone, nothing put back); unset on a connection = the global mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The built-in kinds detected: `email`, `phone`, `name`, `card`, `iban`, `ip`, `url`,
    /// `address`; unset = every kind (globally) or the global list (on a connection).
    #[serde(default)]
    pub kinds: Option<Vec<Kind>>,
    /// A team's own values (order or account numbers), each a name and a regex.
    #[serde(default)]
    pub patterns: Vec<PatternConfig>,
}

/// One of a team's own patterns: `{ name = "order", regex = '\bORD-\d{6,}\b' }` gives `[ORDER_1]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// The placeholder's word, lowercase in reports (letters, digits, `_`).
    pub name: String,
    /// The regex (Rust `regex` syntax).
    pub regex: String,
}

impl PrivacyConfig {
    /// `conn`'s settings over these (the global ones).
    pub fn with(&self, conn: Option<&PrivacyConfig>) -> PrivacyConfig {
        let Some(conn) = conn else { return self.clone() };
        PrivacyConfig {
            mode: conn.mode.or(self.mode),
            kinds: conn.kinds.clone().or_else(|| self.kinds.clone()),
            patterns: self.patterns.iter().chain(&conn.patterns).cloned().collect(),
        }
    }

    /// The mode, `pseudonymise` when unset.
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or_default()
    }

    /// The kinds detected, every kind when unset.
    pub fn kinds(&self) -> Vec<Kind> {
        self.kinds.clone().unwrap_or_else(|| Kind::ALL.to_vec())
    }

    /// The patterns compiled, or what is wrong with them.
    pub fn compiled_patterns(&self) -> Result<Vec<Pattern>, Vec<String>> {
        let mut patterns = Vec::new();
        let mut problems = Vec::new();
        for p in &self.patterns {
            match Pattern::new(&p.name, &p.regex) {
                Ok(p) => patterns.push(p),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if problems.is_empty() { Ok(patterns) } else { Err(problems) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> PrivacyConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_connection_overrides_key_by_key_and_adds_patterns() {
        let global = parse(
            r#"
            kinds = ["email", "phone"]
            patterns = [{ name = "order", regex = '\bORD-\d+' }]
            "#,
        );
        let conn = parse(
            r#"
            mode = "redact"
            patterns = [{ name = "account", regex = '\bACC\d+' }]
            "#,
        );
        let merged = global.with(Some(&conn));
        assert_eq!(merged.mode(), Mode::Redact);
        assert_eq!(merged.kinds(), vec![Kind::Email, Kind::Phone]);
        let names: Vec<_> = merged.patterns.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["order", "account"]);
        assert_eq!(global.with(None).mode(), Mode::Pseudonymise);
        assert_eq!(PrivacyConfig::default().kinds(), Kind::ALL.to_vec());
    }

    #[test]
    fn bad_patterns_and_unknown_kinds_are_named() {
        let bad = parse(r#"patterns = [{ name = "email", regex = "x" }, { name = "acct", regex = "(" }]"#);
        let problems = bad.compiled_patterns().unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].contains("privacy pattern `acct`: the regex does not compile"), "{problems:?}");
        let e = toml::from_str::<PrivacyConfig>(r#"kinds = ["emails"]"#).unwrap_err().to_string();
        assert!(e.contains("unknown variant `emails`"), "{e}");
    }
}
