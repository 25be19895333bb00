//! Quoted history in plain text: reply headers, `>` quotes, Outlook header blocks, forwards.
//!
//! Every line is classified once (quoted, blank, own text, or a marker) and the text is cut at the
//! first marker. When nothing of the author's own comes before that marker (a bare forward, or an
//! interleaved reply that starts with the quote header), the marker's header lines are skipped and
//! the search goes on in what follows, so the forwarded body is what remains.
//!
//! A reply header followed by `>` lines that are answered below (an interleaved or bottom-posted
//! reply) does not cut: the header and the `>` lines go, the answers stay. `>` lines are removed
//! wherever they are; a message made only of them keeps their text, unquoted.

use std::sync::LazyLock;

use regex::Regex;

/// Marker detection only looks at lines up to this length (bounded work per line).
const MAX_MARKER_LINE: usize = 600;
/// A header block (`From:`/`Sent:`/`To:`/`Subject:`) is at most this many lines.
const MAX_HEADER_LINES: usize = 12;

/// `On <date>, <name> <email> wrote:` in the languages the helpdesks see. Callers also require a
/// digit or an `@` on the line: real attribution lines always carry a date or an address, and
/// that keeps "Le client a écrit :" in running text from being taken for one.
static WROTE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:on\s.*\swrote|am\s.*\sschrieb(?:\s.*)?|le\s.*\sa\s+écrit|el\s.*\sescribió|em\s.*\sescreveu|op\s.*\sschreef(?:\s.*)?|il\s.*\sha\s+scritto)\s*:\s*$",
    )
    .unwrap()
});
/// The first word of a wrote-line, to try joining a line wrapped in two.
static WROTE_LEAD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\s*(?:on|am|le|el|em|op|il)\s").unwrap());
/// `Jane Doe <jane@example.com> wrote:` without a leading date, other languages' verbs, and the
/// CJK clients' `2026年11月21日(土) 10:30 Name <name@example.com>:`; accepted only right before `>` lines.
static WROTE_ANY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:(?:^|\s)(?:wrote|schrieb|a\s+écrit|escribió|escreveu|schreef|ha\s+scritto|skrev|kirjoitti|napisał|написал\p{L}*|írta)\s*:|(?:写道|寫道|が書きました)\s*[:：]|<[^<>\s]+@[^<>\s]+>\s*[:：])\s*$",
    )
    .unwrap()
});
/// Outlook's original-message separator, the forward banners of the common clients, and the
/// helpdesks' own "reply above this line" delimiter.
static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|mensaje original|oorspronkelijk bericht|messaggio originale|mensagem original|forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado|doorgestuurd bericht|messaggio inoltrato|mensagem encaminhada)\s*-{2,}|\W*(?:please\s+)?(?:type\s+your\s+)?reply\s+above\s+this\s+line\W*|begin forwarded message\s*:|anfang der weitergeleiteten nachricht\s*:|début du message réexpédié\s*:)\s*$",
    )
    .unwrap()
});
/// The forward banners among the separators: what follows them is content the sender passes on,
/// not history, so it is kept after the sender's own note.
static FORWARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado|doorgestuurd bericht|messaggio inoltrato|mensagem encaminhada|begin forwarded message|anfang der weitergeleiteten nachricht|début du message réexpédié)",
    )
    .unwrap()
});
static UNDERSCORES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*_{10,}\s*$").unwrap());
/// `From:` and its translations, optionally bold (`*From:*`).
static FROM_FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\s*\*?(?:from|von|de|van|da)\s*\*?\s*:\*?\s*\S").unwrap());
/// Any header field of a quoted message, in the same languages.
static HEADER_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*\*?(?:from|sent|date|to|cc|bcc|subject|reply-to|importance|von|gesendet|datum|an|betreff|de|envoyé|à|objet|enviado|fecha|para|asunto|data|assunto|van|verzonden|aan|onderwerp|da|inviato|a|oggetto)\s*\*?\s*:",
    )
    .unwrap()
});

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Blank,
    Quoted,
    Own,
    /// Second line of a wrapped wrote-line.
    Continuation,
    Marker(Marker),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Marker {
    /// A wrote-line spanning `lines` lines.
    Wrote { lines: usize },
    /// Original-message separator, or underscores before `From:`.
    Separator,
    /// A forward banner (`---------- Forwarded message ---------`).
    Forward,
    /// A `From:` line that starts a header block.
    HeaderBlock,
}

/// Removes quoted history. Returns the text and whether anything was removed. A message that is
/// only quoted history keeps the quoted text (forward headers and `>` prefixes removed); a text
/// that would come out empty is returned unchanged.
pub fn strip_quoted(text: &str) -> (String, bool) {
    strip_quoted_opt(text).unwrap_or_else(|| (text.to_owned(), false))
}

/// Like [`strip_quoted`], `None` when no text would remain.
pub(super) fn strip_quoted_opt(text: &str) -> Option<(String, bool)> {
    strip(text, true)
}

fn strip(text: &str, may_unquote: bool) -> Option<(String, bool)> {
    let lines: Vec<&str> = text.lines().collect();
    let kinds = classify(&lines);
    let n = lines.len();
    // quote_then_own[j]: some own line k ≥ j has a quoted line in [j, k) — the quote is answered
    // below (interleaved or bottom-posted reply), so a wrote-line before it must not cut.
    let mut quote_then_own = vec![false; n + 1];
    let mut own_from = false;
    for j in (0..n).rev() {
        quote_then_own[j] = quote_then_own[j + 1] || (kinds[j] == Kind::Quoted && own_from);
        own_from |= kinds[j] == Kind::Own;
    }

    let mut removed = false;
    let mut start = 0;
    // Kept line ranges: normally one; a forward after the sender's own note adds the forwarded body.
    let mut keep: Vec<(usize, usize)> = Vec::new();
    loop {
        let mut cut = None;
        let mut i = start;
        while i < n {
            if let Kind::Marker(m) = kinds[i] {
                if let Marker::Wrote { lines: len } = m
                    && next_non_blank(&kinds, i + len) == Some(Kind::Quoted)
                    && quote_then_own[i + len]
                {
                    removed = true; // an interleaved reply's header: drop just the header
                    i += len;
                    continue;
                }
                cut = Some((i, m));
                break;
            }
            i += 1;
        }
        let Some((at, marker)) = cut else {
            keep.push((start, n));
            break;
        };
        removed = true;
        if kinds[start..at].contains(&Kind::Own) {
            keep.push((start, at));
            if marker != Marker::Forward {
                break;
            }
        }
        // Skip the marker's header and go on with what follows: the forwarded body, or (when
        // nothing of the author's own came first) the quoted message itself.
        start = header_end(&lines, &kinds, at, marker);
    }

    let mut out: Vec<&str> = Vec::new();
    for k in keep.into_iter().flat_map(|(from, to)| from..to) {
        match kinds[k] {
            Kind::Own | Kind::Blank => out.push(lines[k]),
            Kind::Quoted => removed = true,
            Kind::Continuation | Kind::Marker(_) => {}
        }
    }
    if out.iter().any(|l| !l.trim().is_empty()) {
        return Some((out.join("\n"), removed));
    }
    // Only quotes: keep the quoted text itself, unquoted once (it has no `>` left to unquote).
    if may_unquote && kinds.contains(&Kind::Quoted) {
        let unquoted: Vec<&str> = lines.iter().map(|l| unquote(l)).collect();
        return strip(&unquoted.join("\n"), false).map(|(t, _)| (t, true));
    }
    None
}

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// Removes every level of `>` prefix and one following space.
fn unquote(line: &str) -> &str {
    let mut s = line;
    while let Some(rest) = s.trim_start().strip_prefix('>') {
        s = rest;
    }
    s.strip_prefix(' ').unwrap_or(s)
}

fn next_non_blank(kinds: &[Kind], from: usize) -> Option<Kind> {
    kinds.get(from..)?.iter().copied().find(|k| *k != Kind::Blank)
}

fn next_non_blank_line(kinds: &[Kind], from: usize) -> Option<usize> {
    (from..kinds.len()).find(|&k| kinds[k] != Kind::Blank)
}

fn has_date_or_address(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit() || b == b'@')
}

fn classify(lines: &[&str]) -> Vec<Kind> {
    let n = lines.len();
    let mut kinds: Vec<Kind> = lines
        .iter()
        .map(|l| match () {
            _ if l.trim().is_empty() => Kind::Blank,
            _ if is_quoted(l) => Kind::Quoted,
            _ => Kind::Own,
        })
        .collect();
    let mut i = 0;
    while i < n {
        let line = lines[i];
        if kinds[i] != Kind::Own || line.len() > MAX_MARKER_LINE {
            i += 1;
            continue;
        }
        let marker = if SEPARATOR.is_match(line) && FORWARD.is_match(line) {
            Some(Marker::Forward)
        } else if SEPARATOR.is_match(line)
            || (UNDERSCORES.is_match(line)
                && next_non_blank_line(&kinds, i + 1).is_some_and(|k| FROM_FIELD.is_match(lines[k])))
        {
            Some(Marker::Separator)
        } else if FROM_FIELD.is_match(line) && starts_header_block(lines, i) {
            Some(Marker::HeaderBlock)
        } else if WROTE.is_match(line) && has_date_or_address(line) {
            Some(Marker::Wrote { lines: 1 })
        } else if i + 1 < n
            && kinds[i + 1] == Kind::Own
            && lines[i + 1].len() <= MAX_MARKER_LINE
            && WROTE_LEAD.is_match(line)
            && WROTE_ANY.is_match(lines[i + 1])
            && has_date_or_address(line)
            && WROTE.is_match(&format!("{} {}", line.trim_end(), lines[i + 1].trim_start()))
        {
            Some(Marker::Wrote { lines: 2 })
        } else if WROTE_ANY.is_match(line)
            && next_non_blank_line(&kinds, i + 1).is_some_and(|k| kinds[k] == Kind::Quoted)
        {
            Some(Marker::Wrote { lines: 1 })
        } else {
            None
        };
        if let Some(m) = marker {
            kinds[i] = Kind::Marker(m);
            if m == (Marker::Wrote { lines: 2 }) {
                kinds[i + 1] = Kind::Continuation;
                i += 1;
            }
        }
        i += 1;
    }
    kinds
}

/// A `From:` line followed, in the same paragraph, by at least two other header fields.
fn starts_header_block(lines: &[&str], from_line: usize) -> bool {
    lines
        .iter()
        .skip(from_line + 1)
        .take(6)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.len() <= MAX_MARKER_LINE && HEADER_FIELD.is_match(l) && !FROM_FIELD.is_match(l))
        .count()
        >= 2
}

/// First line after a marker's header: the marker line(s), then (for separators and header
/// blocks) the paragraph of header fields that follows.
fn header_end(lines: &[&str], kinds: &[Kind], at: usize, marker: Marker) -> usize {
    let n = lines.len();
    let mut j = match marker {
        Marker::Wrote { lines } => return at + lines,
        Marker::Separator | Marker::Forward => at + 1,
        Marker::HeaderBlock => at,
    };
    while j < n && kinds[j] == Kind::Blank {
        j += 1;
    }
    if j < n && HEADER_FIELD.is_match(lines[j]) {
        let limit = (j + MAX_HEADER_LINES).min(n);
        match (j..limit).find(|&k| kinds[k] == Kind::Blank) {
            Some(blank) => j = blank,
            None => {
                while j < n && HEADER_FIELD.is_match(lines[j]) {
                    j += 1;
                }
            }
        }
    }
    j
}
