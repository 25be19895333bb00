//! HTML → plain text for the prompt.
//!
//! The body is parsed once with html5ever (through html2text), pruned on the DOM, then rendered by
//! html2text with [`PromptDecorator`] (no link brackets, no footnotes, no `**`). Pruning on the
//! parsed DOM instead of a regex pre-pass means nesting, unclosed tags and attribute quoting are
//! resolved exactly as a browser would, so a hidden `<div>` that contains other `<div>`s is removed
//! whole.
//!
//! Always removed (they are invisible to a human reader, and prompt-injection text hides there):
//! comments, `<script>`, `<style>`, `<head>`, `<template>`, `<noscript>`, `<iframe>`, `<object>`,
//! `<svg>`, elements with the `hidden` attribute, and elements whose inline style hides them
//! (see [`style_hides`]) or whose class/id a top-level `<style>` rule hides.
//!
//! Removed when `drop_history` is set (they are quoted history or signatures): `<blockquote>`,
//! `gmail_quote`/`yahoo_quoted`/`moz-cite-prefix`/`protonmail_quote` blocks, `gmail_signature`,
//! `moz-signature` and Outlook's `id="Signature"`.
//!
//! Limitations (by design: this is a cleaner, not a browser): CSS selectors other than `.class`,
//! `tag.class` and `#id` at the top level of a `<style>` block are not evaluated (`@media` blocks
//! are ignored on purpose, since responsive emails hide their desktop variant there); text the
//! same colour as a non-white background is not detected; white text is kept when the element or
//! an ancestor sets a non-white background. Documents nested deeper than [`MAX_DEPTH`] elements (or
//! on which html2text fails) go through [`scan_fallback`], a linear tag scanner that applies the
//! same removal rules with approximate nesting (an unclosed hidden element hides to the end).

use std::{
    borrow::Cow,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::LazyLock,
};

use html2text::{Comment, Element, Handle, RcDom, render::TextDecorator};
use regex::Regex;

use super::{
    css::{HiddenSelectors, is_whiteish, sets_colored_bg, style_hides},
    scan::scan_fallback,
};

/// Render width: so wide that html2text never wraps a paragraph (line structure is the author's).
/// Cost does not grow with it: lines are not padded (probed: same time at 200 and 1 000 000).
const WIDTH: usize = 1_000_000;
/// Deeper documents are not given to html2text, whose layout is quadratic in nesting depth
/// (100 000 nested `<div>`s took 25 s when probed); real emails stay well under 100.
const MAX_DEPTH: usize = 400;

/// Tag names that mark real markup. Anchored on `<` plus a known name plus `>`, whitespace or `/`,
/// so `a < b`, `<jane@example.com>` and `Vec<T>` are not markup.
const TAG_NAMES: &str = "p|br|div|span|html|head|body|table|tbody|thead|tr|td|th|ul|ol|li|a|b|i|u|s|em|strong|font|img|h[1-6]|blockquote|pre|code|hr|center|style|script|meta|title|section|article|header|footer|small|sup|sub|o:p";

static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)</?(?:{TAG_NAMES})(?:\s[^<>]*)?/?>|<!--|<!doctype\s")).unwrap()
});
pub(super) static ENTITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});").unwrap()
});
/// Block-level markup: when none is present the input is text with a few inline tags or entities
/// (typical of web forms), whose newlines are meaningful and must survive rendering.
static BLOCK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)</?(?:p|br|div|table|tr|td|li|ul|ol|h[1-6]|pre|blockquote|hr|html|body|head|section|article)(?:\s[^<>]*)?/?>").unwrap()
});
/// One token of the fallback scanner: comment, CDATA, doctype/PI, or a tag with its attributes.
pub(super) static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?s)<!--.*?(?:-->|\z)|<!\[CDATA\[.*?(?:\]\]>|\z)|<[!?][^>]*>|<(/?)([a-zA-Z][a-zA-Z0-9:_-]*)((?:[^>"']|"[^"]*"|'[^']*')*)>"#).unwrap()
});
pub(super) static ATTR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"([a-zA-Z_:][a-zA-Z0-9_:.-]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?"#).unwrap()
});

const DROP_TAGS: &[&str] =
    &["script", "style", "head", "title", "noscript", "template", "iframe", "object", "embed", "svg"];
const QUOTE_CLASSES: &[&str] = &[
    "gmail_quote",
    "gmail_quote_container",
    "gmail_attr",
    "yahoo_quoted",
    "moz-cite-prefix",
    "protonmail_quote",
];
const SIGNATURE_CLASSES: &[&str] = &["gmail_signature", "moz-signature"];
pub(super) const VOID_TAGS: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
    "wbr",
];
/// Elements the HTML parser closes implicitly; not counted by the depth estimate.
pub(super) const SELF_CLOSING_BY_PARSER: &[&str] = &["p", "li", "td", "th", "tr", "option", "dt", "dd"];
#[rustfmt::skip]
pub(super) const BLOCK_TAGS: &[&str] = &[
    "p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6", "pre",
    "blockquote", "hr", "section", "article", "header", "footer",
];

/// Result of rendering one HTML body.
pub(super) struct Rendered {
    pub text: String,
    /// A quoted-history element with text in it was removed.
    pub dropped_quote: bool,
    /// A signature element with text in it was removed.
    pub dropped_signature: bool,
}

/// Cheap check for real markup: a known HTML tag, a comment, a doctype or an entity.
/// `a < b`, `<jane@example.com>` and `Vec<String>` are not markup.
pub fn looks_like_html(s: &str) -> bool {
    TAG.is_match(s) || ENTITY.is_match(s)
}

/// Converts HTML to plain text: invisible content, quoted history (`<blockquote>`, `gmail_quote`)
/// and marked-up signatures removed, entities decoded, no link footnotes, no wrapping.
/// Never fails: when html2text cannot render, a linear tag scanner is used instead.
pub fn html_to_text(html: &str) -> String {
    render(html, true).text
}

/// See the module doc. `drop_history` removes quote and signature elements.
pub(super) fn render(html: &str, drop_history: bool) -> Rendered {
    let prepared = if BLOCK.is_match(html) { Cow::Borrowed(html) } else { Cow::Owned(textish_to_html(html)) };
    if estimated_depth(&prepared) > MAX_DEPTH {
        return scan_fallback(&prepared, drop_history);
    }
    // html2text is third-party code fed with untrusted input: a panic there must not take down the
    // worker, it only costs the nicer rendering.
    match catch_unwind(AssertUnwindSafe(|| render_dom(&prepared, drop_history))) {
        Ok(Some(r)) => r,
        _ => scan_fallback(&prepared, drop_history),
    }
}

fn render_dom(html: &str, drop_history: bool) -> Option<Rendered> {
    let cfg = html2text::config::with_decorator(PromptDecorator)
        .allow_width_overflow()
        .no_table_borders()
        .unicode_strikeout(false);
    let dom = cfg.parse_html(html.as_bytes()).ok()?;
    let hidden = hidden_selectors(&dom);
    let pruned = prune(&dom.document, &hidden, drop_history)?;
    let tree = cfg.dom_to_render_tree(&dom).ok()?;
    let text = cfg.render_to_string(tree, WIDTH).ok()?;
    Some(Rendered { text, dropped_quote: pruned.quote, dropped_signature: pruned.signature })
}

/// Web-form text with a few inline tags or entities: keep its newlines and its stray `<`.
fn textish_to_html(s: &str) -> String {
    fn push_text(out: &mut String, t: &str) {
        for c in t.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '\n' => out.push_str("<br>\n"),
                c => out.push(c),
            }
        }
    }
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    let mut last = 0;
    for m in TAG.find_iter(s) {
        push_text(&mut out, &s[last..m.start()]);
        out.push_str(m.as_str());
        last = m.end();
    }
    push_text(&mut out, &s[last..]);
    out
}

/// Upper-bound-ish nesting depth from a linear scan of the tags, before parsing (html5ever and
/// html2text both slow down on pathological nesting).
fn estimated_depth(html: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for cap in TOKEN.captures_iter(html) {
        let Some(name) = cap.get(2) else { continue };
        let name = name.as_str().to_ascii_lowercase();
        if VOID_TAGS.contains(&name.as_str()) || SELF_CLOSING_BY_PARSER.contains(&name.as_str()) {
            continue;
        }
        if cap.get(1).is_some_and(|c| !c.is_empty()) {
            depth = depth.saturating_sub(1);
        } else if !cap[3].trim_end().ends_with('/') {
            depth += 1;
            max = max.max(depth);
        }
    }
    max
}

/// What to do with one element.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Verdict {
    Keep,
    /// Invisible or executable: always removed.
    Unsafe,
    Quote,
    Signature,
}

/// Decides one element's fate from its tag name and attributes.
pub(super) fn classify<'a>(
    tag: &str,
    attr: impl Fn(&str) -> Option<&'a str>,
    hidden: &HiddenSelectors,
    on_colored_bg: bool,
    drop_history: bool,
) -> Verdict {
    if DROP_TAGS.contains(&tag) || attr("hidden").is_some() {
        return Verdict::Unsafe;
    }
    let own_bg = attr("bgcolor").is_some_and(|c| !is_whiteish(c));
    if attr("style").is_some_and(|s| style_hides(s, on_colored_bg || own_bg)) {
        return Verdict::Unsafe;
    }
    if tag == "font" && !on_colored_bg && attr("color").is_some_and(is_whiteish) {
        return Verdict::Unsafe;
    }
    let classes = attr("class").unwrap_or_default();
    let id = attr("id").unwrap_or_default();
    if classes.split_whitespace().any(|c| hidden.classes.contains(c)) || hidden.ids.contains(id) {
        return Verdict::Unsafe;
    }
    if !drop_history {
        return Verdict::Keep;
    }
    if tag == "blockquote" || classes.split_whitespace().any(|c| QUOTE_CLASSES.contains(&c)) {
        return Verdict::Quote;
    }
    if id.eq_ignore_ascii_case("signature")
        || classes.split_whitespace().any(|c| SIGNATURE_CLASSES.contains(&c))
    {
        return Verdict::Signature;
    }
    Verdict::Keep
}

/// Collects the selectors hidden by the document's `<style>` blocks.
fn hidden_selectors(dom: &RcDom) -> HiddenSelectors {
    let mut out = HiddenSelectors::default();
    let mut stack = vec![dom.document.clone()];
    while let Some(node) = stack.pop() {
        if let Element { name, .. } = &node.data
            && &*name.local == "style"
        {
            // Text nodes are not nameable through html2text's re-exports; the serialiser
            // writes a <style> element's text raw, so serialise and unwrap it.
            let html = serialize(&node);
            let css = html.split_once('>').map_or("", |(_, rest)| rest);
            let css = css.strip_suffix("</style>").unwrap_or(css);
            out.add_css(css);
            continue;
        }
        stack.extend(node.children.borrow().iter().cloned());
    }
    out
}

/// Which kinds of element the pruning removed (only counted when they contained text).
#[derive(Default)]
struct Pruned {
    quote: bool,
    signature: bool,
}

/// Removes comments and unwanted elements in place (iteratively: no recursion on untrusted
/// nesting). `None` when the document is deeper than [`MAX_DEPTH`].
fn prune(root: &Handle, hidden: &HiddenSelectors, drop_history: bool) -> Option<Pruned> {
    let mut out = Pruned::default();
    let mut stack = vec![(root.clone(), 0usize, false)];
    while let Some((node, depth, on_bg)) = stack.pop() {
        if depth > MAX_DEPTH {
            return None;
        }
        let mut kept = Vec::new();
        node.children.borrow_mut().retain(|child| match &child.data {
            Comment { .. } => false,
            Element { name, attrs, .. } => {
                let attrs = attrs.borrow();
                let attr = |k: &str| attrs.iter().find(|a| &*a.name.local == k).map(|a| &*a.value);
                match classify(&name.local, attr, hidden, on_bg, drop_history) {
                    Verdict::Keep => {
                        kept.push((child.clone(), depth + 1, on_bg || sets_colored_bg(attr)));
                        true
                    }
                    Verdict::Unsafe => false,
                    Verdict::Quote => {
                        out.quote |= has_text(child);
                        false
                    }
                    Verdict::Signature => {
                        out.signature |= has_text(child);
                        false
                    }
                }
            }
            _ => true,
        });
        stack.extend(kept);
    }
    Some(out)
}

fn serialize(node: &Handle) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail; a partial result is still fine for our uses.
    let _ = node.serialize(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Whether a subtree contains any non-whitespace text.
fn has_text(node: &Handle) -> bool {
    let html = serialize(node);
    let mut last = 0;
    for m in TOKEN.find_iter(&html) {
        if !html[last..m.start()].trim().is_empty() {
            return true;
        }
        last = m.end();
    }
    !html[last..].trim().is_empty()
}

/// Renders for a language model: text only. Links keep their text without brackets or footnotes,
/// emphasis and images leave no marks, headings no `#`. Quotes keep `> ` so that the text-level
/// quote stripping still sees them when quotes are rendered; lists keep `- ` / `1. `.
#[derive(Clone, Copy, Debug)]
struct PromptDecorator;

impl TextDecorator for PromptDecorator {
    type Annotation = ();

    fn decorate_link_start(&mut self, _url: &str) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_link_end(&mut self) -> String {
        String::new()
    }
    fn decorate_em_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_em_end(&self) -> String {
        String::new()
    }
    fn decorate_strong_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strong_end(&self) -> String {
        String::new()
    }
    fn decorate_strikeout_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }
    fn decorate_code_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_code_end(&self) -> String {
        String::new()
    }
    fn decorate_preformat_first(&self) {}
    fn decorate_preformat_cont(&self) {}
    fn decorate_image(&mut self, _src: &str, _title: &str) -> (String, ()) {
        // Inline images are logos and pasted screenshots: their alt text ("image001.png") is noise.
        (String::new(), ())
    }
    fn header_prefix(&self, _level: usize) -> String {
        String::new()
    }
    fn quote_prefix(&self) -> String {
        "> ".to_owned()
    }
    fn unordered_item_prefix(&self) -> String {
        "- ".to_owned()
    }
    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }
    fn make_subblock_decorator(&self) -> Self {
        *self
    }
    fn decorate_superscript_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_superscript_end(&self) -> String {
        String::new()
    }
}
