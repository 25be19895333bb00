//! Intercom API backend (version 2.14, pinned with `Intercom-Version`): tickets through the
//! Tickets API, the ticket's contact as customer, ticket parts as notes, ticket types as
//! categories, updates of the open flag and the assignee, tags through the tag endpoints, and
//! the draft as an admin's `note` reply.
//!
//! Changed tickets come from `POST /tickets/search` on `updated_at`, paged by cursor
//! (`starting_after`, at most 150 a page). Its `>` is strict and in whole seconds, so a walk from
//! T asks for `updated_at > ceil(T) - 1`, and anything listed before T is dropped. An offset (the
//! poller's step over tickets sharing the anchor's second) follows the cursor from the start of
//! the query and skips that many. Intercom tickets have no priority, their type cannot be changed
//! through the API, and their tags can be added but not read back: see [`capabilities`].
//!
//! [`capabilities`]: TicketReader::capabilities

pub mod wire;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{
    Method,
    header::{HeaderName, HeaderValue},
};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use super::{
    Capabilities, Category, Customer, ListQuery, NewNote, Note, PAGE_SIZE, Page, PageToken, Result,
    SortField, SortOrder, Ticket, TicketField, TicketPatch, TicketReader, Ticketing, TicketingError,
    categories::CategoryCache,
    client::{Auth, Call, HttpClient},
    model::whole_second_ceil,
};
use crate::http::HttpSettings;
use wire::{IcAdmin, IcContact, IcList, IcPart, IcTag, IcTicket, IcTicketList, IcTicketType};

/// The API version every request pins.
pub const API_VERSION: &str = "2.14";
/// Largest `per_page` of a search.
pub const MAX_PER_PAGE: u32 = 150;
/// Why a priority is not written.
pub const NO_PRIORITY: &str = "Intercom tickets have no priority";
/// Why a category is not written.
pub const NO_CATEGORY_CHANGE: &str =
    "an Intercom ticket's type (its category) is chosen when it is created; the API cannot change it";

pub use super::client::Region;

/// Intercom's API base URL in `region` (`region` in the configuration).
pub fn region_url(region: Region) -> &'static str {
    match region {
        Region::Us => "https://api.intercom.io",
        Region::Eu => "https://api.eu.intercom.io",
        Region::Au => "https://api.au.intercom.io",
    }
}

/// An Intercom workspace seen through the normalized model.
#[derive(Debug)]
pub struct IntercomClient {
    http: HttpClient,
    /// The admin notes and tags are written as: configured, or the token's own (`GET /me`).
    admin: OnceCell<String>,
    categories: CategoryCache,
}

impl IntercomClient {
    /// A client for the workspace at `base_url` (a region's URL, a proxy, the sandbox's
    /// `/intercom`) with an access token (sent as `Authorization: Bearer`).
    pub fn new(base_url: &str, token: SecretString, settings: &HttpSettings) -> Result<Self> {
        let http = HttpClient::new("intercom", base_url, Auth::Bearer(token), settings)?
            .with_header(HeaderName::from_static("intercom-version"), HeaderValue::from_static(API_VERSION))
            .with_reset_header("x-ratelimit-reset");
        Ok(Self { http, admin: OnceCell::new(), categories: CategoryCache::default() })
    }

    /// Writes notes and tags as this admin instead of the token's own (`GET /me`).
    pub fn with_admin(self, admin_id: Option<String>) -> Self {
        Self {
            admin: admin_id.filter(|a| !a.trim().is_empty()).map(OnceCell::from).unwrap_or_default(),
            ..self
        }
    }

    /// Sets how long the category list is cached (zero disables the cache).
    pub fn with_category_ttl(mut self, ttl: Duration) -> Self {
        self.categories = CategoryCache::new(ttl);
        self
    }

    /// The admin writes are attributed to.
    async fn admin(&self) -> Result<&str> {
        let id = self
            .admin
            .get_or_try_init(|| async {
                let me: IcAdmin =
                    self.http.send(Call::new(Method::GET, &["me"], "the token's admin")).await?;
                me.id.ok_or_else(|| TicketingError::Invalid {
                    detail: "GET /me named no admin; set the connection's admin_id".into(),
                })
            })
            .await?;
        Ok(id)
    }

    /// One page of `POST /tickets/search`.
    async fn search(&self, body: &Value) -> Result<IcTicketList> {
        let call = Call::new(Method::POST, &["tickets", "search"], "ticket search").json(body)?;
        // A search changes nothing: sending it again after an ambiguous failure is safe.
        self.http.send(call.idempotent()).await
    }

    /// The id of the tag `name`, created when the workspace has none by that name (Intercom's
    /// names are case-insensitive).
    async fn tag_id(&self, name: &str, known: &[IcTag]) -> Result<String> {
        if let Some(id) = known
            .iter()
            .find(|t| t.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .and_then(|t| t.id.clone())
        {
            return Ok(id);
        }
        let call =
            Call::new(Method::POST, &["tags"], format!("tag {name}")).json(&json!({ "name": name }))?;
        let tag: IcTag = self.http.send(call).await?;
        tag.id.ok_or_else(|| TicketingError::Invalid {
            detail: format!("POST /tags for `{name}` returned no id"),
        })
    }
}

/// The search body of a list query (without its cursor).
fn search_body(query: &ListQuery, per_page: u32) -> Result<Value> {
    let unsupported = |what: &str| TicketingError::Invalid {
        detail: format!("Intercom's ticket search cannot filter by {what} here"),
    };
    if query.query.is_some() {
        return Err(unsupported("free text"));
    }
    // `>` is strict and in whole seconds: `> ceil(T) - 1` lists what changed at or after T.
    let since = query.updated_gte.map_or(0, |t| whole_second_ceil(t).unix_timestamp() - 1);
    let mut filters = vec![json!({"field": "updated_at", "operator": ">", "value": since.max(0)})];
    if let Some(c) = &query.customer_id {
        filters.push(json!({"field": "contact_ids", "operator": "=", "value": c}));
    }
    if let Some(u) = &query.user_id {
        filters.push(json!({"field": "admin_assignee_id", "operator": "=", "value": u}));
    }
    let filter = match filters.len() {
        1 => filters.remove(0),
        _ => json!({"operator": "AND", "value": filters}),
    };
    let mut body = json!({"query": filter, "pagination": {"per_page": per_page}});
    if let Some(sort) = query.sort {
        let field = match sort {
            SortField::UpdatedAt => "updated_at",
            SortField::CreatedAt => "created_at",
            SortField::Name => return Err(unsupported("name order")),
        };
        let order = if query.order == Some(SortOrder::Desc) { "descending" } else { "ascending" };
        body["sort"] = json!({"field": field, "order": order});
    }
    Ok(body)
}

#[async_trait]
impl TicketReader for IntercomClient {
    fn backend(&self) -> &'static str {
        "intercom"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
            .without(TicketField::Priority, NO_PRIORITY)
            .without(TicketField::Category, NO_CATEGORY_CHANGE)
    }

    async fn list_tickets(&self, query: &ListQuery) -> Result<Page<Ticket>> {
        let per_page = query.limit.unwrap_or(PAGE_SIZE).clamp(1, MAX_PER_PAGE);
        let mut body = search_body(query, per_page)?;
        let (mut cursor, mut skip) = match &query.page {
            None => (None, 0),
            Some(PageToken::Cursor(c)) => (Some(c.clone()), 0),
            Some(PageToken::Offset(n)) => (None, *n as usize),
        };
        let mut items = Vec::new();
        loop {
            if let Some(c) = cursor.take() {
                body["pagination"]["starting_after"] = c.into();
            }
            let page = self.search(&body).await?;
            let next = page.next_cursor();
            let since = query.updated_gte;
            let listed: Vec<Ticket> = page
                .tickets
                .into_iter()
                .map(IcTicket::into_ticket)
                // Whatever the search's rounding, nothing before the asked instant is listed.
                .filter(|t| since.is_none_or(|s| t.updated_at.is_none_or(|u| u >= s)))
                .collect();
            // An offset is walked from the start of the query (Intercom pages by cursor only),
            // and the page after it is filled up: a poller stepping through tickets that share
            // a second needs more than the rest of one page to move on.
            let skipped = skip.min(listed.len());
            skip -= skipped;
            items.extend(listed.into_iter().skip(skipped));
            if next.is_none() || (skip == 0 && items.len() >= per_page as usize) {
                return Ok(Page { items, next: next.map(PageToken::Cursor) });
            }
            cursor = next;
        }
    }

    async fn get_ticket(&self, id: &str) -> Result<Ticket> {
        let call = Call::new(Method::GET, &["tickets", id], format!("ticket {id}"));
        let t: IcTicket = self.http.send(call).await?;
        Ok(t.into_ticket())
    }

    async fn get_customer(&self, id: &str) -> Result<Customer> {
        let call = Call::new(Method::GET, &["contacts", id], format!("contact {id}"));
        let c: IcContact = self.http.send(call).await?;
        // The contact lists its tags by reference only; their names are one more call.
        let tags = match c.tags.as_ref().is_some_and(|t| !t.data.is_empty()) {
            true => {
                let call = Call::new(Method::GET, &["contacts", id, "tags"], format!("tags of contact {id}"));
                let tags: IcList<IcTag> = self.http.send(call).await?;
                tags.data.into_iter().filter_map(|t| t.name).collect()
            }
            false => Vec::new(),
        };
        Ok(c.into_customer(tags))
    }

    /// The ticket's notes and replies (its parts; Intercom returns the 500 most recent), one page.
    async fn list_notes(&self, query: &ListQuery) -> Result<Page<Note>> {
        let Some(ticket) = query.ticket_id.as_deref() else {
            return Err(TicketingError::Invalid {
                detail: "Intercom lists notes (ticket parts) per ticket; set the query's ticket_id".into(),
            });
        };
        let start = match &query.page {
            None => 0,
            Some(PageToken::Offset(n)) => *n as usize,
            Some(PageToken::Cursor(_)) => {
                return Err(TicketingError::Invalid {
                    detail: "Intercom's ticket parts come in one list; a cursor cannot continue them".into(),
                });
            }
        };
        let call = Call::new(Method::GET, &["tickets", ticket], format!("ticket {ticket}"));
        let t: IcTicket = self.http.send(call).await?;
        let parts = t.ticket_parts.map(|p| p.ticket_parts).unwrap_or_default();
        let notes: Vec<Note> = parts.into_iter().filter_map(|p| p.into_note(ticket)).skip(start).collect();
        let limit = query.limit.map_or(notes.len(), |l| l.max(1) as usize);
        let more = notes.len() > limit;
        let items: Vec<Note> = notes.into_iter().take(limit).collect();
        let next = more.then(|| PageToken::Offset(u32::try_from(start + items.len()).unwrap_or(u32::MAX)));
        Ok(Page { items, next })
    }

    /// The workspace's tags (`GET /tags`): tickets do not show theirs.
    async fn tags_in_use(&self) -> Result<Option<Vec<String>>> {
        let tags: IcList<IcTag> = self.http.send(Call::new(Method::GET, &["tags"], "tag list")).await?;
        Ok(Some(tags.data.into_iter().filter_map(|t| t.name).collect()))
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        self.categories
            .get_or_fetch(|| async {
                let call = Call::new(Method::GET, &["ticket_types"], "ticket types");
                let types: IcList<IcTicketType> = self.http.send(call).await?;
                Ok(types.data.into_iter().map(IcTicketType::into_category).collect())
            })
            .await
    }
}

#[async_trait]
impl Ticketing for IntercomClient {
    /// Writes the open flag and the assignee, then adds the tags (adding never removes one).
    /// A priority or a category is refused: see [`TicketReader::capabilities`].
    async fn update_ticket(&self, id: &str, patch: &TicketPatch) -> Result<Ticket> {
        if patch.priority.is_some() {
            return Err(TicketingError::Invalid { detail: format!("{NO_PRIORITY}; leave the priority out") });
        }
        if patch.category_id.is_some() {
            return Err(TicketingError::Invalid { detail: format!("{NO_CATEGORY_CHANGE}; leave it out") });
        }
        let mut fields = Map::new();
        if let Some(s) = &patch.status {
            fields.insert("open".into(), wire::open_of(s)?.into());
        }
        if let Some(u) = &patch.user_id {
            fields.insert("assignee_id".into(), u.clone().into());
        }
        let mut updated = None;
        if !fields.is_empty() {
            let call = Call::new(Method::PUT, &["tickets", id], format!("ticket {id}")).json(&fields)?;
            let t: IcTicket = self.http.send(call).await?;
            updated = Some(t.into_ticket());
        }
        if let Some(tags) = patch.tags.as_ref().filter(|t| !t.is_empty()) {
            let admin = self.admin().await?.to_owned();
            let known: IcList<IcTag> = self.http.send(Call::new(Method::GET, &["tags"], "tag list")).await?;
            for name in tags {
                let tag = self.tag_id(name, &known.data).await?;
                let call = Call::new(Method::POST, &["tickets", id, "tags"], format!("ticket {id}"))
                    .json(&json!({ "id": tag, "admin_id": admin }))?;
                // Adding a tag twice leaves one: safe to send again.
                let _: IcTag = self.http.send(call.idempotent()).await?;
            }
        }
        match updated {
            Some(t) => Ok(t),
            None => self.get_ticket(id).await,
        }
    }

    /// Always a `note` reply: deskpilot never writes what the customer would see.
    async fn create_note(&self, note: &NewNote) -> Result<Note> {
        let admin = match &note.user_id {
            Some(a) => a.clone(),
            None => self.admin().await?.to_owned(),
        };
        let id = note.ticket_id.as_str();
        let body = json!({
            "message_type": "note", "type": "admin", "admin_id": admin,
            "body": wire::note_html(&note.description),
        });
        let call = Call::new(Method::POST, &["tickets", id, "reply"], format!("ticket {id}")).json(&body)?;
        let part: IcPart = self.http.send(call).await?;
        part.into_note(id).ok_or_else(|| TicketingError::Invalid {
            detail: format!("POST /tickets/{id}/reply answered a part that is not a note"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_asks_strictly_after_the_second_before() {
        let q = ListQuery::updated_since(time::macros::datetime!(2026-11-01 10:00:00.250 UTC));
        let body = search_body(&ListQuery { customer_id: Some("c-1".into()), ..q.clone() }, 50).unwrap();
        let t = time::macros::datetime!(2026-11-01 10:00:01 UTC).unix_timestamp();
        assert_eq!(body["query"]["operator"], "AND");
        assert_eq!(
            body["query"]["value"][0],
            json!({"field": "updated_at", "operator": ">", "value": t - 1})
        );
        assert_eq!(body["sort"], json!({"field": "updated_at", "order": "ascending"}));
        let whole = ListQuery::updated_since(time::macros::datetime!(2026-11-01 10:00:01 UTC));
        assert_eq!(search_body(&whole, 5).unwrap()["query"]["value"], t - 1);
        assert!(search_body(&ListQuery { query: Some("x".into()), ..q }, 5).is_err());
    }

    #[test]
    fn regions_have_their_hosts() {
        assert_eq!(region_url(Region::default()), "https://api.intercom.io");
        assert_eq!(region_url(Region::Eu), "https://api.eu.intercom.io");
        assert_eq!(region_url(Region::Au), "https://api.au.intercom.io");
    }
}
