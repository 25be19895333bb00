//! The detectors: where personal data sits in one text, and the key that makes two spellings of
//! the same value one value (an email in any letter case, a phone with or without its country
//! code, a card or IBAN with or without spaces).
//!
//! Each detector is one precompiled regex that finds candidates, and a check that keeps only what
//! is reliable: a card passes Luhn and has an issuer's prefix, an IBAN passes mod-97 at its
//! country's length, a phone number is international (`+`, `00`), has an area code in
//! parentheses, starts with a trunk `0`, or is in the North American 3-3-4 shape, an address has
//! a street word and a house number. What fails the check (order totals, dates, versions, error
//! codes, SKUs) is left alone.

use std::{net::Ipv6Addr, ops::Range, sync::LazyLock};

use regex::Regex;

use super::{
    Kind, Privacy,
    checks::{iban_checksum, iban_length, is_card},
    customer::Needles,
};

/// What a found value is: a built-in kind or the configured pattern at this index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Label {
    /// A built-in kind.
    Kind(Kind),
    /// `Privacy::patterns[i]`.
    Pattern(usize),
}

/// The kinds a connection detects, as bits: every text asks after each kind, where a lookup in
/// the settings' set is a tree search.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct KindSet(u16);

impl KindSet {
    /// The set of `kinds`.
    pub fn of<'k>(kinds: impl IntoIterator<Item = &'k Kind>) -> Self {
        Self(kinds.into_iter().fold(0, |bits, k| bits | 1 << *k as u16))
    }

    /// Whether `kind` is in the set.
    pub fn has(self, kind: Kind) -> bool {
        self.0 & 1 << kind as u16 != 0
    }
}

/// One value found in a text.
#[derive(Debug, Clone)]
pub(super) struct Found {
    /// Where, in bytes.
    pub range: Range<usize>,
    /// What.
    pub label: Label,
    /// The value as compared: two finds with the same label and key are the same value.
    pub key: String,
    /// Which detector wins when two finds start at the same place with the same length (lower wins).
    rank: u8,
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a valid built-in pattern")
}

/// An email's domain, anchored just after its `@` (emails are found from each `@` outwards, which
/// is far cheaper than a pattern that could start at any letter).
static EMAIL_DOMAIN: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,}"));
static URL: LazyLock<Regex> = LazyLock::new(|| regex(r#"(?i)(?-u:\b)(?:https?|ftp)://[^\s<>"'\[\]()]+"#));
static IBAN: LazyLock<Regex> = LazyLock::new(|| regex(r"(?-u:\b)[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,32}"));
static CARD: LazyLock<Regex> = LazyLock::new(|| regex(r"(?-u:\b)\d(?:[ \-]?\d){13,18}(?-u:\b)"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?-u:\b)(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(?-u:\b)")
});
static IPV6: LazyLock<Regex> =
    LazyLock::new(|| regex(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[0-9A-Za-z]+)?"));
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?:\+\s?\(?|\(|(?-u:\b))\d{1,5}\)?(?:[ .\-/]?\(?\d{1,5}\)?){1,7}"));
// Numbers use ASCII word boundaries: in Japanese or Chinese text a number follows a letter
// directly (`電話090-1234-5678`), which a Unicode `\b` would not count as a boundary.
static NORTH_AMERICAN: LazyLock<Regex> = LazyLock::new(|| regex(r"^\d{3}[-. ]\d{3}[-. ]\d{4}$"));

/// French street words, which follow the house number: in the pattern, and in its gate.
const FRENCH_STREETS: [&str; 9] =
    ["rue", "avenue", "boulevard", "bd", "place", "chemin", "allée", "impasse", "quai"];

/// Street words that follow the house number (English, French).
const NUMBER_FIRST: &str = r"(?-u:\b)\d{1,5}[A-Za-z]?,?\s(?:(?i:{FR})\s(?:(?i:de la|de l'|de|du|des|d')\s?)?{LU}[{L}'\-]*(?:\s{LU}[{L}'\-]*){0,3}|(?:{LU}[{L}'\-]*\s){1,3}(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Lane|Ln\.?|Drive|Dr\.?|Boulevard|Blvd\.?|Way|Court|Ct\.?|Place|Pl\.?|Terrace|Close|Crescent)(?-u:\b))";
/// Streets whose number comes after the name (German, Dutch, Nordic suffixes; Spanish,
/// Portuguese, Italian prefixes; Italian `Via` capitalised only, as English has "via").
const NUMBER_AFTER: &str = r"(?:(?:(?-u:\b)(?:(?i:calle|c/|avenida|avda\.|av\.|rua|travessa|viale|piazza|corso|largo|plaza|paseo|carrer|praça|alameda)|Via)\s(?:(?i:de|del|da|do|dos|das|di|della|la|las|los)\s)*{LU}[{L}'\-]*(?:\s{LU}[{L}'\-]*){0,3})|{LU}[{L}\-]*(?i:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|laan|straat|gracht|plein|kade|vej|gatan|gata|veien)),?\s(?:n[º°o]\.?\s?)?\d{1,5}(?:\s?[a-zA-Z](?-u:\b))?";
/// The postal code and town that may follow a street.
const POSTAL_TOWN: &str = r"(?:,?\s(?:\d{5}-\d{3}|\d{5}|\d{4}\s?[A-Z]{2}|\d{4}|\d{3}-\d{4}|[A-Z]{2}\s\d{5}|[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2})(?:\s{LU}[{L}'\-]*(?:[\s\-]{LU}[{L}'\-]*){0,2})?)?";

/// Capitals and letters of the Latin alphabets street names are written in here: classes this
/// size keep the address automaton small, where `\p{Lu}` and `\p{L}` made it several times slower.
const LU: &str = "A-ZÀ-ÖØ-Þ";
const L: &str = "A-Za-zÀ-ÖØ-öø-ÿĀ-ž";

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    let expand = |p: &str| {
        p.replace("{LU}", &format!("[{LU}]")).replace("{L}", L).replace("{FR}", &FRENCH_STREETS.join("|"))
    };
    let (first, after, town) = (expand(NUMBER_FIRST), expand(NUMBER_AFTER), expand(POSTAL_TOWN));
    regex(&format!("(?:{first}|{after}){town}"))
});

/// Query keys whose values are secrets: a URL carrying one is personal data as a whole.
const SECRET_KEYS: [&str; 12] = [
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "sig",
    "signature",
    "auth",
    "code",
    "session",
    "sid",
];

/// Every value in `text` the settings ask for, overlapping finds resolved (earliest, then longest
/// wins), in order.
pub(super) fn detect(text: &str, privacy: &Privacy, kinds: KindSet, customer: &Needles) -> Vec<Found> {
    let mut found = Vec::new();
    let on = |k: Kind| kinds.has(k);
    for (i, p) in privacy.patterns.iter().enumerate() {
        for m in p.regex.find_iter(text).filter(|m| !m.is_empty()) {
            found.push(Found {
                range: m.range(),
                label: Label::Pattern(i),
                key: m.as_str().to_owned(),
                rank: 0,
            });
        }
    }
    if on(Kind::Url) && text.contains("://") {
        urls(text, &mut found);
    }
    // A text without `@` has no email, the customer's included.
    let emails_wanted = on(Kind::Email) && memchr::memchr(b'@', text.as_bytes()).is_some();
    if emails_wanted {
        emails(text, &mut found);
    }
    let digits_wanted = [Kind::Iban, Kind::Card, Kind::Ip, Kind::Address, Kind::Phone].into_iter().any(on);
    let numbers = if digits_wanted { Numbers::of(text) } else { Numbers::default() };
    if numbers.longest > 0 {
        if on(Kind::Iban) && numbers.iban_start {
            ibans(text, &mut found);
        }
        if on(Kind::Card) && numbers.longest >= 14 {
            for m in CARD.find_iter(text) {
                let digits: Vec<u8> = m.as_str().bytes().filter(u8::is_ascii_digit).collect();
                if is_card(&digits) {
                    found.push(kind(m.range(), Kind::Card, String::from_utf8_lossy(&digits).into_owned(), 4));
                }
            }
        }
        if on(Kind::Ip) && numbers.dotted {
            ipv4s(text, &mut found);
        }
        if on(Kind::Address) {
            addresses(text, &mut found);
        }
        if on(Kind::Phone) && (numbers.phone_like || customer.might_have_phone(text)) {
            phones(text, customer, &mut found);
        }
    }
    if on(Kind::Ip) && maybe_ipv6(text) {
        ipv6s(text, &mut found);
    }
    let (names, emails) = customer.find(text, on(Kind::Name), emails_wanted);
    for (range, key) in names {
        found.push(kind(range, Kind::Name, key, 7));
    }
    for (range, key) in emails {
        found.push(kind(range, Kind::Email, key, 2));
    }
    resolve(found)
}

/// What the numbers of a text look like, from one pass over its bytes: which of the digit
/// detectors can find anything in it (each costs a pass of its own).
#[derive(Default)]
struct Numbers {
    /// Most digits in one number: digits joined by at most two separators in a row (space,
    /// `-`, `.`, `/`, parentheses, `+`).
    longest: usize,
    /// Some number has three dots between its digits (an IPv4 address).
    dotted: bool,
    /// Two capitals right before two digits (an IBAN's start).
    iban_start: bool,
    /// Some number could be a phone number by its shape: seven digits or more after `+`, `(` or
    /// a trunk `0`, or ten or more.
    phone_like: bool,
}

impl Numbers {
    fn of(text: &str) -> Self {
        let b = text.as_bytes();
        let mut n = Self::default();
        let mut at = 0;
        // Outside a number only the next digit matters, and most of a text has none; a number is
        // then read to its end and judged once.
        while let Some(start) = next_digit(b, at) {
            let (mut digits, mut dots, mut gap) = (0, 0, 0);
            // Dots count only once a digit follows them (`1.2.3.` has two).
            let mut dots_between = 0;
            let mut end = start;
            while let Some(&c) = b.get(end) {
                if c.is_ascii_digit() {
                    digits += 1;
                    gap = 0;
                    dots_between = dots;
                } else if gap < 2 && matches!(c, b' ' | b'-' | b'.' | b'/' | b'(' | b')' | b'+') {
                    gap += 1;
                    dots += usize::from(c == b'.');
                } else {
                    break;
                }
                end += 1;
            }
            let lead = match start.checked_sub(1).map(|j| b[j]) {
                Some(p @ (b'+' | b'(')) => p,
                _ => b[start],
            };
            n.longest = n.longest.max(digits);
            n.phone_like |= digits >= 10 || (digits >= 7 && matches!(lead, b'+' | b'(' | b'0'));
            n.dotted |= dots_between >= 3;
            n.iban_start |= start >= 2
                && b.get(start + 1).is_some_and(u8::is_ascii_digit)
                && b[start - 1].is_ascii_uppercase()
                && b[start - 2].is_ascii_uppercase();
            at = end;
        }
        n
    }
}

/// The index of the first ASCII digit in `b` at or after `from`. Looks at 32 bytes at a time,
/// OR-ing a byte per digit test: the compiler turns that into vector instructions, where a
/// `bool` fold compiled to a branch per byte.
fn next_digit(b: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    for chunk in b[from..].chunks_exact(32) {
        if chunk.iter().fold(0u8, |any, c| any | u8::from(c.is_ascii_digit())) != 0 {
            break;
        }
        at += 32;
    }
    b[at..].iter().position(u8::is_ascii_digit).map(|p| at + p)
}

fn kind(range: Range<usize>, k: Kind, key: String, rank: u8) -> Found {
    Found { range, label: Label::Kind(k), key, rank }
}

/// Earliest first, then longest, then by rank; a find overlapping one kept is dropped.
fn resolve(mut found: Vec<Found>) -> Vec<Found> {
    if found.len() < 2 {
        return found;
    }
    found.sort_by_key(|f| (f.range.start, std::cmp::Reverse(f.range.end), f.rank));
    let mut kept: Vec<Found> = Vec::with_capacity(found.len());
    for f in found {
        if kept.last().is_none_or(|k| f.range.start >= k.range.end) {
            kept.push(f);
        }
    }
    kept
}

fn before(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

fn after(text: &str, at: usize) -> Option<char> {
    text[at..].chars().next()
}

/// Emails: the local part before each `@`, the domain after it.
fn emails(text: &str, found: &mut Vec<Found>) {
    let local = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-');
    for (at, _) in text.match_indices('@') {
        let start = text[..at].char_indices().rev().take_while(|(_, c)| local(*c)).last().map(|(i, _)| i);
        let Some(start) = start else { continue };
        let start = start + (text[start..at].len() - text[start..at].trim_start_matches('.').len());
        let Some(domain) = EMAIL_DOMAIN.find(&text[at + 1..]) else { continue };
        if start == at {
            continue;
        }
        let range = start..at + 1 + domain.end();
        found.push(kind(range.clone(), Kind::Email, text[range].to_lowercase(), 2));
    }
}

/// URLs carrying credentials (`user:pass@`) or a secret in their query.
fn urls(text: &str, found: &mut Vec<Found>) {
    for m in URL.find_iter(text) {
        let url = m.as_str().trim_end_matches(['.', ',', ';', ':', '!', '?']);
        let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let has_credentials = authority.contains('@');
        let has_secret = url.split_once('?').is_some_and(|(_, query)| {
            query.split('&').filter_map(|pair| pair.split_once('=')).any(|(k, v)| {
                // `access_token`, `X-Amz-Signature`, `api-key`: any word of the key.
                let k = k.to_ascii_lowercase();
                !v.is_empty()
                    && (k.contains("token")
                        || k.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| SECRET_KEYS.contains(&w)))
            })
        });
        if has_credentials || has_secret {
            let range = m.start()..m.start() + url.len();
            found.push(kind(range, Kind::Url, url.to_owned(), 1));
        }
    }
}

/// IBANs: the country's length of letters and digits (spaces allowed between), mod-97 valid.
fn ibans(text: &str, found: &mut Vec<Found>) {
    for m in IBAN.find_iter(text) {
        let s = m.as_str();
        // Byte offset just past each letter or digit, in order.
        let ends: Vec<usize> =
            s.char_indices().filter(|(_, c)| *c != ' ').map(|(i, c)| i + c.len_utf8()).collect();
        let compact: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
        let lengths: Vec<usize> = match iban_length(&s[..2]) {
            Some(n) => vec![n],
            None => (15..=compact.len().min(34)).rev().collect(),
        };
        for n in lengths {
            if n > compact.len() || !iban_checksum(&compact[..n]) {
                continue;
            }
            let end = m.start() + ends[n - 1];
            if after(text, end).is_some_and(char::is_alphanumeric) {
                continue;
            }
            found.push(kind(
                m.start()..end,
                Kind::Iban,
                String::from_utf8_lossy(&compact[..n]).into_owned(),
                3,
            ));
            break;
        }
    }
}

/// Street addresses, but not the minutes of a time before a name. The pattern runs only over a
/// text with a number that can be a house number by the words next to it: most numbers in
/// tickets (totals, dates, versions, order numbers) have none.
fn addresses(text: &str, found: &mut Vec<Found>) {
    if !has_house_number(text) {
        return;
    }
    for m in ADDRESS.find_iter(text).filter(|m| !is_time(text, m.start(), m.as_str())) {
        let key = m.as_str().split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        found.push(kind(m.range(), Kind::Address, key, 6));
    }
}

/// Whether some run of digits has the word the address pattern needs next to it: a capitalised
/// word (or a French street word) after one of up to five digits, or a capitalised word before
/// it (`Baker Street` after `221B`, `Hauptstraße` or `Calle Mayor` before `12`). A necessary condition of
/// the pattern, far cheaper than running it.
fn has_house_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut at = 0;
    while let Some(start) = next_digit(b, at) {
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        at = end;
        if (end - start <= 5 && word_after_fits(text, end)) || word_before_fits(text, start) {
            return true;
        }
    }
    false
}

/// After the number: an optional letter (`221B`) and comma, whitespace, then a capital or a
/// French street word.
fn word_after_fits(text: &str, end: usize) -> bool {
    let mut rest = &text[end..];
    if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        rest = &rest[1..];
    }
    rest = rest.strip_prefix(',').unwrap_or(rest);
    let word = rest.trim_start();
    word.len() < rest.len()
        && (word.starts_with(char::is_uppercase)
            || FRENCH_STREETS.iter().any(|w| word.get(..w.len()).is_some_and(|p| p.eq_ignore_ascii_case(w))))
}

/// Before the number: whitespace (after an optional `nº`, `n°` or `no.`, and a comma), then a
/// word with a capital in it (a street ending in `straße` may start inside a longer word).
fn word_before_fits(text: &str, start: usize) -> bool {
    let mut head = text[..start].trim_end();
    for mark in ["nº.", "n°.", "no.", "nº", "n°", "no"] {
        if let Some(h) = head.strip_suffix(mark) {
            head = h.trim_end();
            break;
        }
    }
    let head = head.strip_suffix(',').unwrap_or(head);
    let word = &head[head
        .rfind(|c: char| !c.is_alphabetic() && !matches!(c, '\'' | '-'))
        .map_or(0, |i| i + head[i..].chars().next().map_or(1, char::len_utf8))..];
    head.len() < start && word.chars().any(char::is_uppercase)
}

/// `… at 10:40 AM Rebecca Lane`: the minutes of a time, not a house number.
fn is_time(text: &str, start: usize, found: &str) -> bool {
    let after_number = found.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
    text[..start].ends_with(':')
        || ["AM ", "PM ", "am ", "pm ", "a.m. ", "p.m. "].iter().any(|m| after_number.starts_with(m))
}

fn ipv4s(text: &str, found: &mut Vec<Found>) {
    for m in IPV4.find_iter(text) {
        // A version (`v1.2.3.4`, `1.2.3.4.5`) is not an address.
        let prefixed = before(text, m.start()).is_some_and(|c| c.is_ascii_alphanumeric() || c == '.');
        let continued =
            text[m.end()..].starts_with('.') && after(text, m.end() + 1).is_some_and(|c| c.is_ascii_digit());
        if !prefixed && !continued {
            found.push(kind(m.range(), Kind::Ip, m.as_str().to_owned(), 5));
        }
    }
}

/// Whether some `:` is followed, after at most four hex digits, by another `:` (`fe80::1`,
/// `2001:db8:…`): most texts' colons (`Note:`, `10:45`) are not, and the IPv6 pattern can start
/// anywhere.
fn maybe_ipv6(text: &str) -> bool {
    let b = text.as_bytes();
    memchr::memchr_iter(b':', b).any(|i| {
        let hex = b[i + 1..].iter().take(5).take_while(|c| c.is_ascii_hexdigit()).count();
        b.get(i + 1 + hex) == Some(&b':') && (hex > 0 || i > 0 && b[i - 1].is_ascii_hexdigit())
    })
}

fn ipv6s(text: &str, found: &mut Vec<Found>) {
    for m in IPV6.find_iter(text) {
        let s = m.as_str();
        let addr = s.split('%').next().unwrap_or(s);
        let bounded = !before(text, m.start()).is_some_and(|c| c.is_alphanumeric() || c == ':')
            && !after(text, m.end()).is_some_and(|c| c.is_alphanumeric());
        if bounded
            && addr.len() >= 6
            && let Ok(ip) = addr.parse::<Ipv6Addr>()
        {
            found.push(kind(m.range(), Kind::Ip, ip.to_string(), 5));
        }
    }
}

/// The last nine digits: a number written with and without its country code is one number.
pub(super) fn phone_key(digits: &str) -> String {
    digits[digits.len().saturating_sub(9)..].to_owned()
}

fn phones(text: &str, customer: &Needles, found: &mut Vec<Found>) {
    for m in PHONE.find_iter(text) {
        // The pattern ends in a digit or `)`; an unbalanced parenthesis at either end is prose.
        let (mut range, mut s) = (m.range(), m.as_str());
        if s.starts_with('(') && !s.contains(')') {
            range.start += 1;
            s = &s[1..];
        }
        if s.ends_with(')') && s.matches('(').count() < s.matches(')').count() {
            range.end -= 1;
            s = &s[..s.len() - 1];
        }
        // `(102.129.143.18)` is an address, found as such.
        if IPV4.is_match(s) {
            continue;
        }
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        let mine = customer.is_phone(&digits);
        if !mine && !looks_like_phone(text, range.start, s, digits.len()) {
            continue;
        }
        found.push(kind(range, Kind::Phone, phone_key(&digits), 8));
    }
}

fn looks_like_phone(text: &str, start: usize, s: &str, digits: usize) -> bool {
    // Part of an identifier (`ORD-0612345678`, `#0301234567`, `SKU/0612…`).
    if before(text, start)
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '#' | '/' | '_' | '.' | ','))
    {
        return false;
    }
    if after(text, start + s.len()).is_some_and(|c| c.is_ascii_alphanumeric() || c == '%') {
        return false;
    }
    if s.starts_with('+') {
        return (8..=15).contains(&digits);
    }
    if s.starts_with("00") {
        return (10..=15).contains(&digits);
    }
    if s.starts_with('(') {
        return (10..=12).contains(&digits);
    }
    if s.starts_with('0') {
        // Trunk prefix; dates and decimals have fewer digits or dots between short groups.
        let dotted = s.contains('.') && !s.contains(' ');
        return (9..=12).contains(&digits) && !dotted;
    }
    NORTH_AMERICAN.is_match(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_digit_is_found_wherever_it_falls_in_the_blocks_looked_at() {
        for at in 0..100 {
            let mut text = vec![b'x'; 100];
            text[at] = b'7';
            assert_eq!(next_digit(&text, 0), Some(at));
            assert_eq!(next_digit(&text, at), Some(at));
            assert_eq!(next_digit(&text, at + 1), None);
        }
        assert_eq!(next_digit(b"", 0), None);
    }

    #[test]
    fn a_house_number_needs_the_words_the_address_pattern_needs() {
        for text in [
            "an Hauptstraße 12",
            "12 rue de Rivoli",
            "at 221B Baker Street",
            "Rua Augusta, nº 274",
            "the Vermeerstraat 9",
            "deliver to xHauptstraße 9",
            "Calle Mayor 123456",
        ] {
            assert!(has_house_number(text), "{text}");
        }
        for text in
            ["order 4411 shipped on 2024-05-03 for 19.99", "error 503 on v1.2.3", "no digits", "123456 Baker"]
        {
            assert!(!has_house_number(text), "{text}");
        }
    }
}
