//! The encoded queries and list positions of the connector's reads: `sysparm_query` terms,
//! `sysparm_offset` / `sysparm_limit`.

use crate::ticketing::{
    ListQuery, PAGE_SIZE, PageToken, Result, SortField, SortOrder, TicketingError, model::whole_second_ceil,
};

use super::{MAX_LIMIT, mapping::format_glide_time};

/// The offset and limit of a list page: the offset token is `sysparm_offset` itself.
pub(super) fn position(query: &ListQuery) -> Result<(u32, u32)> {
    let limit = query.limit.unwrap_or(PAGE_SIZE).clamp(1, MAX_LIMIT);
    match &query.page {
        None => Ok((0, limit)),
        Some(PageToken::Offset(offset)) => Ok((*offset, limit)),
        Some(PageToken::Cursor(c)) => Err(TicketingError::Invalid {
            detail: format!("ServiceNow pages by offset; `{c}` is not a position in its lists"),
        }),
    }
}

/// A value inside an encoded query: `^` separates terms, so a value holding one is refused.
pub(super) fn query_value<'a>(value: &'a str, what: &str) -> Result<&'a str> {
    if value.contains('^') || value.contains(',') {
        return Err(TicketingError::Invalid {
            detail: format!("{what} `{value}` is not a ServiceNow sys_id"),
        });
    }
    Ok(value)
}

/// A list query as an encoded incident query: `sys_updated_on>=` (whole seconds, UTC), the
/// caller and assignee, the order, and `sys_id` last so equal sort values keep their order.
pub(super) fn incident_query(query: &ListQuery) -> Result<String> {
    if query.query.is_some() {
        return Err(TicketingError::Invalid {
            detail: "the ServiceNow connector cannot search incidents by free text".into(),
        });
    }
    let mut terms = Vec::new();
    if let Some(t) = query.updated_gte {
        terms.push(format!("sys_updated_on>={}", format_glide_time(whole_second_ceil(t))));
    }
    if let Some(c) = &query.customer_id {
        terms.push(format!("caller_id={}", query_value(c, "customer id")?));
    }
    if let Some(u) = &query.user_id {
        terms.push(format!("assigned_to={}", query_value(u, "assignee id")?));
    }
    let field = match query.sort {
        Some(SortField::UpdatedAt) => "sys_updated_on",
        Some(SortField::CreatedAt) | None => "sys_created_on",
        Some(SortField::Name) => "short_description",
    };
    let by = if query.order == Some(SortOrder::Desc) { "ORDERBYDESC" } else { "ORDERBY" };
    terms.push(format!("{by}{field}"));
    terms.push(format!("{by}sys_id"));
    Ok(terms.join("^"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poller_s_query_becomes_an_encoded_query_in_whole_seconds() {
        let since = time::macros::datetime!(2026-11-01 10:00:00.250 UTC);
        let q = ListQuery { customer_id: Some("681c".into()), ..ListQuery::updated_since(since) };
        assert_eq!(
            incident_query(&q).unwrap(),
            "sys_updated_on>=2026-11-01 10:00:01^caller_id=681c^ORDERBYsys_updated_on^ORDERBYsys_id"
        );
        let newest = ListQuery {
            sort: Some(SortField::UpdatedAt),
            order: Some(SortOrder::Desc),
            ..ListQuery::default()
        };
        assert_eq!(incident_query(&newest).unwrap(), "ORDERBYDESCsys_updated_on^ORDERBYDESCsys_id");
        let sneaky = ListQuery { user_id: Some("x^active=false".into()), ..ListQuery::default() };
        assert!(incident_query(&sneaky).is_err());
        assert!(incident_query(&ListQuery { query: Some("vpn".into()), ..ListQuery::default() }).is_err());
    }

    #[test]
    fn offsets_are_sysparm_offsets() {
        let q = ListQuery { limit: Some(5000), page: Some(PageToken::Offset(40)), ..ListQuery::default() };
        assert_eq!(position(&q).unwrap(), (40, MAX_LIMIT));
        assert_eq!(position(&ListQuery::default()).unwrap(), (0, PAGE_SIZE));
        let cursor = ListQuery { page: Some(PageToken::Cursor("x".into())), ..ListQuery::default() };
        assert!(position(&cursor).is_err());
    }
}
