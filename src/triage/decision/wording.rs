//! How problems and notes speak of untrusted values: quoted and clipped, lists of ids bounded,
//! and the control characters that neither a message nor a decision keeps.

use serde_json::Value;

/// How many listed ids a problem message names before it says "and N more".
const MAX_IDS_IN_MESSAGE: usize = 40;

/// "cat-a, cat-b, … and 3 more".
pub(super) fn list_ids(ids: &[&str]) -> String {
    let shown = ids.iter().take(MAX_IDS_IN_MESSAGE).copied().collect::<Vec<_>>().join(", ");
    match ids.len().saturating_sub(MAX_IDS_IN_MESSAGE) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// A model-supplied value for a message: at most 64 characters, no control characters or
/// backticks, in backticks. Messages go back to the model and into logs; the value is untrusted.
pub(super) fn show(value: &str) -> String {
    format!("`{}`", clip(value))
}

/// The inside of [`show`]: the first 64 characters, backticks and control characters as `?`.
pub(super) fn clip(value: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = value
        .chars()
        .take(MAX)
        .map(|c| if c == '`' || c.is_control() || is_unwanted_control(c) { '?' } else { c })
        .collect();
    if value.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// A JSON value's type, as a message names it ("a string", "null").
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// C0/C1 controls except tab and newlines, and the bidirectional overrides that can disguise text
/// on the review page. PostgreSQL text cannot store NUL at all.
pub(super) fn is_unwanted_control(c: char) -> bool {
    (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_values_are_clipped_and_defanged() {
        assert_eq!(show("a`b\u{0}c"), "`a?b?c`");
        assert_eq!(show(&"x".repeat(70)), format!("`{}…`", "x".repeat(64)));
    }
}
