//! Freshdesk API v2 backend: tickets, contacts, conversations, the ticket type's choices as
//! categories, ticket updates and private notes, at `{base}/api/v2/...` with the agent's API key.
//!
//! Lists page by `page`/`per_page` (at most 100 a page). Freshdesk serves at most 300 pages of a
//! ticket list, so a walk of tickets updated since T, oldest first, that reaches the last page
//! goes on from the newest `updated_at` it read (a [`PageToken::Cursor`] holding that instant).

mod wire;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

pub use self::wire::{
    FdContact, FdConversation, FdField, FdTicket, priority_number, priority_word, status_number, status_of,
};
use super::{
    Category, Customer, ListQuery, NewNote, Note, PAGE_SIZE, Page, PageToken, Result, SortField, SortOrder,
    Ticket, TicketPatch, TicketReader, Ticketing, TicketingError,
    categories::CategoryCache,
    client::{Auth, Call, HttpClient},
    model::{format_timestamp, whole_second_ceil},
};
use crate::http::HttpSettings;

/// Largest page Freshdesk serves.
pub const MAX_PER_PAGE: u32 = 100;
/// Last page number Freshdesk serves of a ticket list.
pub const MAX_PAGES: u32 = 300;

/// A Freshdesk helpdesk seen through the normalized model.
#[derive(Debug)]
pub struct FreshdeskClient {
    http: HttpClient,
    /// The helpdesk's address without `/api/v2`, for links to tickets.
    ui_base: String,
    categories: CategoryCache,
}

impl FreshdeskClient {
    /// A client for the helpdesk at `base_url` (`https://acme.freshdesk.com`, a proxy or the
    /// sandbox's `/freshdesk`), authenticated with an agent's API key.
    pub fn new(base_url: &str, api_key: SecretString, settings: &HttpSettings) -> Result<Self> {
        // A base_url given with the API's own path (`.../api/v2`) is taken as meant.
        let trimmed = base_url.trim_end_matches('/');
        let ui_base = trimmed.strip_suffix("/api/v2").unwrap_or(trimmed).to_owned();
        let api = format!("{ui_base}/api/v2");
        // Freshdesk takes the key as the basic-auth user; the password is ignored (`X` by custom).
        let auth = Auth::Basic {
            username: secrecy::ExposeSecret::expose_secret(&api_key).to_owned(),
            password: "X".into(),
        };
        Ok(Self {
            http: HttpClient::new("freshdesk", &api, auth, settings)?,
            ui_base,
            categories: CategoryCache::default(),
        })
    }

    /// A client for an API root that already ends where `/api/v2` would (a proxy that serves the
    /// API's paths at its root, such as a contract-checking proxy).
    pub fn at_api_root(api_root: &str, api_key: SecretString, settings: &HttpSettings) -> Result<Self> {
        let ui_base = api_root.trim_end_matches('/').to_owned();
        let auth = Auth::Basic {
            username: secrecy::ExposeSecret::expose_secret(&api_key).to_owned(),
            password: "X".into(),
        };
        Ok(Self {
            http: HttpClient::new("freshdesk", &ui_base, auth, settings)?,
            ui_base,
            categories: CategoryCache::default(),
        })
    }

    /// The base URL of a helpdesk `domain`: `acme`, `acme.freshdesk.com` or a full URL.
    pub fn domain_url(domain: &str) -> String {
        super::client::site_url(domain, "freshdesk.com")
    }

    /// Sets how long the category list is cached (zero disables the cache).
    pub fn with_category_ttl(mut self, ttl: Duration) -> Self {
        self.categories = CategoryCache::new(ttl);
        self
    }

    /// Page `page` of the ticket list without its first `skip` tickets, and the token after it.
    async fn ticket_page(
        &self,
        query: &ListQuery,
        page: u32,
        per_page: u32,
        since: Option<OffsetDateTime>,
        skip: usize,
    ) -> Result<(Vec<Ticket>, Option<PageToken>)> {
        let params = ticket_params(query, page, per_page, since)?;
        let call = Call::new(Method::GET, &["tickets"], "ticket list").params(params);
        let listed: Vec<FdTicket> = self.http.send(call).await?;
        let len = listed.len();
        let items: Vec<Ticket> =
            listed.into_iter().skip(skip).map(|t| t.into_ticket(&self.ui_base)).collect();
        let next = next_token(query, page, per_page, len, items.last());
        Ok((items, next))
    }

    async fn fetch_categories(&self) -> Result<Vec<Category>> {
        let call = Call::new(Method::GET, &["ticket_fields"], "ticket fields");
        let fields: Vec<FdField> = self.http.send(call).await?;
        Ok(fields.iter().find(|f| f.is_ticket_type()).map(FdField::categories).unwrap_or_default())
    }
}

/// Where a ticket-list page starts: a page number, and the `updated_since` a walk re-anchored on.
fn list_position(query: &ListQuery, per_page: u32) -> Result<(u32, Option<OffsetDateTime>)> {
    match &query.page {
        None => Ok((1, None)),
        Some(PageToken::Offset(offset)) => Ok((offset / per_page + 1, None)),
        Some(PageToken::Cursor(since)) => OffsetDateTime::parse(since, &Rfc3339)
            .map(|t| (1, Some(t)))
            .map_err(|_| TicketingError::Invalid {
                detail: format!("`{since}` is not a Freshdesk ticket-list position (an RFC 3339 instant)"),
            }),
    }
}

/// The per-page size for a query: its limit, capped at Freshdesk's 100.
fn per_page(query: &ListQuery) -> u32 {
    query.limit.unwrap_or(PAGE_SIZE).clamp(1, MAX_PER_PAGE)
}

/// A list query as `GET /tickets` parameters.
fn ticket_params(
    query: &ListQuery,
    page: u32,
    per_page: u32,
    since: Option<OffsetDateTime>,
) -> Result<Vec<(&'static str, String)>> {
    let unsupported = |what: &str| TicketingError::Invalid {
        detail: format!("Freshdesk's ticket list cannot filter by {what}"),
    };
    if query.query.is_some() {
        return Err(unsupported("free text"));
    }
    if query.user_id.is_some() {
        return Err(unsupported("assignee"));
    }
    let mut p = vec![("page", page.to_string()), ("per_page", per_page.to_string())];
    // Without `updated_since` Freshdesk lists only the tickets created in the last 30 days.
    let since = since.or(query.updated_gte).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    p.push(("updated_since", format_timestamp(whole_second_ceil(since))));
    if let Some(sort) = query.sort {
        let field = match sort {
            SortField::UpdatedAt => "updated_at",
            SortField::CreatedAt => "created_at",
            SortField::Name => return Err(unsupported("name order")),
        };
        p.push(("order_by", field.to_owned()));
    }
    if let Some(order) = query.order {
        p.push(("order_type", if order == SortOrder::Asc { "asc" } else { "desc" }.to_owned()));
    }
    if let Some(c) = &query.customer_id {
        p.push(("requester_id", wire::numeric_id(c, "customer")?.to_string()));
    }
    Ok(p)
}

/// The next page after `page` of a list read with `per_page`: a full page may have more after it.
/// Past Freshdesk's last page, a walk oldest-updated first goes on from the last item's instant.
fn next_token(
    query: &ListQuery,
    page: u32,
    per_page: u32,
    len: usize,
    last: Option<&Ticket>,
) -> Option<PageToken> {
    if len < per_page as usize {
        return None;
    }
    if page < MAX_PAGES {
        return Some(PageToken::Offset(page * per_page));
    }
    let oldest_first = query.sort == Some(SortField::UpdatedAt) && query.order == Some(SortOrder::Asc);
    let newest = last.and_then(|t| t.updated_at)?;
    oldest_first.then(|| PageToken::Cursor(format_timestamp(newest)))
}

#[async_trait]
impl TicketReader for FreshdeskClient {
    fn backend(&self) -> &'static str {
        "freshdesk"
    }

    async fn list_tickets(&self, query: &ListQuery) -> Result<Page<Ticket>> {
        let per_page = per_page(query);
        let (page, since) = list_position(query, per_page)?;
        // Freshdesk pages by number: an offset inside a page skips that page's first items.
        let skip = match &query.page {
            Some(PageToken::Offset(offset)) => (offset % per_page) as usize,
            _ => 0,
        };
        let (mut items, mut next) = self.ticket_page(query, page, per_page, since, skip).await?;
        // What an offset leaves of a page is filled up from the next one, so a poller stepping
        // through tickets that share a second (Freshdesk's dates have no fraction) moves on.
        if skip > 0
            && let Some(PageToken::Offset(after)) = next
        {
            let (more, then) = self.ticket_page(query, after / per_page + 1, per_page, since, 0).await?;
            items.extend(more);
            next = then;
        }
        Ok(Page { items, next })
    }

    async fn get_ticket(&self, id: &str) -> Result<Ticket> {
        let call = Call::new(Method::GET, &["tickets", id], format!("ticket {id}"));
        let t: FdTicket = self.http.send(call).await?;
        Ok(t.into_ticket(&self.ui_base))
    }

    async fn get_customer(&self, id: &str) -> Result<Customer> {
        let call = Call::new(Method::GET, &["contacts", id], format!("contact {id}"));
        let c: FdContact = self.http.send(call).await?;
        Ok(c.into_customer())
    }

    async fn list_notes(&self, query: &ListQuery) -> Result<Page<Note>> {
        let Some(ticket) = query.ticket_id.as_deref() else {
            return Err(TicketingError::Invalid {
                detail: "Freshdesk lists conversations per ticket; set the ticket".into(),
            });
        };
        let per_page = per_page(query);
        let page = match &query.page {
            None => 1,
            Some(PageToken::Offset(offset)) => offset / per_page + 1,
            Some(PageToken::Cursor(_)) => {
                return Err(TicketingError::Invalid {
                    detail: "Freshdesk pages conversations by number; a cursor cannot continue them".into(),
                });
            }
        };
        let params = vec![("page", page.to_string()), ("per_page", per_page.to_string())];
        let call = Call::new(Method::GET, &["tickets", ticket, "conversations"], format!("ticket {ticket}"))
            .params(params);
        let items: Vec<FdConversation> = self.http.send(call).await?;
        let start = (page - 1) * per_page;
        let full = items.len() >= per_page as usize;
        let skip = match &query.page {
            Some(PageToken::Offset(offset)) => (offset % per_page) as usize,
            _ => 0,
        };
        let notes: Vec<Note> = items
            .into_iter()
            .skip(skip)
            .map(|c| {
                let mut n = c.into_note();
                n.ticket_id.get_or_insert_with(|| ticket.to_owned());
                n
            })
            .collect();
        let next = full.then(|| PageToken::Offset(start + per_page));
        Ok(Page { items: notes, next })
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        self.categories.get_or_fetch(|| self.fetch_categories()).await
    }
}

#[async_trait]
impl Ticketing for FreshdeskClient {
    async fn update_ticket(&self, id: &str, patch: &TicketPatch) -> Result<Ticket> {
        let body = wire::update_body(patch)?;
        let call = Call::new(Method::PUT, &["tickets", id], format!("ticket {id}")).json(&body)?;
        let t: FdTicket = self.http.send(call).await?;
        Ok(t.into_ticket(&self.ui_base))
    }

    /// Always a private note: deskpilot never writes what the customer would see.
    async fn create_note(&self, note: &NewNote) -> Result<Note> {
        let mut body = match &note.raw {
            Some(Value::Object(raw)) => raw.clone(),
            _ => serde_json::Map::new(),
        };
        body.insert("body".into(), wire::note_html(&note.description).into());
        body.insert("private".into(), json!(true));
        if let Some(user) = &note.user_id {
            body.insert("user_id".into(), wire::numeric_id(user, "note author")?.into());
        }
        let id = note.ticket_id.as_str();
        let call = Call::new(Method::POST, &["tickets", id, "notes"], format!("ticket {id}")).json(&body)?;
        let c: FdConversation = self.http.send(call).await?;
        let mut n = c.into_note();
        n.ticket_id.get_or_insert_with(|| id.to_owned());
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticketing::{NoteVisibility, PriorityLevel, TicketStatus};

    #[test]
    fn priorities_map_both_ways() {
        for (n, level) in [
            (1, PriorityLevel::Low),
            (2, PriorityLevel::Normal),
            (3, PriorityLevel::High),
            (4, PriorityLevel::Urgent),
        ] {
            let word = priority_word(n).unwrap();
            assert_eq!(PriorityLevel::from_backend(word), level);
            assert_eq!(priority_number(word).unwrap(), n);
            assert_eq!(priority_number(&n.to_string()).unwrap(), n, "Freshdesk's own numbers");
        }
        assert_eq!(priority_number("Medium").unwrap(), 2);
        assert!(priority_number("critical").unwrap_err().to_string().contains("priority_values"));
    }

    #[test]
    fn statuses_map_both_ways() {
        assert_eq!(status_of(2), TicketStatus::Active);
        assert_eq!(status_of(3), TicketStatus::Active);
        assert_eq!(status_of(4), TicketStatus::Closed);
        assert_eq!(status_of(5), TicketStatus::Closed);
        assert_eq!(status_of(12), TicketStatus::Active, "custom statuses are open ones");
        assert_eq!(status_number(&TicketStatus::Active).unwrap(), 2);
        assert_eq!(status_number(&TicketStatus::Closed).unwrap(), 5);
        assert_eq!(status_number(&TicketStatus::Unknown("PENDING".into())).unwrap(), 3);
        assert_eq!(status_number(&TicketStatus::Unknown("RESOLVED".into())).unwrap(), 4);
        assert_eq!(status_number(&TicketStatus::Unknown("12".into())).unwrap(), 12);
        assert!(status_number(&TicketStatus::Unknown("LOST".into())).is_err());
    }

    #[test]
    fn visibility_and_author_come_from_private_and_incoming() {
        let c = FdConversation { id: 1, private: true, user_id: Some(7), ..FdConversation::default() };
        let n = c.into_note();
        assert_eq!(n.visibility, Some(NoteVisibility::Internal));
        assert_eq!(n.user_id.as_deref(), Some("7"));
        let c = FdConversation { id: 2, incoming: true, user_id: Some(9), ..FdConversation::default() };
        let n = c.into_note();
        assert_eq!(n.visibility, Some(NoteVisibility::Public));
        assert_eq!(n.customer_id.as_deref(), Some("9"));
        assert_eq!(n.author(), crate::ticketing::AuthorKind::Customer);
    }

    #[test]
    fn domains_become_urls() {
        assert_eq!(FreshdeskClient::domain_url("acme"), "https://acme.freshdesk.com");
        assert_eq!(FreshdeskClient::domain_url("acme.freshdesk.com"), "https://acme.freshdesk.com");
        assert_eq!(
            FreshdeskClient::domain_url("http://127.0.0.1:1/freshdesk/"),
            "http://127.0.0.1:1/freshdesk"
        );
    }

    #[test]
    fn a_base_url_with_the_api_path_is_not_doubled() {
        let settings = HttpSettings::default();
        for url in ["https://acme.freshdesk.com", "https://acme.freshdesk.com/api/v2/"] {
            let c = FreshdeskClient::new(url, "k".into(), &settings).unwrap();
            assert_eq!(c.http.base_url(), "https://acme.freshdesk.com/api/v2/", "{url}");
            assert_eq!(c.ui_base, "https://acme.freshdesk.com");
        }
    }

    #[test]
    fn the_last_served_page_goes_on_from_its_newest_instant() {
        let q = ListQuery::updated_since(time::macros::datetime!(2026-11-01 00:00 UTC));
        let last =
            Ticket { updated_at: Some(time::macros::datetime!(2026-11-03 10:00 UTC)), ..Ticket::default() };
        assert_eq!(next_token(&q, 1, 100, 100, Some(&last)), Some(PageToken::Offset(100)));
        assert_eq!(next_token(&q, 2, 100, 40, Some(&last)), None);
        assert_eq!(
            next_token(&q, MAX_PAGES, 100, 100, Some(&last)),
            Some(PageToken::Cursor("2026-11-03T10:00:00Z".into()))
        );
        assert_eq!(next_token(&ListQuery::default(), MAX_PAGES, 100, 100, Some(&last)), None);
    }
}
