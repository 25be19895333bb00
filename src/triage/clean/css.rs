//! Inline-style and `<style>`-rule checks for content a human reader cannot see.

use std::collections::HashSet;

/// Whether an element's own colour settings put it on a non-white background (its white text is
/// then visible, e.g. a button or a dark banner).
pub(super) fn sets_colored_bg<'a>(attr: impl Fn(&str) -> Option<&'a str>) -> bool {
    attr("bgcolor").is_some_and(|c| !is_whiteish(c))
        || attr("style").is_some_and(|s| {
            declarations(s).any(|(p, v)| {
                (p == "background" || p == "background-color")
                    && !(is_whiteish(&v) || v == "transparent" || v == "none" || v.is_empty())
            })
        })
}

/// `prop: value` pairs of an inline style, lower-cased, `!important` removed.
fn declarations(style: &str) -> impl Iterator<Item = (String, String)> + '_ {
    style.split(';').filter_map(|decl| {
        let (prop, value) = decl.split_once(':')?;
        let value = value.trim().to_ascii_lowercase();
        let value = value
            .strip_suffix("important")
            .map_or(value.as_str(), |v| v.trim_end().trim_end_matches('!'))
            .trim();
        Some((prop.trim().to_ascii_lowercase(), value.to_owned()))
    })
}

/// Whether an inline style makes the element's text invisible: `display:none`,
/// `visibility:hidden`, `opacity:0`, a font size under 2px/2pt (0 in any unit), `mso-hide:all`,
/// `color:transparent`, white or near-white text (unless on a coloured background), zero
/// height/width with `overflow:hidden`, or an off-screen `text-indent`/`left`/`top`.
pub(super) fn style_hides(style: &str, on_colored_bg: bool) -> bool {
    let (mut white_text, mut own_bg, mut zero_size, mut overflow_hidden) = (false, false, false, false);
    for (prop, value) in declarations(style) {
        let num = leading_number(&value);
        match prop.as_str() {
            "display" if value == "none" => return true,
            "visibility" if value == "hidden" || value == "collapse" => return true,
            "opacity" if num.is_some_and(|(n, _)| n <= 0.05) => return true,
            "font-size" if num.is_some_and(|(n, unit)| tiny_font(n, unit)) => return true,
            "mso-hide" if value == "all" => return true,
            "color" if value == "transparent" => return true,
            "color" => white_text = is_whiteish(&value),
            "background" | "background-color" => {
                own_bg =
                    !(is_whiteish(&value) || value == "transparent" || value == "none" || value.is_empty());
            }
            "height" | "max-height" | "width" | "max-width" => {
                zero_size |= num.is_some_and(|(n, _)| n == 0.0)
            }
            "overflow" => overflow_hidden = value == "hidden",
            "text-indent" | "left" | "top" | "margin-left" if num.is_some_and(|(n, _)| n <= -500.0) => {
                return true;
            }
            _ => {}
        }
    }
    (white_text && !own_bg && !on_colored_bg) || (zero_size && overflow_hidden)
}

fn tiny_font(n: f64, unit: &str) -> bool {
    n <= 0.0
        || match unit {
            "px" | "pt" => n < 2.0,
            "em" | "rem" => n < 0.15,
            "%" => n < 15.0,
            _ => false,
        }
}

/// The number at the start of a CSS value and the unit after it: `"1.5px"` → `(1.5, "px")`.
fn leading_number(v: &str) -> Option<(f64, &str)> {
    let end = v
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+'))))
        .map_or(v.len(), |(i, _)| i);
    let n = v[..end].parse::<f64>().ok()?;
    Some((n, v[end..].split_whitespace().next().unwrap_or_default()))
}

/// White or near-white colour (`white`, `#fff`, `#fefefe`, `rgb(250,250,250)`…): every channel ≥ 0xF0.
pub(super) fn is_whiteish(v: &str) -> bool {
    let v = v.trim().to_ascii_lowercase();
    let rgb: Option<[u32; 3]> = if v == "white" {
        Some([255; 3])
    } else if let Some(hex) = v.strip_prefix('#') {
        let digits: Vec<u32> = hex.chars().map(|c| c.to_digit(16)).collect::<Option<_>>().unwrap_or_default();
        match digits.len() {
            3 | 4 => Some([digits[0] * 17, digits[1] * 17, digits[2] * 17]),
            6 | 8 => {
                Some([digits[0] * 16 + digits[1], digits[2] * 16 + digits[3], digits[4] * 16 + digits[5]])
            }
            _ => None,
        }
    } else if let Some(args) = v.strip_prefix("rgb(").or_else(|| v.strip_prefix("rgba(")) {
        let parts: Vec<u32> = args
            .trim_end_matches(')')
            .split([',', ' ', '/'])
            .filter(|p| !p.is_empty())
            .take(3)
            .filter_map(|p| p.trim().parse::<f64>().ok().map(|f| f as u32))
            .collect();
        (parts.len() == 3).then(|| [parts[0], parts[1], parts[2]])
    } else {
        None
    };
    rgb.is_some_and(|c| c.iter().all(|&ch| ch >= 0xF0))
}

/// Classes and ids hidden by simple top-level rules of `<style>` blocks (`.x{display:none}`).
#[derive(Default)]
pub(super) struct HiddenSelectors {
    pub classes: HashSet<String>,
    pub ids: HashSet<String>,
}

impl HiddenSelectors {
    /// Reads top-level rules only; `@media`/`@supports` blocks are skipped whole (brace counting).
    /// `p.ghost` hides class `ghost` on every element: a harmless over-approximation.
    pub fn add_css(&mut self, css: &str) {
        let bytes = css.as_bytes();
        let (mut i, mut sel_start) = (0, 0);
        while i < bytes.len() {
            match bytes[i] {
                b'{' => {
                    let selector = css[sel_start..i].trim();
                    let body_start = i + 1;
                    let mut depth = 1usize;
                    i += 1;
                    while i < bytes.len() && depth > 0 {
                        match bytes[i] {
                            b'{' => depth += 1,
                            b'}' => depth -= 1,
                            _ => {}
                        }
                        i += 1;
                    }
                    // `i` is past the closing `}` (an ASCII byte), or at the end when unclosed.
                    let body_end = if depth == 0 { i - 1 } else { i };
                    let body = &css[body_start..body_end];
                    if !selector.starts_with('@') && !body.contains('{') && style_hides(body, false) {
                        self.add_selectors(selector);
                    }
                    sel_start = i;
                }
                // A stray `}` or an at-statement such as `@charset "utf-8";` ends a selector.
                b'}' | b';' => {
                    i += 1;
                    sel_start = i;
                }
                _ => i += 1,
            }
        }
    }

    fn add_selectors(&mut self, selectors: &str) {
        for sel in selectors.split(',').map(str::trim) {
            let simple =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_');
            let tag_end = sel.find(['.', '#']).unwrap_or(sel.len());
            if !sel[..tag_end].chars().all(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            let rest = &sel[tag_end..];
            if let Some(class) = rest.strip_prefix('.').filter(|c| simple(c)) {
                self.classes.insert(class.to_owned());
            } else if let Some(id) = rest.strip_prefix('#').filter(|c| simple(c)) {
                self.ids.insert(id.to_owned());
            }
        }
    }
}
