//! The ticket lists of the Zendesk flavour: the search export (cursor, ordered by creation), the
//! incremental cursor export (ordered by change) and the offset search (sorted as asked, at most
//! 1000 results a query).
//!
//! Zendesk's timestamps have whole seconds, so the date terms of a query and `start_time` are
//! compared with the second a ticket shows, not the sandbox's finer instant.

use axum::{
    Json,
    extract::{Query, RawPathParams, State},
    http::StatusCode,
};
use serde_json::json;
use time::OffsetDateTime;

use super::{
    Answer, Kind, Params, Shared, ZError, base, decode_cursor, encode_cursor, ms, page_size, path, shape, zid,
};
use crate::{sandbox::data::Helpdesk, ticketing::Ticket};

/// Zendesk's search answers at most this many results a query (`page` × `per_page`).
const SEARCH_RESULT_LIMIT: usize = 1000;

/// The lower bound of `updated>=T` (inclusive) or `updated>T` (strict) in a query.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Since {
    at: OffsetDateTime,
    strict: bool,
}

impl Since {
    const ALL: Self = Self { at: OffsetDateTime::UNIX_EPOCH, strict: false };

    /// Whether a ticket updated at `t` (shown to the second) is in the bound.
    fn admits(self, t: Option<OffsetDateTime>) -> bool {
        t.is_some_and(|t| {
            let shown = whole_second(t);
            if self.strict { shown > self.at } else { shown >= self.at }
        })
    }
}

/// An instant as Zendesk shows it: to the second.
fn whole_second(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// `updated>=T` / `updated>T` of a search query (RFC 3339 or a date); other terms match all.
fn updated_since(query: &str) -> Result<Since, ZError> {
    for term in query.split_whitespace() {
        let (value, strict) = match (term.strip_prefix("updated>="), term.strip_prefix("updated>")) {
            (Some(v), _) => (v, false),
            (None, Some(v)) => (v, true),
            _ => continue,
        };
        let full = if value.len() == 10 { format!("{value}T00:00:00Z") } else { value.to_owned() };
        let at = OffsetDateTime::parse(&full, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ZError::bad(format!("`{value}` in the query is not a date or an ISO 8601 time")))?;
        return Ok(Since { at, strict });
    }
    Ok(Since::ALL)
}

/// Tickets in `since`, sorted by `key` (then id), the page after `after`.
fn ticket_page(
    desk: &Helpdesk,
    since: Since,
    key: fn(&Ticket) -> Option<OffsetDateTime>,
    after: Option<(i128, i64)>,
    size: usize,
) -> (Vec<&Ticket>, bool) {
    let mut all: Vec<(i128, i64, &Ticket)> = desk
        .tickets
        .values()
        .filter(|t| since.admits(t.updated_at))
        .map(|t| (ms(key(t)), zid(Kind::Ticket, t.id.as_deref().unwrap_or_default()), t))
        .filter(|(k, id, _)| after.is_none_or(|a| (*k, *id) > a))
        .collect();
    all.sort_by_key(|(k, id, _)| (*k, *id));
    let more = all.len() > size;
    (all.into_iter().take(size).map(|(_, _, t)| t).collect(), more)
}

fn cursor_of(t: &Ticket, key: fn(&Ticket) -> Option<OffsetDateTime>) -> String {
    encode_cursor((ms(key(t)), zid(Kind::Ticket, t.id.as_deref().unwrap_or_default())))
}

/// A ticket as a search result.
fn result(t: &Ticket, account: &str) -> serde_json::Value {
    let mut v = shape::ticket(t, &base(account));
    v["result_type"] = "ticket".into();
    v
}

/// `GET /api/v2/search/export`: cursor pages ordered by creation.
pub(super) async fn search_export(State(app): State<Shared>, raw: RawPathParams, Query(q): Params) -> Answer {
    let (account, _) = path(&raw);
    let query = q.get("query").ok_or_else(|| ZError::bad("query is required"))?;
    if q.get("filter[type]").map(String::as_str) != Some("ticket") {
        return Err(ZError::bad("filter[type] must be given; this sandbox exports `ticket`"));
    }
    let size = page_size(&q, 100, 1000)?;
    let after = q.get("page[after]").map(|c| decode_cursor(c)).transpose()?;
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    let (page, more) = ticket_page(desk, updated_since(query)?, |t| t.created_at, after, size);
    let after_cursor = page.last().filter(|_| more).map(|t| cursor_of(t, |t| t.created_at));
    let next =
        after_cursor.as_ref().map(|c| format!("{}/api/v2/search/export?page%5Bafter%5D={c}", base(&account)));
    Ok(Json(json!({
        "results": page.iter().map(|t| result(t, &account)).collect::<Vec<_>>(),
        "facets": null,
        "meta": {"has_more": more, "after_cursor": after_cursor, "before_cursor": null},
        "links": {"next": next, "prev": null},
    })))
}

/// `GET /api/v2/incremental/tickets/cursor`: cursor pages ordered by change.
pub(super) async fn incremental(State(app): State<Shared>, raw: RawPathParams, Query(q): Params) -> Answer {
    let (account, _) = path(&raw);
    let (since, after) = match (q.get("cursor"), q.get("start_time")) {
        (Some(c), _) => (Since::ALL, Some(decode_cursor(c)?)),
        (None, Some(s)) => {
            let secs: i64 = s.parse().map_err(|_| ZError::bad("start_time must be a Unix epoch time"))?;
            let at = OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|_| ZError::bad("start_time is out of range"))?;
            (Since { at, strict: false }, None)
        }
        (None, None) => return Err(ZError::bad("start_time or cursor is required")),
    };
    let size = page_size(&q, 1000, 1000)?;
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    let (page, more) = ticket_page(desk, since, |t| t.updated_at, after, size);
    let after_cursor = page
        .last()
        .map(|t| cursor_of(t, |t| t.updated_at))
        .or_else(|| q.get("cursor").cloned())
        .unwrap_or_else(|| encode_cursor((ms(Some(since.at)) - 1, 0)));
    let url = format!("{}/api/v2/incremental/tickets/cursor.json?cursor={after_cursor}", base(&account));
    Ok(Json(json!({
        "tickets": page.iter().map(|t| shape::ticket(t, &base(&account))).collect::<Vec<_>>(),
        "after_cursor": after_cursor, "after_url": url,
        "before_cursor": null, "before_url": null,
        "end_of_stream": !more,
    })))
}

/// `GET /api/v2/search`: tickets only (`type:ticket` in the query), sorted by `sort_by`
/// (`updated_at`, `created_at`; relevance is taken as `updated_at`) in `sort_order` (default
/// `desc`), ties by id, in offset pages (`page`, `per_page` up to 100) of at most 1000 results.
pub(super) async fn search(State(app): State<Shared>, raw: RawPathParams, Query(q): Params) -> Answer {
    let (account, _) = path(&raw);
    let query = q.get("query").ok_or_else(|| ZError::bad("query is required"))?;
    if !query.split_whitespace().any(|t| t == "type:ticket") {
        return Err(ZError::bad("this sandbox searches tickets only: put `type:ticket` in the query"));
    }
    let since = updated_since(query)?;
    let key: fn(&Ticket) -> Option<OffsetDateTime> = match q.get("sort_by").map(String::as_str) {
        None | Some("updated_at") => |t| t.updated_at,
        Some("created_at") => |t| t.created_at,
        Some(other) => {
            return Err(ZError::bad(format!(
                "sort_by `{other}` is not served here; use updated_at or created_at"
            )));
        }
    };
    let descending = match q.get("sort_order").map(String::as_str) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => return Err(ZError::bad(format!("sort_order `{other}` must be asc or desc"))),
    };
    let per_page = page_size(&q, 100, 100)?;
    let page = match q.get("page") {
        None => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| ZError::bad("page must be 1 or more"))?,
    };
    if page * per_page > SEARCH_RESULT_LIMIT {
        return Err(ZError(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "invalid",
                   "description": "Invalid search: Requested response size was greater than Search Response Limits"}),
        ));
    }
    let desks = app.desks.read().await;
    let desk = desks.get(&account).ok_or_else(ZError::not_found)?;
    let mut all: Vec<(i64, i64, &Ticket)> = desk
        .tickets
        .values()
        .filter(|t| since.admits(t.updated_at))
        .map(|t| {
            (
                key(t).map_or(0, |k| k.unix_timestamp()),
                zid(Kind::Ticket, t.id.as_deref().unwrap_or_default()),
                t,
            )
        })
        .collect();
    all.sort_by_key(|(k, id, _)| (*k, *id));
    if descending {
        all.reverse();
    }
    let count = all.len();
    let results: Vec<_> =
        all.iter().skip((page - 1) * per_page).take(per_page).map(|(_, _, t)| result(t, &account)).collect();
    let link = |page: usize| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        url.append_pair("page", &page.to_string()).append_pair("per_page", &per_page.to_string());
        url.append_pair("query", query);
        for name in ["sort_by", "sort_order"] {
            if let Some(v) = q.get(name) {
                url.append_pair(name, v);
            }
        }
        format!("{}/api/v2/search.json?{}", base(&account), url.finish())
    };
    Ok(Json(json!({
        "results": results,
        "facets": null,
        "next_page": (page * per_page < count).then(|| link(page + 1)),
        "previous_page": (page > 1).then(|| link(page - 1)),
        "count": count,
    })))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn date_terms_are_inclusive_or_strict_to_the_second() {
        let ge = updated_since("type:ticket updated>=2026-11-01T10:00:00Z").unwrap();
        let gt = updated_since("updated>2026-11-01T10:00:00Z type:ticket").unwrap();
        let same_second = Some(datetime!(2026-11-01 10:00:00.700 UTC));
        assert!(ge.admits(same_second));
        assert!(!gt.admits(same_second));
        assert!(gt.admits(Some(datetime!(2026-11-01 10:00:01 UTC))));
        assert_eq!(updated_since("updated>=2026-11-01").unwrap().at, datetime!(2026-11-01 00:00 UTC));
        assert_eq!(updated_since("status:open").unwrap(), Since::ALL);
        assert!(updated_since("updated>=yesterday").is_err());
    }
}
