//! Replacing found values by placeholders, and putting them back into a draft.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    fmt::{self, Write as _},
    ops::Range,
    sync::LazyLock,
};

use regex::Regex;
use serde::Serialize;

use super::{
    Kind, Mode, Privacy,
    customer::{Needles, fold},
    detect::{KindSet, Label, detect},
};
use crate::ticketing::Customer;

/// What pseudonymisation did for one triage: kinds and counts, never values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrivacyReport {
    /// The mode applied.
    pub mode: Mode,
    /// Distinct values replaced, per kind (`email`, `phone`, … or a pattern's name).
    pub replaced: BTreeMap<String, usize>,
    /// Places in the prompt where a value was replaced.
    pub occurrences: usize,
    /// Placeholders in the draft that were put back to their values.
    pub restored: usize,
    /// Placeholders in the draft that stand for no value of the ticket: left as written.
    pub invented: Vec<String>,
}

/// Replaces personal data in one ticket's texts, keeping the mapping for [`Pseudonyms::restore`].
pub struct Pseudonymiser<'a> {
    privacy: &'a Privacy,
    kinds: KindSet,
    needles: Needles,
    map: Pseudonyms,
}

impl<'a> Pseudonymiser<'a> {
    pub(super) fn new(privacy: &'a Privacy, customer: Option<&Customer>) -> Self {
        let needles = if privacy.mode == Mode::Off { Needles::default() } else { Needles::of(customer) };
        let labels = privacy.patterns.iter().map(|p| p.label.clone()).collect();
        let map = Pseudonyms { mode: privacy.mode, labels, ..Pseudonyms::default() };
        Self { privacy, kinds: KindSet::of(&privacy.kinds), needles, map }
    }

    /// Whether anything is replaced (the mode is not `off`).
    pub fn is_active(&self) -> bool {
        self.privacy.mode != Mode::Off
    }

    /// `text` with every value found replaced by its placeholder.
    pub fn text(&mut self, text: &str) -> String {
        let mut text = text.to_owned();
        self.replace(&mut text);
        text
    }

    /// Replaces every value found in `text` by its placeholder, in place (most texts have none,
    /// and are then neither copied nor reallocated).
    pub fn replace(&mut self, text: &mut String) {
        if self.privacy.mode == Mode::Off || text.is_empty() {
            return;
        }
        if let Cow::Owned(disarmed) = self.disarm(text) {
            *text = disarmed;
        }
        let found = detect(text, self.privacy, self.kinds, &self.needles);
        if found.is_empty() {
            return;
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for f in found {
            out.push_str(&text[at..f.range.start]);
            self.placeholder(f.label, f.key, &text[f.range.clone()], &mut out);
            at = f.range.end;
        }
        out.push_str(&text[at..]);
        *text = out;
    }

    /// `text` with look-alikes of placeholders the ticket's author wrote (`[EMAIL_1]`) turned into
    /// `(EMAIL_1)`: only placeholders deskpilot made are put back into the draft, and a written one
    /// must not stand for a real value there, nor be mistaken for one by the model.
    fn disarm<'t>(&self, text: &'t str) -> Cow<'t, str> {
        // Most texts have no `[` before a capital letter; only those are searched with the pattern.
        let b = text.as_bytes();
        if !memchr::memchr_iter(b'[', b).any(|i| b.get(i + 1).is_some_and(u8::is_ascii_uppercase)) {
            return Cow::Borrowed(text);
        }
        PLACEHOLDER.replace_all(text, |c: &regex::Captures<'_>| {
            if self.map.is_label(&c[1]) { format!("({}_{})", &c[1], &c[2]) } else { c[0].to_owned() }
        })
    }

    /// Where values are found in `text`, with their kind (`email`, … or a pattern's name),
    /// without replacing anything: for measuring the detectors.
    pub fn find(&self, text: &str) -> Vec<(String, Range<usize>)> {
        if !self.is_active() {
            return Vec::new();
        }
        let kind = |label| match label {
            Label::Kind(k) => k.as_str().to_owned(),
            Label::Pattern(i) => self.privacy.patterns[i].name.clone(),
        };
        detect(text, self.privacy, self.kinds, &self.needles)
            .into_iter()
            .map(|f| (kind(f.label), f.range))
            .collect()
    }

    /// The customer's display name as a whole: the name's placeholder when names are replaced.
    pub fn name(&mut self, name: &str) -> String {
        if self.privacy.mode == Mode::Off || !self.kinds.has(Kind::Name) || name.trim().is_empty() {
            return name.to_owned();
        }
        let key = fold(name).split_whitespace().collect::<Vec<_>>().join(" ");
        let mut placeholder = String::new();
        self.placeholder(Label::Kind(Kind::Name), key, name, &mut placeholder);
        placeholder
    }

    /// The mapping, for restoring the draft.
    pub fn finish(self) -> Pseudonyms {
        self.map
    }

    /// Appends the placeholder of the value `key` (written `surface` here) to `out`, numbering
    /// the value if it is new. Written in place: a name or an address recurs in most messages of a
    /// thread, and each occurrence would otherwise allocate its placeholder twice.
    fn placeholder(&mut self, label: Label, key: String, surface: &str, out: &mut String) {
        let (word, kind) = match label {
            Label::Kind(k) => (k.label(), k.as_str()),
            Label::Pattern(i) => {
                (self.privacy.patterns[i].label.as_str(), self.privacy.patterns[i].name.as_str())
            }
        };
        self.map.occurrences += 1;
        let counts = &mut self.map.counts;
        let mut new = false;
        let n = *self.map.numbers.entry((label, key)).or_insert_with(|| {
            new = true;
            let c = counts.entry(kind.to_owned()).or_insert(0);
            *c += 1;
            *c
        });
        if self.map.mode == Mode::Redact {
            let _ = write!(out, "[{word}]");
            return;
        }
        let start = out.len();
        let _ = write!(out, "[{word}_{n}]");
        // The first spelling found is the one put back.
        if new {
            self.map.values.insert(out[start..].to_owned(), surface.to_owned());
        }
    }
}

/// One ticket's placeholders and the values they stand for. Lives for one triage attempt; its
/// `Debug` shows counts, never values.
#[derive(Default)]
pub struct Pseudonyms {
    mode: Mode,
    /// Placeholder words of the settings' patterns (the built-in kinds' are known).
    labels: Vec<String>,
    numbers: HashMap<(Label, String), usize>,
    counts: BTreeMap<String, usize>,
    values: HashMap<String, String>,
    occurrences: usize,
}

impl fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonyms")
            .field("mode", &self.mode)
            .field("replaced", &self.counts)
            .finish_non_exhaustive()
    }
}

/// A draft with its placeholders put back.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    /// The draft.
    pub text: String,
    /// Placeholders put back.
    pub restored: usize,
    /// Placeholders of a known kind that stand for nothing in this ticket, as written (sorted, once each).
    pub invented: Vec<String>,
}

static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[([A-Z][A-Z0-9_]*?)_(\d{1,6})\]").expect("valid placeholder pattern"));

impl Pseudonyms {
    /// Nothing replaced (privacy off).
    pub fn none() -> Self {
        Self { mode: Mode::Off, ..Self::default() }
    }

    /// Whether `word` is a placeholder's word: a built-in kind's or a configured pattern's.
    fn is_label(&self, word: &str) -> bool {
        Kind::ALL.iter().any(|k| k.label() == word) || self.labels.iter().any(|l| l == word)
    }

    /// What was replaced, for the report.
    pub fn report(&self) -> PrivacyReport {
        PrivacyReport {
            mode: self.mode,
            replaced: self.counts.clone(),
            occurrences: self.occurrences,
            ..PrivacyReport::default()
        }
    }

    /// `draft` with each placeholder of this ticket put back to its value; placeholders of a known
    /// kind that this ticket does not have are left visible and listed.
    pub fn restore(&self, draft: &str) -> Restored {
        let mut restored = 0;
        let mut invented = Vec::new();
        let text = PLACEHOLDER.replace_all(draft, |c: &regex::Captures<'_>| {
            let whole = &c[0];
            if let Some(value) = self.values.get(whole) {
                restored += 1;
                return value.clone();
            }
            if self.is_label(&c[1]) {
                invented.push(whole.to_owned());
            }
            whole.to_owned()
        });
        invented.sort();
        invented.dedup();
        Restored { text: text.into_owned(), restored, invented }
    }
}
