//! The customer's own name, email addresses and phone numbers, from the customer record, found in
//! the ticket's texts as exact matches that ignore letter case and accents (`José` in the record
//! matches `JOSE` and `jose` in a message).

use std::ops::Range;

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

use super::detect::phone_key;
use crate::ticketing::Customer;

/// Shortest part of a name matched on its own: shorter parts (`Li`, `Jo`) are too often other words.
const MIN_NAME_PART_CHARS: usize = 3;

/// The customer record's values, folded for matching.
#[derive(Default)]
pub(super) struct Needles {
    /// The whole name, then each of its parts; parts only match where the text capitalises them.
    names: Vec<(String, bool)>,
    emails: Vec<String>,
    phones: Vec<String>,
}

impl Needles {
    /// The needles of a customer record (none without one).
    pub fn of(customer: Option<&Customer>) -> Self {
        let Some(c) = customer else { return Self::default() };
        let mut names = Vec::new();
        if let Some(name) = c.name.as_deref().map(fold).filter(|n| !n.trim().is_empty()) {
            let parts: Vec<String> = name
                .split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
                .filter(|p| p.chars().count() >= MIN_NAME_PART_CHARS)
                .map(str::to_owned)
                .collect();
            names.push((name.split_whitespace().collect::<Vec<_>>().join(" "), false));
            if parts.len() > 1 {
                names.extend(parts.into_iter().map(|p| (p, true)));
            }
        }
        let emails = c.emails.iter().map(|e| fold(e.email.trim())).filter(|e| e.contains('@')).collect();
        let phones = c
            .telephones
            .iter()
            .map(|t| t.telephone.chars().filter(char::is_ascii_digit).collect::<String>())
            .filter(|d| d.len() >= 7)
            .map(|d| phone_key(&d))
            .collect();
        Self { names, emails, phones }
    }

    /// Whether a number with these digits is one of the customer's.
    pub fn is_phone(&self, digits: &str) -> bool {
        digits.len() >= 7 && self.phones.iter().any(|p| *p == phone_key(digits))
    }

    /// Where the customer's name (whole, or a capitalised part) occurs, with its folded form.
    pub fn names(&self, text: &str) -> Vec<(Range<usize>, String)> {
        self.find(text, &self.names)
    }

    /// Where the customer's email addresses occur.
    pub fn emails(&self, text: &str) -> Vec<(Range<usize>, String)> {
        if self.emails.is_empty() || !text.contains('@') {
            return Vec::new();
        }
        let needles: Vec<(String, bool)> = self.emails.iter().map(|e| (e.clone(), false)).collect();
        self.find(text, &needles)
    }

    fn find(&self, text: &str, needles: &[(String, bool)]) -> Vec<(Range<usize>, String)> {
        if needles.is_empty() {
            return Vec::new();
        }
        let folded = Folded::new(text);
        let mut out = Vec::new();
        for (needle, capitalised) in needles {
            let mut from = 0;
            while let Some(at) = folded.text[from..].find(needle.as_str()) {
                let (start, end) = (from + at, from + at + needle.len());
                from = end;
                let word = |i: Option<char>| i.is_none_or(|c| !c.is_alphanumeric());
                if !word(folded.text[..start].chars().next_back()) || !word(folded.text[end..].chars().next())
                {
                    continue;
                }
                let range = folded.original(start)..folded.original(end);
                if *capitalised && !text[range.clone()].starts_with(char::is_uppercase) {
                    continue;
                }
                out.push((range, needle.clone()));
            }
        }
        out
    }
}

/// Lowercase without accents: `José Ñúñez` → `jose nunez`.
pub(super) fn fold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// A folded text and where each of its bytes came from.
struct Folded {
    text: String,
    /// For each byte of `text`, the byte offset of the original character; then the original's length.
    origin: Option<Vec<usize>>,
}

impl Folded {
    fn new(text: &str) -> Self {
        if text.is_ascii() {
            return Self { text: text.to_ascii_lowercase(), origin: None };
        }
        let mut folded = String::with_capacity(text.len());
        let mut origin = Vec::with_capacity(text.len() + 1);
        for (i, c) in text.char_indices() {
            let before = folded.len();
            folded.extend(
                std::iter::once(c).nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase),
            );
            origin.extend(std::iter::repeat_n(i, folded.len() - before));
        }
        origin.push(text.len());
        Self { text: folded, origin: Some(origin) }
    }

    /// The original byte offset of a folded one (a char boundary of the folded text).
    fn original(&self, at: usize) -> usize {
        match &self.origin {
            None => at,
            Some(origin) => {
                // The first byte after `at` that starts a new original character.
                let from = origin[at];
                if at == 0 || origin[at - 1] != from {
                    from
                } else {
                    origin[at..].iter().find(|o| **o != from).copied().unwrap_or(from)
                }
            }
        }
    }
}
