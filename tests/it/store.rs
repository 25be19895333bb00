//! The store's behaviour, every behavioural test run twice: on SQLite (a temporary file) and on
//! the real PostgreSQL (a fresh database per test, dropped afterwards, even when the test fails).
//!
//! PostgreSQL is expected at `postgres://postgres@127.0.0.1:5432/test` (override with
//! `DESKPILOT_TEST_PG_URL`, an admin URL allowed to CREATE DATABASE). If it is unreachable the
//! PostgreSQL tests fail and say how to start it; they are never skipped.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use deskpilot::{
    act::record_of,
    events::EventKind,
    store::{
        ClaimOutcome, CursorClaim, CursorStep, DecisionRecord, Entry, LedgerKey, NewProposal, ProposalFilter,
        ProposalStatus, Step, Store, StoreError, StoreOptions, Transition,
    },
    ticketing::model::PriorityLevel,
    triage::{
        Report,
        decision::{Decision, Origin, Sentiment},
        llm::Usage,
    },
};
use serde::Deserialize;
use serde_json::json;
use sqlx::Connection;
use tokio::sync::Barrier;

const LEASE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Harness

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A database of one's own for one test.
struct TestDb {
    backend: Backend,
    url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<crate::helpers::PgTestDatabase>,
}

impl TestDb {
    async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                TestDb { backend, url, _dir: Some(dir), _pg: None }
            }
            Backend::Postgres => {
                let pg = crate::helpers::PgTestDatabase::create("test_store").await;
                TestDb { backend, url: pg.url.clone(), _dir: None, _pg: Some(pg) }
            }
        }
    }

    async fn store(&self) -> Store {
        Store::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {}", self.url, crate::helpers::error_chain(&e)))
    }
}

/// Runs each named behaviour on both backends: `sqlite::<name>` and `postgres::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::TestDb::new(super::Backend::Sqlite).await).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::TestDb::new(super::Backend::Postgres).await).await
                }
            )+
        }
    };
}

on_both_backends!(
    claim_fresh_resume_busy_done,
    expired_lease_is_taken_over,
    writes_are_for_the_lease_holder_only,
    steps_never_move_backwards,
    decision_round_trips,
    a_decision_without_a_cost_then_one_with_a_cost,
    finishing_is_one_commit_for_the_holder_only,
    an_interrupted_finish_leaves_nothing_behind,
    finishes_arriving_together_each_get_their_own_answer,
    applied_writes_arriving_together_each_get_their_own_answer,
    failures_are_recorded_and_release_the_lease,
    twenty_concurrent_claimers_one_winner,
    proposals_insert_once_and_page_by_keyset,
    proposal_status_changes_are_conditional,
    proposals_filter_by_category_confidence_and_text_and_count_by_status,
    stats_add_up,
    migrations_are_idempotent,
    ingest_cursors_are_leased_and_fenced,
    ingest_cursor_claimers_at_once_one_winner,
    own_writes_are_found_by_when_they_happened,
    llm_spend_sums_the_recorded_costs_per_connection_since_a_day_and_a_month,
);

/// The spend budgets read: recorded costs per connection since the day's and the month's start,
/// through both ways a decision is recorded (before a helpdesk write, and with a shadow's finish).
async fn llm_spend_sums_the_recorded_costs_per_connection_since_a_day_and_a_month(db: TestDb) {
    let store = db.store().await;
    let priced = |cost| record(&decision(llm()), &report(10, 5, cost, 10));
    for (connection, ticket, cost) in
        [("demo", "1", Some(0.25)), ("demo", "2", Some(0.5)), ("demo", "3", None), ("other", "4", Some(2.0))]
    {
        let k = LedgerKey::new(connection, ticket, EventKind::TicketCreated);
        claimed(&store, &k, "evt-1", "w1").await;
        if ticket == "2" {
            let p = proposal_with(connection, ticket, "evt-1", &priced(cost));
            store.finish_with_proposal(&k, "w1", Some(&priced(cost)), &p, |id| id.to_string()).await.unwrap();
        } else {
            store.record_decision(&k, "w1", &priced(cost)).await.unwrap();
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let hour = time::Duration::hours(1);
    let spend = store.llm_spend(now - hour, now - 24 * hour).await.unwrap();
    let figures: Vec<(&str, f64, f64)> =
        spend.iter().map(|(c, s)| (c.as_str(), s.day_usd, s.month_usd)).collect();
    assert_eq!(figures, [("demo", 0.75, 0.75), ("other", 2.0, 2.0)]);
    // Decided before the day began: counted in the month only; before the month too: not at all.
    let spend = store.llm_spend(now + hour, now - hour).await.unwrap();
    assert_eq!(spend["demo"].day_usd, 0.0);
    assert_eq!(spend["demo"].month_usd, 0.75);
    assert!(store.llm_spend(now + hour, now + hour).await.unwrap().is_empty());
}

fn key(ticket: &str) -> LedgerKey {
    LedgerKey::new("demo", ticket, EventKind::TicketCreated)
}

fn decision(origin: Origin) -> Decision {
    Decision {
        category_id: Some("billing".into()),
        priority: PriorityLevel::High,
        tags: vec!["refund".into(), "double-charge".into()],
        language: "en".into(),
        sentiment: Sentiment::Negative,
        summary: "Customer was charged twice for the March invoice.".into(),
        draft_reply: matches!(origin, Origin::Llm { .. })
            .then(|| "Hi Ana, sorry about the double charge — I have asked billing to refund it.".into()),
        confidence: 0.83,
        needs_human: false,
        reason: "Mentions a duplicate charge and asks for a refund.".into(),
        origin,
    }
}

fn llm() -> Origin {
    Origin::Llm { model: "gpt-4o-mini".into() }
}

fn report(prompt: u32, completion: u32, cost: Option<f64>, latency_ms: u64) -> Report {
    Report {
        prompt_version: "v1-3f9a".into(),
        prompt_tokens: Some(prompt as usize),
        usage: Usage { prompt_tokens: prompt, completion_tokens: completion, cached_tokens: 0 },
        cost_usd: cost,
        llm_calls: 1,
        llm_attempts: 1,
        llm_latency_ms: latency_ms,
        ..Default::default()
    }
}

/// A decision and its report as the worker hands them to the store.
fn record(d: &Decision, r: &Report) -> DecisionRecord {
    record_of(d, r)
}

/// The decision a ledger row keeps, read back as triage's type.
fn decided(e: &Entry) -> Option<Decision> {
    e.decision.as_ref().map(|r| Decision::deserialize(&r.decision).expect("a Decision"))
}

async fn claimed(store: &Store, key: &LedgerKey, event: &str, worker: &str) -> deskpilot::store::Entry {
    match store.claim(key, event, worker, LEASE).await.unwrap() {
        ClaimOutcome::Claimed(entry) => entry,
        other => panic!("{worker} expected to claim {key}, got {other:?}"),
    }
}

fn assert_lease_lost(result: Result<(), StoreError>, holder: Option<&str>) {
    match result {
        Err(StoreError::LeaseLost { holder: h, .. }) => assert_eq!(h.as_deref(), holder),
        other => panic!("expected LeaseLost (holder {holder:?}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Ledger

async fn claim_fresh_resume_busy_done(db: TestDb) {
    let store = db.store().await;
    assert_eq!(store.backend(), if db.backend == Backend::Sqlite { "sqlite" } else { "postgres" });
    let k = key("1001");
    assert_eq!(store.entry(&k).await.unwrap(), None);

    // Fresh key.
    let e = claimed(&store, &k, "evt-1", "w1").await;
    assert_eq!((e.step, e.event_id.as_str(), e.claimed_by.as_deref()), (Step::Claimed, "evt-1", Some("w1")));
    assert_eq!((e.attempts, e.failed, e.decision.as_ref()), (0, false, None));
    let until = e.lease_until.expect("a lease");
    let left = until - e.updated_at;
    assert!(left > time::Duration::seconds(29) && left <= time::Duration::seconds(30), "lease {left}");

    // Another worker: busy until the lease ends.
    match store.claim(&k, "evt-2", "w2", LEASE).await.unwrap() {
        ClaimOutcome::Busy { holder, until: u } => assert_eq!((holder.as_str(), u), ("w1", until)),
        other => panic!("expected Busy, got {other:?}"),
    }

    // Same worker again (e.g. its own retry): claimed, resumes at the recorded step.
    store
        .record_decision(&k, "w1", &record(&decision(llm()), &report(1200, 300, Some(0.004), 850)))
        .await
        .unwrap();
    let e = claimed(&store, &k, "evt-1", "w1").await;
    assert_eq!(e.step, Step::Decided);
    assert!(e.decision.is_some());

    store.advance(&k, "w1", Step::TicketUpdated, None).await.unwrap();
    store.finish(&k, "w1", Some("note-77"), "applied").await.unwrap();
    let e = store.entry(&k).await.unwrap().unwrap();
    assert_eq!(
        (e.step, e.note_id.as_deref(), e.outcome.as_deref()),
        (Step::Done, Some("note-77"), Some("applied"))
    );
    assert_eq!(e.lease_until, None, "Done releases the lease");
    assert!(e.finished_at.is_some() && e.decided_at.is_some());

    // A redelivery (even a duplicate event with another id): done, keeps the first event id.
    match store.claim(&k, "evt-3", "w3", LEASE).await.unwrap() {
        ClaimOutcome::Done(e) => assert_eq!((e.step, e.event_id.as_str()), (Step::Done, "evt-1")),
        other => panic!("expected Done, got {other:?}"),
    }
    // Kinds are separate keys.
    let updated = LedgerKey::new("demo", "1001", EventKind::TicketUpdated);
    claimed(&store, &updated, "evt-4", "w3").await;
}

async fn expired_lease_is_taken_over(db: TestDb) {
    let store = db.store().await;
    let k = key("1002");
    let ClaimOutcome::Claimed(_) = store.claim(&k, "evt-1", "w1", Duration::from_millis(1500)).await.unwrap()
    else {
        panic!("fresh key not claimed")
    };
    store.record_decision(&k, "w1", &record(&decision(llm()), &report(10, 5, None, 10))).await.unwrap();
    assert!(matches!(store.claim(&k, "evt-1", "w2", LEASE).await.unwrap(), ClaimOutcome::Busy { .. }));

    // Wait out the lease (renewed by the write), measured on the same machine's clock.
    let until = store.entry(&k).await.unwrap().unwrap().lease_until.unwrap();
    let left = until - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(100);
    tokio::time::sleep(left.try_into().unwrap_or_default()).await;
    let e = claimed(&store, &k, "evt-1-redelivered", "w2").await;
    assert_eq!((e.claimed_by.as_deref(), e.step), (Some("w2"), Step::Decided), "resumes after the decision");
    assert_eq!(e.event_id, "evt-1");

    // The old holder is fenced off.
    assert_lease_lost(store.advance(&k, "w1", Step::TicketUpdated, None).await, Some("w2"));
    assert_lease_lost(
        store.record_decision(&k, "w1", &record(&decision(llm()), &Report::default())).await,
        Some("w2"),
    );
    assert_lease_lost(store.record_failure(&k, "w1", "late", false).await, Some("w2"));
    store.release(&k, "w1").await.unwrap(); // not the holder: nothing happens
    assert_eq!(store.entry(&k).await.unwrap().unwrap().claimed_by.as_deref(), Some("w2"));
    assert!(matches!(store.claim(&k, "evt-1", "w1", LEASE).await.unwrap(), ClaimOutcome::Busy { .. }));
    store.advance(&k, "w2", Step::TicketUpdated, None).await.unwrap();

    // An expired lease nobody took over still lets its holder write (and renews it).
    let k2 = key("1003");
    let ClaimOutcome::Claimed(_) = store.claim(&k2, "evt-9", "w1", Duration::from_millis(50)).await.unwrap()
    else {
        panic!("fresh key not claimed")
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.advance(&k2, "w1", Step::TicketUpdated, None).await.unwrap();
}

async fn writes_are_for_the_lease_holder_only(db: TestDb) {
    let store = db.store().await;
    let k = key("1004");
    // No such key.
    assert_lease_lost(store.advance(&k, "w1", Step::Decided, None).await, None);
    assert_lease_lost(store.record_failure(&k, "w1", "x", false).await, None);
    assert!(matches!(store.renew(&k, "w1", LEASE).await, Err(StoreError::LeaseLost { .. })));

    claimed(&store, &k, "evt-1", "w1").await;
    assert_lease_lost(
        store.record_decision(&k, "w2", &record(&decision(llm()), &Report::default())).await,
        Some("w1"),
    );
    assert_lease_lost(store.advance(&k, "w2", Step::Done, Some("applied")).await, Some("w1"));
    let e = store.entry(&k).await.unwrap().unwrap();
    assert_eq!((e.step, e.decision, e.outcome), (Step::Claimed, None, None));

    // Renewing pushes the lease end out.
    let before = e.lease_until.unwrap();
    let after = store.renew(&k, "w1", Duration::from_secs(120)).await.unwrap();
    assert!(after > before + time::Duration::seconds(60), "{before} → {after}");

    // After releasing, the former holder cannot write either; anyone may claim at once.
    store.release(&k, "w1").await.unwrap();
    assert_lease_lost(store.advance(&k, "w1", Step::Decided, None).await, None);
    claimed(&store, &k, "evt-1", "w2").await;
}

async fn steps_never_move_backwards(db: TestDb) {
    let store = db.store().await;
    let k = key("1005");
    claimed(&store, &k, "evt-1", "w1").await;
    let first = record(&decision(llm()), &report(100, 20, None, 50));
    store.record_decision(&k, "w1", &first).await.unwrap();
    store.advance(&k, "w1", Step::TicketUpdated, Some("category kept")).await.unwrap();

    store.advance(&k, "w1", Step::Decided, Some("ignored")).await.unwrap();
    store.advance(&k, "w1", Step::Claimed, None).await.unwrap();
    let mut other = decision(Origin::Rules { rule: "keywords".into() });
    other.summary = "something else".into();
    store.record_decision(&k, "w1", &record(&other, &Report::default())).await.unwrap();

    let e = store.entry(&k).await.unwrap().unwrap();
    assert_eq!(e.step, Step::TicketUpdated);
    assert_eq!(e.outcome.as_deref(), Some("category kept"));
    assert_eq!(e.decision, Some(first), "a decision past Decided is never replaced");

    store.advance(&k, "w1", Step::Done, Some("applied")).await.unwrap();
    // Done released the lease: nothing moves it anywhere afterwards.
    assert_lease_lost(store.advance(&k, "w1", Step::TicketUpdated, None).await, None);
    assert_eq!(store.entry(&k).await.unwrap().unwrap().step, Step::Done);
}

async fn decision_round_trips(db: TestDb) {
    let store = db.store().await;
    for (ticket, origin) in [("1006", llm()), ("1007", Origin::Rules { rule: "refund-keywords".into() })] {
        let k = key(ticket);
        claimed(&store, &k, "evt-1", "w1").await;
        let d = decision(origin);
        let r = record(&d, &report(1234, 321, Some(0.00123), 987));
        store.record_decision(&k, "w1", &r).await.unwrap();
        let e = store.entry(&k).await.unwrap().unwrap();
        assert_eq!(e.step, Step::Decided);
        assert_eq!(e.decision.as_ref(), Some(&r), "the decision, its report and its figures");
        assert_eq!(decided(&e), Some(d));
    }
    // Unicode and quotes survive.
    let k = key("1008");
    claimed(&store, &k, "evt-1", "w1").await;
    let mut d = decision(llm());
    d.summary = "Kunde möchte Rückerstattung — \"dringend\" 😠; DROP TABLE ledger; --".into();
    let r = DecisionRecord {
        report: json!({"note": "ünïcödé"}),
        // What acting compares the ticket with before writing.
        ticket_before: Some(json!({"priority": "normal", "tags": ["vip", "Zähler"], "user_id": null})),
        ..record(&d, &Report::default())
    };
    store.record_decision(&k, "w1", &r).await.unwrap();
    let e = store.entry(&k).await.unwrap().unwrap();
    assert_eq!((e.decision.as_ref(), decided(&e)), (Some(&r), Some(d)));
}

async fn a_decision_without_a_cost_then_one_with_a_cost(db: TestDb) {
    // One connection, so the second write of each statement runs where the first one did (a
    // statement prepared for a NULL cost once refused a cost on PostgreSQL).
    let one = StoreOptions { max_connections: 1, ..StoreOptions::default() };
    let store = Store::connect_with(&db.url, &one).await.unwrap();
    let unpriced = record(&decision(llm()), &report(10, 5, None, 10));
    let priced = record(&decision(llm()), &report(10, 5, Some(0.25), 10));
    for (ticket, r) in [("1040", &unpriced), ("1041", &priced)] {
        let k = key(ticket);
        claimed(&store, &k, "evt-1", "w1").await;
        store.record_decision(&k, "w1", r).await.unwrap();
        assert_eq!(store.entry(&k).await.unwrap().unwrap().decision.as_ref(), Some(r));
    }
    for (ticket, r) in [("1042", &unpriced), ("1043", &priced)] {
        let k = key(ticket);
        claimed(&store, &k, "evt-1", "w1").await;
        let p = proposal_with("demo", ticket, "evt-1", r);
        store.finish_with_proposal(&k, "w1", Some(r), &p, |id| id.to_string()).await.unwrap();
        assert_eq!(store.entry(&k).await.unwrap().unwrap().decision.as_ref(), Some(r));
    }
}

async fn finishing_is_one_commit_for_the_holder_only(db: TestDb) {
    let store = db.store().await;
    // Shadowed straight from Claimed: decision, proposal and Done land together.
    let k = key("1020");
    claimed(&store, &k, "evt-20", "w1").await;
    let r = record(&decision(llm()), &report(1500, 250, Some(0.003), 640));
    let p = proposal_with("demo", "1020", "evt-20", &r);
    let id = store
        .finish_with_proposal(&k, "w1", Some(&r), &p, |id| format!("shadowed as proposal {id}"))
        .await
        .unwrap();
    let e = store.entry(&k).await.unwrap().unwrap();
    assert_eq!((e.step, e.lease_until), (Step::Done, None));
    assert_eq!(e.outcome, Some(format!("shadowed as proposal {id}")));
    assert_eq!(e.decision.as_ref(), Some(&r));
    assert!(e.decided_at.is_some() && e.finished_at.is_some());
    assert_eq!(store.proposal(id).await.unwrap().unwrap().stored, p);
    let stats = store.stats(None).await.unwrap();
    let demo = stats.connection("demo").expect("figures for demo");
    assert_eq!((demo.decided, demo.prompt_tokens), (1, 1500), "the figures columns are filled too: {demo:?}");

    // A second finish for the same event (another holder's retry) reuses the stored proposal.
    let k2 = key("1021");
    claimed(&store, &k2, "evt-21", "w1").await;
    let p2 = proposal("demo", "1021", "evt-21");
    let first = store.insert_proposal(&p2).await.unwrap();
    let again = store
        .finish_with_proposal(&k2, "w1", Some(&proposal_record()), &p2, |id| id.to_string())
        .await
        .unwrap();
    assert_eq!(again, first);

    // Not the holder: nothing is written, not even the proposal.
    let k3 = key("1022");
    claimed(&store, &k3, "evt-22", "w1").await;
    let p3 = proposal("demo", "1022", "evt-22");
    match store.finish_with_proposal(&k3, "w2", Some(&proposal_record()), &p3, |id| id.to_string()).await {
        Err(StoreError::LeaseLost { holder, .. }) => assert_eq!(holder.as_deref(), Some("w1")),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    let e = store.entry(&k3).await.unwrap().unwrap();
    assert_eq!((e.step, e.decision), (Step::Claimed, None));
    let listed = store.proposals(&ProposalFilter::default()).await.unwrap();
    assert!(listed.iter().all(|p| p.ticket_id != "1022"), "the proposal was rolled back");
    assert_lease_lost(store.finish(&k3, "w2", Some("n-1"), "applied").await, Some("w1"));

    // Applied: the decision was recorded before the helpdesk writes; note and Done go together
    // and the recorded decision stays.
    store.record_decision(&k3, "w1", &r).await.unwrap();
    store.advance(&k3, "w1", Step::TicketUpdated, None).await.unwrap();
    store.finish(&k3, "w1", Some("note-9"), "applied; note note-9").await.unwrap();
    let e = store.entry(&k3).await.unwrap().unwrap();
    assert_eq!(
        (e.step, e.note_id.as_deref(), e.outcome.as_deref(), e.decision.as_ref()),
        (Step::Done, Some("note-9"), Some("applied; note note-9"), Some(&r))
    );
    // Done released the lease: finishing again is refused.
    assert_lease_lost(store.finish(&k3, "w1", None, "again").await, None);
}

async fn an_interrupted_finish_leaves_nothing_behind(db: TestDb) {
    let store = db.store().await;
    let r = record(&decision(llm()), &report(700, 90, None, 300));
    let k = key("1030");
    claimed(&store, &k, "evt-30", "w1").await;
    let p = proposal_with("demo", "1030", "evt-30", &r);
    // Dropped after its first poll: the write is on its way to the database when it is abandoned
    // (as when shutdown hands an event back in the middle of its last step).
    {
        let mut cut = std::pin::pin!(
            store.finish_with_proposal(&k, "w1", Some(&r), &p, |id| format!("shadowed as proposal {id}"))
        );
        let first = futures::poll!(cut.as_mut());
        assert!(first.is_pending(), "the finish is still under way after one poll: {first:?}");
    }

    // Whatever part of it ran, the next writes see a consistent store and commit.
    let other = key("1031");
    claimed(&store, &other, "evt-31", "w1").await;
    let id =
        store.finish_with_proposal(&k, "w1", Some(&r), &p, |id| format!("shadowed as proposal {id}")).await;
    let e = store.entry(&k).await.unwrap().unwrap();
    let listed = store.proposals(&ProposalFilter::default()).await.unwrap();
    let mine: Vec<_> = listed.iter().filter(|x| x.ticket_id == "1030").collect();
    match id {
        // The interrupted finish did not get through: this one did it all.
        Ok(id) => {
            assert_eq!(mine.len(), 1);
            assert_eq!(mine[0].id, id);
            assert_eq!(e.outcome, Some(format!("shadowed as proposal {id}")));
        }
        // It got through whole before being dropped: the lease is gone and so is this one.
        Err(StoreError::LeaseLost { .. }) => {
            assert_eq!(mine.len(), 1);
            assert_eq!(e.outcome, Some(format!("shadowed as proposal {}", mine[0].id)));
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
    assert_eq!((e.step, e.decision.as_ref()), (Step::Done, Some(&r)));
    drop(store);

    // Committed for real: a new store on the same database sees it all.
    let reopened = db.store().await;
    assert_eq!(reopened.entry(&k).await.unwrap().unwrap().step, Step::Done);
    assert_eq!(reopened.entry(&other).await.unwrap().unwrap().step, Step::Claimed);
}

async fn finishes_arriving_together_each_get_their_own_answer(db: TestDb) {
    // Many at once, some by a worker that does not hold the key: they wait for the store's
    // writer (one connection on a SQLite file), each gets exactly its own result, and every one
    // answered as stored is on disk.
    let store = db.store().await;
    let tickets: Vec<String> = (0..TOGETHER).map(|i| format!("20{i:02}")).collect();
    let mut proposals = Vec::new();
    for (i, ticket) in tickets.iter().enumerate() {
        let k = key(ticket);
        claimed(&store, &k, &format!("evt-{ticket}"), "w1").await;
        let mut d = decision(llm());
        d.summary = format!("summary of {ticket}");
        let r = record(&d, &report(1000 + i as u32, 100, None, 500));
        let p = proposal_with("demo", ticket, &format!("evt-{ticket}"), &r);
        proposals.push((k, p, r, writer_of(i)));
    }
    let results = futures::future::join_all(proposals.iter().map(|(k, p, r, worker)| {
        store.finish_with_proposal(k, worker, Some(r), p, |id| format!("shadowed as proposal {id}"))
    }))
    .await;
    let mut ids = std::collections::HashSet::new();
    let mut stored = Vec::new();
    for ((k, p, r, worker), result) in proposals.iter().zip(results) {
        let e = store.entry(k).await.unwrap().unwrap();
        if *worker == "w2" {
            match result {
                Err(StoreError::LeaseLost { holder, .. }) => assert_eq!(holder.as_deref(), Some("w1")),
                other => panic!("{}: expected LeaseLost, got {other:?}", k.ticket_id),
            }
            assert_eq!((e.step, e.decision), (Step::Claimed, None), "{}", k.ticket_id);
            continue;
        }
        let id = result.unwrap_or_else(|e| panic!("{}: {e}", k.ticket_id));
        assert!(ids.insert(id), "{}: proposal id {id} given twice", k.ticket_id);
        assert_eq!(store.proposal(id).await.unwrap().unwrap().stored, *p, "{}", k.ticket_id);
        assert_eq!((e.step, e.lease_until), (Step::Done, None));
        assert_eq!(e.outcome, Some(format!("shadowed as proposal {id}")));
        assert_eq!(e.decision.as_ref(), Some(r));
        stored.push((k, id));
    }
    assert_eq!(ids.len(), 45 - 6);
    let listed = store.proposals(&ProposalFilter { limit: 100, ..ProposalFilter::default() }).await.unwrap();
    assert_eq!(listed.len(), 45 - 6, "no proposal for a key whose lease was not held");
    assert_held_keys_were_decided(&store, 1000).await;
    store.close().await;

    let reopened = db.store().await;
    for (k, id) in stored {
        let e = reopened.entry(k).await.unwrap().unwrap();
        assert_eq!((e.step, e.outcome), (Step::Done, Some(format!("shadowed as proposal {id}"))));
        assert_eq!(
            reopened.proposal(id).await.unwrap().map(|p| p.ticket_id.clone()),
            Some(k.ticket_id.clone())
        );
    }
}

async fn applied_writes_arriving_together_each_get_their_own_answer(db: TestDb) {
    // Applied tickets' decisions, then their `Done`, all at once, some by a worker that does not
    // hold the key: each caller gets exactly its own result.
    let store = db.store().await;
    let tickets: Vec<(LedgerKey, &str)> =
        (0..TOGETHER).map(|i| (key(&format!("30{i:02}")), writer_of(i))).collect();
    for (k, _) in &tickets {
        claimed(&store, k, &format!("evt-{}", k.ticket_id), "w1").await;
    }
    let records: Vec<DecisionRecord> =
        (0..TOGETHER).map(|i| record(&decision(llm()), &report(2000 + i as u32, 100, None, 500))).collect();
    let store = &store;
    let recorded = futures::future::join_all(
        tickets.iter().zip(&records).map(|((k, worker), r)| store.record_decision(k, worker, r)),
    )
    .await;
    let finished = futures::future::join_all(tickets.iter().map(|(k, worker)| async move {
        let note = format!("n-{}", k.ticket_id);
        store.finish(k, worker, Some(&note), &format!("applied; note {note}")).await
    }))
    .await;
    for ((((k, worker), r), recorded), finished) in tickets.iter().zip(&records).zip(recorded).zip(finished) {
        let e = store.entry(k).await.unwrap().unwrap();
        if *worker == "w2" {
            assert_lease_lost(recorded, Some("w1"));
            assert_lease_lost(finished, Some("w1"));
            assert_eq!((e.step, e.decision, e.note_id), (Step::Claimed, None, None), "{}", k.ticket_id);
            continue;
        }
        recorded.unwrap_or_else(|e| panic!("{}: {e}", k.ticket_id));
        finished.unwrap_or_else(|e| panic!("{}: {e}", k.ticket_id));
        assert_eq!((e.step, e.lease_until), (Step::Done, None), "{}", k.ticket_id);
        assert_eq!(e.note_id, Some(format!("n-{}", k.ticket_id)));
        assert_eq!(e.outcome, Some(format!("applied; note n-{}", k.ticket_id)));
        assert_eq!(e.decision.as_ref(), Some(r));
        assert_eq!(decided(&e), Some(decision(llm())));
    }
    assert_held_keys_were_decided(store, 2000).await;
}

/// Keys of the writes-arriving-together tests: 45, and whether the writer holds the lease of
/// key `i` (all but 6 do).
const TOGETHER: usize = 45;
fn writer_of(i: usize) -> &'static str {
    if i % 7 == 3 { "w2" } else { "w1" }
}

/// The stats of such a test count exactly the held keys as decided, key `i` with
/// `first_tokens + i` prompt tokens.
async fn assert_held_keys_were_decided(store: &Store, first_tokens: u64) {
    let stats = store.stats(None).await.unwrap();
    let demo = stats.connection("demo").expect("figures for demo");
    let held = (0..TOGETHER).filter(|i| writer_of(*i) == "w1");
    let tokens: u64 = held.clone().map(|i| first_tokens + i as u64).sum();
    assert_eq!((demo.decided, demo.prompt_tokens), (held.count() as u64, tokens), "{demo:?}");
}

async fn failures_are_recorded_and_release_the_lease(db: TestDb) {
    let store = db.store().await;
    let k = key("1009");
    claimed(&store, &k, "evt-1", "w1").await;
    store.record_decision(&k, "w1", &record(&decision(llm()), &Report::default())).await.unwrap();
    store.record_failure(&k, "w1", "zendesk: 429 Too Many Requests", false).await.unwrap();
    let e = store.entry(&k).await.unwrap().unwrap();
    assert_eq!((e.attempts, e.last_error.as_deref()), (1, Some("zendesk: 429 Too Many Requests")));
    assert_eq!((e.lease_until, e.failed, e.step), (None, false, Step::Decided));

    // Released: another worker claims at once and resumes.
    let e = claimed(&store, &k, "evt-1", "w2").await;
    assert_eq!(e.step, Step::Decided);
    let long = "x".repeat(10_000);
    store.record_failure(&k, "w2", &long, false).await.unwrap();
    let e = claimed(&store, &k, "evt-1", "w3").await;
    assert_eq!(e.attempts, 2);
    assert_eq!(e.last_error.map(|t| t.len()), Some(2000), "error texts are clipped");

    // Permanent: later claims say Done (the caller acks) until reopened.
    store.record_failure(&k, "w3", "helpdesk: 404 ticket deleted", true).await.unwrap();
    match store.claim(&k, "evt-1", "w4", LEASE).await.unwrap() {
        ClaimOutcome::Done(e) => assert!(e.failed && e.step == Step::Decided && e.attempts == 3),
        other => panic!("expected Done, got {other:?}"),
    }
    assert!(store.reopen(&k).await.unwrap());
    assert!(!store.reopen(&k).await.unwrap());
    let e = claimed(&store, &k, "evt-1", "w4").await;
    assert!(!e.failed);
    assert_eq!(e.step, Step::Decided);
}

async fn twenty_concurrent_claimers_one_winner(db: TestDb) {
    const CLAIMERS: usize = 20;
    let first = db.store().await;
    // Twenty replicas: a store (pool) each, so every claim runs on its own connection.
    let replicas = futures::future::join_all((0..CLAIMERS).map(|_| db.store())).await;
    for round in 0..3 {
        let k = key(&format!("2000{round}"));
        let barrier = Arc::new(Barrier::new(CLAIMERS));
        let tasks: Vec<_> = replicas
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (store, k, barrier) = (store.clone(), k.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let worker = format!("w{i}");
                    (worker.clone(), store.claim(&k, &format!("evt-{i}"), &worker, LEASE).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut busy = Vec::new();
        for task in tasks {
            let (worker, outcome) = task.await.unwrap();
            match outcome.unwrap_or_else(|e| panic!("{worker}: {}", crate::helpers::error_chain(&e))) {
                ClaimOutcome::Claimed(_) => winners.push(worker),
                ClaimOutcome::Busy { holder, .. } => busy.push(holder),
                ClaimOutcome::Done(e) => panic!("nothing is done yet: {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        assert_eq!(busy.len(), CLAIMERS - 1);
        assert!(busy.iter().all(|h| *h == winners[0]), "Busy names the winner");
        let e = first.entry(&k).await.unwrap().unwrap();
        assert_eq!(e.claimed_by.as_ref(), Some(&winners[0]));
        assert_eq!(e.event_id, format!("evt-{}", &winners[0][1..]));
    }
}

// ---------------------------------------------------------------------------------------------
// Proposals

/// The decision and report of [`proposal`].
fn proposal_record() -> DecisionRecord {
    record(&decision(llm()), &report(900, 200, Some(0.002), 700))
}

fn proposal(connection: &str, ticket: &str, event: &str) -> NewProposal {
    proposal_with(connection, ticket, event, &proposal_record())
}

/// A proposal of the decision and report in `r`.
fn proposal_with(connection: &str, ticket: &str, event: &str, r: &DecisionRecord) -> NewProposal {
    NewProposal {
        connection_id: connection.into(),
        ticket_id: ticket.into(),
        event_id: event.into(),
        decision: r.decision.clone(),
        report: r.report.clone(),
        mode: "shadow".into(),
        why_shadowed: "connection is in shadow mode".into(),
        ticket_subject: Some(format!("Ticket {ticket}")),
        ticket_url: None,
        ticket_before: None,
    }
}

/// Moves a proposal `from → to` as reviewer `who` with `reason`; whether it moved.
async fn review(
    store: &Store,
    id: i64,
    from: ProposalStatus,
    to: ProposalStatus,
    who: &str,
    reason: Option<&str>,
) -> Result<bool, StoreError> {
    store.review_proposal(id, &Transition { reason, ..Transition::new(from, to, who) }).await
}

/// Marks an approved proposal applied with `note`; whether it moved.
async fn applied(store: &Store, id: i64, note: &str) -> bool {
    let t = Transition {
        note_id: Some(note),
        ..Transition::new(ProposalStatus::Approved, ProposalStatus::Applied, "deskpilot")
    };
    store.review_proposal(id, &t).await.unwrap()
}

async fn proposals_insert_once_and_page_by_keyset(db: TestDb) {
    let store = db.store().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let connection = if i % 3 == 2 { "acme" } else { "demo" };
        ids.push(
            store.insert_proposal(&proposal(connection, &format!("t{i}"), &format!("e{i}"))).await.unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    // Once per (connection, ticket, event): the existing id comes back, nothing is replaced.
    let mut again = proposal("demo", "t0", "e0");
    again.why_shadowed = "different".into();
    assert_eq!(store.insert_proposal(&again).await.unwrap(), ids[0]);
    assert_eq!(store.proposal(ids[0]).await.unwrap().unwrap().why_shadowed, "connection is in shadow mode");
    // Same ticket, other event: a new proposal.
    let extra = store.insert_proposal(&proposal("demo", "t0", "e0-bis")).await.unwrap();
    ids.push(extra);

    // Keyset pages, newest first.
    let mut seen = Vec::new();
    let mut filter = ProposalFilter { limit: 3, ..Default::default() };
    loop {
        let page = store.proposals(&filter).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        filter.before_id = Some(last.id);
        seen.extend(page.iter().map(|p| p.id));
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let acme = ProposalFilter { connection: Some("acme".into()), ..Default::default() };
    let acme_ids: Vec<i64> = store.proposals(&acme).await.unwrap().iter().map(|p| p.id).collect();
    assert_eq!(acme_ids, vec![ids[5], ids[2]]);

    let p = store.proposal(ids[2]).await.unwrap().unwrap();
    let np = proposal("acme", "t2", "e2");
    let ps = p.stored.clone();
    assert_eq!((ps.connection_id, ps.ticket_id, ps.event_id), (np.connection_id, np.ticket_id, np.event_id));
    assert_eq!((ps.decision, ps.report, ps.mode), (np.decision, np.report, np.mode));
    assert_eq!((ps.ticket_subject, ps.ticket_url), (np.ticket_subject, None));
    assert_eq!((p.status, p.reviewed_by, p.reviewed_at), (ProposalStatus::Pending, None, None));
    assert!(store.proposal(i64::MAX).await.unwrap().is_none());

    review(&store, ids[1], ProposalStatus::Pending, ProposalStatus::Rejected, "ana", Some("no"))
        .await
        .unwrap();
    let pending = ProposalFilter {
        status: Some(ProposalStatus::Pending),
        connection: Some("demo".into()),
        ..Default::default()
    };
    let pending_ids: Vec<i64> = store.proposals(&pending).await.unwrap().iter().map(|p| p.id).collect();
    assert_eq!(pending_ids, vec![ids[7], ids[6], ids[4], ids[3], ids[0]]);
}

async fn proposal_status_changes_are_conditional(db: TestDb) {
    let store = db.store().await;
    let id = store.insert_proposal(&proposal("demo", "t1", "e1")).await.unwrap();
    use ProposalStatus::*;
    assert!(matches!(
        review(&store, id, Pending, Applied, "ana", None).await,
        Err(StoreError::InvalidTransition { from: "pending", to: "applied" })
    ));
    assert!(!applied(&store, id, "note-1").await, "not approved yet");

    // Two reviewers at once, one approving and one rejecting (several rounds): exactly one wins.
    for round in 0..5 {
        let id = store.insert_proposal(&proposal("demo", "t2", &format!("race-{round}"))).await.unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let reviewers: Vec<_> = [("ana", Approved), ("ben", Rejected)]
            .into_iter()
            .map(|(who, to)| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    (who, to, review(&store, id, Pending, to, who, Some("looked at it")).await.unwrap())
                })
            })
            .collect();
        let mut winners = Vec::new();
        for r in reviewers {
            let (who, to, won) = r.await.unwrap();
            if won {
                winners.push((who, to));
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let p = store.proposal(id).await.unwrap().unwrap();
        assert_eq!((p.status, p.reviewed_by.as_deref()), (winners[0].1, Some(winners[0].0)));
        assert!(p.reviewed_at.is_some());
    }

    assert!(review(&store, id, Pending, Approved, "ana", None).await.unwrap());
    assert!(!review(&store, id, Pending, Rejected, "ben", Some("late")).await.unwrap());
    assert!(applied(&store, id, "note-42").await);
    assert!(!applied(&store, id, "note-43").await, "applied once");
    let p = store.proposal(id).await.unwrap().unwrap();
    assert_eq!((p.status, p.applied_note_id.as_deref()), (Applied, Some("note-42")));
    assert_eq!((p.reviewed_by.as_deref(), p.review_reason), (Some("ana"), None));
    assert!(p.applied_at.is_some());
    assert!(!review(&store, i64::MAX, Pending, Approved, "x", None).await.unwrap());
    // Each step is kept with who, and only the steps that happened.
    let steps: Vec<_> =
        store.review_actions(id).await.unwrap().into_iter().map(|a| (a.action, a.actor)).collect();
    assert_eq!(steps, [("approved".to_owned(), "ana".to_owned()), ("applied".into(), "deskpilot".into())]);
    // Superseded from pending or approved, never after it was applied.
    let other = store.insert_proposal(&proposal("demo", "t3", "e3")).await.unwrap();
    assert!(
        review(&store, other, Pending, Superseded, "deskpilot", Some("a person triaged it")).await.unwrap()
    );
    assert_eq!(
        store.proposal(other).await.unwrap().unwrap().review_reason.as_deref(),
        Some("a person triaged it")
    );
    assert!(review(&store, id, Applied, Superseded, "x", None).await.is_err());
}

async fn proposals_filter_by_category_confidence_and_text_and_count_by_status(db: TestDb) {
    let store = db.store().await;
    let with = |category: &str, confidence: f64, subject: &str, ticket: &str| {
        let mut p = proposal("demo", ticket, "e");
        p.decision["category_id"] = category.into();
        p.decision["confidence"] = confidence.into();
        p.ticket_subject = Some(subject.into());
        p
    };
    let refund =
        store.insert_proposal(&with("refund", 0.91, "Refund for order 100%_off", "t1")).await.unwrap();
    let outage = store.insert_proposal(&with("outage", 0.55, "Site DOWN", "t2")).await.unwrap();
    let refund_low = store.insert_proposal(&with("refund", 0.4, "money back", "t3")).await.unwrap();
    let ids = |filter: ProposalFilter| {
        let store = store.clone();
        async move {
            let page = store.proposals(&filter).await.unwrap_or_else(|e| panic!("{filter:?}: {e:?}"));
            page.iter().map(|p| p.id).collect::<Vec<_>>()
        }
    };
    let f = ProposalFilter::default;
    assert_eq!(ids(ProposalFilter { category: Some("refund".into()), ..f() }).await, [refund_low, refund]);
    assert_eq!(ids(ProposalFilter { min_confidence: Some(0.5), ..f() }).await, [outage, refund]);
    assert_eq!(ids(ProposalFilter { max_confidence: Some(0.5), ..f() }).await, [refund_low]);
    assert_eq!(ids(ProposalFilter { text: Some("down".into()), ..f() }).await, [outage], "ignoring case");
    assert_eq!(ids(ProposalFilter { text: Some("t3".into()), ..f() }).await, [refund_low], "a ticket id");
    assert_eq!(
        ids(ProposalFilter { text: Some("100%_".into()), ..f() }).await,
        [refund],
        "wildcards are text"
    );
    assert_eq!(ids(ProposalFilter { text: Some("0%".into()), ..f() }).await, [refund]);
    assert_eq!(
        ids(ProposalFilter { text: Some("%".into()), category: Some("outage".into()), ..f() }).await,
        Vec::<i64>::new()
    );
    review(&store, outage, ProposalStatus::Pending, ProposalStatus::Rejected, "ana", None).await.unwrap();
    let counts = store
        .proposal_counts(&ProposalFilter { status: Some(ProposalStatus::Applied), ..f() })
        .await
        .unwrap();
    assert_eq!(counts[&ProposalStatus::Pending], 2, "the status filter is left aside: {counts:?}");
    assert_eq!(counts[&ProposalStatus::Rejected], 1);
    assert_eq!(counts[&ProposalStatus::Superseded], 0);
    let counts =
        store.proposal_counts(&ProposalFilter { category: Some("refund".into()), ..f() }).await.unwrap();
    assert_eq!((counts[&ProposalStatus::Pending], counts[&ProposalStatus::Rejected]), (2, 0));
}

// ---------------------------------------------------------------------------------------------
// Figures, migrations, cursors

async fn stats_add_up(db: TestDb) {
    let store = db.store().await;
    let empty = store.stats(None).await.unwrap();
    assert!(empty.connections.is_empty());

    // demo: three LLM decisions (latency 100, 300, 200 ms), one by rules, one key never decided.
    let llm_runs =
        [("t1", 1000, 100, Some(0.01), 100), ("t2", 2000, 200, Some(0.02), 300), ("t3", 500, 50, None, 200)];
    for (ticket, prompt, completion, cost, latency) in llm_runs {
        let k = key(ticket);
        claimed(&store, &k, "e", "w").await;
        store
            .record_decision(&k, "w", &record(&decision(llm()), &report(prompt, completion, cost, latency)))
            .await
            .unwrap();
    }
    let k = key("t4");
    claimed(&store, &k, "e", "w").await;
    let rules_report = Report { fallback: Some("llm down".into()), ..Default::default() };
    store
        .record_decision(&k, "w", &record(&decision(Origin::Rules { rule: "r".into() }), &rules_report))
        .await
        .unwrap();
    store.advance(&k, "w", Step::Done, Some("shadowed: shadow mode")).await.unwrap();
    let k = key("t5");
    claimed(&store, &k, "e", "w").await;
    store.record_failure(&k, "w", "bad payload", true).await.unwrap();

    // acme: one LLM decision; proposals on both.
    let ka = LedgerKey::new("acme", "a1", EventKind::TicketCreated);
    claimed(&store, &ka, "e", "w").await;
    store.record_decision(&ka, "w", &record(&decision(llm()), &report(10, 1, Some(0.5), 42))).await.unwrap();
    let p1 = store.insert_proposal(&proposal("demo", "t1", "e1")).await.unwrap();
    let p2 = store.insert_proposal(&proposal("demo", "t2", "e2")).await.unwrap();
    store.insert_proposal(&proposal("demo", "t3", "e3")).await.unwrap();
    store.insert_proposal(&proposal("acme", "a1", "e1")).await.unwrap();
    review(&store, p1, ProposalStatus::Pending, ProposalStatus::Approved, "ana", None).await.unwrap();
    applied(&store, p1, "n1").await;
    review(&store, p2, ProposalStatus::Pending, ProposalStatus::Rejected, "ana", Some("wrong"))
        .await
        .unwrap();

    let stats = store.stats(None).await.unwrap();
    let ids: Vec<&str> = stats.connections.iter().map(|c| c.connection_id.as_str()).collect();
    assert_eq!(ids, ["acme", "demo"]);
    let demo = stats.connection("demo").unwrap();
    assert_eq!((demo.tickets, demo.decided, demo.decided_by_llm, demo.decided_by_rules), (5, 4, 3, 1));
    assert_eq!((demo.done, demo.failed), (1, 1));
    assert_eq!((demo.prompt_tokens, demo.completion_tokens), (3500, 350));
    assert!((demo.cost_usd - 0.03).abs() < 1e-9, "{}", demo.cost_usd);
    assert_eq!(demo.latency_p50_ms, Some(200));
    assert!((demo.latency_avg_ms.unwrap() - 200.0).abs() < 1e-9);
    assert_eq!(
        (demo.proposals.pending, demo.proposals.approved, demo.proposals.rejected, demo.proposals.applied),
        (1, 0, 1, 1)
    );

    let only_acme = store.stats(Some("acme")).await.unwrap();
    assert_eq!(only_acme.connections.len(), 1);
    let acme = &only_acme.connections[0];
    assert_eq!(
        (acme.decided, acme.prompt_tokens, acme.latency_p50_ms, acme.proposals.pending),
        (1, 10, Some(42), 1)
    );
    assert!((acme.cost_usd - 0.5).abs() < 1e-9);
    assert_eq!(&only_acme.connections[0], stats.connection("acme").unwrap());
}

async fn migrations_are_idempotent(db: TestDb) {
    let store = db.store().await;
    claimed(&store, &key("3001"), "e", "w").await;
    store.close().await;
    // Connecting again finds the schema up to date and the data kept.
    let again = db.store().await;
    let third = db.store().await;
    assert_eq!(again.entry(&key("3001")).await.unwrap().unwrap().claimed_by.as_deref(), Some("w"));
    third.ping().await.unwrap();
}

async fn ingest_cursors_are_leased_and_fenced(db: TestDb) {
    let store = db.store().await;
    let name = "poll/demo";
    let Ok(CursorClaim::Held(fresh)) = store.claim_cursor(name, "demo", "r1", LEASE).await else {
        panic!("a new cursor is held by its first claimer")
    };
    assert_eq!((fresh.position, fresh.seen.len(), fresh.published), (None, 0, 0));
    assert!(
        matches!(store.claim_cursor(name, "demo", "r2", LEASE).await.unwrap(), CursorClaim::Busy { holder, .. } if holder == "r1")
    );

    let at = time::macros::datetime!(2026-11-17 07:35:00.123 UTC);
    let seen = vec![("1044".to_owned(), 1_763_364_900_123), ("1045".to_owned(), 1_763_364_900_123)];
    let since = at - time::Duration::hours(1);
    let step =
        CursorStep { position: at, seen: &seen, tickets_seen: 2, published: 1, created_since: Some(since) };
    store.advance_cursor(name, "r1", step).await.unwrap();
    assert_eq!(store.cursor(name).await.unwrap().unwrap().created_since, Some(since));
    assert_lease_lost(store.advance_cursor(name, "r2", step).await, Some("r1"));
    store
        .advance_cursor(name, "r1", CursorStep { seen: &seen[..1], created_since: None, ..step })
        .await
        .unwrap();
    let c = store.cursor(name).await.unwrap().unwrap();
    assert_eq!((c.position, c.seen, c.tickets_seen, c.published), (Some(at), seen[..1].to_vec(), 4, 2));
    assert_eq!(c.created_since, None);

    // Released: another replica carries on from the stored position.
    store.release_cursor(name, "r2").await.unwrap(); // not the holder: nothing happens
    assert!(matches!(store.claim_cursor(name, "demo", "r2", LEASE).await.unwrap(), CursorClaim::Busy { .. }));
    store.release_cursor(name, "r1").await.unwrap();
    let Ok(CursorClaim::Held(taken)) = store.claim_cursor(name, "demo", "r2", LEASE).await else {
        panic!("a released cursor is free")
    };
    assert_eq!(taken.position, Some(at));

    // Expired: taken over, and the old holder is fenced off.
    let short = "backfill/demo/0/open/all";
    store.claim_cursor(short, "demo", "r1", Duration::from_millis(200)).await.unwrap();
    let until = store.cursor(short).await.unwrap().unwrap().lease_until.unwrap();
    let left = until - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(100);
    tokio::time::sleep(left.try_into().unwrap_or_default()).await;
    assert!(matches!(store.claim_cursor(short, "demo", "r2", LEASE).await.unwrap(), CursorClaim::Held(_)));
    assert_lease_lost(store.advance_cursor(short, "r1", step).await, Some("r2"));
    assert!(matches!(store.finish_cursor(short, "r1").await, Err(StoreError::LeaseLost { .. })));

    // Finished: claims say so, until the cursor is forgotten.
    assert!(!store.forget_cursor(short).await.unwrap(), "a held cursor is not forgotten");
    store.finish_cursor(short, "r2").await.unwrap();
    assert!(
        matches!(store.claim_cursor(short, "demo", "r3", LEASE).await.unwrap(), CursorClaim::Finished(c) if c.finished_at.is_some())
    );
    assert!(store.forget_cursor(short).await.unwrap());
    assert!(
        matches!(store.claim_cursor(short, "demo", "r3", LEASE).await.unwrap(), CursorClaim::Held(c) if c.position.is_none())
    );
    let names: Vec<String> = store.cursors_of("demo").await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, [short, name]);
}

async fn ingest_cursor_claimers_at_once_one_winner(db: TestDb) {
    let store = db.store().await;
    let barrier = Arc::new(Barrier::new(20));
    let claims = (0..20).map(|i| {
        let (store, barrier) = (store.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            store.claim_cursor("poll/acme", "acme", &format!("r{i}"), LEASE).await.unwrap()
        })
    });
    let outcomes = futures::future::join_all(claims).await;
    let held = outcomes.iter().filter(|o| matches!(o.as_ref().unwrap(), CursorClaim::Held(_))).count();
    assert_eq!(held, 1, "{outcomes:?}");
}

async fn own_writes_are_found_by_when_they_happened(db: TestDb) {
    let store = db.store().await;
    let tolerance = Duration::from_secs(2);
    let applied = key("5001");
    claimed(&store, &applied, "e1", "w").await;
    store.record_decision(&applied, "w", &record(&decision(llm()), &report(10, 5, None, 10))).await.unwrap();
    // Decided and still held: the worker may be writing now, before it records the patch.
    let decided = store.entry(&applied).await.unwrap().unwrap().decided_at.unwrap();
    let writing = decided + time::Duration::seconds(3);
    assert!(store.own_write_near("demo", "5001", writing, Duration::ZERO).await.unwrap().is_some());
    store.advance(&applied, "w", Step::TicketUpdated, None).await.unwrap();
    // In the middle of the write (patched, note not yet posted) the patch is already explained.
    let entry = store.entry(&applied).await.unwrap().unwrap();
    let during = entry.updated_at;
    assert!(store.own_write_near("demo", "5001", during, tolerance).await.unwrap().is_some());
    store.finish(&applied, "w", Some("n-1"), "applied; note n-1").await.unwrap();
    let done = store.entry(&applied).await.unwrap().unwrap().finished_at.unwrap();

    let near = |at: time::OffsetDateTime, ticket: &'static str| {
        let store = store.clone();
        async move { store.own_write_near("demo", ticket, at, tolerance).await.unwrap() }
    };
    assert_eq!(near(done, "5001").await, Some(done));
    assert!(near(done + time::Duration::seconds(1), "5001").await.is_some(), "within the tolerance");
    assert!(
        near(done + time::Duration::seconds(3), "5001").await.is_none(),
        "a later change is someone else's"
    );
    assert!(near(entry.decided_at.unwrap() - time::Duration::seconds(3), "5001").await.is_none());
    assert!(near(done, "5002").await.is_none(), "another ticket");

    // Shadowed work wrote nothing to the helpdesk.
    let shadowed = key("5003");
    claimed(&store, &shadowed, "e3", "w").await;
    store.finish(&shadowed, "w", None, "shadowed as proposal 1: mode is shadow").await.unwrap();
    let at = store.entry(&shadowed).await.unwrap().unwrap().finished_at.unwrap();
    assert!(near(at, "5003").await.is_none());
}

// ---------------------------------------------------------------------------------------------
// Backend-specific

#[tokio::test]
async fn sqlite_creates_parent_directories_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/deskpilot.db");
    let store = Store::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    assert!(path.is_file());
    assert_eq!(store.backend(), "sqlite");
    claimed(&store, &key("4001"), "e", "w").await;
    store.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");

    // Relative paths (to the working directory), in both spellings.
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count().saturating_sub(1));
    let base = format!("{up}{}", dir.path().display().to_string().trim_start_matches('/'));
    for url in [format!("sqlite://{base}/one/rel.db"), format!("sqlite:{base}/two/rel.db")] {
        let store = Store::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {}", crate::helpers::error_chain(&e)));
        claimed(&store, &key("4002"), "e", "w").await;
        store.close().await;
    }
    assert!(dir.path().join("one/rel.db").is_file() && dir.path().join("two/rel.db").is_file());
}

#[tokio::test]
async fn sqlite_memory_store_keeps_its_data() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let k = key("5001");
    claimed(&store, &k, "e", "w").await;
    store.record_decision(&k, "w", &record(&decision(llm()), &Report::default())).await.unwrap();
    let id = store.insert_proposal(&proposal("demo", "5001", "e")).await.unwrap();
    // One connection, kept: every call sees the same database.
    assert_eq!(store.clone().entry(&k).await.unwrap().unwrap().step, Step::Decided);
    assert!(store.proposal(id).await.unwrap().is_some());
}

/// A statement timeout and a write on a standby after a failover (PostgreSQL's own errors, from
/// the real server) are worth another attempt; a constraint violation is not.
#[tokio::test]
async fn postgres_failover_and_timeout_errors_are_retryable() {
    use sqlx::{Connection as _, Executor as _};
    let mut conn = sqlx::PgConnection::connect(&crate::helpers::pg_admin_url()).await.expect("PostgreSQL");
    let store_error = |source| StoreError::Query { op: "t", source };
    let timeout = conn.execute("SET statement_timeout = 10; SELECT pg_sleep(1)").await.unwrap_err();
    assert!(store_error(timeout).is_retryable(), "57014 query_canceled");
    conn.execute("SET statement_timeout = 0; SET default_transaction_read_only = on").await.unwrap();
    let read_only = conn.execute("CREATE TEMP TABLE t (x int)").await.unwrap_err();
    let text = read_only.to_string();
    assert!(store_error(read_only).is_retryable(), "25006 read_only_sql_transaction: {text}");
    conn.execute("SET default_transaction_read_only = off").await.unwrap();
    let violation = conn.execute("SELECT 1 / 0").await.unwrap_err();
    assert!(!store_error(violation).is_retryable(), "22012 division_by_zero");
}

#[tokio::test]
async fn bad_urls_say_what_is_wrong() {
    let err = Store::connect("mysql://root:hunter2@db/app").await.unwrap_err();
    let text = crate::helpers::error_chain(&err);
    assert!(text.starts_with("store.url `mysql://root:***@db/app`: unsupported scheme"), "{text}");

    let err = Store::connect("sqlite://").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");

    // Refused at once (no waiting for the pool's acquire timeout), password hidden, retryable.
    let started = Instant::now();
    let err = Store::connect("postgres://deskpilot:hunter2@127.0.0.1:1/deskpilot").await.unwrap_err();
    let text = crate::helpers::error_chain(&err);
    assert!(
        text.starts_with("store.url `postgres://deskpilot:***@127.0.0.1:1/deskpilot`: cannot connect"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(err.is_retryable(), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // A parent "directory" that is a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let err = Store::connect(&format!("sqlite://{}/sub/store.db", file.display())).await.unwrap_err();
    let text = crate::helpers::error_chain(&err);
    assert!(text.contains("cannot connect") && text.contains("plain-file"), "{text}");
}
