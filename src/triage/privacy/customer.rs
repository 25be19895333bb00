//! The customer's own name, email addresses and phone numbers, from the customer record, found in
//! the ticket's texts as exact matches that ignore letter case and accents (`José` in the record
//! matches `JOSE` and `jose` in a message).

use std::ops::Range;

use unicode_normalization::char::{decompose_canonical, is_combining_mark};

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
    /// Whether the record's name and emails are plain ASCII: then a text is searched ignoring
    /// ASCII case, and accents in it are not folded (a text that adds accents to a name written
    /// without them is rare; the reverse is what folding is for).
    ascii: bool,
}

/// One folded value, found from its least common byte.
///
/// A prebuilt substring searcher per value cost more to build (it allocates, and a ticket's
/// handful of values is searched in a handful of texts) than searching ever did: a value is
/// found instead by running `memchr` to its least common byte and comparing around each hit,
/// which in a name is a rare letter and in an email address the `@`.
struct Needle {
    text: String,
    /// Matches only where the text starts it with a capital letter.
    capitalised: bool,
    /// The offset in `text` of its least common byte.
    anchor: usize,
}

impl Needle {
    fn new(text: String, capitalised: bool) -> Self {
        let anchor = text.bytes().enumerate().max_by_key(|(_, b)| rarity(*b)).map_or(0, |(i, _)| i);
        Self { text, capitalised, anchor }
    }

    /// Where the needle starts in `hay`, in order; in any ASCII letter case when `any_case`.
    fn find_iter<'h>(&'h self, hay: &'h [u8], any_case: bool) -> impl Iterator<Item = usize> + 'h {
        let (needle, anchor) = (self.text.as_bytes(), self.anchor);
        let byte = needle[anchor];
        let other = if any_case { byte.to_ascii_uppercase() } else { byte };
        memchr::memchr2_iter(byte, other, hay).filter_map(move |hit| {
            let start = hit.checked_sub(anchor)?;
            let there = hay.get(start..start + needle.len())?;
            let same = if any_case { there.eq_ignore_ascii_case(needle) } else { there == needle };
            same.then_some(start)
        })
    }
}

/// How uncommon a byte of a folded value is in text: `@` most, then digits and the bytes of
/// letters outside ASCII, then letters by their frequency in Latin-script languages; spaces and
/// punctuation (`.`, `-`, `'`) least.
fn rarity(b: u8) -> usize {
    const BY_FREQUENCY: &[u8] = b"eaointsrlhdcumpgfbvwykjxqz";
    match b {
        b'@' => 100,
        b'a'..=b'z' => 2 + BY_FREQUENCY.iter().position(|c| *c == b).unwrap_or(0),
        b'0'..=b'9' | 0x80.. => 50,
        _ => 1,
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
    /// their folded forms: `(names, emails)`. A text is folded (once for both) only when both it
    /// and the record have letters outside ASCII; otherwise it is searched as it is, ignoring
    /// ASCII case.
    pub fn find(&self, text: &str, names: bool, emails: bool) -> (Occurrences, Occurrences) {
        let names = if names { self.names.as_slice() } else { &[] };
        let emails = if emails { self.emails.as_slice() } else { &[] };
        if names.is_empty() && emails.is_empty() {
            return (Vec::new(), Vec::new());
        }
        // Folding a text written in ASCII only lowercases it, which the search does anyway.
        let folded = (!self.ascii && !text.is_ascii()).then(|| Folded::new(text));
        (occurrences(text, folded.as_ref(), names), occurrences(text, folded.as_ref(), emails))
    }
}

/// Where values occur in a text, with their folded forms.
pub(super) type Occurrences = Vec<(Range<usize>, String)>;

/// Every whole-word occurrence of each needle in `text`, or in `folded` (`text` folded) when
/// given; a needle marked capitalised only where the text starts it with a capital.
fn occurrences(text: &str, folded: Option<&Folded<'_>>, needles: &[Needle]) -> Occurrences {
    let mut out = Vec::new();
    let hay = folded.map_or(text, |f| &f.text);
    for needle in needles {
        for at in needle.find_iter(hay.as_bytes(), folded.is_none()) {
            let (start, end) = (at, at + needle.text.len());
            let word = |i: Option<char>| i.is_none_or(|c| !c.is_alphanumeric());
            if !word(hay[..start].chars().next_back()) || !word(hay[end..].chars().next()) {
                continue;
            }
            let range = folded.map_or(start..end, |f| f.original(start)..f.original(end));
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
        decompose_canonical(c, |d| {
            if !is_combining_mark(d) {
                out.extend(d.to_lowercase());
            }
        });
    }
}

/// A text folded for matching.
struct Folded<'a> {
    source: &'a str,
    text: String,
}

impl<'a> Folded<'a> {
    /// `source` lowercased and without accents.
    fn new(source: &'a str) -> Self {
        Self { source, text: fold(source) }
    }

    /// The byte offset in the source of the first character whose folded form starts at or after
    /// `at` (a match's start or end). Walks the source again: matches are rare, and keeping a
    /// position per byte would cost every text an allocation eight times its size.
    fn original(&self, at: usize) -> usize {
        let (source, mut src, mut folded) = (self.source.as_bytes(), 0, 0);
        let mut buf = String::new();
        while folded < at {
            // An ASCII character folds to one byte: a run of them is stepped over at once.
            let ascii = source[src..].iter().take_while(|b| b.is_ascii()).count();
            if at - folded <= ascii {
                return src + (at - folded);
            }
            src += ascii;
            let Some(c) = self.source[src..].chars().next() else { return source.len() };
            buf.clear();
            fold_char(c, &mut buf);
            (src, folded) = (src + c.len_utf8(), folded + ascii + buf.len());
        }
        src
    }
}
