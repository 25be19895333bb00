//! Whether each helpdesk connection answers, for `/readyz`. A probe is one cheap read (the most
//! recently updated ticket), made at most every 30 s per connection while it answers and every
//! 5 s while it does not, so a readiness check every few seconds costs the helpdesk's rate limit
//! next to nothing.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::future::join_all;
use tokio::sync::Mutex;

use crate::ticketing::{DynTicketing, ListQuery, SortField, SortOrder};

/// How long an answering connection's probe is trusted.
const FRESH_WHEN_UP: Duration = Duration::from_secs(30);
/// How long a failed probe is trusted before the next try.
const FRESH_WHEN_DOWN: Duration = Duration::from_secs(5);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A probe's result and when it was made.
type Probed = (Instant, Result<(), String>);

/// The connections' helpdesks and their last probe results.
pub(super) struct HelpdeskProbes {
    helpdesks: Vec<(String, DynTicketing)>,
    last: Mutex<HashMap<String, Probed>>,
}

impl HelpdeskProbes {
    /// Probes for these connections (sorted by id, so problems read in a stable order).
    pub(super) fn new(mut helpdesks: Vec<(String, DynTicketing)>) -> Self {
        helpdesks.sort_by(|a, b| a.0.cmp(&b.0));
        Self { helpdesks, last: Mutex::default() }
    }

    /// One line per connection that does not answer.
    pub(super) async fn problems(&self) -> Vec<String> {
        let results = join_all(self.helpdesks.iter().map(|(id, helpdesk)| self.status(id, helpdesk))).await;
        self.helpdesks
            .iter()
            .zip(results)
            .filter_map(|((id, _), result)| {
                result.err().map(|e| format!("connection `{id}` does not answer: {e}"))
            })
            .collect()
    }

    async fn status(&self, id: &str, helpdesk: &DynTicketing) -> Result<(), String> {
        if let Some((at, result)) = self.last.lock().await.get(id) {
            let fresh = if result.is_ok() { FRESH_WHEN_UP } else { FRESH_WHEN_DOWN };
            if at.elapsed() < fresh {
                return result.clone();
            }
        }
        let query = ListQuery {
            limit: Some(1),
            sort: Some(SortField::UpdatedAt),
            order: Some(SortOrder::Desc),
            ..ListQuery::default()
        };
        let result = match tokio::time::timeout(PROBE_TIMEOUT, helpdesk.list_tickets(&query)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())),
        };
        self.last.lock().await.insert(id.to_owned(), (Instant::now(), result.clone()));
        result
    }
}
