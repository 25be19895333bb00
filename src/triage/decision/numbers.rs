//! Numbers a grammar let through. llama.cpp turns the schema into a grammar but ignores
//! `minimum`/`maximum`, so a weak model can write `"confidence": 5555555555555555e4255555555555555`:
//! valid JSON that serde_json refuses ("number out of range") because it overflows an f64. Such a
//! number is kept as a marked string, so the answer still parses and validation reports the
//! field and its range instead of calling valid JSON invalid.

use std::borrow::Cow;

use serde_json::Value;

/// Starts the string an out-of-range number becomes; a control character, which validation
/// removes from every text, so no text the model writes is mistaken for one.
const MARK: char = '\u{1}';

/// `body` with every number outside strings that overflows an f64 written as a marked string
/// (borrowed unchanged when there is none). Positions after such a number shift.
pub(super) fn lenient_numbers(body: &str) -> Cow<'_, str> {
    let bytes = body.as_bytes();
    let mut out: Option<String> = None;
    let (mut copied, mut i, mut in_string) = (0, 0, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
                let token = &body[start..i];
                if token.parse::<f64>().is_ok_and(f64::is_infinite) {
                    let text = out.get_or_insert_with(|| String::with_capacity(body.len() + 16));
                    text.push_str(&body[copied..start]);
                    text.push_str("\"\\u0001");
                    text.push_str(token);
                    text.push('"');
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    match out {
        Some(mut text) => {
            text.push_str(&body[copied..]);
            Cow::Owned(text)
        }
        None => Cow::Borrowed(body),
    }
}

/// The number as the model wrote it, when `value` is an out-of-range number [`lenient_numbers`]
/// kept.
pub(super) fn out_of_range(value: &Value) -> Option<&str> {
    let token = value.as_str()?.strip_prefix(MARK)?;
    token.parse::<f64>().is_ok_and(f64::is_infinite).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_overflowing_numbers_outside_strings_are_kept_as_marked_strings() {
        let huge = "5555555555555555e4255555555555555";
        let body =
            format!(r#"{{"a": {huge}, "b": "x {huge} \" {huge}", "c": [-1e999, 1e308, 0.5, 1e-999]}}"#);
        let lenient = lenient_numbers(&body);
        let value: Value = serde_json::from_str(&lenient).unwrap();
        assert_eq!(out_of_range(&value["a"]), Some(huge));
        assert_eq!(value["b"], Value::String(format!("x {huge} \" {huge}")), "strings are untouched");
        assert_eq!(out_of_range(&value["c"][0]), Some("-1e999"));
        assert_eq!(value["c"][1], serde_json::json!(1e308));
        assert_eq!(out_of_range(&value["c"][1]), None);
        assert!(matches!(lenient_numbers(r#"{"a": 1.5, "b": "1e999"}"#), Cow::Borrowed(_)));
        assert_eq!(out_of_range(&Value::String("\u{1}12".into())), None);
    }
}
