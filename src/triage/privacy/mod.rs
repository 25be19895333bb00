//! Personal data kept from the LLM: detected in the ticket's texts and the customer's name,
//! replaced by stable placeholders (`[EMAIL_1]`, `[PHONE_1]`, `[NAME_1]`, …) before the prompt
//! is rendered, and put back into the draft reply afterwards.
//!
//! Within one ticket the same value gets the same placeholder everywhere (an email in any letter
//! case, a phone with or without its country code), so the model can still tell "the same
//! address" from "two different cards". The mapping lives only as long as one triage attempt: it
//! is rebuilt from the ticket on a retry, never logged (its `Debug` shows counts only) and never
//! stored; reports carry the kinds and how many values of each, never a value.
//!
//! Only the ticket's part of the prompt changes: the system message (instructions, categories)
//! stays byte-identical for every ticket of a connection, so providers' prompt caching applies.
//!
//! `detect` finds values, `checks` holds the Luhn and IBAN checksums, `customer` matches the
//! customer record's own values, `pseudonyms` replaces and restores.

mod checks;
mod customer;
mod detect;
mod pseudonyms;
#[cfg(test)]
mod tests;

use std::{collections::BTreeSet, fmt};

use regex::Regex;
use serde::{Deserialize, Serialize};

pub use pseudonyms::{PrivacyReport, Pseudonymiser, Pseudonyms, Restored};

use crate::ticketing::Customer;

/// What happens to personal data before the prompt is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Sent as it is.
    Off,
    /// Replaced by numbered placeholders, which are put back into the draft.
    #[default]
    #[serde(alias = "pseudonymize")]
    Pseudonymise,
    /// Replaced by the kind alone (`[EMAIL]`); nothing is put back.
    Redact,
}

impl Mode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Pseudonymise => "pseudonymise",
            Self::Redact => "redact",
        }
    }
}

/// A kind of personal data the built-in detectors find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Email addresses.
    Email,
    /// Phone numbers in international and common national formats.
    Phone,
    /// The customer's own name, from the customer record.
    Name,
    /// Payment card numbers (Luhn-checked).
    Card,
    /// IBANs (mod-97 checked).
    Iban,
    /// IPv4 and IPv6 addresses.
    Ip,
    /// URLs with credentials or a token in them.
    Url,
    /// Street addresses with a house number, with the postal code and town that follow.
    Address,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 8] =
        [Self::Email, Self::Phone, Self::Name, Self::Card, Self::Iban, Self::Ip, Self::Url, Self::Address];

    /// The config spelling (`email`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Name => "name",
            Self::Card => "card",
            Self::Iban => "iban",
            Self::Ip => "ip",
            Self::Url => "url",
            Self::Address => "address",
        }
    }

    /// The placeholder's word (`EMAIL`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Phone => "PHONE",
            Self::Name => "NAME",
            Self::Card => "CARD",
            Self::Iban => "IBAN",
            Self::Ip => "IP",
            Self::Url => "URL",
            Self::Address => "ADDRESS",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A team's own pattern (order or account numbers), with the name its placeholders carry.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// Lowercase name (`order`); placeholders are `[ORDER_1]`.
    name: String,
    label: String,
    regex: Regex,
}

impl Pattern {
    /// A pattern named `name` (letters, digits, `_`; starting with a letter; not a built-in kind).
    pub fn new(name: &str, regex: &str) -> Result<Self, PrivacyError> {
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(PrivacyError::PatternName { name: name.to_owned() });
        }
        let label = name.to_ascii_uppercase();
        if Kind::ALL.iter().any(|k| k.label() == label) {
            return Err(PrivacyError::PatternName { name: name.to_owned() });
        }
        let regex = Regex::new(regex)
            .map_err(|e| PrivacyError::PatternRegex { name: name.to_owned(), detail: e.to_string() })?;
        Ok(Self { name: name.to_ascii_lowercase(), label, regex })
    }

    /// The name as reports show it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A privacy setting that cannot work.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PrivacyError {
    /// A pattern's name cannot be a placeholder's word.
    #[error(
        "privacy pattern name `{name}` is not usable: use letters, digits and `_`, starting with a letter, \
         and not a built-in kind (email, phone, name, card, iban, ip, url, address)"
    )]
    PatternName {
        /// The name.
        name: String,
    },
    /// A pattern's regex does not compile.
    #[error("privacy pattern `{name}`: the regex does not compile: {detail}")]
    PatternRegex {
        /// The pattern's name.
        name: String,
        /// The regex crate's message.
        detail: String,
    },
}

/// What is kept from the LLM on one connection.
#[derive(Debug, Clone)]
pub struct Privacy {
    /// Off, pseudonymise or redact.
    pub mode: Mode,
    /// The built-in kinds detected.
    pub kinds: BTreeSet<Kind>,
    /// The team's own patterns, detected before the built-in kinds.
    pub patterns: Vec<Pattern>,
}

impl Default for Privacy {
    /// Pseudonymise every built-in kind.
    fn default() -> Self {
        Self { mode: Mode::Pseudonymise, kinds: Kind::ALL.into_iter().collect(), patterns: Vec::new() }
    }
}

impl Privacy {
    /// Sends everything as it is.
    pub fn off() -> Self {
        Self { mode: Mode::Off, ..Self::default() }
    }

    /// A pseudonymiser for one ticket whose customer record is `customer`.
    pub fn pseudonymiser(&self, customer: Option<&Customer>) -> Pseudonymiser<'_> {
        Pseudonymiser::new(self, customer)
    }
}
