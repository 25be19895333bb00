//! Encoded queries (`sysparm_query`) over rendered records: `^`-joined terms `field=value`,
//! `!=`, `>=`, `>`, `<=`, `<`, `fieldINa,b`, and `ORDERBYfield` / `ORDERBYDESCfield`.
//!
//! Values compare as numbers when both sides are integers, else as text (ServiceNow's dates,
//! `YYYY-MM-DD HH:MM:SS`, order as text). ServiceNow silently ignores a term it cannot read,
//! which turns a client's typo into "every record"; the sandbox refuses it instead, so a test
//! sees the mistake.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// A rendered record: field name to value.
pub(super) type Row = Map<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
    In,
}

#[derive(Debug, Clone, PartialEq)]
struct Term {
    field: String,
    op: Op,
    value: String,
}

/// A parsed encoded query.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct EncodedQuery {
    terms: Vec<Term>,
    /// Sort keys in order, `true` for descending.
    order: Vec<(String, bool)>,
}

/// The value of a field as text: a reference's `value`, else the string.
pub(super) fn value_of<'a>(row: &'a Row, field: &str) -> Option<&'a str> {
    match row.get(field)? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("value").and_then(Value::as_str),
        _ => None,
    }
}

fn compare(a: &str, b: &str) -> Ordering {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

impl EncodedQuery {
    /// Parses `query`; `fields` are the table's fields, which every term must name.
    pub(super) fn parse(query: &str, fields: &[&str]) -> Result<Self, String> {
        let mut out = Self::default();
        let known = |f: &str| {
            if fields.contains(&f) { Ok(()) } else { Err(format!("`{f}` is not a field of this table")) }
        };
        for term in query.split('^').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(f) = term.strip_prefix("ORDERBYDESC") {
                known(f)?;
                out.order.push((f.to_owned(), true));
                continue;
            }
            if let Some(f) = term.strip_prefix("ORDERBY") {
                known(f)?;
                out.order.push((f.to_owned(), false));
                continue;
            }
            let end = term
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'))
                .ok_or_else(|| format!("`{term}` has no operator"))?;
            let (field, rest) = term.split_at(end);
            known(field)?;
            let (op, value) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!=", Op::Ne),
                ("=", Op::Eq),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("IN", Op::In),
            ]
            .into_iter()
            .find_map(|(sign, op)| rest.strip_prefix(sign).map(|v| (op, v)))
            .ok_or_else(|| format!("`{term}`: this sandbox reads only =, !=, >=, >, <=, < and IN"))?;
            out.terms.push(Term { field: field.to_owned(), op, value: value.to_owned() });
        }
        Ok(out)
    }

    /// Whether `row` matches every term.
    fn matches(&self, row: &Row) -> bool {
        self.terms.iter().all(|t| {
            let v = value_of(row, &t.field).unwrap_or_default();
            match t.op {
                Op::Eq => v == t.value,
                Op::Ne => v != t.value,
                Op::Ge => !v.is_empty() && compare(v, &t.value) != Ordering::Less,
                Op::Gt => !v.is_empty() && compare(v, &t.value) == Ordering::Greater,
                Op::Le => !v.is_empty() && compare(v, &t.value) != Ordering::Greater,
                Op::Lt => !v.is_empty() && compare(v, &t.value) == Ordering::Less,
                Op::In => t.value.split(',').any(|x| x == v),
            }
        })
    }

    /// The matching rows, in the query's order (the given order where it says nothing).
    pub(super) fn apply(&self, rows: Vec<Row>) -> Vec<Row> {
        let mut rows: Vec<Row> = rows.into_iter().filter(|r| self.matches(r)).collect();
        rows.sort_by(|a, b| {
            self.order.iter().fold(Ordering::Equal, |acc, (field, desc)| {
                acc.then_with(|| {
                    let o = compare(
                        value_of(a, field).unwrap_or_default(),
                        value_of(b, field).unwrap_or_default(),
                    );
                    if *desc { o.reverse() } else { o }
                })
            })
        });
        rows
    }
}

/// `row` with only `fields` (comma-separated; empty = all).
pub(super) fn project(mut row: Row, fields: Option<&str>) -> Row {
    if let Some(fields) = fields.filter(|f| !f.trim().is_empty()) {
        let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
        row.retain(|k, _| wanted.contains(&k.as_str()));
    }
    row
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(v: Value) -> Row {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn terms_filter_and_orders_sort() {
        let fields = ["sys_id", "sys_updated_on", "state", "caller_id"];
        let rows = vec![
            row(
                json!({"sys_id": "b", "sys_updated_on": "2026-11-02 10:00:00", "state": "10", "caller_id": "c1"}),
            ),
            row(
                json!({"sys_id": "a", "sys_updated_on": "2026-11-02 10:00:00", "state": "2", "caller_id": {"value": "c2"}}),
            ),
            row(
                json!({"sys_id": "c", "sys_updated_on": "2026-11-01 09:00:00", "state": "7", "caller_id": "c1"}),
            ),
        ];
        let q = EncodedQuery::parse(
            "sys_updated_on>=2026-11-02 00:00:00^ORDERBYsys_updated_on^ORDERBYsys_id",
            &fields,
        )
        .unwrap();
        let ids: Vec<_> = q.apply(rows.clone()).iter().map(|r| r["sys_id"].clone()).collect();
        assert_eq!(ids, [json!("a"), json!("b")]);
        let q = EncodedQuery::parse("caller_idINc2,c9^ORDERBYDESCstate", &fields).unwrap();
        assert_eq!(q.apply(rows.clone()).len(), 1, "a reference compares by its value");
        let q = EncodedQuery::parse("ORDERBYDESCstate", &fields).unwrap();
        let states: Vec<_> = q.apply(rows).iter().map(|r| r["state"].clone()).collect();
        assert_eq!(states, [json!("10"), json!("7"), json!("2")], "numbers compare as numbers");
    }

    #[test]
    fn what_the_sandbox_cannot_read_is_refused() {
        let fields = ["sys_id"];
        assert!(EncodedQuery::parse("nme=x", &fields).unwrap_err().contains("`nme`"));
        assert!(EncodedQuery::parse("sys_idLIKEx", &fields).unwrap_err().contains("only ="));
        assert_eq!(project(row(json!({"a": "1", "b": "2"})), Some("b,c")), row(json!({"b": "2"})));
    }
}
