//! The `updated_gte` poller against the sandbox helpdesk, the real RabbitMQ and both stores: what
//! it publishes, that polling the same window again publishes nothing twice, that a restart
//! between pages loses and repeats nothing, that two replicas on one connection do not double
//! events, and that deskpilot's own writes are not reported back as work.
//!
//! Every event on the test exchange is read from a queue bound to `#` (the work queue is bound to
//! `ticket.created` only), so the tests see `ticket.updated` too.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use deskpilot::{
    bus::{self, BusSettings, Publisher},
    events::{EventKind, EventSource, TicketEvent},
    ingest::poll::{PollOutcome, PollSettings, Poller},
    sandbox::RunningSandbox,
    store::Store,
    ticketing::{
        Category, Customer, DynTicketReader, ListQuery, Note, Page, Ticket, TicketPatch, TicketReader,
        Ticketing, TicketingError, all_tickets, collect_all, unified::UnifiedClient,
    },
};
use lapin::{
    options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use serde_json::json;
use time::{OffsetDateTime, macros::datetime};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// The connection the sandbox serves.
pub const CONN: &str = "demo";
/// Where a poller of the bundled data starts: about 50 of its tickets changed after it.
pub const START: OffsetDateTime = datetime!(2026-11-10 00:00 UTC);

/// A sandbox, a store, a test exchange on the real broker and a queue that sees all of it.
pub struct Rig {
    pub sandbox: RunningSandbox,
    pub helpdesk: Arc<UnifiedClient>,
    pub store: Store,
    pub publisher: Publisher,
    url: String,
    pub bus: BusSettings,
    channel: lapin::Channel,
    observer: String,
    _raw: lapin::Connection,
    _db: TestStoreUrl,
}

impl Rig {
    pub async fn new(kind: TestStoreKind) -> Rig {
        let db = TestStoreUrl::new(kind).await;
        let store = db.connect().await;
        let url = amqp_test_url();
        require_broker(&url);
        let bus = random_bus_settings(&[Duration::from_millis(200)]);
        let (publisher, mut consumer) = bus::connect(&url, &bus).await.expect("bus::connect");
        consumer.close().await;
        let raw = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await.unwrap();
        let channel = raw.create_channel().await.unwrap();
        let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        let queue = channel.queue_declare("".into(), exclusive, FieldTable::default()).await.unwrap();
        let observer = queue.name().as_str().to_owned();
        channel
            .queue_bind(
                observer.as_str().into(),
                bus.exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let sandbox = start_sandbox().await;
        let helpdesk = Arc::new(helpdesk(&sandbox, CONN));
        Rig { sandbox, helpdesk, store, publisher, url, bus, channel, observer, _raw: raw, _db: db }
    }

    pub fn settings(&self) -> PollSettings {
        PollSettings { page_size: 7, start: Some(START), ..PollSettings::default() }
    }

    pub fn poller(&self, holder: &str, settings: PollSettings) -> Poller {
        self.poller_over(self.helpdesk.clone(), holder, settings)
    }

    pub fn poller_over(&self, reader: DynTicketReader, holder: &str, settings: PollSettings) -> Poller {
        Poller::new(CONN, reader, self.store.clone(), self.publisher.clone(), settings, holder)
    }

    /// Polls once through `reader` (the sandbox's connection in another backend's shape) and
    /// checks that each ticket changed since [`START`] is published exactly once.
    pub async fn polls_every_change_once_through(&self, reader: DynTicketReader) {
        self.polls_every_change_once_as(reader, str::to_owned).await;
    }

    /// [`Self::polls_every_change_once_through`] for a backend whose ticket ids are `id_of` the
    /// sandbox's own.
    pub async fn polls_every_change_once_as(&self, reader: DynTicketReader, id_of: impl Fn(&str) -> String) {
        let poller = self.poller_over(reader, "replica-a", self.settings());
        let PollOutcome::Polled(tally) = poller.poll_once().await.unwrap() else {
            panic!("this replica polls")
        };
        let mut want: Vec<String> = self
            .tickets()
            .await
            .into_iter()
            .filter(|t| t.updated_at.unwrap() >= START)
            .map(|t| id_of(&t.id.unwrap()))
            .collect();
        want.sort();
        let mut published: Vec<String> = self.published().await.into_iter().map(|e| e.ticket_id).collect();
        published.sort();
        assert!(want.len() > 40, "the bundled data has changes after {START}");
        assert_eq!(published, want, "each changed ticket once");
        assert_eq!(tally.published, want.len() as u64);
    }

    /// Every event published since the last call, in publish order.
    pub async fn published(&self) -> Vec<TicketEvent> {
        let mut out = Vec::new();
        while let Some(m) = self
            .channel
            .basic_get(self.observer.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            out.push(TicketEvent::from_json(&m.delivery.data).expect("a ticket event"));
        }
        out
    }

    pub async fn tickets(&self) -> Vec<Ticket> {
        collect_all(all_tickets(self.helpdesk.as_ref(), ListQuery::default())).await.unwrap()
    }

    /// A person's change: a tag added.
    pub async fn touch(&self, id: &str) -> Ticket {
        let patch = TicketPatch {
            tags: Some(vec![format!("seen-{}", uuid::Uuid::new_v4().simple())]),
            ..Default::default()
        };
        self.helpdesk.update_ticket(id, &patch).await.unwrap()
    }

    /// A new ticket, as a customer's e-mail would make one.
    pub async fn create(&self, subject: &str) -> Ticket {
        let url = format!("{}/ticketing/{CONN}/ticket", self.sandbox.base_url);
        let body = json!({"subject": subject, "description": "It broke.", "customer_id": "cus_1001"});
        let response = http_client().post(url).bearer_auth(KEY).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        delete_bus_topology(&self.url, &self.bus);
    }
}

/// The event a change of `t` should produce when the poll window starts at `from`.
pub fn expected(t: &Ticket, from: OffsetDateTime, source: EventSource) -> TicketEvent {
    let (created, updated) = (t.created_at.unwrap(), t.updated_at.unwrap());
    let kind = if created >= from || created == updated {
        EventKind::TicketCreated
    } else {
        EventKind::TicketUpdated
    };
    TicketEvent::observed(kind, CONN, t.id.clone().unwrap(), updated, source)
}

/// Event id → how many times it was published.
pub fn counts(events: &[TicketEvent]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for e in events {
        *out.entry(e.event_id.clone()).or_default() += 1;
    }
    out
}

/// Sorted `(ticket, kind, event id)` of events, for comparing sets.
pub fn summary(events: &[TicketEvent]) -> Vec<(String, EventKind, String)> {
    let mut out: Vec<_> = events.iter().map(|e| (e.ticket_id.clone(), e.kind, e.event_id.clone())).collect();
    out.sort();
    out
}

fn polled(outcome: PollOutcome) -> deskpilot::ingest::Tally {
    match outcome {
        PollOutcome::Polled(tally) => tally,
        other => panic!("expected this replica to poll, got {other:?}"),
    }
}

/// The sandbox's helpdesk, except for the list calls (numbered from 1) that `fail` answers with an
/// error, as a crash, an outage or a rate limit between two pages would.
pub struct Flaky {
    pub inner: Arc<UnifiedClient>,
    pub calls: AtomicUsize,
    pub fail: Box<dyn Fn(usize) -> Option<TicketingError> + Send + Sync>,
}

impl Flaky {
    pub fn new(
        inner: Arc<UnifiedClient>,
        fail: impl Fn(usize) -> Option<TicketingError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self { inner, calls: AtomicUsize::new(0), fail: Box::new(fail) })
    }
}

#[async_trait]
impl TicketReader for Flaky {
    fn backend(&self) -> &'static str {
        "unified"
    }
    async fn list_tickets(&self, q: &ListQuery) -> deskpilot::ticketing::Result<Page<Ticket>> {
        if let Some(error) = (self.fail)(self.calls.fetch_add(1, Ordering::SeqCst) + 1) {
            return Err(error);
        }
        self.inner.list_tickets(q).await
    }
    async fn get_ticket(&self, id: &str) -> deskpilot::ticketing::Result<Ticket> {
        self.inner.get_ticket(id).await
    }
    async fn get_customer(&self, id: &str) -> deskpilot::ticketing::Result<Customer> {
        self.inner.get_customer(id).await
    }
    async fn list_notes(&self, q: &ListQuery) -> deskpilot::ticketing::Result<Page<Note>> {
        self.inner.list_notes(q).await
    }
    async fn list_categories(&self) -> deskpilot::ticketing::Result<Vec<Category>> {
        self.inner.list_categories().await
    }
}

macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::TestStoreKind::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::TestStoreKind::Postgres).await
                }
            )+
        }
    };
}

on_both_stores!(
    polling_the_same_window_again_publishes_each_change_once,
    a_restart_between_pages_loses_nothing_and_repeats_nothing,
    two_replicas_poll_one_connection_without_doubling_events,
);

async fn polling_the_same_window_again_publishes_each_change_once(kind: TestStoreKind) {
    let rig = Rig::new(kind).await;
    let poller = rig.poller("replica-a", rig.settings());
    let tally = polled(poller.poll_once().await.unwrap());

    let changed: Vec<Ticket> =
        rig.tickets().await.into_iter().filter(|t| t.updated_at.unwrap() >= START).collect();
    assert!(changed.len() > 40, "the bundled data has changes after {START}");
    let want: Vec<TicketEvent> = changed.iter().map(|t| expected(t, START, EventSource::Poll)).collect();
    let first = rig.published().await;
    assert_eq!(summary(&first), summary(&want));
    assert!(
        first.iter().any(|e| e.kind == EventKind::TicketUpdated)
            && first.iter().any(|e| e.kind == EventKind::TicketCreated)
    );
    assert_eq!((tally.tickets, tally.published), (changed.len() as u64, changed.len() as u64));
    let ordered: Vec<OffsetDateTime> = first.iter().map(|e| e.occurred_at).collect();
    assert!(ordered.is_sorted(), "oldest change first, page after page");

    // The same window again, by the same replica and by a restarted one: nothing new.
    polled(poller.poll_once().await.unwrap());
    drop(poller);
    // A restart: the stopped process released its cursor (as `Poller::run` does at shutdown).
    rig.store.release_cursor(&Poller::cursor_name(CONN), "replica-a").await.unwrap();
    let restarted = rig.poller("replica-a-restarted", rig.settings());
    let again = polled(restarted.poll_once().await.unwrap());
    assert_eq!(rig.published().await, Vec::new());
    assert_eq!(again.published, 0);
    assert!(again.already_handled > 0, "the overlap was read again and recognised");

    // New changes: exactly those.
    let touched = [rig.touch("1040").await, rig.touch("1089").await];
    let new = rig.create("Printer on fire").await;
    let tally = polled(restarted.poll_once().await.unwrap());
    let third = rig.published().await;
    let cursor = rig.store.cursor(&Poller::cursor_name(CONN)).await.unwrap().unwrap();
    let want: Vec<TicketEvent> = touched
        .iter()
        .map(|t| {
            TicketEvent::observed(
                EventKind::TicketUpdated,
                CONN,
                t.id.clone().unwrap(),
                t.updated_at.unwrap(),
                EventSource::Poll,
            )
        })
        .chain([TicketEvent::observed(
            EventKind::TicketCreated,
            CONN,
            new.id.clone().unwrap(),
            new.updated_at.unwrap(),
            EventSource::Poll,
        )])
        .collect();
    assert_eq!(summary(&third), summary(&want));
    assert_eq!(tally.published, 3);
    assert_eq!(cursor.published, changed.len() as u64 + 3);
}

async fn a_restart_between_pages_loses_nothing_and_repeats_nothing(kind: TestStoreKind) {
    let rig = Rig::new(kind).await;
    let settings = PollSettings { lease: Duration::from_millis(300), ..rig.settings() };
    // The third page fails: the process "dies" there, its lease left to run out.
    let failing = Flaky::new(rig.helpdesk.clone(), |call| {
        (call == 3).then(|| TicketingError::Transient { detail: "connection reset".into() })
    });
    let first = rig.poller_over(failing, "replica-a", settings.clone());
    let err = first.poll_once().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let before = rig.published().await;
    assert_eq!(before.len(), 7 + 6, "two pages (7 tickets, then 6 new past the one asked for again)");
    drop(first);

    // Another replica waits for the lease to run out, then carries on from the stored position.
    let second = rig.poller("replica-b", settings);
    let mut tries = 0;
    let tally = loop {
        match second.poll_once().await.unwrap() {
            PollOutcome::Polled(tally) => break tally,
            PollOutcome::Busy { holder, .. } => assert_eq!(holder, "replica-a"),
        }
        tries += 1;
        assert!(tries < 100, "the dead replica's lease never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let after = rig.published().await;
    let all: Vec<TicketEvent> = before.iter().chain(&after).cloned().collect();
    let want: Vec<TicketEvent> = rig
        .tickets()
        .await
        .iter()
        .filter(|t| t.updated_at.unwrap() >= START)
        .map(|t| expected(t, START, EventSource::Poll))
        .collect();
    assert_eq!(summary(&all), summary(&want), "nothing lost, nothing twice");
    assert_eq!(tally.published as usize, after.len());
}

async fn two_replicas_poll_one_connection_without_doubling_events(kind: TestStoreKind) {
    let rig = Rig::new(kind).await;
    let settings = PollSettings {
        interval: Duration::from_millis(20),
        lease: Duration::from_millis(400),
        ..rig.settings()
    };
    let stop_a = CancellationToken::new();
    let stop_b = CancellationToken::new();
    let mut a = Some(tokio::spawn(rig.poller("replica-a", settings.clone()).run(stop_a.clone())));
    let b = tokio::spawn(rig.poller("replica-b", settings.clone()).run(stop_b.clone()));

    // People keep changing tickets while both replicas run; halfway through replica A stops (after
    // its page in progress, releasing the cursor) and B carries on.
    let mut last_change: BTreeMap<String, Ticket> = BTreeMap::new();
    for round in 0..12 {
        for id in ["1041", "1052", "1077"] {
            let t = rig.touch(id).await;
            last_change.insert(id.to_owned(), t);
        }
        let t = rig.create(&format!("New ticket {round}")).await;
        last_change.insert(t.id.clone().unwrap(), t);
        if round == 6 {
            stop_a.cancel();
            a.take().unwrap().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // Let B catch up, then stop it. The last change of each ticket is published (as created or
    // updated, depending on whether a poll saw the ticket before).
    let last_seen = |events: &[TicketEvent]| -> Vec<(String, OffsetDateTime)> {
        let have: Vec<_> = events.iter().map(|e| (e.ticket_id.clone(), e.occurred_at)).collect();
        last_change
            .values()
            .map(|t| (t.id.clone().unwrap(), t.updated_at.unwrap()))
            .filter(|change| !have.contains(change))
            .collect()
    };
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen.extend(rig.published().await);
        if last_seen(&seen).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_b.cancel();
    b.await.unwrap();
    seen.extend(rig.published().await);

    let ids = counts(&seen);
    let doubled: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "events published twice: {doubled:?}");
    assert_eq!(last_seen(&seen), Vec::new(), "last changes never published");
    let bundled = rig
        .tickets()
        .await
        .iter()
        .filter(|t| t.updated_at.unwrap() >= START && !last_change.contains_key(t.id.as_ref().unwrap()))
        .count();
    assert!(
        seen.len() >= bundled + last_change.len(),
        "{} events for {} changes",
        seen.len(),
        bundled + last_change.len()
    );
    let cursor = rig.store.cursor(&Poller::cursor_name(CONN)).await.unwrap().unwrap();
    assert_eq!(cursor.lease_until, None, "B released the cursor when it stopped");
    assert_eq!(cursor.published as usize, seen.len(), "the cursor counted each confirmed event once");
}

/// Polls, four a page, a sandbox of twelve tickets, nine of them changed within one second and
/// three after, through `reader` (a native connector over the sandbox, whose dates have whole
/// seconds): the tied tickets are stepped through by offset and each is published once.
pub async fn steps_through_tickets_sharing_a_second(reader: impl FnOnce(&RunningSandbox) -> DynTicketReader) {
    steps_through_tickets_sharing_a_second_as(reader, str::to_owned).await;
}

/// [`steps_through_tickets_sharing_a_second`] for a backend whose ticket ids are `id_of` the
/// sandbox's own.
pub async fn steps_through_tickets_sharing_a_second_as(
    reader: impl FnOnce(&RunningSandbox) -> DynTicketReader,
    id_of: impl Fn(&str) -> String,
) {
    let dir = tempfile::tempdir().unwrap();
    let tickets: Vec<serde_json::Value> = (1..=12)
        .map(|i| {
            let updated = match i {
                1..=9 => format!("2026-11-11T10:00:00.{i:03}Z"),
                _ => format!("2026-11-11T10:00:0{}Z", i - 8),
            };
            serde_json::json!({"id": (2000 + i).to_string(), "subject": format!("Tied {i}"), "status": "ACTIVE",
                               "created_at": "2026-11-11T09:00:00Z", "updated_at": updated})
        })
        .collect();
    let data = serde_json::json!({ "tickets": tickets }).to_string();
    std::fs::write(dir.path().join("demo.json"), data).unwrap();
    let sb = deskpilot::sandbox::spawn(deskpilot::sandbox::SandboxOptions {
        data_dir: Some(dir.path().to_owned()),
        api_key: KEY.into(),
        webhook_url: None,
        webhook_secret: None,
        state: None,
    })
    .await
    .unwrap();

    let rig = Rig::new(TestStoreKind::Sqlite).await;
    let settings = PollSettings { page_size: 4, start: Some(START), ..rig.settings() };
    let poller = rig.poller_over(reader(&sb), "replica-a", settings);
    let PollOutcome::Polled(tally) = poller.poll_once().await.unwrap() else { panic!("this replica polls") };
    let mut published: Vec<String> = rig.published().await.into_iter().map(|e| e.ticket_id).collect();
    published.sort();
    let mut want: Vec<String> = (2001..=2012).map(|i| id_of(&i.to_string())).collect();
    want.sort();
    assert_eq!(published, want, "each ticket once, the nine tied ones included");
    assert_eq!(tally.published, 12);
}
