//! Query parameters (unified-ticketing.md §3) and how objects are written out.
//!
//! The raw query string is parsed by hand because `fields` comes both as repeated keys
//! (`fields=id&fields=subject`, what the TS SDK sends) and comma-separated (`fields=id,subject`,
//! what the docs and CLI use); both, and any mix, are accepted. Unknown parameters are ignored.

use std::{cmp::Ordering, collections::BTreeMap};

use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{data::cmp_ids, error::ApiError, resource::Resource, table::Table};
use crate::ticketing::{SortField, SortOrder};

/// Page size when `limit` is absent or 0, and the most one page returns.
pub(crate) const MAX_LIMIT: usize = 100;

/// Every list filter of §2; each list honours the ones its object supports.
const FILTER_PARAMS: [&str; 4] = ["customer_id", "user_id", "ticket_id", "parent_id"];

/// Which fields to return: all unified fields except `raw` by default (§3 "`raw` fields").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    only: Option<Vec<String>>,
}

impl Fields {
    /// Reads `fields` from a raw query string.
    pub(crate) fn parse(raw_query: Option<&str>) -> Self {
        Self::from_pairs(&pairs(raw_query))
    }

    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let names: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == "fields")
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        Self { only: (!names.is_empty()).then_some(names) }
    }

    /// The object as Unified would send it: only Unified's fields, only the requested ones, `raw`
    /// only on request (`raw` for all of it, `raw.<name>` for single vendor fields), no `null`s.
    pub(crate) fn render<R: Resource>(&self, item: &R) -> Result<Value, ApiError> {
        let mut map = match serde_json::to_value(item) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return Err(ApiError::internal(format!("{} serialised to {other}", R::KIND))),
            Err(e) => return Err(ApiError::internal(format!("{} could not be serialised: {e}", R::KIND))),
        };
        map.retain(|k, _| R::FIELDS.contains(&k.as_str()));
        match &self.only {
            None => {
                map.remove("raw");
            }
            Some(only) => {
                let raw_keys: Vec<&str> = only.iter().filter_map(|f| f.strip_prefix("raw.")).collect();
                let whole_raw = only.iter().any(|f| f == "raw");
                if !whole_raw && let Some(Value::Object(raw)) = map.get_mut("raw") {
                    raw.retain(|k, _| raw_keys.contains(&k.as_str()));
                }
                map.retain(|k, _| only.contains(k) || (k == "raw" && (whole_raw || !raw_keys.is_empty())));
            }
        }
        let mut value = Value::Object(map);
        prune_nulls(&mut value);
        Ok(value)
    }
}

/// Removes every `null` (object members and array elements), at any depth, e.g. inside `raw`.
fn prune_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(prune_nulls);
        }
        Value::Array(items) => {
            items.retain(|v| !v.is_null());
            items.iter_mut().for_each(prune_nulls);
        }
        _ => {}
    }
}

/// The parameters of a list call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListParams {
    limit: usize,
    offset: usize,
    updated_gte: Option<OffsetDateTime>,
    sort: Option<SortField>,
    order: SortOrder,
    query: Option<String>,
    filters: BTreeMap<String, String>,
    fields: Fields,
}

impl ListParams {
    /// Reads and checks a list call's query string; a malformed value is a 400 naming the parameter.
    pub(crate) fn parse(raw_query: Option<&str>) -> Result<Self, ApiError> {
        let pairs = pairs(raw_query);
        // The last occurrence of a single-valued parameter wins.
        let last: BTreeMap<&str, &str> =
            pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let number = |name: &str| -> Result<Option<usize>, ApiError> {
            last.get(name)
                .map(|v| {
                    v.parse::<usize>().map_err(|_| {
                        ApiError::bad_request(format!("`{name}` must be a non-negative integer, got `{v}`"))
                    })
                })
                .transpose()
        };
        let limit = match number("limit")? {
            None | Some(0) => MAX_LIMIT,
            Some(n) => n.min(MAX_LIMIT),
        };
        let sort = last
            .get("sort")
            .map(|v| match *v {
                "updated_at" => Ok(SortField::UpdatedAt),
                "created_at" => Ok(SortField::CreatedAt),
                "name" => Ok(SortField::Name),
                other => Err(ApiError::bad_request(format!(
                    "`sort` must be one of updated_at, created_at, name; got `{other}`"
                ))),
            })
            .transpose()?;
        let order = match last.get("order").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("asc") => SortOrder::Asc,
            Some("desc") => SortOrder::Desc,
            Some(other) => {
                return Err(ApiError::bad_request(format!("`order` must be asc or desc, got `{other}`")));
            }
        };
        Ok(Self {
            limit,
            offset: number("offset")?.unwrap_or(0),
            updated_gte: last.get("updated_gte").map(|v| parse_updated_gte(v)).transpose()?,
            sort,
            order,
            query: last.get("query").map(|q| q.to_lowercase()),
            filters: FILTER_PARAMS
                .iter()
                .filter_map(|k| last.get(k).map(|v| ((*k).to_owned(), (*v).to_owned())))
                .collect(),
            fields: Fields::from_pairs(&pairs),
        })
    }

    /// One page of `table`, filtered, ordered and rendered.
    pub(crate) fn apply<R: Resource>(&self, table: &Table<R>) -> Result<Vec<Value>, ApiError> {
        // A filter the kind supports narrows the candidates through the index; `matches` still
        // checks every condition, so which filter picked them does not matter.
        let indexed = self.filters.iter().find(|(k, _)| R::FILTERS.contains(&k.as_str()));
        let candidates: Box<dyn Iterator<Item = &R>> = match indexed {
            Some((k, v)) => Box::new(table.with(k, v)),
            None => Box::new(table.values()),
        };
        let mut items: Vec<&R> = candidates.filter(|item| self.matches(*item)).collect();
        items.sort_by(|a, b| {
            let by_field = match self.sort {
                None => Ordering::Equal,
                Some(SortField::UpdatedAt) => a.updated_at().cmp(&b.updated_at()),
                Some(SortField::CreatedAt) => a.created_at().cmp(&b.created_at()),
                Some(SortField::Name) => {
                    let name = |r: &R| r.name().map(str::to_lowercase);
                    name(a).cmp(&name(b))
                }
            };
            let ordering = by_field.then_with(|| cmp_ids(a.id().unwrap_or(""), b.id().unwrap_or("")));
            if self.order == SortOrder::Desc { ordering.reverse() } else { ordering }
        });
        items.into_iter().skip(self.offset).take(self.limit).map(|item| self.fields.render(item)).collect()
    }

    fn matches<R: Resource>(&self, item: &R) -> bool {
        let recent = self.updated_gte.is_none_or(|gte| item.updated_at().is_some_and(|u| u >= gte));
        let filtered = self
            .filters
            .iter()
            .filter(|(k, _)| R::FILTERS.contains(&k.as_str()))
            .all(|(k, v)| item.filter_value(k) == Some(v.as_str()));
        let found = self
            .query
            .as_deref()
            .is_none_or(|q| item.texts().iter().any(|text| text.to_lowercase().contains(q)));
        recent && filtered && found
    }
}

/// `updated_gte` as RFC 3339. An unencoded `+` in an offset arrives as a space (form encoding),
/// so a space is read back as `+` before giving up.
fn parse_updated_gte(value: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .or_else(|e| OffsetDateTime::parse(&value.replace(' ', "+"), &Rfc3339).map_err(|_| e))
        .map_err(|e| {
            ApiError::bad_request(format!(
                "`updated_gte` must be an RFC 3339 date-time such as 2026-11-01T00:00:00Z, \
                 got `{value}` ({e})"
            ))
        })
}

fn pairs(raw_query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes()).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ticketing::Ticket;

    fn ticket(json: Value) -> Ticket {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn fields_accept_repeated_comma_and_mixed() {
        for q in [
            "fields=id&fields=subject",
            "fields=id,subject",
            "fields=id%2Csubject",
            "fields=id&fields=subject,",
        ] {
            assert_eq!(Fields::parse(Some(q)).only, Some(vec!["id".into(), "subject".into()]), "{q}");
        }
        assert_eq!(Fields::parse(Some("fields=")).only, None);
    }

    #[test]
    fn render_keeps_raw_only_on_request_and_drops_nulls() {
        let t = ticket(json!({"id": "1", "subject": "s", "raw": {"a": 1, "b": null, "c": [null, 2]}}));
        assert_eq!(Fields::default().render(&t).unwrap(), json!({"id": "1", "subject": "s"}));
        assert_eq!(Fields::parse(Some("fields=id")).render(&t).unwrap(), json!({"id": "1"}));
        assert_eq!(
            Fields::parse(Some("fields=id,raw")).render(&t).unwrap(),
            json!({"id": "1", "raw": {"a": 1, "c": [2]}})
        );
        assert_eq!(Fields::parse(Some("fields=raw.a")).render(&t).unwrap(), json!({"raw": {"a": 1}}));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (q, needle) in [
            ("updated_gte=2026-11-01", "`updated_gte` must be an RFC 3339"),
            ("limit=ten", "`limit` must be a non-negative integer"),
            ("offset=-1", "`offset` must be a non-negative integer"),
            ("sort=priority", "`sort` must be one of"),
            ("order=up", "`order` must be asc or desc"),
        ] {
            let err = ListParams::parse(Some(q)).unwrap_err();
            assert!(err.message().contains(needle), "{q}: {}", err.message());
        }
    }

    #[test]
    fn updated_gte_tolerates_an_unencoded_plus() {
        let p = ListParams::parse(Some("updated_gte=2026-11-01T01:00:00+01:00")).unwrap();
        assert_eq!(p.updated_gte, Some(time::macros::datetime!(2026-11-01 00:00 UTC)));
    }

    #[test]
    fn list_filters_sorts_and_pages() {
        let table: Table<Ticket> = (1..=12)
            .map(|i| {
                let t = ticket(json!({"id": i.to_string(), "subject": format!("Subject {}", 13 - i),
                    "customer_id": if i % 2 == 0 { "even" } else { "odd" }}));
                (i.to_string(), t)
            })
            .collect();
        let ids = |q: &str| -> Vec<String> {
            let page = ListParams::parse(Some(q)).unwrap().apply(&table).unwrap();
            page.iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(ids("limit=3&offset=9"), ["10", "11", "12"]);
        assert_eq!(ids("customer_id=even&order=desc&limit=2"), ["12", "10"]);
        assert!(ids("customer_id=nobody").is_empty());
        assert!(
            ids("customer_id=odd&user_id=x").is_empty(),
            "every filter applies, not only the indexed one"
        );
        // Text order, case-insensitive: "subject 1" (id 12) < "subject 10" (id 3) < ...
        assert_eq!(ids("sort=name&limit=2"), ["12", "3"]);
        assert_eq!(ids("query=SUBJECT%2012&parent_id=x&bogus=1"), ["1"]);
        assert!(ids("updated_gte=2026-01-01T00:00:00Z").is_empty()); // no updated_at: never recent
    }
}
