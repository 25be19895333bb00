//! Unified.to Ticketing API backend: `/ticketing/{connection_id}/{ticket|customer|note|category}`.
//!
//! Wire shapes are the normalized model's own, so this file is mostly paths and the list
//! parameters. Lists page by offset; categories are cached per connection ([`CategoryCache`]).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;

use super::{
    Category, Customer, ListQuery, NewNote, Note, PAGE_SIZE, Page, PageToken, Result, SortField, SortOrder,
    Ticket, TicketPatch, TicketReader, Ticketing, TicketingError,
    categories::CategoryCache,
    client::{Auth, Call, HttpClient},
    model::format_timestamp,
    paginate,
};
use crate::http::HttpSettings;

pub use super::client::Region;

/// Unified.to's API base URL in `region`; a workspace's key only works in its own region.
pub fn region_url(region: Region) -> &'static str {
    match region {
        Region::Us => "https://api.unified.to",
        Region::Eu => "https://api-eu.unified.to",
        Region::Au => "https://api-au.unified.to",
    }
}

/// A Unified.to connection seen through the normalized model.
#[derive(Debug)]
pub struct UnifiedClient {
    http: HttpClient,
    connection_id: String,
    categories: CategoryCache,
}

impl UnifiedClient {
    /// A client for `connection_id` at `base_url` (a region URL or the sandbox).
    pub fn new(
        base_url: &str,
        connection_id: impl Into<String>,
        api_key: SecretString,
        settings: &HttpSettings,
    ) -> Result<Self> {
        Ok(Self {
            http: HttpClient::new("unified", base_url, Auth::Bearer(api_key), settings)?,
            connection_id: connection_id.into(),
            categories: CategoryCache::default(),
        })
    }

    /// Sets how long the category list is cached (zero disables the cache).
    pub fn with_category_ttl(mut self, ttl: Duration) -> Self {
        self.categories = CategoryCache::new(ttl);
        self
    }

    /// The Unified connection id.
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// One ticket, with `fields` (e.g. `raw`) and `raw` vendor parameters passed through.
    pub async fn get_ticket_with(&self, id: &str, fields: &[String], raw: Option<&str>) -> Result<Ticket> {
        let mut params: Vec<_> = fields.iter().map(|f| ("fields", f.clone())).collect();
        if let Some(raw) = raw {
            params.push(("raw", raw.to_owned()));
        }
        let call =
            Call::new(Method::GET, &self.path("ticket", Some(id)), format!("ticket {id}")).params(params);
        self.http.send(call).await
    }

    /// Drops the cached categories so the next read asks the server.
    pub async fn invalidate_categories(&self) {
        self.categories.invalidate().await;
    }

    fn path<'a>(&'a self, object: &'a str, id: Option<&'a str>) -> Vec<&'a str> {
        let mut p = vec!["ticketing", self.connection_id.as_str(), object];
        p.extend(id);
        p
    }

    async fn list<T: for<'de> Deserialize<'de>>(&self, object: &str, query: &ListQuery) -> Result<Page<T>> {
        let start = match &query.page {
            None => 0,
            Some(PageToken::Offset(offset)) => *offset,
            Some(PageToken::Cursor(_)) => {
                return Err(TicketingError::Invalid {
                    detail: "Unified.to pages by offset; a cursor cannot continue its lists".into(),
                });
            }
        };
        let call = Call::new(
            Method::GET,
            &self.path(object, None),
            format!("{object} list of connection {}", self.connection_id),
        )
        .params(list_params(query));
        let items = self.http.send(call).await?;
        // Without a limit the server sends its default page, which is also its cap.
        Ok(Page::by_offset(items, start, query.limit.unwrap_or(PAGE_SIZE)))
    }

    async fn fetch_categories(&self) -> Result<Vec<Category>> {
        let pages =
            paginate(ListQuery::default(), |q| async move { self.list::<Category>("category", &q).await });
        super::collect_all(pages).await
    }
}

#[async_trait]
impl TicketReader for UnifiedClient {
    fn backend(&self) -> &'static str {
        "unified"
    }

    async fn list_tickets(&self, query: &ListQuery) -> Result<Page<Ticket>> {
        self.list("ticket", query).await
    }

    async fn get_ticket(&self, id: &str) -> Result<Ticket> {
        self.get_ticket_with(id, &[], None).await
    }

    async fn get_customer(&self, id: &str) -> Result<Customer> {
        let call = Call::new(Method::GET, &self.path("customer", Some(id)), format!("customer {id}"));
        self.http.send(call).await
    }

    async fn list_notes(&self, query: &ListQuery) -> Result<Page<Note>> {
        self.list("note", query).await
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        self.categories.get_or_fetch(|| self.fetch_categories()).await
    }
}

#[async_trait]
impl Ticketing for UnifiedClient {
    async fn update_ticket(&self, id: &str, patch: &TicketPatch) -> Result<Ticket> {
        let call =
            Call::new(Method::PATCH, &self.path("ticket", Some(id)), format!("ticket {id}")).json(patch)?;
        self.http.send(call).await
    }

    async fn create_note(&self, note: &NewNote) -> Result<Note> {
        let call = Call::new(Method::POST, &self.path("note", None), format!("ticket {}", note.ticket_id))
            .json(note)?;
        self.http.send(call).await
    }
}

/// A list query as Unified.to's parameters, in a stable order. `fields` goes out as repeated keys
/// (`fields=id&fields=subject`), the spec's form/explode default that Unified's SDK sends.
fn list_params(query: &ListQuery) -> Vec<(&'static str, String)> {
    let mut p = Vec::new();
    if let Some(v) = query.limit {
        p.push(("limit", v.to_string()));
    }
    if let Some(PageToken::Offset(v)) = query.page {
        p.push(("offset", v.to_string()));
    }
    if let Some(v) = query.updated_gte {
        p.push(("updated_gte", format_timestamp(v)));
    }
    if let Some(v) = query.sort {
        let field = match v {
            SortField::Name => "name",
            SortField::UpdatedAt => "updated_at",
            SortField::CreatedAt => "created_at",
        };
        p.push(("sort", field.to_owned()));
    }
    if let Some(v) = query.order {
        let order = match v {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        };
        p.push(("order", order.to_owned()));
    }
    for (key, value) in [
        ("query", &query.query),
        ("ticket_id", &query.ticket_id),
        ("customer_id", &query.customer_id),
        ("user_id", &query.user_id),
        ("parent_id", &query.parent_id),
        ("raw", &query.raw),
    ] {
        if let Some(v) = value {
            p.push((key, v.clone()));
        }
    }
    for field in &query.fields {
        p.push(("fields", field.clone()));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_params_are_stable() {
        let q = ListQuery {
            limit: Some(100),
            page: Some(PageToken::Offset(200)),
            updated_gte: Some(time::macros::datetime!(2026-11-01 00:00 UTC)),
            sort: Some(SortField::UpdatedAt),
            order: Some(SortOrder::Desc),
            fields: vec!["id".into(), "subject".into()],
            ticket_id: Some("7".into()),
            ..ListQuery::default()
        };
        assert_eq!(
            list_params(&q),
            vec![
                ("limit", "100".to_owned()),
                ("offset", "200".to_owned()),
                ("updated_gte", "2026-11-01T00:00:00Z".to_owned()),
                ("sort", "updated_at".to_owned()),
                ("order", "desc".to_owned()),
                ("ticket_id", "7".to_owned()),
                ("fields", "id".to_owned()),
                ("fields", "subject".to_owned()),
            ]
        );
        assert!(list_params(&ListQuery::default()).is_empty());
    }

    #[tokio::test]
    async fn a_cursor_cannot_continue_an_offset_list() {
        let c = UnifiedClient::new("http://127.0.0.1:9", "c", "k".into(), &HttpSettings::default()).unwrap();
        let q = ListQuery { page: Some(PageToken::Cursor("abc".into())), ..ListQuery::default() };
        assert!(matches!(c.list_tickets(&q).await, Err(TicketingError::Invalid { .. })));
    }
}
