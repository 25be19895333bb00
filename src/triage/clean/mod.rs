//! The text cleaner every ticket description and note goes through before it is shown to the
//! model (and before its tokens are counted).
//!
//! Pipeline of [`clean_message`]:
//! 1. HTML (see [`looks_like_html`]) → text with [`html_to_text`]: invisible elements, comments,
//!    scripts and styles always removed (prompt injection hides there), `<blockquote>` and
//!    `gmail_quote` blocks removed as quoted history, `gmail_signature` blocks as signatures.
//! 2. [`fold_whitespace`], so that the rules below see normalised lines.
//! 3. [`strip_quoted`]: reply headers in seven languages (and CJK clients'), `>` quotes, Outlook
//!    separators and header blocks, forward banners, helpdesk "reply above this line" delimiters.
//! 4. [`strip_signature`]: `-- `, mobile taglines, valediction + short block, legal footers and
//!    company imprints.
//! 5. [`fold_whitespace`] again.
//!
//! Nothing here panics or backtracks: the `regex` crate matches in linear time, line rules only
//! look at bounded-length lines, and the HTML path falls back to a linear scanner on documents
//! html2text should not see (see the `html` submodule). Text is never cleaned down to nothing: when every rule
//! would remove everything, the last non-empty stage is kept (a bare forward keeps the forwarded
//! body, "Thanks!" stays "Thanks!").
//!
//! Known limitations (details in the submodules' docs):
//! - HTML: CSS beyond inline styles and simple top-level `.class`/`#id` rules is not evaluated;
//!   text coloured like a non-white background is not detected.
//! - Quotes: a `>` line written by the customer (a pasted shell prompt or error) is removed like an
//!   email quote; a quote whose long lines were re-wrapped without `>` leaks its fragments; a
//!   forward with a short note of one's own ("FYI, see below") keeps only the note.
//! - Signatures: only a valediction, `-- `, a box-drawing rule, a mobile tagline or a legal/imprint
//!   paragraph starts a cut; a bare name/company block without one of them stays.
//! - Idempotence (`clean(clean(x)) == clean(x)`) holds for everything the tests and the sandbox data
//!   contain, but not when the cleaned text itself contains literal markup (`<div>` that was
//!   `&lt;div&gt;` in the HTML) or for adversarial chains of more than 10 stacked signatures.

mod css;
mod html;
mod quotes;
mod scan;
mod signature;
#[cfg(test)]
mod tests;

pub use html::{html_to_text, looks_like_html};
pub use quotes::strip_quoted;
pub use signature::strip_signature;

/// One cleaned message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// The text to show the model.
    pub text: String,
    /// Quoted history (reply headers, `>` quotes, forwarded headers, quote elements) was removed.
    pub removed_quote: bool,
    /// A signature, mobile tagline or legal footer was removed.
    pub removed_signature: bool,
    /// The body was HTML and was converted to text.
    pub was_html: bool,
}

/// Cleans one message body for the prompt: HTML → text, quoted history removed, signature and
/// legal footer trimmed, whitespace folded.
pub fn clean_message(body: &str) -> Cleaned {
    let was_html = looks_like_html(body);
    let prepare = |drop_history: bool| {
        if was_html {
            let r = html::render(body, drop_history);
            (fold_whitespace(&r.text), r.dropped_quote, r.dropped_signature)
        } else {
            (fold_whitespace(body), false, false)
        }
    };
    let (mut text, mut dropped_quote, mut dropped_signature) = prepare(true);
    let mut quoted = quotes::strip_quoted_opt(&text);
    if quoted.is_none() && (dropped_quote || dropped_signature) {
        // The HTML was nothing but quoted history (a bare forward): render it with its quotes and
        // let the text rules keep the forwarded body.
        (text, dropped_quote, dropped_signature) = prepare(false);
        quoted = quotes::strip_quoted_opt(&text);
    }
    let (text, removed_quote) = match quoted {
        Some((t, removed)) => (fold_whitespace(&t), removed || dropped_quote),
        None => (text, dropped_quote),
    };
    let (text, removed_signature) = strip_signature(&text);
    Cleaned {
        text: fold_whitespace(&text),
        removed_quote,
        removed_signature: removed_signature || dropped_signature,
        was_html,
    }
}

/// What [`fold_whitespace`]'s first pass writes for `c` other than CR (which also takes a
/// following LF): line breaks → LF, Unicode spaces → space, invisible characters → nothing.
fn normalised_char(c: char) -> Option<char> {
    match c {
        '\n' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}' => Some('\n'),
        '\t' => Some('\t'),
        '\u{A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => Some(' '),
        '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{AD}' => None,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => None,
        '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}' => None,
        c if c.is_control() => None,
        c => Some(c),
    }
}

/// Normalises whitespace without losing line structure: CRLF/CR/U+2028 → LF; non-breaking and
/// other Unicode spaces → space; zero-width characters, bidi controls, Unicode tag characters and
/// other invisible controls removed (they are also a way to smuggle text past a human reader);
/// trailing spaces trimmed; any run of blank lines → one blank line; leading and trailing blank
/// lines removed. Indentation and single newlines are kept (lists and stack traces need them).
pub fn fold_whitespace(text: &str) -> String {
    let mut normalised = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Plain ASCII (printable, newline, tab) is kept as it is, a run at a time.
        let run = bytes[i..].iter().take_while(|b| matches!(b, 0x20..=0x7E | b'\n' | b'\t')).count();
        normalised.push_str(&text[i..i + run]);
        i += run;
        let Some(c) = text[i..].chars().next() else { break };
        i += c.len_utf8();
        if c == '\r' {
            // CRLF and a lone CR are both one line break.
            if bytes.get(i) == Some(&b'\n') {
                i += 1;
            }
            normalised.push('\n');
        } else {
            normalised.extend(normalised_char(c));
        }
    }
    let mut out = String::with_capacity(normalised.len());
    let mut blank_pending = false;
    for line in normalised.split('\n').map(str::trim_end) {
        if line.trim_start().is_empty() {
            blank_pending = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_pending {
                out.push('\n');
            }
        }
        out.push_str(line);
        blank_pending = false;
    }
    out
}
