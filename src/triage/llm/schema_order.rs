//! Serialising a JSON schema with each object's `properties` in the order of its `required`
//! list. Without serde_json's `preserve_order` a [`Value`] keeps its keys sorted, yet servers
//! generate fields in schema order: a grammar-constrained model must write the fields in the
//! order sent, so the order is chosen by the schema's author (through `required`), not by the
//! alphabet.

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::{Map, Value};

/// A JSON schema that serialises each object's `properties` in `required` order (properties not
/// listed there follow in key order). Everything else is serialised as it is; the order is
/// stable, so the schema stays a cacheable prompt prefix.
#[derive(Debug, Clone, Copy)]
pub struct InRequiredOrder<'a>(pub &'a Value);

impl Serialize for InRequiredOrder<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let order: Vec<&str> = map
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut out = s.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    match value {
                        Value::Object(props) if key == "properties" => {
                            out.serialize_entry(key, &Properties { props, order: &order })?;
                        }
                        _ => out.serialize_entry(key, &InRequiredOrder(value))?,
                    }
                }
                out.end()
            }
            Value::Array(items) => s.collect_seq(items.iter().map(InRequiredOrder)),
            other => other.serialize(s),
        }
    }
}

/// One `properties` object: the listed names first, in their order, then the rest.
struct Properties<'a> {
    props: &'a Map<String, Value>,
    order: &'a [&'a str],
}

impl Serialize for Properties<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(Some(self.props.len()))?;
        let listed = self.order.iter().filter_map(|k| self.props.get_key_value(*k));
        let rest = self.props.iter().filter(|(k, _)| !self.order.contains(&k.as_str()));
        let mut seen = std::collections::HashSet::new();
        for (key, value) in listed.chain(rest) {
            // A name listed twice in `required` is written once.
            if seen.insert(key) {
                out.serialize_entry(key, &InRequiredOrder(value))?;
            }
        }
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn properties_follow_required_at_every_level() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"x": {}, "y": {}}, "required": ["y", "x"]},
                "b": {"type": "string"},
                "c": {"type": "number"},
            },
            "required": ["c", "a", "c"],
        });
        let text = serde_json::to_string(&InRequiredOrder(&schema)).unwrap();
        assert_eq!(
            text,
            r#"{"properties":{"c":{"type":"number"},"a":{"properties":{"y":{},"x":{}},"required":["y","x"],"type":"object"},"b":{"type":"string"}},"required":["c","a","c"],"type":"object"}"#
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, schema, "only the order changes");
    }
}
