//! The SQLite store on a disk that fills up: every write that reports success is stored, every
//! one that cannot be stored fails with a retryable error (so the worker retries the event
//! instead of acking or dead-lettering it at once), and the store works again once there is room.
//!
//! The disk is a small tmpfs, so this needs root to mount it (CI runs as root). Elsewhere it is
//! skipped with a message, and under `CI=true` a failed mount fails the test.

use std::time::Duration;

use deskpilot::{
    events::EventKind,
    store::{ClaimOutcome, DecidedBy, DecisionRecord, LedgerKey, NewProposal, Step, Store, StoreError},
    ticketing::model::PriorityLevel,
    triage::decision::{Decision, Origin, Sentiment},
};

use crate::helpers::{SmallDisk, TestStoreUrl, error_chain};

const LEASE: Duration = Duration::from_secs(30);

fn key(ticket: &str) -> LedgerKey {
    LedgerKey::new("demo", ticket, EventKind::TicketCreated)
}

/// The decision on `ticket` as the store keeps it.
fn record(ticket: &str) -> DecisionRecord {
    let decision = Decision {
        category_id: Some("billing".into()),
        priority: PriorityLevel::High,
        tags: vec!["refund".into()],
        language: "en".into(),
        sentiment: Sentiment::Negative,
        summary: format!("Ticket {ticket}: charged twice. {}", "Details of the thread. ".repeat(20)),
        draft_reply: Some("Hi, sorry about the double charge; billing will refund it.".into()),
        confidence: 0.8,
        needs_human: false,
        reason: "Mentions a duplicate charge.".into(),
        origin: Origin::Llm { model: "gpt-4o-mini".into() },
    };
    DecisionRecord {
        decision: serde_json::to_value(decision).unwrap(),
        report: serde_json::json!({"prompt_version": "v1", "prompt_tokens": 900}),
        decided_by: DecidedBy::Llm,
        prompt_version: Some("v1".into()),
        prompt_tokens: Some(900),
        completion_tokens: None,
        cost_usd: None,
        latency_ms: None,
        ticket_before: None,
    }
}

fn proposal(ticket: &str) -> NewProposal {
    let record = record(ticket);
    NewProposal {
        connection_id: "demo".into(),
        ticket_id: ticket.into(),
        event_id: format!("evt-{ticket}"),
        decision: record.decision,
        report: record.report,
        mode: "shadow".into(),
        why_shadowed: "connection is in shadow mode".into(),
        ticket_subject: Some(format!("Ticket {ticket}")),
        ticket_url: None,
        ticket_before: None,
    }
}

/// Claims and shadow-finishes `ticket` as worker `w1`; the error is the first write that failed.
async fn shadow(store: &Store, ticket: &str) -> Result<i64, StoreError> {
    let k = key(ticket);
    match store.claim(&k, &format!("evt-{ticket}"), "w1", LEASE).await? {
        ClaimOutcome::Claimed(_) => {}
        other => panic!("{ticket}: expected a claim, got {other:?}"),
    }
    store
        .finish_with_proposal(&k, "w1", Some(&record(ticket)), &proposal(ticket), |id| {
            format!("shadowed as proposal {id}")
        })
        .await
}

/// Keeps a stored ticket with its proposal id, and checks that a refused one was refused for the
/// right reason and retryably.
fn sort_out(
    stored: &mut Vec<(String, i64)>,
    refused: &mut Vec<String>,
    ticket: String,
    result: Result<i64, StoreError>,
) {
    match result {
        Ok(id) => stored.push((ticket, id)),
        Err(e) => {
            assert!(e.is_retryable(), "{ticket}: a full disk must be retryable: {}", error_chain(&e));
            assert!(error_chain(&e).contains("full"), "{ticket}: the error says why: {}", error_chain(&e));
            refused.push(ticket);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_retryably_and_the_store_recovers() {
    // Room for the WAL to grow (SQLite checkpoints it at 4 MB) with the refused tickets once the
    // filler is gone.
    let Some(disk) = SmallDisk::mount("4m") else { return };
    let url = TestStoreUrl::sqlite_in(disk.path()).url;
    let store = Store::connect(&url).await.unwrap_or_else(|e| panic!("connect: {}", error_chain(&e)));
    // Room for some writes, not for all of them.
    let filler = disk.fill(256 * 1024);

    // One at a time, then many at once (waiting for the one write connection in turn), until the
    // disk has refused a good number of them.
    let mut stored = Vec::new();
    let mut refused = Vec::new();
    for i in 0..400 {
        let ticket = format!("{}", 2000 + i);
        let result = shadow(&store, &ticket).await;
        sort_out(&mut stored, &mut refused, ticket, result);
        if refused.len() >= 5 {
            break;
        }
    }
    let burst: Vec<String> = (0..40).map(|i| format!("{}", 3000 + i)).collect();
    let results = futures::future::join_all(burst.iter().map(|t| shadow(&store, t))).await;
    for (ticket, result) in burst.into_iter().zip(results) {
        sort_out(&mut stored, &mut refused, ticket, result);
    }
    assert!(refused.len() >= 5, "the disk never filled: {} writes stored", stored.len());
    assert!(!stored.is_empty(), "nothing was stored before the disk filled");
    println!("disk full: {} tickets stored, {} refused", stored.len(), refused.len());

    // Room again: the same store takes the refused tickets over from where they stopped.
    tokio::fs::remove_file(&filler).await.unwrap();
    for ticket in &refused {
        let k = key(ticket);
        if let ClaimOutcome::Done(entry) =
            store.claim(&k, &format!("evt-{ticket}"), "w1", LEASE).await.unwrap()
        {
            panic!("{ticket} was refused yet is done: {entry:?}");
        }
        let id = store
            .finish_with_proposal(&k, "w1", Some(&record(ticket)), &proposal(ticket), |id| {
                format!("shadowed as proposal {id}")
            })
            .await
            .unwrap_or_else(|e| panic!("{ticket} after room was made: {}", error_chain(&e)));
        stored.push((ticket.clone(), id));
    }
    store.close().await;

    // Everything that was answered as stored is there for a store opened anew, exactly once.
    let reopened = Store::connect(&url).await.unwrap();
    for (ticket, id) in &stored {
        let e = reopened.entry(&key(ticket)).await.unwrap().unwrap_or_else(|| panic!("{ticket} lost"));
        assert_eq!(e.step, Step::Done, "{ticket}");
        assert_eq!(e.outcome, Some(format!("shadowed as proposal {id}")), "{ticket}");
        let p =
            reopened.proposal(*id).await.unwrap().unwrap_or_else(|| panic!("proposal {id} of {ticket} lost"));
        assert_eq!(p.stored.ticket_id, *ticket);
    }
    let ids: std::collections::HashSet<i64> = stored.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), stored.len(), "one proposal per ticket");
    reopened.close().await;
}
