//! The customer's own name, email addresses and phone numbers, from the customer record, found in
//! the ticket's texts as exact matches that ignore letter case and accents (`José` in the record
//! matches `JOSE` and `jose` in a message).

use std::ops::Range;

use memchr::memmem::Finder;
use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

use super::detect::phone_key;
use crate::ticketing::Customer;

/// Shortest part of a name matched on its own: shorter parts (`Li`, `Jo`) are too often other words.
const MIN_NAME_PART_CHARS: usize = 3;

/// The customer record's values, folded for matching.
#[derive(Default)]
pub(super) struct Needles {
    /// The whole name, then each of its parts; parts only match where the text capitalises them.
    names: Vec<Needle>,
    emails: Vec<Needle>,
    phones: Vec<String>,
    /// Whether the record's name and emails are plain ASCII: then a text is only lowercased for
    /// matching, keeping its byte offsets, and accents in it are not folded (a text that adds
    /// accents to a name written without them is rare; the reverse is what folding is for).
    ascii: bool,
}

/// One folded value and its searcher.
struct Needle {
    text: String,
    /// Matches only where the text starts it with a capital letter.
    capitalised: bool,
    finder: Finder<'static>,
}

impl Needle {
    fn new(text: String, capitalised: bool) -> Self {
        let finder = Finder::new(text.as_bytes()).into_owned();
        Self { text, capitalised, finder }
    }
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
            names.push(Needle::new(name.split_whitespace().collect::<Vec<_>>().join(" "), false));
            if parts.len() > 1 {
                names.extend(parts.into_iter().map(|p| Needle::new(p, true)));
            }
        }
        let emails = c
            .emails
            .iter()
            .map(|e| fold(e.email.trim()))
            .filter(|e| e.contains('@'))
            .map(|e| Needle::new(e, false))
            .collect();
        let phones = c
            .telephones
            .iter()
            .map(|t| t.telephone.chars().filter(char::is_ascii_digit).collect::<String>())
            .filter(|d| d.len() >= 7)
            .map(|d| phone_key(&d))
            .collect();
        let ascii =
            c.name.as_deref().is_none_or(str::is_ascii) && c.emails.iter().all(|e| e.email.is_ascii());
        Self { names, emails, phones, ascii }
    }

    /// Whether `text` may hold one of the customer's phone numbers: it has the last three digits
    /// of one (a cheap look before reading every number in it).
    pub fn might_have_phone(&self, text: &str) -> bool {
        self.phones.iter().any(|p| {
            memchr::memmem::find(text.as_bytes(), &p.as_bytes()[p.len().saturating_sub(3)..]).is_some()
        })
    }

    /// Whether a number with these digits is one of the customer's.
    pub fn is_phone(&self, digits: &str) -> bool {
        digits.len() >= 7 && self.phones.iter().any(|p| *p == phone_key(digits))
    }

    /// Where the customer's name (whole, or a capitalised part) and email addresses occur, with
    /// their folded forms: `(names, emails)`. The text is folded once for both.
    pub fn find(&self, text: &str, names: bool, emails: bool) -> (Occurrences, Occurrences) {
        let names = if names { self.names.as_slice() } else { &[] };
        let emails = if emails && text.contains('@') { self.emails.as_slice() } else { &[] };
        if names.is_empty() && emails.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let folded = Folded::new(text, !self.ascii);
        (occurrences(text, &folded, names), occurrences(text, &folded, emails))
    }
}

/// Where values occur in a text, with their folded forms.
pub(super) type Occurrences = Vec<(Range<usize>, String)>;

/// Every whole-word occurrence of each needle in `folded` (`text` folded); a needle marked
/// capitalised only where the text starts it with a capital.
fn occurrences(text: &str, folded: &Folded<'_>, needles: &[Needle]) -> Occurrences {
    let mut out = Vec::new();
    for needle in needles {
        for at in needle.finder.find_iter(folded.text.as_bytes()) {
            let (start, end) = (at, at + needle.text.len());
            let word = |i: Option<char>| i.is_none_or(|c| !c.is_alphanumeric());
            if !word(folded.text[..start].chars().next_back()) || !word(folded.text[end..].chars().next()) {
                continue;
            }
            let range = folded.original(start)..folded.original(end);
            if needle.capitalised && !text[range.clone()].starts_with(char::is_uppercase) {
                continue;
            }
            out.push((range, needle.text.clone()));
        }
    }
    out
}

/// Lowercase without accents: `José Ñúñez` → `jose nunez`.
pub(super) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    // ASCII runs are copied and lowercased whole; only the characters between them are folded
    // one by one.
    while let Some(i) = rest.bytes().position(|b| !b.is_ascii()) {
        let start = out.len();
        out.push_str(&rest[..i]);
        out[start..].make_ascii_lowercase();
        let c = rest[i..].chars().next().unwrap_or_default();
        fold_char(c, &mut out);
        rest = &rest[i + c.len_utf8()..];
    }
    let start = out.len();
    out.push_str(rest);
    out[start..].make_ascii_lowercase();
    out
}

/// Appends `c` lowercased without accents. Most characters of most texts are ASCII: only the
/// others go through NFD.
fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
    } else {
        out.extend(std::iter::once(c).nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase));
    }
}

/// A text folded for matching.
struct Folded<'a> {
    source: &'a str,
    text: String,
    /// `text` has `source`'s byte offsets (only ASCII letters were changed).
    same_offsets: bool,
}

impl<'a> Folded<'a> {
    /// `source` lowercased, and without accents when `accents` says so.
    fn new(source: &'a str, accents: bool) -> Self {
        let same_offsets = !accents || source.is_ascii();
        let text = if same_offsets { source.to_ascii_lowercase() } else { fold(source) };
        Self { source, text, same_offsets }
    }

    /// The byte offset in the source of the first character whose folded form starts at or after
    /// `at` (a match's start or end). Walks the source again: matches are rare, and keeping a
    /// position per byte would cost every text an allocation eight times its size.
    fn original(&self, at: usize) -> usize {
        if self.same_offsets {
            return at;
        }
        let mut folded = 0;
        let mut buf = String::new();
        for (i, c) in self.source.char_indices() {
            if folded >= at {
                return i;
            }
            buf.clear();
            fold_char(c, &mut buf);
            folded += buf.len();
        }
        self.source.len()
    }
}
