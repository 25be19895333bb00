//! The JSON schema the model is asked to follow (`response_format.json_schema`).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::types::{FIELDS, Limits, Sentiment};
use crate::ticketing::model::{Category, PriorityLevel};

/// `response_format.json_schema.name`.
pub fn schema_name() -> &'static str {
    "triage_decision"
}

/// The JSON schema for OpenAI strict structured outputs (also fine for vLLM, Ollama, llama.cpp).
///
/// Every property is required, `additionalProperties` is false, `category_id` is
/// `anyOf [string enum of the active ids, null]` (only `null` when no category is active). See the
/// module docs for which limits live here and which only in [`validate`](super::validate).
///
/// OpenAI caps enum values (1000 in total; above 250 values in one enum, their total length is
/// limited); a helpdesk with that many categories needs a narrower list per request.
///
/// `required` lists [`FIELDS`] in order; a `Value` keeps its keys sorted, so the LLM client
/// sends the schema through [`InRequiredOrder`](crate::triage::llm::InRequiredOrder), which
/// writes the properties in that order (servers generate fields in schema order).
pub fn response_schema(categories: &[Category], limits: &Limits) -> Value {
    let ids = active_ids(categories);
    let category_id = if ids.is_empty() {
        json!({"type": "null", "description": "No categories are available: always null."})
    } else {
        json!({"anyOf": [
            {"type": "string", "enum": ids, "description": "One of the listed category ids; null if none fits."},
            {"type": "null"}
        ]})
    };
    json!({
        "type": "object",
        "properties": {
            "category_id": category_id,
            "priority": {"type": "string", "enum": PriorityLevel::ALL.map(PriorityLevel::as_str)},
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "maxItems": limits.max_tags,
                "description": format!(
                    "Lowercase tags of a-z, 0-9, - and _; at most {} tags of at most {} characters.",
                    limits.max_tags, limits.max_tag_len
                ),
            },
            "language": {
                "type": "string",
                "description": "Lowercase language code of the customer's messages such as en, de or pt-br; und if unknown.",
            },
            "sentiment": {"type": "string", "enum": Sentiment::ALL.map(Sentiment::as_str)},
            "summary": {
                "type": "string",
                "description": format!("At most {} characters.", limits.max_summary_chars),
            },
            "draft_reply": {
                "type": "string",
                "description": format!(
                    "Reply draft for an agent to review; {} to {} characters.",
                    limits.min_draft_chars.max(1), limits.max_draft_chars
                ),
            },
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "needs_human": {"type": "boolean"},
            "reason": {
                "type": "string",
                "description": format!("At most {} characters.", limits.max_reason_chars),
            },
        },
        "required": FIELDS,
        "additionalProperties": false,
    })
}

/// The ids of the active categories, in list order, without duplicates.
pub(super) fn active_ids(categories: &[Category]) -> Vec<&str> {
    let mut seen = HashSet::new();
    categories
        .iter()
        .filter(|c| c.active())
        .filter_map(|c| c.id.as_deref())
        .filter(|id| seen.insert(*id))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Map;

    use super::*;
    use crate::triage::decision::LlmDecision;

    fn cat(id: &str, active: Option<bool>) -> Category {
        Category { id: Some(id.into()), is_active: active, ..Category::default() }
    }

    fn categories() -> Vec<Category> {
        vec![
            cat("cat-billing", Some(true)),
            cat("cat-refunds", None),
            cat("cat-legacy", Some(false)),
            Category { id: None, ..Category::default() },
            cat("cat-billing", Some(true)),
        ]
    }

    /// Every object node in the schema, with its JSON pointer.
    fn objects<'v>(path: String, v: &'v Value, out: &mut Vec<(String, &'v Map<String, Value>)>) {
        match v {
            Value::Object(map) => {
                if map.get("type") == Some(&json!("object")) {
                    out.push((path.clone(), map));
                }
                for (k, child) in map {
                    objects(format!("{path}/{k}"), child, out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    objects(format!("{path}/{i}"), child, out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn schema_requires_every_property_and_forbids_extras_at_every_level() {
        let schema = response_schema(&categories(), &Limits::default());
        let mut found = Vec::new();
        objects(String::new(), &schema, &mut found);
        assert_eq!(found.len(), 1, "only the root is an object today");
        for (path, obj) in found {
            assert_eq!(obj.get("additionalProperties"), Some(&json!(false)), "{path}");
            let mut props: Vec<&str> =
                obj["properties"].as_object().unwrap().keys().map(String::as_str).collect();
            let mut required: Vec<&str> =
                obj["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            props.sort_unstable();
            required.sort_unstable();
            assert_eq!(props, required, "{path}");
        }
        assert_eq!(schema["required"], json!(FIELDS));
    }

    #[test]
    fn schema_category_enum_is_the_active_ids_then_null() {
        let schema = response_schema(&categories(), &Limits::default());
        assert_eq!(
            schema["properties"]["category_id"]["anyOf"],
            json!([
                {"type": "string", "enum": ["cat-billing", "cat-refunds"],
                 "description": "One of the listed category ids; null if none fits."},
                {"type": "null"}
            ])
        );
        let none = response_schema(&[cat("cat-legacy", Some(false))], &Limits::default());
        assert_eq!(none["properties"]["category_id"]["type"], json!("null"));
    }

    #[test]
    fn schema_enums_and_bounds() {
        let limits = Limits { max_tags: 5, ..Limits::default() };
        let p = &response_schema(&categories(), &limits)["properties"];
        assert_eq!(p["priority"]["enum"], json!(["NONE", "LOW", "NORMAL", "HIGH", "URGENT"]));
        assert_eq!(p["sentiment"]["enum"], json!(["positive", "neutral", "negative", "angry"]));
        assert_eq!(p["confidence"], json!({"type": "number", "minimum": 0, "maximum": 1}));
        assert_eq!(p["tags"]["maxItems"], json!(5));
        assert_eq!(p["tags"]["items"], json!({"type": "string"}));
        assert_eq!(p["needs_human"], json!({"type": "boolean"}));
    }

    #[test]
    fn schema_uses_only_keywords_openai_strict_documents() {
        const ALLOWED: [&str; 11] = [
            "type",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "enum",
            "anyOf",
            "description",
            "minimum",
            "maximum",
            "maxItems",
        ];
        fn walk(v: &Value, in_properties: bool) {
            if let Value::Object(map) = v {
                for (k, child) in map {
                    if !in_properties {
                        assert!(ALLOWED.contains(&k.as_str()), "keyword `{k}` is not in the strict subset");
                    }
                    match (k.as_str(), child) {
                        ("enum" | "required", _) => {}
                        ("properties", _) => walk(child, true),
                        ("anyOf", Value::Array(items)) => items.iter().for_each(|i| walk(i, false)),
                        _ => walk(child, false),
                    }
                }
            }
        }
        walk(&response_schema(&categories(), &Limits::default()), false);
    }

    #[test]
    fn schema_properties_match_the_wire_type() {
        let wire = serde_json::to_value(LlmDecision::default()).unwrap();
        let schema = response_schema(&categories(), &Limits::default());
        let wire_keys: BTreeSet<&String> = wire.as_object().unwrap().keys().collect();
        let schema_keys: BTreeSet<&String> = schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(wire_keys, schema_keys);
        assert_eq!(wire_keys.len(), FIELDS.len());
        assert_eq!(schema_name(), "triage_decision");
    }
}
