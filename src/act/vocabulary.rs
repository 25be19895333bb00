//! The tags a helpdesk already uses: what an apply mode may write when a connection lists no
//! `allowed_tags`, so a model never invents a tag vocabulary on a live helpdesk. They are the
//! helpdesk's own tag list where it keeps one, else the tags of its latest tickets.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Mutex;

use crate::{
    ticketing::{ListQuery, SortField, SortOrder, TicketReader, TicketingError},
    triage::decision::normalize_tag,
};

/// How long a read vocabulary is used before it is read again.
const FRESH_FOR: Duration = Duration::from_secs(600);
/// Tickets whose tags make the vocabulary: the most recently updated page.
const TICKETS_READ: u32 = 100;

/// The tags in use on a connection (its tag list, or its most recently updated tickets' tags),
/// read at most every ten minutes (normalised as decisions' tags are).
#[derive(Debug, Default)]
pub struct TagVocabulary {
    read: Mutex<Option<(Instant, Arc<BTreeSet<String>>)>>,
}

impl TagVocabulary {
    /// The vocabulary, read from `helpdesk` when it is older than ten minutes.
    pub async fn get(&self, helpdesk: &dyn TicketReader) -> Result<Arc<BTreeSet<String>>, TicketingError> {
        // Held across the read: concurrent tickets wait for one listing instead of each sending one.
        let mut read = self.read.lock().await;
        if let Some((at, tags)) = read.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return Ok(tags.clone());
        }
        let tags: BTreeSet<String> = match helpdesk.tags_in_use().await? {
            Some(listed) => listed.iter().filter_map(|t| normalize_tag(t)).collect(),
            None => {
                let query = ListQuery {
                    limit: Some(TICKETS_READ),
                    sort: Some(SortField::UpdatedAt),
                    order: Some(SortOrder::Desc),
                    ..ListQuery::default()
                };
                let page = helpdesk.list_tickets(&query).await?;
                page.items.iter().flat_map(|t| &t.tags).filter_map(|t| normalize_tag(t)).collect()
            }
        };
        let tags = Arc::new(tags);
        *read = Some((Instant::now(), tags.clone()));
        Ok(tags)
    }
}
