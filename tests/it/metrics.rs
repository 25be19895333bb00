//! The Prometheus exposition the worker serves: store commit times per store operation, on both
//! store backends. The recorder is the process's, shared with every other test: the checks compare
//! counts before and after, never absolute values.

use std::time::Duration;

use crate::helpers::{TestStoreKind, TestStoreUrl, store_commits};
use deskpilot::{
    events::EventKind,
    store::{ClaimOutcome, LedgerKey},
};

#[tokio::test]
async fn store_commits_are_timed_per_operation_on_both_backends() {
    let handle = deskpilot::telemetry::metrics().expect("the recorder of this binary");
    for kind in [TestStoreKind::Sqlite, TestStoreKind::Postgres] {
        let before = handle.render();
        let at = TestStoreUrl::new(kind).await;
        let store = at.connect().await;
        let key = LedgerKey::new("demo", "1044", EventKind::TicketCreated);
        let claim = store.claim(&key, "e1", "w1", Duration::from_secs(30)).await.unwrap();
        assert!(matches!(claim, ClaimOutcome::Claimed(_)), "{claim:?}");
        store.finish(&key, "w1", None, "done").await.unwrap();
        store.close().await;

        let after = handle.render();
        for op in ["claim", "finish"] {
            assert!(
                store_commits(&after, op).0 > store_commits(&before, op).0,
                "{kind:?}: a {op} commit was timed:\n{after}"
            );
        }
        // Buckets fine enough to tell a sub-millisecond commit from a stalled flush.
        for le in ["0.0005", "0.1", "5", "+Inf"] {
            let bucket = format!("deskpilot_store_commit_seconds_bucket{{op=\"finish\",le=\"{le}\"}}");
            assert!(after.contains(&bucket), "{kind:?}: no bucket le={le}:\n{after}");
        }
    }
}
