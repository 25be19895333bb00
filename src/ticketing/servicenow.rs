//! ServiceNow backend through the Table API (`{instance}/api/now/table/...`): incidents, their
//! callers (`sys_user`) as customers, journal entries (`sys_journal_field`) as notes, the
//! incident category's choices (`sys_choice`) as categories, incident updates and work notes.
//!
//! Every read asks for actual values (`sysparm_display_value=false`): display values are labels
//! in the integration user's language and dates in its time zone, which no mapping can rely on,
//! while actual values are the stable choice values, `sys_id`s and UTC dates. Reference links are
//! excluded so a reference is its bare `sys_id`. Lists page by `sysparm_offset`/`sysparm_limit`,
//! so a [`PageToken::Offset`] is the offset itself, and always end on `sys_id` so rows sharing a
//! sort value keep one order between pages. Incidents have no tags: the connector says so (see
//! [`TicketReader::capabilities`]) and refuses an update with tags.

pub mod mapping;
mod query;
pub mod wire;

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::Value;

pub use self::mapping::{format_glide_time, parse_glide_time};
use self::{
    mapping::WORK_NOTES,
    query::{incident_query, position, query_value},
    wire::{
        CHOICE_FIELDS, Envelope, INCIDENT_FIELDS, JOURNAL_FIELDS, JournalAuthor, SnChoice, SnIncident,
        SnJournal, SnUser, USER_FIELDS,
    },
};
use super::{
    Capabilities, Category, Customer, ListQuery, NewNote, Note, Page, Result, Ticket, TicketField,
    TicketPatch, TicketReader, Ticketing, TicketingError,
    categories::CategoryCache,
    client::{Auth, Call, HttpClient},
    collect_all, paginate,
};
use crate::http::HttpSettings;

/// Largest `sysparm_limit` the connector asks for (ServiceNow's own default is 10,000).
pub const MAX_LIMIT: u32 = 1000;
/// The author ServiceNow records for its own journal entries (business rules, workflows).
const SYSTEM_USER: &str = "system";
/// Why tags are never written.
const NO_TAGS: &str = "ServiceNow incidents have no tags";

/// How deskpilot signs in to ServiceNow (platforms.md §4.1).
#[derive(Debug, Clone)]
pub enum ServiceNowAuth {
    /// Basic auth as an integration user.
    Basic {
        /// The user's `user_name`.
        username: String,
        /// Its password.
        password: SecretString,
    },
    /// An OAuth access token (bearer) from the instance's `oauth_token.do`.
    OAuth(SecretString),
}

/// A ServiceNow instance seen through the normalized model.
#[derive(Debug)]
pub struct ServiceNowClient {
    http: HttpClient,
    /// The instance's address without `/api/now`, for links to incidents.
    ui_base: String,
    categories: CategoryCache,
}

impl ServiceNowClient {
    /// A client for the instance at `base_url` (`https://acme.service-now.com`, a proxy or the
    /// sandbox's `/servicenow`); a base_url already ending in `/api/now` is taken as meant.
    pub fn new(base_url: &str, auth: ServiceNowAuth, settings: &HttpSettings) -> Result<Self> {
        let trimmed = base_url.trim_end_matches('/');
        let ui_base = trimmed.strip_suffix("/api/now").unwrap_or(trimmed);
        Self::with_roots(ui_base, &format!("{ui_base}/api/now"), auth, settings)
    }

    /// A client for an API root that already is where `/api/now` would be (a proxy that serves
    /// the Table API's paths at its root, such as a contract-checking proxy).
    pub fn at_api_root(api_root: &str, auth: ServiceNowAuth, settings: &HttpSettings) -> Result<Self> {
        let root = api_root.trim_end_matches('/');
        Self::with_roots(root, root, auth, settings)
    }

    fn with_roots(ui_base: &str, api: &str, auth: ServiceNowAuth, settings: &HttpSettings) -> Result<Self> {
        let auth = match auth {
            ServiceNowAuth::Basic { username, password } => Auth::Basic { username, password },
            ServiceNowAuth::OAuth(token) => Auth::Bearer(token),
        };
        Ok(Self {
            // A 429 carries `Retry-After`; when a rule sends only its reset time, wait until then.
            http: HttpClient::new("servicenow", api, auth, settings)?.with_reset_header("x-ratelimit-reset"),
            ui_base: ui_base.to_owned(),
            categories: CategoryCache::default(),
        })
    }

    /// The address of an instance: `acme`, `acme.service-now.com` or a full URL.
    pub fn instance_url(instance: &str) -> String {
        super::client::site_url(instance, "service-now.com")
    }

    /// Sets how long the category list is cached (zero disables the cache).
    pub fn with_category_ttl(mut self, ttl: Duration) -> Self {
        self.categories = CategoryCache::new(ttl);
        self
    }

    /// One page of a table's records: `query` (an encoded query), `fields`, from `offset`.
    async fn table<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        query: String,
        fields: &str,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<T>> {
        let call = Call::new(Method::GET, &["table", table], format!("{table} list")).params(vec![
            ("sysparm_query", query),
            ("sysparm_fields", fields.to_owned()),
            ("sysparm_offset", offset.to_string()),
            ("sysparm_limit", limit.to_string()),
            ("sysparm_display_value", "false".to_owned()),
            ("sysparm_exclude_reference_link", "true".to_owned()),
        ]);
        Ok(self.http.send::<Envelope<Vec<T>>>(call).await?.result)
    }

    /// One record by `sys_id`.
    async fn record<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        id: &str,
        fields: &str,
        what: &str,
    ) -> Result<T> {
        let call =
            Call::new(Method::GET, &["table", table, id], format!("{what} {id}")).params(read_params(fields));
        Ok(self.http.send::<Envelope<T>>(call).await?.result)
    }

    async fn fetch_categories(&self) -> Result<Vec<Category>> {
        let query = ListQuery { limit: Some(MAX_LIMIT), ..ListQuery::default() };
        let pages = paginate(query, |q| async move {
            let (offset, limit) = position(&q)?;
            let choices: Vec<SnChoice> = self
                .table(
                    "sys_choice",
                    "name=incident^element=category^inactive=false^language=en^ORDERBYsequence^ORDERBYsys_id"
                        .to_owned(),
                    CHOICE_FIELDS,
                    offset,
                    limit,
                )
                .await?;
            Ok(Page::by_offset(
                choices.into_iter().filter_map(SnChoice::into_category).collect(),
                offset,
                limit,
            ))
        });
        collect_all(pages).await
    }

    /// The author of each user name: the caller, another user (an agent), ServiceNow itself, or
    /// a name no readable user has.
    async fn authors(
        &self,
        caller: Option<&str>,
        names: Vec<String>,
    ) -> Result<HashMap<String, JournalAuthor>> {
        let mut names: Vec<String> = names.into_iter().filter(|n| n != SYSTEM_USER).collect();
        names.sort();
        names.dedup();
        let mut out: HashMap<String, JournalAuthor> =
            HashMap::from([(SYSTEM_USER.to_owned(), JournalAuthor::System)]);
        if names.is_empty() {
            return Ok(out);
        }
        let limit = u32::try_from(names.len()).unwrap_or(MAX_LIMIT);
        let users: Vec<SnUser> = self
            .table("sys_user", format!("user_nameIN{}", names.join(",")), "sys_id,user_name", 0, limit)
            .await?;
        for u in users {
            let Some(name) = u.user_name else { continue };
            let author = if caller == Some(u.sys_id.as_str()) {
                JournalAuthor::Caller(u.sys_id)
            } else {
                JournalAuthor::Agent(u.sys_id)
            };
            out.insert(name, author);
        }
        Ok(out)
    }

    /// The newest work note on `incident` whose text is `text`, written just now.
    async fn find_work_note(&self, incident: &str, text: &str) -> Result<Option<SnJournal>> {
        let query =
            format!("element_id={incident}^element={WORK_NOTES}^ORDERBYDESCsys_created_on^ORDERBYDESCsys_id");
        let recent: Vec<SnJournal> = self.table("sys_journal_field", query, JOURNAL_FIELDS, 0, 10).await?;
        Ok(recent.into_iter().find(|j| j.value.as_deref().map(str::trim) == Some(text.trim())))
    }
}

/// The parameters of a one-record read: actual values, bare references, these fields.
fn read_params(fields: &str) -> Vec<(&'static str, String)> {
    vec![
        ("sysparm_fields", fields.to_owned()),
        ("sysparm_display_value", "false".to_owned()),
        ("sysparm_exclude_reference_link", "true".to_owned()),
    ]
}

#[async_trait]
impl TicketReader for ServiceNowClient {
    fn backend(&self) -> &'static str {
        "servicenow"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all().without(TicketField::Tags, NO_TAGS)
    }

    async fn list_tickets(&self, query: &ListQuery) -> Result<Page<Ticket>> {
        let (offset, limit) = position(query)?;
        let incidents: Vec<SnIncident> =
            self.table("incident", incident_query(query)?, INCIDENT_FIELDS, offset, limit).await?;
        let items = incidents.into_iter().map(|i| i.into_ticket(&self.ui_base)).collect();
        Ok(Page::by_offset(items, offset, limit))
    }

    async fn get_ticket(&self, id: &str) -> Result<Ticket> {
        let i: SnIncident = self.record("incident", id, INCIDENT_FIELDS, "incident").await?;
        Ok(i.into_ticket(&self.ui_base))
    }

    async fn get_customer(&self, id: &str) -> Result<Customer> {
        let u: SnUser = self.record("sys_user", id, USER_FIELDS, "user").await?;
        Ok(u.into_customer())
    }

    async fn list_notes(&self, query: &ListQuery) -> Result<Page<Note>> {
        let Some(incident) = query.ticket_id.as_deref() else {
            return Err(TicketingError::Invalid {
                detail: "ServiceNow lists journal entries per incident; set the ticket".into(),
            });
        };
        let incident = query_value(incident, "incident id")?;
        let (offset, limit) = position(query)?;
        let journal_query =
            format!("element_id={incident}^elementINcomments,work_notes^ORDERBYsys_created_on^ORDERBYsys_id");
        let entries: Vec<SnJournal> =
            self.table("sys_journal_field", journal_query, JOURNAL_FIELDS, offset, limit).await?;
        let caller = if entries.is_empty() {
            None
        } else {
            let i: SnIncident = self.record("incident", incident, "sys_id,caller_id", "incident").await?;
            i.caller_id
        };
        let names = entries.iter().filter_map(|e| e.sys_created_by.clone()).collect();
        let authors = self.authors(caller.as_deref(), names).await?;
        let notes = entries
            .into_iter()
            .map(|e| {
                let author = e.sys_created_by.as_ref().and_then(|n| authors.get(n)).cloned();
                let mut note = e.into_note(author.unwrap_or(JournalAuthor::Unresolved));
                note.ticket_id.get_or_insert_with(|| incident.to_owned());
                note
            })
            .collect();
        Ok(Page::by_offset(notes, offset, limit))
    }

    async fn list_categories(&self) -> Result<Vec<Category>> {
        self.categories.get_or_fetch(|| self.fetch_categories()).await
    }
}

#[async_trait]
impl Ticketing for ServiceNowClient {
    async fn update_ticket(&self, id: &str, patch: &TicketPatch) -> Result<Ticket> {
        let body = mapping::update_body(patch)?;
        let call = Call::new(Method::PATCH, &["table", "incident", id], format!("incident {id}"))
            .params(read_params(INCIDENT_FIELDS))
            .json(&body)?;
        let i: Envelope<SnIncident> = self.http.send(call).await?;
        Ok(i.result.into_ticket(&self.ui_base))
    }

    /// Always a work note (agents only): deskpilot never writes what the caller would see. The
    /// journal keeps the integration user as the author, so `user_id` cannot be honoured.
    async fn create_note(&self, note: &NewNote) -> Result<Note> {
        let id = note.ticket_id.as_str();
        let mut body = match &note.raw {
            Some(Value::Object(raw)) => raw.clone(),
            _ => serde_json::Map::new(),
        };
        body.insert(WORK_NOTES.into(), note.description.clone().into());
        // A work note is appended to the journal: a resent PATCH would add it twice.
        let call = Call::new(Method::PATCH, &["table", "incident", id], format!("incident {id}"))
            .params(read_params("sys_id,sys_updated_on"))
            .once()
            .json(&body)?;
        let _: Envelope<Value> = self.http.send(call).await?;
        // The answer is the incident; the entry's own id comes from the journal.
        let entry = self.find_work_note(id, &note.description).await?;
        let mut created = match entry {
            Some(e) => e.into_note(JournalAuthor::Unresolved),
            None => Note {
                description: Some(note.description.clone()),
                visibility: Some(crate::ticketing::NoteVisibility::Internal),
                ..Note::default()
            },
        };
        created.ticket_id = Some(id.to_owned());
        created.author_kind = Some(crate::ticketing::AuthorKind::Agent);
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_become_urls() {
        assert_eq!(ServiceNowClient::instance_url("acme"), "https://acme.service-now.com");
        assert_eq!(ServiceNowClient::instance_url("acme.servicenow.com"), "https://acme.servicenow.com");
        assert_eq!(
            ServiceNowClient::instance_url("http://127.0.0.1:1/servicenow/"),
            "http://127.0.0.1:1/servicenow"
        );
    }

    #[test]
    fn a_base_url_with_the_api_path_is_not_doubled() {
        let auth = || ServiceNowAuth::OAuth("t".into());
        for url in ["https://acme.service-now.com", "https://acme.service-now.com/api/now/"] {
            let c = ServiceNowClient::new(url, auth(), &HttpSettings::default()).unwrap();
            assert_eq!(c.http.base_url(), "https://acme.service-now.com/api/now/", "{url}");
            assert_eq!(c.ui_base, "https://acme.service-now.com");
        }
    }
}
