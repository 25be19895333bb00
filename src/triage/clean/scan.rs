//! Fallback HTML → text: a linear tag scanner with the same removal rules as the DOM path.

use std::borrow::Cow;

use super::{
    css::HiddenSelectors,
    html::{ATTR, BLOCK_TAGS, ENTITY, Rendered, SELF_CLOSING_BY_PARSER, TOKEN, VOID_TAGS, Verdict, classify},
};

/// Linear tag scanner used when html2text is not safe or not able to render: same removal rules
/// as the DOM path (nesting tracked by counting open/close tags), block tags become newlines,
/// entities decoded, whitespace collapsed.
pub(super) fn scan_fallback(html: &str, drop_history: bool) -> Rendered {
    let mut hidden = HiddenSelectors::default();
    let mut out = String::with_capacity(html.len() / 2);
    let mut r = Rendered { text: String::new(), dropped_quote: false, dropped_signature: false };
    // The element being skipped: its verdict, its tag and how many open tags deep we are in it.
    // Tags the parser closes implicitly (`<p>`, `<li>`…) are only counted inside an element of the
    // same name, so `<div hidden><p>x</div>` ends where a browser ends it.
    let mut skip: Option<(Verdict, String, usize)> = None;
    let mut emit = |text: &str, skip: &Option<(Verdict, String, usize)>, out: &mut String| match skip {
        Some((kind, _, _)) if !text.trim().is_empty() => match kind {
            Verdict::Quote => r.dropped_quote = true,
            Verdict::Signature => r.dropped_signature = true,
            _ => {}
        },
        Some(_) => {}
        None => push_collapsed(out, &decode_entities(text)),
    };
    let mut pos = 0;
    while let Some(cap) = TOKEN.captures_at(html, pos) {
        let (start, end) = cap.get(0).map_or((pos, html.len()), |m| (m.start(), m.end()));
        emit(&html[pos..start], &skip, &mut out);
        pos = end;
        let Some(name) = cap.get(2) else { continue };
        let name = name.as_str().to_ascii_lowercase();
        let closing = !cap[1].is_empty();
        let void = VOID_TAGS.contains(&name.as_str()) || cap[3].trim_end().ends_with('/');
        if !closing && matches!(name.as_str(), "script" | "style" | "title") {
            // Raw text: runs to the matching end tag, whatever it contains.
            let close = find_ascii_ci(html, pos, &format!("</{name}"));
            if name == "style" {
                hidden.add_css(&html[pos..close.unwrap_or(html.len())]);
            }
            pos = close.map_or(html.len(), |c| html[c..].find('>').map_or(html.len(), |g| c + g + 1));
            continue;
        }
        if let Some((_, root, depth)) = &mut skip {
            if SELF_CLOSING_BY_PARSER.contains(&name.as_str()) && name != *root {
                continue;
            }
            if closing {
                *depth -= 1;
                if *depth == 0 {
                    skip = None;
                }
            } else if !void {
                *depth += 1;
            }
            continue;
        }
        if closing {
            if BLOCK_TAGS.contains(&name.as_str()) {
                out.push('\n');
            }
            continue;
        }
        let attrs: Vec<(String, String)> = ATTR
            .captures_iter(&cap[3])
            .map(|a| {
                let value = a.get(2).or(a.get(3)).or(a.get(4)).map_or("", |v| v.as_str());
                (a[1].to_ascii_lowercase(), decode_entities(value).into_owned())
            })
            .collect();
        let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match classify(&name, attr, &hidden, false, drop_history) {
            Verdict::Keep => {}
            _ if void => continue,
            verdict => {
                skip = Some((verdict, name, 1));
                continue;
            }
        }
        match name.as_str() {
            "li" => out.push_str("\n- "),
            "td" | "th" => out.push(' '),
            n if BLOCK_TAGS.contains(&n) => out.push('\n'),
            _ => {}
        }
    }
    emit(&html[pos..], &skip, &mut out);
    r.text = out.lines().map(str::trim).collect::<Vec<_>>().join("\n");
    r
}

/// Appends text with HTML whitespace semantics: any run of whitespace is one space.
fn push_collapsed(out: &mut String, text: &str) {
    let mut in_space = out.ends_with([' ', '\n']);
    for c in text.chars() {
        if c.is_whitespace() && c != '\u{a0}' {
            if !in_space {
                out.push(' ');
                in_space = true;
            }
        } else {
            out.push(c);
            in_space = false;
        }
    }
}

/// Byte offset of the first ASCII-case-insensitive occurrence of `needle` at or after `from`.
fn find_ascii_ci(hay: &str, from: usize, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    hay.as_bytes()[from..].windows(n.len()).position(|w| w.eq_ignore_ascii_case(n)).map(|p| from + p)
}

/// Decodes numeric entities and the common named ones; unknown names are left as they are.
pub(super) fn decode_entities(s: &str) -> Cow<'_, str> {
    ENTITY.replace_all(s, |c: &regex::Captures<'_>| {
        let e = &c[0][1..c[0].len() - 1];
        let decoded = if let Some(num) = e.strip_prefix('#') {
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse().ok(),
            };
            Some(code.and_then(char::from_u32).filter(|&c| c != '\0').unwrap_or('\u{FFFD}'))
        } else {
            NAMED_ENTITIES.iter().find(|(n, _)| *n == e).map(|&(_, c)| c)
        };
        decoded.map_or_else(|| c[0].to_owned(), String::from)
    })
}

#[rustfmt::skip]
const NAMED_ENTITIES: &[(&str, char)] = &[
    ("amp", '&'), ("lt", '<'), ("gt", '>'), ("quot", '"'), ("apos", '\''), ("nbsp", '\u{a0}'),
    ("hellip", '…'), ("mdash", '—'), ("ndash", '–'), ("rsquo", '’'), ("lsquo", '‘'), ("rdquo", '”'),
    ("ldquo", '“'), ("copy", '©'), ("reg", '®'), ("trade", '™'), ("euro", '€'), ("pound", '£'),
    ("bull", '•'), ("middot", '·'), ("laquo", '«'), ("raquo", '»'), ("eacute", 'é'),
    ("egrave", 'è'), ("agrave", 'à'), ("ccedil", 'ç'), ("auml", 'ä'), ("ouml", 'ö'), ("uuml", 'ü'),
    ("Auml", 'Ä'), ("Ouml", 'Ö'), ("Uuml", 'Ü'), ("szlig", 'ß'), ("ntilde", 'ñ'), ("aacute", 'á'),
    ("iacute", 'í'), ("oacute", 'ó'), ("uacute", 'ú'),
];
