//! Zendesk Support API backend (`/api/v2/...`), native: tickets, requesters, comments with their
//! visibility, categories from a dropdown field, groups or forms, updates and internal notes.
//!
//! Lists page by cursor. Changed tickets come from the search export (any agent; ordered by
//! creation) or the incremental cursor export (admins only; ordered by change). A list sorted by
//! `updated_at` or `created_at` (polls and backfills walk tickets oldest change first) goes through
//! the offset search instead, the only list Zendesk sorts as asked; it answers at most 1000 results
//! a query, so a walk oldest first re-anchors on its newest instant before that bound. Tags are added
//! through the tags sub-resource, whose PUT adds and never removes, so a tag a person set while
//! deskpilot decided survives. The wire shapes and mappings live in [`wire`].

pub mod wire;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::{
    Category, Customer, ListQuery, NewNote, Note, NoteVisibility, Page, PageToken, Result, SortField,
    SortOrder, Ticket, TicketPatch, TicketReader, Ticketing, TicketingError,
    categories::CategoryCache,
    client::{Auth, Call, HttpClient},
    model::{format_timestamp, whole_second_ceil},
};
use crate::http::HttpSettings;
use wire::{
    CategorySource, Comments, Forms, Groups, IncrementalExport, SearchExport, SearchPage, Tags,
    TicketEnvelope, TicketFieldEnvelope, UserEnvelope,
};

/// Largest `page[size]` of the comment and group lists.
const MAX_PAGE: u32 = 100;
/// Largest `page[size]` of the search export (Zendesk recommends 100).
const MAX_EXPORT_PAGE: u32 = 1000;
/// Largest `per_page` of the offset search.
const MAX_SEARCH_PAGE: u32 = 100;
/// Zendesk's search answers at most this many results a query (`page` × `per_page`).
const SEARCH_RESULT_LIMIT: u32 = 1000;

/// One sorted search: its query text, order and page size.
struct Search {
    query: String,
    sort_by: &'static str,
    ascending: bool,
    per_page: u32,
}

/// How deskpilot signs in to Zendesk (platforms.md §1.1).
#[derive(Debug, Clone)]
pub enum ZendeskAuth {
    /// An API token: basic auth as `{email}/token`.
    ApiToken {
        /// The agent's email.
        email: String,
        /// The token.
        token: SecretString,
    },
    /// An OAuth access token (bearer).
    OAuth(SecretString),
}

/// Which export lists changed tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TicketExport {
    /// `GET /api/v2/search/export`: any agent; ordered by creation, 100 requests a minute.
    #[default]
    Search,
    /// `GET /api/v2/incremental/tickets/cursor`: admins only; ordered by change.
    Incremental,
}

/// A Zendesk account seen through the normalized model.
#[derive(Debug)]
pub struct ZendeskClient {
    http: HttpClient,
    export: TicketExport,
    category: CategorySource,
    categories: CategoryCache,
}

impl ZendeskClient {
    /// A client for the account at `base_url` (`https://acme.zendesk.com`, a proxy, the sandbox's
    /// `/zendesk`).
    pub fn new(
        base_url: &str,
        auth: ZendeskAuth,
        export: TicketExport,
        category: CategorySource,
        settings: &HttpSettings,
    ) -> Result<Self> {
        let auth = match auth {
            ZendeskAuth::ApiToken { email, token } => {
                Auth::Basic { username: format!("{email}/token"), password: token }
            }
            ZendeskAuth::OAuth(token) => Auth::Bearer(token),
        };
        Ok(Self {
            http: HttpClient::new("zendesk", base_url, auth, settings)?,
            export,
            category,
            categories: CategoryCache::default(),
        })
    }

    /// The URL of an account's API: `https://{subdomain}.zendesk.com`.
    pub fn account_url(subdomain: &str) -> String {
        format!("https://{subdomain}.zendesk.com")
    }

    /// Sets how long the category list is cached (zero disables the cache).
    pub fn with_category_ttl(mut self, ttl: Duration) -> Self {
        self.categories = CategoryCache::new(ttl);
        self
    }

    async fn search_export(&self, query: &ListQuery) -> Result<Page<Ticket>> {
        let since = query.updated_gte.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut terms = vec![format!("updated>={}", format_timestamp(since))];
        terms.extend(query.customer_id.as_ref().map(|c| format!("requester:{c}")));
        terms.extend(query.user_id.as_ref().map(|u| format!("assignee:{u}")));
        terms.extend(query.query.clone());
        let size = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_EXPORT_PAGE);
        let mut params = vec![
            ("query", terms.join(" ")),
            ("filter[type]", "ticket".to_owned()),
            ("page[size]", size.to_string()),
        ];
        params.extend(cursor(query, "ticket list")?.map(|c| ("page[after]", c)));
        let call = Call::new(Method::GET, &["api", "v2", "search", "export"], "ticket list").params(params);
        let page: SearchExport = self.http.send(call).await?;
        let next = next_cursor(page.meta.has_more, page.meta.after_cursor);
        Ok(Page { items: page.results.into_iter().map(|t| t.into_ticket(self.category)).collect(), next })
    }

    /// One offset page of `GET /api/v2/search`, sorted as the query asks.
    async fn search(&self, query: &ListQuery, sort: SortField) -> Result<Page<Ticket>> {
        let per_page = query.limit.unwrap_or(MAX_SEARCH_PAGE).clamp(1, MAX_SEARCH_PAGE);
        let (offset, since) = match &query.page {
            None => (0, query.updated_gte),
            Some(PageToken::Offset(offset)) => (*offset, query.updated_gte),
            Some(PageToken::Cursor(anchor)) => (0, Some(parse_anchor(anchor)?)),
        };
        let (sort_by, ascending) = match (sort, query.order) {
            (SortField::UpdatedAt, order) => ("updated_at", order == Some(SortOrder::Asc)),
            (SortField::CreatedAt, order) => ("created_at", order == Some(SortOrder::Asc)),
            (SortField::Name, _) => {
                return Err(TicketingError::Invalid { detail: "Zendesk cannot sort tickets by name".into() });
            }
        };
        let mut terms = vec!["type:ticket".to_owned()];
        // Zendesk's timestamps are whole seconds: `>=` the rounded-up second is `>=` the instant.
        terms.extend(since.map(|t| format!("updated>={}", format_timestamp(whole_second_ceil(t)))));
        terms.extend(query.customer_id.as_ref().map(|c| format!("requester:{c}")));
        terms.extend(query.user_id.as_ref().map(|u| format!("assignee:{u}")));
        terms.extend(query.query.clone());
        let search = Search { query: terms.join(" "), sort_by, ascending, per_page };
        // Zendesk pages by number: an offset inside a page skips that page's first tickets.
        let skip = (offset % per_page) as usize;
        let (mut items, mut next) = self.search_page(&search, offset / per_page + 1, skip).await?;
        // What an offset leaves of a page is filled up from the next one, so a poller stepping
        // through tickets that share a second (Zendesk's dates have no fraction) moves on.
        if skip > 0
            && let Some(PageToken::Offset(after)) = next
        {
            let (more, then) = self.search_page(&search, after / per_page + 1, 0).await?;
            items.extend(more);
            next = then;
        }
        Ok(Page { items, next })
    }

    /// Page `page` of a search without its first `skip` tickets, and the token after it.
    async fn search_page(
        &self,
        search: &Search,
        page: u32,
        skip: usize,
    ) -> Result<(Vec<Ticket>, Option<PageToken>)> {
        let per_page = search.per_page;
        if page.saturating_mul(per_page) > SEARCH_RESULT_LIMIT {
            return Err(TicketingError::Invalid {
                detail: format!(
                    "Zendesk's search answers at most {SEARCH_RESULT_LIMIT} tickets a query and page {page} \
                     of {per_page} is past them; list from a later updated_gte instead"
                ),
            });
        }
        let params = vec![
            ("query", search.query.clone()),
            ("sort_by", search.sort_by.to_owned()),
            ("sort_order", if search.ascending { "asc" } else { "desc" }.to_owned()),
            ("page", page.to_string()),
            ("per_page", per_page.to_string()),
        ];
        let call = Call::new(Method::GET, &["api", "v2", "search"], "ticket search").params(params);
        let answer: SearchPage = self.http.send(call).await?;
        let full = answer.results.len() >= per_page as usize;
        let items: Vec<Ticket> =
            answer.results.into_iter().skip(skip).map(|t| t.into_ticket(self.category)).collect();
        let next = if answer.next_page.is_none() || !full {
            None
        } else if (page + 1).saturating_mul(per_page) <= SEARCH_RESULT_LIMIT {
            Some(PageToken::Offset(page * per_page))
        } else if search.sort_by == "updated_at" && search.ascending {
            // A new query from the newest instant seen goes on past the result bound.
            items.last().and_then(|t| t.updated_at).map(|t| PageToken::Cursor(format_timestamp(t)))
        } else {
            // Asking for it says clearly that the bound is reached, rather than ending early.
            Some(PageToken::Offset(page * per_page))
        };
        Ok((items, next))
    }

    async fn incremental_export(&self, query: &ListQuery) -> Result<Page<Ticket>> {
        let params = match cursor(query, "ticket list")? {
            Some(c) => vec![("cursor", c)],
            None => {
                let since = query.updated_gte.map_or(0, |t| t.unix_timestamp().max(0));
                vec![("start_time", since.to_string())]
            }
        };
        let call = Call::new(Method::GET, &["api", "v2", "incremental", "tickets", "cursor"], "ticket list")
            .params(params);
        let page: IncrementalExport = self.http.send(call).await?;
        let next = next_cursor(!page.end_of_stream, page.after_cursor);
        Ok(Page { items: page.tickets.into_iter().map(|t| t.into_ticket(self.category)).collect(), next })
    }

    async fn fetch_categories(&self) -> Result<Vec<Category>> {
        match self.category {
            CategorySource::Field(id) => {
                let id = id.to_string();
                let call = Call::new(
                    Method::GET,
                    &["api", "v2", "ticket_fields", &id],
                    format!("ticket field {id} (category_field_id)"),
                );
                let field: TicketFieldEnvelope = self.http.send(call).await?;
                let field = field.ticket_field;
                if field.kind.as_deref().is_some_and(|k| k != "tagger") {
                    return Err(TicketingError::Invalid {
                        detail: format!(
                            "ticket field {id} is a `{}` field; category_field_id must name a dropdown \
                             (tagger) field",
                            field.kind.unwrap_or_default()
                        ),
                    });
                }
                let active = field.active.unwrap_or(true);
                Ok(field.custom_field_options.into_iter().map(|o| o.into_category(active)).collect())
            }
            CategorySource::Groups => {
                let mut out = Vec::new();
                let mut after = None;
                loop {
                    let mut params = vec![("page[size]", MAX_PAGE.to_string())];
                    params.extend(after.take().map(|c| ("page[after]", c)));
                    let call = Call::new(Method::GET, &["api", "v2", "groups"], "group list").params(params);
                    let page: Groups = self.http.send(call).await?;
                    out.extend(page.groups.into_iter().map(wire::Group::into_category));
                    match next_cursor(page.meta.has_more, page.meta.after_cursor) {
                        Some(PageToken::Cursor(c)) => after = Some(c),
                        _ => return Ok(out),
                    }
                }
            }
            CategorySource::Forms => {
                let call = Call::new(Method::GET, &["api", "v2", "ticket_forms"], "ticket form list");
                let forms: Forms = self.http.send(call).await?;
                Ok(forms.ticket_forms.into_iter().map(wire::Form::into_category).collect())
            }
        }
    }

    /// The ticket fields of `patch` other than tags, as Zendesk's update body.
    fn update_fields(&self, patch: &TicketPatch) -> Result<Map<String, Value>> {
        let mut body = Map::new();
        if let Some(p) = &patch.priority {
            body.insert("priority".into(), wire::priority_to_zendesk(p)?.map_or(Value::Null, Value::from));
        }
        if let Some(s) = &patch.status {
            body.insert("status".into(), wire::status_to_zendesk(s)?.into());
        }
        if let Some(u) = &patch.user_id {
            body.insert("assignee_id".into(), numeric_id(u, "assignee")?.into());
        }
        if let Some(c) = &patch.category_id {
            match self.category {
                CategorySource::Field(field) => {
                    body.insert("custom_fields".into(), json!([{ "id": field, "value": c }]));
                }
                CategorySource::Groups => {
                    body.insert("group_id".into(), numeric_id(c, "category (group)")?.into());
                }
                CategorySource::Forms => {
                    body.insert("ticket_form_id".into(), numeric_id(c, "category (ticket form)")?.into());
                }
            }
        }
        Ok(body)
    }
}

#[async_trait]
impl TicketReader for ZendeskClient {
    fn backend(&self) -> &'static str {
        "zendesk"
    }

    async fn list_tickets(&self, query: &ListQuery) -> Result<Page<Ticket>> {
        match (query.sort, self.export) {
            (Some(sort), _) => self.search(query, sort).await,
            (None, TicketExport::Search) => self.search_export(query).await,
            (None, TicketExport::Incremental) => self.incremental_export(query).await,
        }
    }

    async fn get_ticket(&self, id: &str) -> Result<Ticket> {
        let call = Call::new(Method::GET, &["api", "v2", "tickets", id], format!("ticket {id}"));
        let t: TicketEnvelope = self.http.send(call).await?;
        Ok(t.ticket.into_ticket(self.category))
    }

    async fn get_customer(&self, id: &str) -> Result<Customer> {
        let call = Call::new(Method::GET, &["api", "v2", "users", id], format!("customer {id}"));
        let u: UserEnvelope = self.http.send(call).await?;
        Ok(u.user.into_customer())
    }

    async fn list_notes(&self, query: &ListQuery) -> Result<Page<Note>> {
        let Some(ticket) = query.ticket_id.as_deref() else {
            return Err(TicketingError::Invalid {
                detail: "Zendesk lists comments per ticket; set the query's ticket_id".into(),
            });
        };
        let size = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let mut params = vec![("page[size]", size.to_string()), ("include", "users".to_owned())];
        params.extend(cursor(query, "comment list")?.map(|c| ("page[after]", c)));
        let call = Call::new(
            Method::GET,
            &["api", "v2", "tickets", ticket, "comments"],
            format!("comments of ticket {ticket}"),
        )
        .params(params);
        let page: Comments = self.http.send(call).await?;
        let role = |author: Option<i64>| {
            page.users.iter().find(|u| u.id.is_some() && u.id == author).and_then(|u| u.role.clone())
        };
        let items =
            page.comments.iter().map(|c| c.clone().into_note(ticket, role(c.author_id).as_deref())).collect();
        Ok(Page { items, next: next_cursor(page.meta.has_more, page.meta.after_cursor.clone()) })
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        self.categories.get_or_fetch(|| self.fetch_categories()).await
    }
}

#[async_trait]
impl Ticketing for ZendeskClient {
    async fn update_ticket(&self, id: &str, patch: &TicketPatch) -> Result<Ticket> {
        let fields = self.update_fields(patch)?;
        let mut updated = None;
        if !fields.is_empty() {
            let call = Call::new(Method::PUT, &["api", "v2", "tickets", id], format!("ticket {id}"))
                .json(&json!({ "ticket": fields }))?;
            let t: TicketEnvelope = self.http.send(call).await?;
            updated = Some(t.ticket.into_ticket(self.category));
        }
        if let Some(tags) = patch.tags.as_ref().filter(|t| !t.is_empty()) {
            // PUT on the sub-resource adds; the ticket's `tags` would replace the whole list.
            let call = Call::new(Method::PUT, &["api", "v2", "tickets", id, "tags"], format!("ticket {id}"))
                .json(&Tags { tags: tags.clone() })?;
            let now: Tags = self.http.send(call).await?;
            if let Some(t) = updated.as_mut() {
                t.tags = now.tags;
            }
        }
        match updated {
            Some(t) => Ok(t),
            None => self.get_ticket(id).await,
        }
    }

    async fn create_note(&self, note: &NewNote) -> Result<Note> {
        let id = note.ticket_id.as_str();
        let mut comment = json!({ "body": note.description, "public": false });
        if let Some(author) = &note.user_id {
            comment["author_id"] = numeric_id(author, "note author (note_user_id)")?.into();
        }
        // A comment is added by updating the ticket; sending it twice would post it twice.
        let call = Call::new(Method::PUT, &["api", "v2", "tickets", id], format!("ticket {id}"))
            .once()
            .json(&json!({ "ticket": { "comment": comment } }))?;
        let answer: TicketEnvelope = self.http.send(call).await?;
        let event = answer
            .audit
            .unwrap_or_default()
            .events
            .into_iter()
            .find(|e| e.kind.as_deref() == Some("Comment"));
        let public = event.as_ref().and_then(|e| e.public);
        Ok(Note {
            id: event.as_ref().and_then(|e| e.id).map(|i| i.to_string()),
            ticket_id: Some(id.to_owned()),
            user_id: event.and_then(|e| e.author_id).map(|i| i.to_string()).or_else(|| note.user_id.clone()),
            description: Some(note.description.clone()),
            visibility: Some(if public == Some(true) {
                NoteVisibility::Public
            } else {
                NoteVisibility::Internal
            }),
            author_kind: Some(super::AuthorKind::Agent),
            updated_at: answer.ticket.updated_at,
            created_at: answer.ticket.updated_at,
            ..Note::default()
        })
    }
}

/// The query's cursor; an offset cannot continue a Zendesk list.
fn cursor(query: &ListQuery, what: &str) -> Result<Option<String>> {
    match &query.page {
        None => Ok(None),
        Some(PageToken::Cursor(c)) => Ok(Some(c.clone())),
        Some(PageToken::Offset(_)) => Err(TicketingError::Invalid {
            detail: format!("Zendesk pages its {what} by cursor; an offset cannot continue it"),
        }),
    }
}

/// The instant a search walk re-anchored on (see [`ZendeskClient::search`]).
fn parse_anchor(anchor: &str) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::parse(anchor, &time::format_description::well_known::Rfc3339).map_err(|_| {
        TicketingError::Invalid {
            detail: format!(
                "`{anchor}` is not a position in a sorted Zendesk ticket list (an RFC 3339 instant)"
            ),
        }
    })
}

fn next_cursor(more: bool, after: Option<String>) -> Option<PageToken> {
    after.filter(|c| more && !c.is_empty()).map(PageToken::Cursor)
}

/// A Zendesk id from its string form; Zendesk ids are integers.
fn numeric_id(value: &str, what: &str) -> Result<i64> {
    value.trim().parse().map_err(|_| TicketingError::Invalid {
        detail: format!("{what} `{value}` is not a Zendesk id (ids are numbers); check the configuration"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticketing::{PriorityLevel, TicketStatus};

    #[test]
    fn priorities_map_both_ways() {
        for (word, zd) in [("LOW", "low"), ("normal", "normal"), ("HIGH", "high"), ("Urgent", "urgent")] {
            assert_eq!(wire::priority_to_zendesk(word).unwrap(), Some(zd));
            assert_eq!(PriorityLevel::from_backend(zd).as_str(), word.to_ascii_uppercase());
        }
        assert_eq!(wire::priority_to_zendesk("NONE").unwrap(), None);
        assert!(wire::priority_to_zendesk("p1").is_err());
    }

    #[test]
    fn statuses_map_both_ways() {
        for s in ["new", "open", "pending", "hold"] {
            assert_eq!(wire::status_from_zendesk(s), TicketStatus::Active, "{s}");
        }
        for s in ["solved", "closed", "deleted"] {
            assert_eq!(wire::status_from_zendesk(s), TicketStatus::Closed, "{s}");
        }
        assert_eq!(wire::status_to_zendesk(&TicketStatus::Active).unwrap(), "open");
        assert_eq!(wire::status_to_zendesk(&TicketStatus::Closed).unwrap(), "solved");
        assert_eq!(wire::status_to_zendesk(&TicketStatus::Unknown("PENDING".into())).unwrap(), "pending");
        assert!(wire::status_to_zendesk(&TicketStatus::Unknown("waiting".into())).is_err());
    }

    #[test]
    fn ids_must_be_numbers() {
        assert_eq!(numeric_id(" 42 ", "x").unwrap(), 42);
        let e = numeric_id("alice", "assignee").unwrap_err().to_string();
        assert!(e.contains("assignee `alice` is not a Zendesk id"), "{e}");
    }
}
