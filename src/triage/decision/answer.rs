//! Reading the model's answer text into its wire fields, before any value is checked: the optional
//! code fence, the top-level keys (duplicates included) and the typed fields.

use std::{collections::BTreeSet, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, Visitor},
};
use serde_json::{Map, Value};

use super::{
    numbers::out_of_range,
    problem::Problem,
    types::{FIELDS, LlmDecision},
    wording::{clip, kind},
};

/// Strips surrounding whitespace and one markdown code fence (info string empty or `json`).
pub(super) fn strip_fence(raw: &str) -> (&str, bool) {
    let text = raw.trim();
    let inner = text.strip_prefix("```").and_then(|rest| rest.strip_suffix("```"));
    let Some((info, body)) = inner.and_then(|inner| inner.split_once('\n')) else {
        return (text, false);
    };
    let info = info.trim();
    if (info.is_empty() || info.eq_ignore_ascii_case("json")) && !body.contains("```") {
        (body.trim(), true)
    } else {
        (text, false)
    }
}

/// The top-level keys of a JSON object in order, duplicates included.
pub(super) struct TopKeys(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for TopKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = TopKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(TopKeys(keys))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// Reads the typed fields out of the object. Fields that are missing or of the wrong type get a
/// problem, a placeholder value, and an entry in the returned skip set.
pub(super) fn read_fields(
    map: &Map<String, Value>,
    problems: &mut Vec<Problem>,
) -> (LlmDecision, BTreeSet<&'static str>) {
    let mut raw = LlmDecision::default();
    let mut skip = BTreeSet::new();
    for field in FIELDS {
        let Some(value) = map.get(field) else {
            problems.push(Problem::new(field, format!("missing field `{field}`")));
            skip.insert(field);
            continue;
        };
        if let Some(number) = out_of_range(value) {
            let message = if field == "confidence" {
                format!("confidence {} is outside 0..=1", clip(number))
            } else {
                format!("{field} must be {}, got a number", expected(field))
            };
            problems.push(Problem::new(field, message));
            skip.insert(field);
            continue;
        }
        let ok = match (field, value) {
            ("category_id", Value::Null) => true,
            ("category_id", Value::String(s)) => {
                raw.category_id = Some(s.clone());
                true
            }
            ("tags", Value::Array(items)) => {
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => raw.tags.push(s.clone()),
                        other => {
                            problems.push(Problem::new(
                                field,
                                format!("tags[{i}] must be a string, got {}", kind(other)),
                            ));
                            ok = false;
                        }
                    }
                }
                if !ok {
                    skip.insert(field);
                }
                continue;
            }
            ("confidence", Value::Number(n)) => match n.as_f64() {
                Some(c) => {
                    raw.confidence = c;
                    true
                }
                None => false,
            },
            ("needs_human", Value::Bool(b)) => {
                raw.needs_human = *b;
                true
            }
            (_, Value::String(s)) => match field {
                "priority" => set(&mut raw.priority, s),
                "language" => set(&mut raw.language, s),
                "sentiment" => set(&mut raw.sentiment, s),
                "summary" => set(&mut raw.summary, s),
                "draft_reply" => set(&mut raw.draft_reply, s),
                "reason" => set(&mut raw.reason, s),
                _ => false,
            },
            _ => false,
        };
        if !ok {
            let expected = expected(field);
            problems.push(Problem::new(field, format!("{field} must be {expected}, got {}", kind(value))));
            skip.insert(field);
        }
    }
    (raw, skip)
}

/// What a field must be, as a problem says it.
fn expected(field: &str) -> &'static str {
    match field {
        "category_id" => "a string or null",
        "tags" => "an array of strings",
        "confidence" => "a number from 0 to 1",
        "needs_human" => "true or false",
        _ => "a string",
    }
}

fn set(slot: &mut String, value: &str) -> bool {
    value.clone_into(slot);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_stripping_is_single_and_exact() {
        assert_eq!(strip_fence("  ```json\n{\"a\":1}\n```  "), ("{\"a\":1}", true));
        assert_eq!(strip_fence("```\n{}\n```"), ("{}", true));
        assert_eq!(strip_fence("```JSON\n{}\n```"), ("{}", true));
        assert_eq!(strip_fence("```python\n{}\n```"), ("```python\n{}\n```", false));
        assert_eq!(strip_fence("```{}```"), ("```{}```", false));
        assert!(!strip_fence("```json\n{}\n```\n```json\n{}\n```").1);
        assert!(!strip_fence("Sure! ```json\n{}\n```").1);
        assert_eq!(strip_fence("\n{}\n"), ("{}", false));
    }
}
