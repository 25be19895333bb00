//! The whole pipeline: bus → worker → triage (wiremock LLM) → act (the sandbox helpdesk) → store,
//! against the real RabbitMQ and on both stores (a SQLite file and a fresh PostgreSQL database),
//! plus the in-process bus. Each test has its own broker names (`test-<uuid>`, deleted at the end),
//! its own database, sandbox and LLM mock, so the tests run in parallel.
//!
//! RabbitMQ is expected at 127.0.0.1:5672 (guest/guest; `DESKPILOT_TEST_AMQP_URL`), PostgreSQL at
//! `postgres://postgres@127.0.0.1:5432/test` (`DESKPILOT_TEST_PG_URL`). Without them the tests fail
//! and say how to start them; they are never skipped. `TEST_LOG=deskpilot=debug` shows the logs.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::helpers::*;
use deskpilot::{
    App,
    act::{self, ActPolicy, Mode},
    bus::{self, Bus, BusSettings, DeadLetter, Publisher, memory::MemoryBus},
    config::{BackendConfig, Config, ConnectionConfig, UnifiedConfig},
    events::{EventKind, EventSource, TicketEvent},
    sandbox::{Helpdesk, RunningSandbox},
    store::{Entry, LedgerKey, Proposal, ProposalFilter, ProposalStatus, Step, Store},
    ticketing::{DynTicketing, NewNote, Note, PriorityLevel, TicketPatch},
    triage::{
        Report,
        decision::{Decision, Origin, Sentiment},
    },
    worker::{Worker, WorkerSettings},
};
use lapin::{options::QueueDeclareOptions, types::FieldTable};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

mod agreement;
mod budget;
mod fencing;
mod freshdesk;
mod input;
mod intercom;
mod limits;
mod person;
mod policy;
mod privacy;
mod proxy;
mod review;
mod servicenow;
use agreement::agreement_is_scored_on_what_people_left_at_close;
use budget::{
    a_spent_budget_switches_to_the_rules_from_the_next_ticket,
    held_events_wait_in_the_broker_without_using_their_tries,
    the_spend_is_read_from_the_store_by_a_restarted_worker,
};
use fencing::a_note_in_flight_at_shutdown_is_never_posted_twice;
use freshdesk::freshdesk_apply_mode_posts_a_private_note_and_merges_tags;
use input::bad_or_huge_input_ends_clearly_while_others_finish;
use intercom::intercom_apply_mode_posts_an_internal_note_and_adds_tags;
use limits::a_backlog_waits_in_the_broker_at_the_llm_limiters_pace;
use person::{a_person_s_edits_during_triage_are_kept, a_ticket_closed_during_triage_is_left_alone};
use policy::{
    a_recorded_decision_that_no_longer_fits_is_decided_again,
    each_automated_category_is_applied_from_its_own_threshold,
    without_allowed_tags_only_tags_in_use_are_written,
};
use privacy::personal_data_reaches_the_llm_as_placeholders_and_the_note_as_values;
use review::{
    shadow_proposals_are_approved_once_edited_rejected_or_superseded,
    the_review_page_in_a_browser_approves_edits_and_rejects,
};
use servicenow::servicenow_apply_mode_posts_a_work_note;

/// Retry tiers of every test bus.
const TIERS: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(500)];
/// How long a pipeline may take to finish a batch.
const WAIT: Duration = Duration::from_secs(20);
/// The connection the sandbox serves and the worker is configured for.
const CONN: &str = "demo";
/// The category the mock LLM proposes unless told otherwise.
const DEFAULT_CATEGORY: &str = "cat-billing";

fn init_logs() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

// ---------------------------------------------------------------------------------------------
// The mock LLM: a valid decision per ticket (found by the `Ticket:` line of the prompt), after a
// scripted burst of failures, each answer after an adjustable delay.

#[derive(Clone, Default)]
struct Answers(Arc<AnswersState>);

#[derive(Default)]
struct AnswersState {
    by_ticket: Mutex<HashMap<String, Value>>,
    failures: Mutex<VecDeque<ResponseTemplate>>,
    delay: Mutex<Duration>,
    asked: Mutex<Vec<String>>,
}

impl Answers {
    /// What the model answers for `ticket` (default: [`decision_json`] with [`DEFAULT_CATEGORY`]).
    fn set(&self, ticket: &str, decision: Value) {
        self.0.by_ticket.lock().unwrap().insert(ticket.to_owned(), decision);
    }

    /// The next requests get these responses, in order, before any valid answer.
    fn fail_first(&self, responses: Vec<ResponseTemplate>) {
        self.0.failures.lock().unwrap().extend(responses);
    }

    fn set_delay(&self, delay: Duration) {
        *self.0.delay.lock().unwrap() = delay;
    }

    /// The ticket of every request so far, in arrival order.
    fn asked(&self) -> Vec<String> {
        self.0.asked.lock().unwrap().clone()
    }
}

impl Respond for Answers {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = request.body_json().unwrap_or(Value::Null);
        let ticket = ticket_of_request(&body).unwrap_or_default();
        self.0.asked.lock().unwrap().push(ticket.clone());
        let delay = *self.0.delay.lock().unwrap();
        if let Some(failure) = self.0.failures.lock().unwrap().pop_front() {
            return failure.set_delay(delay);
        }
        let decision = self.0.by_ticket.lock().unwrap().get(&ticket).cloned();
        let decision = decision.unwrap_or_else(|| decision_json(DEFAULT_CATEGORY, 0.86));
        ok(&decision.to_string()).set_delay(delay)
    }
}

/// A valid model answer: [`valid_decision`] with this category and confidence.
fn decision_json(category: &str, confidence: f64) -> Value {
    let mut d = valid_decision(Some(category));
    d["confidence"] = json!(confidence);
    d
}

/// Apply mode, tickets of `category` routed to `assignee`.
fn apply_routed(category: &str, assignee: &str) -> ActPolicy {
    ActPolicy {
        mode: Mode::Apply,
        routing: BTreeMap::from([(category.to_owned(), assignee.to_owned())]),
        ..ActPolicy::default()
    }
}

/// The decision [`decision_json`] validates to, for seeding the ledger by hand.
fn decision(category: &str) -> Decision {
    let wire = valid_decision(Some(category));
    Decision {
        category_id: Some(category.to_owned()),
        priority: PriorityLevel::High,
        tags: vec!["billing".into(), "double-charge".into()],
        language: "en".into(),
        sentiment: Sentiment::Negative,
        summary: wire["summary"].as_str().unwrap().to_owned(),
        draft_reply: Some(wire["draft_reply"].as_str().unwrap().to_owned()),
        confidence: 0.86,
        needs_human: false,
        reason: wire["reason"].as_str().unwrap().to_owned(),
        origin: Origin::Llm { model: MODEL.into() },
    }
}

// ---------------------------------------------------------------------------------------------
// The bus of one test.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BusKind {
    Amqp,
    Memory,
}

enum TestBus {
    Amqp(Box<Broker>),
    Memory(MemoryBus),
}

/// The real broker; `raw` looks behind the bus (counts, raw publishes).
struct Broker {
    url: String,
    settings: BusSettings,
    raw: lapin::Connection,
}

/// Messages sitting in the bus's queues.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    /// Ready in the work queue.
    ready: u32,
    /// Waiting in a retry tier.
    delayed: u32,
    /// Dead-lettered.
    dead: u32,
    /// Handed out and not settled (in-process bus only; the broker's count is not exact in time).
    unacked: u32,
}

impl TestBus {
    async fn new(kind: BusKind) -> (TestBus, Publisher) {
        let mut settings = random_bus_settings(&TIERS);
        settings.prefetch = 10;
        match kind {
            BusKind::Amqp => {
                let url = amqp_test_url();
                require_broker(&url);
                let raw = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                    .await
                    .expect("a raw AMQP connection");
                let (publisher, mut consumer) = bus::connect(&url, &settings).await.expect("bus::connect");
                consumer.close().await;
                (TestBus::Amqp(Box::new(Broker { url, settings, raw })), publisher)
            }
            BusKind::Memory => {
                let bus = MemoryBus::new(settings);
                let publisher = bus.publisher();
                (TestBus::Memory(bus), publisher)
            }
        }
    }

    /// The bus as the service sees it (workers started through `App` connect to it themselves).
    fn service_bus(&self) -> Bus {
        match self {
            TestBus::Amqp(b) => Bus::Amqp { url: b.url.clone(), settings: b.settings.clone() },
            TestBus::Memory(bus) => Bus::Memory(bus.clone()),
        }
    }

    /// Publishes any body to the exchange with `routing_key`, as another client could.
    async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        match self {
            TestBus::Amqp(b) => {
                crate::helpers::publish_raw(&b.raw, &b.settings.exchange, routing_key, body).await
            }
            TestBus::Memory(bus) => bus.publish_raw(routing_key, body.to_vec(), None).unwrap(),
        }
    }

    async fn counts(&self) -> Counts {
        match self {
            TestBus::Amqp(b) => {
                let channel = b.raw.create_channel().await.unwrap();
                let mut counts = Counts {
                    ready: ready_in(&channel, &b.settings.queue).await,
                    dead: ready_in(&channel, &b.settings.dead_queue).await,
                    ..Counts::default()
                };
                for delay in &b.settings.retry_delays {
                    counts.delayed += ready_in(&channel, &retry_tier_queue(&b.settings, *delay)).await;
                }
                let _ = channel.close(200, "OK".into()).await;
                counts
            }
            TestBus::Memory(bus) => Counts {
                ready: bus.ready() as u32,
                delayed: bus.scheduled() as u32,
                dead: bus.dead_letters(usize::MAX).len() as u32,
                unacked: bus.unacked() as u32,
            },
        }
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        match self {
            TestBus::Amqp(b) => {
                bus::dead_letters(&b.url, &b.settings, 1000).await.expect("bus::dead_letters")
            }
            TestBus::Memory(bus) => bus.dead_letters(usize::MAX),
        }
    }

    /// Moves every dead letter back to the work queue; returns how many.
    async fn replay(&self) -> usize {
        match self {
            TestBus::Amqp(b) => {
                bus::replay_dead_letters(&b.url, &b.settings, None).await.expect("bus::replay_dead_letters")
            }
            TestBus::Memory(bus) => bus.replay_dead_letters(None),
        }
    }

    /// The broker's ids (pids) of this test's bus connections (`rabbitmqctl list_connections`).
    async fn connection_pids(&self) -> Vec<String> {
        let TestBus::Amqp(b) = self else { panic!("only the broker has connections") };
        let name = format!("deskpilot {}", b.settings.queue);
        tokio::task::spawn_blocking(move || {
            rabbitmqctl(&["list_connections", "-s", "pid", "client_properties"])
                .lines()
                .filter(|l| l.contains(&name))
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .await
        .unwrap()
    }
}

/// Closes broker connections from the broker side, as a broker restart or a network cut would.
async fn close_connections(pids: Vec<String>) {
    tokio::task::spawn_blocking(move || {
        for pid in &pids {
            rabbitmqctl(&["close_connection", pid, "test: broker connection closed"]);
        }
    })
    .await
    .unwrap();
}

/// Ready messages in `queue` (passive declare).
async fn ready_in(channel: &lapin::Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("queue {queue} exists: {e}"))
        .message_count()
}

impl Drop for TestBus {
    fn drop(&mut self) {
        if let TestBus::Amqp(b) = self {
            delete_bus_topology(&b.url, &b.settings);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline of one test.

/// A worker running in the background.
struct RunningWorker {
    id: String,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

struct Pipeline {
    /// Aborted on drop, before the broker names are deleted (a live consumer would declare them again).
    workers: Vec<RunningWorker>,
    publisher: Publisher,
    bus: TestBus,
    answers: Answers,
    _llm: MockServer,
    /// The service's configuration: the LLM is the mock, the demo connection the sandbox.
    config: Config,
    helpdesk: DynTicketing,
    sandbox: RunningSandbox,
    store: Store,
    /// The demo helpdesk when the pipeline was built.
    before: Helpdesk,
    _db: TestStoreUrl,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for w in &self.workers {
            w.task.abort();
        }
    }
}

impl Pipeline {
    async fn new(bus: BusKind, store: TestStoreKind) -> Pipeline {
        Pipeline::with_store(bus, TestStoreUrl::new(store).await).await
    }

    /// A pipeline whose store is at `db`.
    async fn with_store(bus: BusKind, db: TestStoreUrl) -> Pipeline {
        init_logs();
        let store = db.connect().await;
        let (bus, publisher) = TestBus::new(bus).await;
        let sandbox = start_sandbox().await;
        let helpdesk: DynTicketing = Arc::new(crate::helpers::helpdesk(&sandbox, CONN));
        let answers = Answers::default();
        let llm = MockServer::start().await;
        Mock::given(method("POST")).and(path(COMPLETIONS)).respond_with(answers.clone()).mount(&llm).await;
        let config = service_config(&sandbox, &llm);
        let before = sandbox.snapshot(CONN).await.expect("the demo connection");
        Pipeline {
            workers: Vec::new(),
            publisher,
            bus,
            answers,
            _llm: llm,
            config,
            helpdesk,
            sandbox,
            store,
            before,
            _db: db,
        }
    }

    /// The service with `policy` for the demo connection, on this pipeline's bus and store.
    async fn app(&self, policy: &ActPolicy, settings: WorkerSettings) -> App {
        self.app_at(&self.sandbox.base_url, policy, settings).await
    }

    /// As [`Pipeline::app`], reaching the demo connection's helpdesk at `base_url`.
    async fn app_at(&self, base_url: &str, policy: &ActPolicy, settings: WorkerSettings) -> App {
        let mut config = self.config.clone();
        config.connections = vec![demo_connection(base_url, policy)];
        App::builder(&config)
            .bus(self.bus.service_bus())
            .store(self.store.clone())
            .worker_settings(settings)
            .build()
            .await
            .expect("the service builds")
    }

    /// Starts a worker with `policy` for the demo connection; returns its index.
    async fn spawn_worker(&mut self, policy: ActPolicy, settings: WorkerSettings) -> usize {
        let url = self.sandbox.base_url.clone();
        self.spawn_worker_at(&url, policy, settings).await
    }

    /// As [`Pipeline::spawn_worker`], reaching the helpdesk at `base_url`.
    async fn spawn_worker_at(
        &mut self,
        base_url: &str,
        policy: ActPolicy,
        settings: WorkerSettings,
    ) -> usize {
        let id = settings.worker_id.clone();
        let app = self.app_at(base_url, &policy, settings).await;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { app.serve(None, stop).await.expect("the worker runs") });
        self.workers.push(RunningWorker { id, shutdown, task });
        self.workers.len() - 1
    }

    /// Stops worker `i` gracefully and waits for it; returns how long it took.
    async fn stop_worker(&mut self, i: usize) -> Duration {
        let w = &mut self.workers[i];
        let started = Instant::now();
        w.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), &mut w.task)
            .await
            .unwrap_or_else(|_| panic!("worker {} did not stop within 15 s", w.id))
            .unwrap_or_else(|e| panic!("worker {} failed: {e}", w.id));
        started.elapsed()
    }

    /// An untriaged ticket that a person tagged `vip` through `helpdesk` (a native connector),
    /// with the LLM answering `category` for it; returns it and the sandbox before the worker runs.
    async fn tagged_by_a_person(
        &self,
        helpdesk: &dyn deskpilot::ticketing::Ticketing,
        category: &str,
    ) -> (String, Helpdesk) {
        let t = self.untriaged(1).remove(0);
        let person = TicketPatch { tags: Some(vec!["vip".into()]), ..TicketPatch::default() };
        helpdesk.update_ticket(&t, &person).await.expect("a person's tag");
        self.answers.set(&t, decision_json(category, 0.9));
        (t, self.snapshot().await)
    }

    /// Starts a worker whose one connection, `CONN`, reaches the sandbox through `backend` in
    /// `policy`'s mode with its routing (a native connector's round trip).
    async fn start_worker_over(&mut self, backend: BackendConfig, policy: &ActPolicy) {
        self.start_worker_on(ConnectionConfig {
            mode: policy.mode,
            routing: policy.routing.clone(),
            ..ConnectionConfig::new(CONN, backend)
        })
        .await;
    }

    /// Starts a worker whose only connection is `connection`.
    async fn start_worker_on(&mut self, connection: ConnectionConfig) {
        self.start_worker_with(settings(Duration::from_secs(30)), |config| {
            config.connections = vec![connection]
        })
        .await;
    }

    /// Starts a worker with these settings over the pipeline's config changed by `edit`.
    async fn start_worker_with(&mut self, worker: WorkerSettings, edit: impl FnOnce(&mut Config)) {
        let mut config = self.config.clone();
        edit(&mut config);
        let id = worker.worker_id.clone();
        let app = App::builder(&config)
            .bus(self.bus.service_bus())
            .store(self.store.clone())
            .worker_settings(worker)
            .build()
            .await
            .expect("the service builds");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { app.serve(None, stop).await.expect("the worker runs") });
        self.workers.push(RunningWorker { id, shutdown, task });
    }

    /// Publishes `ticket.created` for `ticket` and waits until its ledger entry is done, then stops
    /// the workers.
    async fn publish_and_wait(&mut self, ticket: &str) -> Entry {
        let tickets = [ticket.to_owned()];
        self.publish(&tickets).await;
        let entry = self.wait_done(&tickets, WAIT).await.remove(0);
        self.stop_workers().await;
        self.assert_bus_drained().await;
        entry
    }

    /// Stops every worker still running.
    async fn stop_workers(&mut self) {
        for i in 0..self.workers.len() {
            if !self.workers[i].task.is_finished() {
                self.stop_worker(i).await;
            }
        }
    }

    /// The first `n` tickets of the demo helpdesk no person has categorised.
    fn untriaged(&self, n: usize) -> Vec<String> {
        let ids: Vec<String> = self
            .before
            .tickets
            .iter()
            .filter(|(_, t)| t.category_id.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        assert!(ids.len() >= n, "the demo has {} untriaged tickets, {n} wanted", ids.len());
        ids.into_iter().take(n).collect()
    }

    /// Publishes one `ticket.created` per ticket; returns the events.
    async fn publish(&self, tickets: &[String]) -> Vec<TicketEvent> {
        let mut events = Vec::new();
        for t in tickets {
            let event = created(t);
            self.publisher
                .publish(&event)
                .await
                .unwrap_or_else(|e| panic!("publish {t}: {}", error_chain(&e)));
            events.push(event);
        }
        events
    }

    async fn snapshot(&self) -> Helpdesk {
        self.sandbox.snapshot(CONN).await.expect("the demo connection")
    }

    async fn entry(&self, ticket: &str) -> Option<Entry> {
        self.store.entry(&key(ticket)).await.expect("ledger entry")
    }

    /// Waits until every ticket's ledger entry is `Done`; returns the entries in `tickets` order.
    async fn wait_done(&self, tickets: &[String], timeout: Duration) -> Vec<Entry> {
        let started = Instant::now();
        loop {
            let mut entries = Vec::new();
            for t in tickets {
                entries.push(self.entry(t).await);
            }
            if entries.iter().all(|e| e.as_ref().is_some_and(|e| e.step == Step::Done)) {
                return entries.into_iter().map(Option::unwrap).collect();
            }
            if started.elapsed() > timeout {
                let states: Vec<String> = tickets
                    .iter()
                    .zip(&entries)
                    .map(|(t, e)| match e {
                        Some(e) => {
                            format!("{t}: {} attempts={} last_error={:?}", e.step, e.attempts, e.last_error)
                        }
                        None => format!("{t}: no entry"),
                    })
                    .collect();
                let counts = self.bus.counts().await;
                panic!("not all Done within {timeout:?}; bus {counts:?}; ledger:\n{}", states.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn done_count(&self, tickets: &[String]) -> usize {
        let mut done = 0;
        for t in tickets {
            done += usize::from(self.entry(t).await.is_some_and(|e| e.step == Step::Done));
        }
        done
    }

    async fn proposals(&self) -> Vec<Proposal> {
        let filter = ProposalFilter { limit: 500, ..ProposalFilter::default() };
        self.store.proposals(&filter).await.expect("proposals")
    }

    /// Waits until the bus has been empty for a second: duplicates of finished events (the second
    /// copy of an event, a redelivery after a lost ack) may still be going through the retry tiers
    /// (seen there) before they find their ticket done. A delivery being handled is invisible to
    /// the broker's counts, but only for the milliseconds it takes to find the ledger `Done`.
    async fn wait_bus_settled(&self) {
        let started = Instant::now();
        let mut empty_since = None;
        loop {
            let counts = self.bus.counts().await;
            if counts != Counts::default() {
                empty_since = None;
            } else if empty_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1) {
                return;
            }
            assert!(started.elapsed() < WAIT, "the bus did not settle within {WAIT:?}: {counts:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asserts that nothing is left in the work queue, the retry tiers or the dead-letter queue.
    /// Stop the workers first: a delivery left unsettled then comes back as ready.
    async fn assert_bus_drained(&self) {
        // A quorum queue counts a returned delivery a moment after its channel closed: watch a while.
        let until = Instant::now() + Duration::from_millis(400);
        loop {
            let counts = self.bus.counts().await;
            assert_eq!(counts, Counts::default(), "the bus still holds messages");
            if Instant::now() > until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every ticket but `tickets` is exactly as in `base`.
fn assert_others_untouched(base: &Helpdesk, after: &Helpdesk, tickets: &[String]) {
    for (id, ticket) in &base.tickets {
        if !tickets.contains(id) {
            assert_eq!(after.tickets.get(id), Some(ticket), "ticket {id} was not in the batch");
        }
    }
    assert_eq!(after.tickets.len(), base.tickets.len());
}

fn key(ticket: &str) -> LedgerKey {
    LedgerKey::new(CONN, ticket, EventKind::TicketCreated)
}

fn created(ticket: &str) -> TicketEvent {
    TicketEvent::new(EventKind::TicketCreated, CONN, ticket, EventSource::Manual)
}

fn settings(lease: Duration) -> WorkerSettings {
    WorkerSettings {
        worker_id: format!("test-worker-{}", uuid::Uuid::new_v4().simple()),
        max_in_flight: 8,
        lease,
        drain_deadline: Duration::from_secs(2),
        max_attempts: 12,
    }
}

fn shadow() -> ActPolicy {
    ActPolicy { mode: Mode::Shadow, ..ActPolicy::default() }
}

/// Apply mode, routing billing to `u-04` and bugs to `u-05`.
fn apply(notes_internal_verified: bool) -> ActPolicy {
    ActPolicy {
        mode: Mode::Apply,
        notes_internal_verified,
        routing: BTreeMap::from([
            ("cat-billing".to_owned(), "u-04".to_owned()),
            ("cat-bug".to_owned(), "u-05".to_owned()),
        ]),
        ..ActPolicy::default()
    }
}

/// The notes of `ticket` that carry deskpilot's marker for its ledger key.
fn marked_notes(h: &Helpdesk, ticket: &str) -> Vec<Note> {
    let marker = act::note_marker(&key(ticket));
    h.notes
        .values()
        .filter(|n| n.ticket_id.as_deref() == Some(ticket))
        .filter(|n| n.description.as_deref().is_some_and(|d| d.contains(&marker)))
        .cloned()
        .collect()
}

/// Notes in `after` that were not in `before`.
fn new_notes(before: &Helpdesk, after: &Helpdesk) -> Vec<Note> {
    after.notes.iter().filter(|(id, _)| !before.notes.contains_key(*id)).map(|(_, n)| n.clone()).collect()
}

/// Exactly one marked note per ticket, with the draft of the recorded decision, and it is the
/// ledger's note.
fn assert_one_note_each(after: &Helpdesk, entries: &[Entry]) {
    for e in entries {
        let t = &e.key.ticket_id;
        let notes = marked_notes(after, t);
        assert_eq!(notes.len(), 1, "ticket {t}: exactly one deskpilot note, got {notes:#?}");
        let draft = decided(e).and_then(|d| d.draft_reply).expect("a draft");
        let body = act::note_body(&draft, &act::note_marker(&e.key));
        assert_eq!(notes[0].description.as_deref(), Some(body.as_str()), "ticket {t}");
        assert_eq!(e.note_id, notes[0].id, "ticket {t}: the ledger names the note");
    }
}

/// The decision a ledger row keeps, read back as triage's type.
fn decided(e: &Entry) -> Option<Decision> {
    e.decision.as_ref().map(|r| Decision::deserialize(&r.decision).expect("a Decision"))
}

/// Polls `check` every 50 ms until it holds; fails with `what` after `timeout`.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs each scenario with the given bus and store: `<module>::<scenario>`.
macro_rules! scenarios {
    ($module:ident, $bus:ident, $store:ident: $($name:ident),+ $(,)?) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let started = Instant::now();
                    super::$name(Pipeline::new(BusKind::$bus, TestStoreKind::$store).await).await;
                    eprintln!("{}::{} took {:?}", stringify!($module), stringify!($name), started.elapsed());
                }
            )+
        }
    };
}

scenarios!(amqp_sqlite, Amqp, Sqlite:
    held_events_wait_in_the_broker_without_using_their_tries,
    shadow_mode_writes_nothing_and_stores_one_proposal_per_event,
    apply_mode_shadows_a_decision_that_asks_for_a_human,
    apply_mode_updates_tickets_and_posts_one_marked_note,
    apply_without_verified_internal_notes_keeps_the_draft_for_review,
    apply_if_confident_applies_only_confident_automated_categories,
    a_crashed_worker_is_finished_by_a_fresh_one_without_duplicates,
    resumes_after_every_ledger_step_with_exactly_one_note,
    permanent_failures_are_dead_lettered_with_the_reason,
    a_replayed_dead_letter_gets_another_full_attempt,
    llm_bursts_go_through_the_delay_tiers_and_all_finish,
    a_closed_broker_connection_loses_nothing,
    graceful_shutdown_finishes_in_flight_work,
    graceful_shutdown_hands_back_what_misses_the_deadline,
    duplicate_events_in_flight_post_one_note,
    a_shadow_resumed_by_another_event_stores_one_proposal,
    a_note_in_flight_at_shutdown_is_never_posted_twice,
    a_person_s_edits_during_triage_are_kept,
    a_ticket_closed_during_triage_is_left_alone,
    bad_or_huge_input_ends_clearly_while_others_finish,
    without_allowed_tags_only_tags_in_use_are_written,
    a_recorded_decision_that_no_longer_fits_is_decided_again,
    shadow_proposals_are_approved_once_edited_rejected_or_superseded,
);

scenarios!(amqp_postgres, Amqp, Postgres:
    the_spend_is_read_from_the_store_by_a_restarted_worker,
    agreement_is_scored_on_what_people_left_at_close,
    freshdesk_apply_mode_posts_a_private_note_and_merges_tags,
    intercom_apply_mode_posts_an_internal_note_and_adds_tags,
    servicenow_apply_mode_posts_a_work_note,
    shadow_mode_writes_nothing_and_stores_one_proposal_per_event,
    apply_mode_shadows_a_decision_that_asks_for_a_human,
    apply_mode_updates_tickets_and_posts_one_marked_note,
    apply_without_verified_internal_notes_keeps_the_draft_for_review,
    apply_if_confident_applies_only_confident_automated_categories,
    a_crashed_worker_is_finished_by_a_fresh_one_without_duplicates,
    resumes_after_every_ledger_step_with_exactly_one_note,
    permanent_failures_are_dead_lettered_with_the_reason,
    a_replayed_dead_letter_gets_another_full_attempt,
    llm_bursts_go_through_the_delay_tiers_and_all_finish,
    a_closed_broker_connection_loses_nothing,
    graceful_shutdown_hands_back_what_misses_the_deadline,
    duplicate_events_in_flight_post_one_note,
    a_shadow_resumed_by_another_event_stores_one_proposal,
    a_note_in_flight_at_shutdown_is_never_posted_twice,
    a_person_s_edits_during_triage_are_kept,
    a_ticket_closed_during_triage_is_left_alone,
    a_recorded_decision_that_no_longer_fits_is_decided_again,
    shadow_proposals_are_approved_once_edited_rejected_or_superseded,
);

// The single-process setup: the in-process bus.
scenarios!(memory_sqlite, Memory, Sqlite:
    a_backlog_waits_in_the_broker_at_the_llm_limiters_pace,
    a_spent_budget_switches_to_the_rules_from_the_next_ticket,
    personal_data_reaches_the_llm_as_placeholders_and_the_note_as_values,
    shadow_mode_writes_nothing_and_stores_one_proposal_per_event,
    apply_mode_shadows_a_decision_that_asks_for_a_human,
    apply_mode_updates_tickets_and_posts_one_marked_note,
    apply_without_verified_internal_notes_keeps_the_draft_for_review,
    permanent_failures_are_dead_lettered_with_the_reason,
    a_replayed_dead_letter_gets_another_full_attempt,
    llm_bursts_go_through_the_delay_tiers_and_all_finish,
    graceful_shutdown_hands_back_what_misses_the_deadline,
    duplicate_events_in_flight_post_one_note,
    a_note_in_flight_at_shutdown_is_never_posted_twice,
    without_allowed_tags_only_tags_in_use_are_written,
    each_automated_category_is_applied_from_its_own_threshold,
    the_review_page_in_a_browser_approves_edits_and_rejects,
    agreement_is_scored_on_what_people_left_at_close,
);

// ---------------------------------------------------------------------------------------------
// 1. Shadow mode.

async fn shadow_mode_writes_nothing_and_stores_one_proposal_per_event(mut p: Pipeline) {
    let tickets = p.untriaged(6);
    p.spawn_worker(shadow(), settings(Duration::from_secs(30))).await;
    let events = p.publish(&tickets).await;
    let entries = p.wait_done(&tickets, WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let after = p.snapshot().await;
    assert_eq!(after.tickets, p.before.tickets, "shadow mode changes no ticket");
    assert_eq!(after.notes, p.before.notes, "shadow mode posts no note");

    let proposals = p.proposals().await;
    assert_eq!(proposals.len(), tickets.len(), "one proposal per event");
    for (event, entry) in events.iter().zip(&entries) {
        let t = &event.ticket_id;
        let mine: Vec<&Proposal> = proposals.iter().filter(|x| &x.ticket_id == t).collect();
        assert_eq!(mine.len(), 1, "ticket {t}");
        let proposal = mine[0];
        assert_eq!(proposal.event_id, event.event_id);
        assert_eq!(proposal.connection_id, CONN);
        assert_eq!(proposal.status, ProposalStatus::Pending);
        assert_eq!(proposal.mode, "shadow");
        assert_eq!(proposal.why_shadowed, "connection is in shadow mode");
        let proposed = Decision::deserialize(&proposal.decision).unwrap();
        assert_eq!(proposed.category_id.as_deref(), Some(DEFAULT_CATEGORY));
        assert!(proposed.draft_reply.is_some());
        assert_eq!(proposal.ticket_subject, p.before.tickets[t].subject);
        assert_eq!(Some(&proposal.decision), entry.decision.as_ref().map(|r| &r.decision));

        assert_eq!(entry.event_id, event.event_id);
        assert!(!entry.failed);
        assert_eq!(entry.attempts, 0);
        assert_eq!(entry.lease_until, None, "Done releases the lease");
        let outcome = format!("shadowed as proposal {}: connection is in shadow mode", proposal.id);
        assert_eq!(entry.outcome.as_deref(), Some(outcome.as_str()));
    }
    let mut asked = p.answers.asked();
    asked.sort();
    assert_eq!(asked, tickets, "one LLM call per event");
    let stats = p.store.stats(Some(CONN)).await.unwrap();
    let stats = stats.connection(CONN).unwrap();
    assert_eq!((stats.tickets, stats.decided_by_llm, stats.done, stats.failed), (6, 6, 6, 0));
    assert_eq!(stats.proposals.pending, 6);
}

// ---------------------------------------------------------------------------------------------
// 2. Apply mode.

async fn apply_mode_updates_tickets_and_posts_one_marked_note(mut p: Pipeline) {
    let tickets = p.untriaged(4);
    // A person tagged one of them already (one tag differs from the model's only in case).
    let tags = vec!["vip".to_owned(), "Billing".to_owned()];
    let patch = TicketPatch { tags: Some(tags.clone()), ..TicketPatch::default() };
    p.helpdesk.update_ticket(&tickets[0], &patch).await.unwrap();
    // A person categorised and assigned 1015 (billing, u-01); the model says it is a bug.
    let triaged = "1015".to_owned();
    let by_person = p.before.tickets[&triaged].clone();
    assert_eq!(
        (by_person.category_id.as_deref(), by_person.user_id.as_deref()),
        (Some("cat-billing"), Some("u-01"))
    );
    p.answers.set(&triaged, decision_json("cat-bug", 0.9));
    let base = p.snapshot().await;

    p.spawn_worker(apply(true), settings(Duration::from_secs(30))).await;
    let mut batch = tickets.clone();
    batch.push(triaged.clone());
    p.publish(&batch).await;
    let entries = p.wait_done(&batch, WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let after = p.snapshot().await;
    assert_one_note_each(&after, &entries);
    assert_eq!(new_notes(&base, &after).len(), batch.len(), "no other note was posted");
    for (t, entry) in tickets.iter().zip(&entries) {
        let ticket = &after.tickets[t];
        assert_eq!(ticket.category_id.as_deref(), Some(DEFAULT_CATEGORY), "ticket {t}");
        assert_eq!(ticket.priority.as_deref(), Some("high"), "ticket {t}");
        assert_eq!(ticket.user_id.as_deref(), Some("u-04"), "ticket {t}: routed by category");
        let want: Vec<&str> = if t == &tickets[0] {
            vec!["vip", "Billing", "double-charge"]
        } else {
            vec!["billing", "double-charge"]
        };
        assert_eq!(ticket.tags, want, "ticket {t}: tags merged with the existing ones");
        let note_id = entry.note_id.clone().unwrap();
        assert_eq!(entry.outcome.as_deref(), Some(format!("applied; note {note_id}").as_str()));
    }
    let kept = &after.tickets[&triaged];
    assert_eq!(kept.category_id.as_deref(), Some("cat-billing"), "a person's category is kept");
    assert_eq!(kept.user_id.as_deref(), Some("u-01"), "a person's assignee is kept");
    assert_eq!(kept.tags, by_person.tags, "1015 already had the proposed tags");
    let outcome = entries.last().unwrap().outcome.clone().unwrap();
    assert!(
        outcome.contains("category `cat-billing` set by a person kept (proposed `cat-bug`)"),
        "{outcome}"
    );
    assert!(outcome.contains("assignee `u-01` kept (routing says `u-05`)"), "{outcome}");

    assert_others_untouched(&base, &after, &batch);
    assert!(p.proposals().await.is_empty(), "nothing is shadowed in apply mode");
}

async fn apply_without_verified_internal_notes_keeps_the_draft_for_review(mut p: Pipeline) {
    let tickets = p.untriaged(3);
    p.spawn_worker(apply(false), settings(Duration::from_secs(30))).await;
    let events = p.publish(&tickets).await;
    let entries = p.wait_done(&tickets, WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let after = p.snapshot().await;
    assert_eq!(after.notes, p.before.notes, "no note without verified internal notes");
    let proposals = p.proposals().await;
    assert_eq!(proposals.len(), tickets.len());
    for (event, entry) in events.iter().zip(&entries) {
        let t = &event.ticket_id;
        let ticket = &after.tickets[t];
        assert_eq!(ticket.category_id.as_deref(), Some(DEFAULT_CATEGORY), "ticket {t}: fields applied");
        assert_eq!(ticket.priority.as_deref(), Some("high"));
        assert_eq!(ticket.tags, ["billing", "double-charge"]);
        assert_eq!(ticket.user_id.as_deref(), Some("u-04"));
        let proposal = proposals.iter().find(|x| &x.ticket_id == t).expect("a proposal");
        assert_eq!(proposal.event_id, event.event_id);
        assert_eq!(proposal.mode, "apply");
        assert!(proposal.why_shadowed.contains("not verified internal"), "{}", proposal.why_shadowed);
        let proposed = Decision::deserialize(&proposal.decision).unwrap();
        assert_eq!(proposed.draft_reply, decided(entry).unwrap().draft_reply);
        assert!(proposed.draft_reply.is_some(), "the draft is kept for review");
        assert_eq!(entry.note_id, None);
        let outcome = entry.outcome.as_deref().unwrap();
        assert!(outcome.starts_with("applied; no note; draft kept for review"), "{outcome}");
    }
    assert_others_untouched(&p.before, &after, &tickets);
}

/// A decision that asks for a person (the model suspects an injection, or is unsure what the
/// customer wants) is shadowed in apply mode too: nothing is written to the helpdesk.
async fn apply_mode_shadows_a_decision_that_asks_for_a_human(mut p: Pipeline) {
    let t = p.untriaged(2);
    let mut human = decision_json("cat-billing", 0.99);
    human["needs_human"] = json!(true);
    human["reason"] = json!("The message tells the assistant to ignore its instructions.");
    p.answers.set(&t[0], human);
    p.spawn_worker(apply(true), settings(Duration::from_secs(30))).await;
    p.publish(&t).await;
    let entries = p.wait_done(&t, WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let after = p.snapshot().await;
    assert_eq!(after.tickets[&t[0]], p.before.tickets[&t[0]], "the ticket asking for a human is untouched");
    assert!(marked_notes(&after, &t[0]).is_empty(), "no note on it");
    let proposals = p.proposals().await;
    let [proposal] = proposals.as_slice() else { panic!("one proposal: {proposals:#?}") };
    assert_eq!((proposal.ticket_id.as_str(), proposal.mode.as_str()), (t[0].as_str(), "apply"));
    assert_eq!(proposal.why_shadowed, "the decision asks for a human");
    // The other ticket of the batch is applied as usual.
    assert_one_note_each(&after, &entries[1..]);
}

// ---------------------------------------------------------------------------------------------
// 3. Apply when confident.

async fn apply_if_confident_applies_only_confident_automated_categories(mut p: Pipeline) {
    let t = p.untriaged(5);
    p.answers.set(&t[0], decision_json("cat-billing", 0.5)); // unsure
    p.answers.set(&t[1], decision_json("cat-bug", 0.95)); // sure, but not automated
    p.answers.set(&t[2], decision_json("cat-billing", 0.95)); // sure and automated
    p.answers.set(&t[3], decision_json("cat-refunds", 0.9)); // exactly the threshold
    let mut human = decision_json("cat-billing", 0.99);
    human["needs_human"] = json!(true);
    p.answers.set(&t[4], human); // the model asks for a person
    let policy = ActPolicy {
        mode: Mode::ApplyIfConfident,
        confidence_threshold: 0.9,
        automated_categories: BTreeSet::from(["cat-billing".to_owned(), "cat-refunds".to_owned()]),
        ..apply(true)
    };
    p.spawn_worker(policy, settings(Duration::from_secs(30))).await;
    p.publish(&t).await;
    let entries = p.wait_done(&t, WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let after = p.snapshot().await;
    let proposals = p.proposals().await;
    let shadowed = [
        (&t[0], "confidence 0.50 is below the threshold 0.90"),
        (&t[1], "category `cat-bug` is not enabled for automation"),
        (&t[4], "the decision asks for a human"),
    ];
    assert_eq!(proposals.len(), shadowed.len(), "{proposals:#?}");
    for (ticket, why) in shadowed {
        assert_eq!(after.tickets[ticket], p.before.tickets[ticket], "ticket {ticket} is shadowed");
        assert!(marked_notes(&after, ticket).is_empty());
        let proposal = proposals.iter().find(|x| &x.ticket_id == ticket).expect("a proposal");
        assert_eq!(proposal.why_shadowed, why);
        assert_eq!(proposal.mode, "apply_if_confident");
    }
    let applied: Vec<Entry> =
        entries.into_iter().filter(|e| [&t[2], &t[3]].contains(&&e.key.ticket_id)).collect();
    assert_one_note_each(&after, &applied);
    assert_eq!(after.tickets[&t[2]].category_id.as_deref(), Some("cat-billing"));
    assert_eq!(after.tickets[&t[3]].category_id.as_deref(), Some("cat-refunds"));
    assert_eq!(new_notes(&p.before, &after).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 4. A crash in the middle of a batch.

async fn a_crashed_worker_is_finished_by_a_fresh_one_without_duplicates(mut p: Pipeline) {
    let tickets = p.untriaged(20);
    p.answers.set_delay(Duration::from_millis(300));
    let lease = Duration::from_secs(2);
    let first = p.spawn_worker(apply(true), WorkerSettings { max_in_flight: 4, ..settings(lease) }).await;
    p.publish(&tickets).await;
    let before = p.before.clone();
    wait_until("three notes are posted", WAIT, || async {
        new_notes(&before, &p.snapshot().await).len() >= 3
    })
    .await;

    // Crash: the task and every event task it spawned are dropped wherever they are.
    p.workers[first].task.abort();
    assert!((&mut p.workers[first].task).await.unwrap_err().is_cancelled());
    let done_at_crash = p.done_count(&tickets).await;
    let notes_at_crash = new_notes(&p.before, &p.snapshot().await).len();
    eprintln!("crash with {done_at_crash} done and {notes_at_crash} notes of {}", tickets.len());
    assert!(done_at_crash < tickets.len(), "the crash came mid-batch");

    p.answers.set_delay(Duration::ZERO);
    let started = Instant::now();
    p.spawn_worker(apply(true), settings(lease)).await;
    let entries = p.wait_done(&tickets, WAIT).await;
    eprintln!("the fresh worker finished in {:?}", started.elapsed());
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let after = p.snapshot().await;
    assert_one_note_each(&after, &entries);
    assert_eq!(new_notes(&p.before, &after).len(), tickets.len(), "exactly one note per ticket");
    assert!(p.bus.dead_letters().await.is_empty());
    for e in &entries {
        assert!(!e.failed);
        assert_eq!(
            p.snapshot().await.tickets[&e.key.ticket_id].category_id.as_deref(),
            Some(DEFAULT_CATEGORY)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Resuming after each step a crashed attempt recorded.

async fn resumes_after_every_ledger_step_with_exactly_one_note(mut p: Pipeline) {
    // What a crashed attempt left: the ledger step, and whether its ticket update and its note
    // reached the helpdesk.
    let seeds = [
        (Step::Claimed, false, false),
        (Step::Decided, false, false),
        (Step::TicketUpdated, true, false),
        (Step::TicketUpdated, true, true), // crashed after the note's POST, before recording it
        (Step::Decided, false, true),      // a note exists, the ledger only has the decision
    ];
    let t = p.untriaged(seeds.len());
    let policy = apply(true);
    let d = decision(DEFAULT_CATEGORY);
    let recorded = act::record_of(&d, &Report::default());
    let stale = "crashed-worker";
    let lease = Duration::from_millis(1); // expired by the time the worker claims
    let mut events = Vec::new();
    let mut precreated = HashMap::new();
    for (ticket, (step, updated, noted)) in t.iter().zip(seeds) {
        let event = created(ticket);
        let k = key(ticket);
        p.store.claim(&k, &event.event_id, stale, lease).await.unwrap();
        if step >= Step::Decided {
            p.store.record_decision(&k, stale, &recorded).await.unwrap();
        }
        if updated {
            let current = p.helpdesk.get_ticket(ticket).await.unwrap();
            let patch = act::patch_for(&current, None, &d, &policy, None, &mut Vec::new());
            p.helpdesk.update_ticket(ticket, &patch).await.unwrap();
        }
        if step >= Step::TicketUpdated {
            p.store.advance(&k, stale, Step::TicketUpdated, Some("")).await.unwrap();
        }
        if noted {
            let note = NewNote {
                ticket_id: ticket.clone(),
                description: act::note_body(d.draft_reply.as_deref().unwrap(), &act::note_marker(&k)),
                user_id: None,
                raw: None,
            };
            let id = p.helpdesk.create_note(&note).await.unwrap().id.unwrap();
            precreated.insert(ticket.clone(), id);
        }
        assert_eq!(p.entry(ticket).await.unwrap().step, step, "seeded {ticket}");
        events.push(event);
    }
    let claimed = &t[0];

    p.spawn_worker(policy, settings(Duration::from_secs(30))).await;
    for event in &events {
        p.publisher.publish(event).await.unwrap();
    }
    let entries = p.wait_done(&t, WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let after = p.snapshot().await;
    assert_one_note_each(&after, &entries);
    assert_eq!(new_notes(&p.before, &after).len(), t.len(), "one note per ticket, none twice");
    for (ticket, id) in &precreated {
        assert_eq!(
            marked_notes(&after, ticket)[0].id.as_ref(),
            Some(id),
            "{ticket}: the earlier note is reused"
        );
    }
    for e in &entries {
        let ticket = &after.tickets[&e.key.ticket_id];
        assert_eq!(ticket.category_id.as_deref(), Some(DEFAULT_CATEGORY), "{}", e.key);
        assert_eq!(ticket.priority.as_deref(), Some("high"), "{}", e.key);
        assert_eq!(ticket.tags, ["billing", "double-charge"], "{}", e.key);
        assert_eq!(e.event_id, events.iter().find(|x| x.ticket_id == e.key.ticket_id).unwrap().event_id);
        assert_eq!(e.attempts, 0);
    }
    assert_eq!(
        p.answers.asked(),
        std::slice::from_ref(claimed),
        "a recorded decision is not asked for again"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Permanent failures.

async fn permanent_failures_are_dead_lettered_with_the_reason(mut p: Pipeline) {
    p.spawn_worker(apply(true), settings(Duration::from_secs(30))).await;
    let malformed = br#"{"event_id": "e-1", "kind": "ticket.created""#;
    p.bus.publish_raw("ticket.created", malformed).await;
    let unknown =
        TicketEvent::new(EventKind::TicketCreated, "no-such-connection", "1046", EventSource::Manual);
    p.publisher.publish(&unknown).await.unwrap();
    let missing = created("999999");
    p.publisher.publish(&missing).await.unwrap();

    wait_until("three events are dead-lettered", WAIT, || async { p.bus.counts().await.dead == 3 }).await;
    p.stop_workers().await;
    let letters = p.bus.dead_letters().await;
    assert_eq!(letters.len(), 3, "{letters:#?}");
    let bad = letters.iter().find(|l| l.event_or_body.is_err()).expect("the malformed body");
    assert_eq!(bad.event_or_body.as_ref().unwrap_err().as_slice(), malformed);
    assert!(bad.reason.starts_with("bad payload: not a ticket event"), "{}", bad.reason);
    let reason_of = |event: &TicketEvent| {
        let letter =
            letters.iter().find(|l| l.event_or_body.as_ref().ok() == Some(event)).expect("dead-lettered");
        assert_eq!(letter.attempt, 1, "permanent failures are not retried");
        assert_eq!(letter.routing_key, "ticket.created");
        letter.reason.clone()
    };
    let reason = reason_of(&unknown);
    assert!(reason.contains("unknown connection `no-such-connection` (configured: demo)"), "{reason}");
    let reason = reason_of(&missing);
    assert!(reason.contains("ticket 999999 not found in the helpdesk"), "{reason}");
    // Listing gives the letters back to the queue; a quorum queue counts them again a moment later.
    let only_dead = Counts { dead: 3, ..Counts::default() };
    wait_until("only the 3 dead letters are left", WAIT, || async { p.bus.counts().await == only_dead })
        .await;

    let entry = p.entry("999999").await.expect("the 404 was claimed");
    assert!(entry.failed, "a permanent failure is recorded");
    assert_eq!((entry.step, entry.attempts), (Step::Claimed, 1));
    assert!(entry.last_error.as_deref().unwrap().contains("not found"));
    assert!(p.store.entry(&LedgerKey::from(&unknown)).await.unwrap().is_none());
    assert_eq!(p.snapshot().await, p.before, "nothing was written");
    assert_eq!(p.answers.asked().len(), 0, "no LLM call for any of them");
}

async fn a_replayed_dead_letter_gets_another_full_attempt(mut p: Pipeline) {
    let t = p.untriaged(1).remove(0);
    // An invented category, also after the repair: a permanent InvalidDecision.
    p.answers.set(&t, decision_json("cat-ceo", 0.9));
    p.spawn_worker(apply(true), settings(Duration::from_secs(30))).await;
    let event = p.publish(std::slice::from_ref(&t)).await.remove(0);
    wait_until("the event is dead-lettered", WAIT, || async { p.bus.counts().await.dead == 1 }).await;
    let letters = p.bus.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_or_body.as_ref().ok(), Some(&event));
    assert!(letters[0].reason.contains("invalid after one repair"), "{}", letters[0].reason);
    let failed = p.entry(&t).await.unwrap();
    assert!(failed.failed && failed.step == Step::Claimed && failed.attempts == 1, "{failed:?}");
    assert_eq!(p.answers.asked(), [t.clone(), t.clone()], "the answer and its repair");

    // The model is fixed and an operator replays the dead letters.
    p.answers.set(&t, decision_json(DEFAULT_CATEGORY, 0.9));
    assert_eq!(p.bus.replay().await, 1);
    let entries = p.wait_done(std::slice::from_ref(&t), WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;
    assert!(!entries[0].failed, "the replay reopened the key");
    assert_eq!(entries[0].event_id, event.event_id);
    assert_one_note_each(&p.snapshot().await, &entries);
    assert_eq!(p.answers.asked().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// 7. LLM failures reach the worker and go through the delay tiers; 429s are waited out before.

async fn llm_bursts_go_through_the_delay_tiers_and_all_finish(mut p: Pipeline) {
    let tickets = p.untriaged(4);
    let burst = vec![
        openai_error(429, "Rate limit reached for gpt-4o-mini", "requests", Some("rate_limit_exceeded"))
            .insert_header("retry-after", "0"),
        openai_error(500, "The server had an error while processing your request.", "server_error", None),
        openai_error(429, "Rate limit reached for gpt-4o-mini", "requests", Some("rate_limit_exceeded")),
        openai_error(503, "The engine is currently overloaded.", "server_error", None),
    ];
    let failures = burst.len();
    // The LLM's limiter sends a 429 again once its wait is over: only the 5xx reach the ledger.
    let failed_attempts = 2;
    p.answers.fail_first(burst);
    p.spawn_worker(apply(true), settings(Duration::from_secs(30))).await;
    p.publish(&tickets).await;
    let entries = p.wait_done(&tickets, WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let attempts: u32 = entries.iter().map(|e| e.attempts).sum();
    assert_eq!(attempts, failed_attempts, "each 5xx is one failed attempt in the ledger, a 429 none");
    assert_eq!(p.answers.asked().len(), tickets.len() + failures, "one LLM call per try");
    let errors: Vec<&str> = entries.iter().filter_map(|e| e.last_error.as_deref()).collect();
    assert!(errors.iter().any(|e| e.contains("HTTP 50")), "{errors:?}");
    assert!(!errors.iter().any(|e| e.contains("HTTP 429")), "{errors:?}");
    assert!(errors.iter().all(|e| e.starts_with("triage: LLM")), "{errors:?}");
    for e in &entries {
        assert!(!e.failed);
    }
    assert_one_note_each(&p.snapshot().await, &entries);
    assert!(p.bus.dead_letters().await.is_empty(), "nothing was dead-lettered");
}

// ---------------------------------------------------------------------------------------------
// 8. The broker closes the connections while the worker runs.

async fn a_closed_broker_connection_loses_nothing(mut p: Pipeline) {
    let tickets = p.untriaged(12);
    let (early, late) = tickets.split_at(6);
    p.answers.set_delay(Duration::from_millis(1500));
    p.spawn_worker(apply(true), WorkerSettings { max_in_flight: 3, ..settings(Duration::from_secs(3)) })
        .await;
    let pids = p.bus.connection_pids().await;
    assert_eq!(pids.len(), 2, "the publisher's and the worker's connections");
    p.publish(early).await;
    wait_until("three events are at the LLM", WAIT, || async { p.answers.asked().len() >= 3 }).await;

    close_connections(pids).await;
    eprintln!("closed the connections with {} of 6 done", p.done_count(early).await);
    p.answers.set_delay(Duration::from_millis(50));
    p.publish(late).await; // the publisher reconnects
    let entries = p.wait_done(&tickets, Duration::from_secs(30)).await;
    p.wait_bus_settled().await;
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let after = p.snapshot().await;
    assert_one_note_each(&after, &entries);
    assert_eq!(new_notes(&p.before, &after).len(), tickets.len(), "exactly one note per ticket");
    eprintln!("LLM calls: {} for {} tickets", p.answers.asked().len(), tickets.len());
}

// ---------------------------------------------------------------------------------------------
// 9. Graceful shutdown with events in flight.

async fn graceful_shutdown_finishes_in_flight_work(p: Pipeline) {
    graceful_shutdown(p, Duration::from_secs(3)).await;
}

async fn graceful_shutdown_hands_back_what_misses_the_deadline(p: Pipeline) {
    graceful_shutdown(p, Duration::from_millis(100)).await;
}

async fn graceful_shutdown(mut p: Pipeline, drain: Duration) {
    let tickets = p.untriaged(8);
    let llm_delay = Duration::from_millis(500);
    p.answers.set_delay(llm_delay);
    let lease = Duration::from_secs(2);
    let first_settings = WorkerSettings { max_in_flight: 3, drain_deadline: drain, ..settings(lease) };
    let first = p.spawn_worker(apply(true), first_settings).await;
    p.publish(&tickets).await;
    wait_until("three events are at the LLM", WAIT, || async { p.answers.asked().len() >= 3 }).await;

    let in_flight = p.answers.asked();
    let took = p.stop_worker(first).await;
    eprintln!("run_until_stopped returned {took:?} after the cancel (drain deadline {drain:?})");
    assert!(took < drain + llm_delay + Duration::from_secs(2), "stopping took {took:?}");
    let done = p.done_count(&tickets).await;
    if drain > llm_delay * 2 {
        for t in &in_flight {
            assert_eq!(
                p.entry(t).await.unwrap().step,
                Step::Done,
                "{t}: in-flight work finishes before the deadline"
            );
        }
    } else {
        assert!(done < in_flight.len(), "the in-flight events missed the deadline ({done} done)");
    }
    // Every event is either done or back in the queue: nothing is unacked, nothing lost.
    let wanted = (tickets.len() - done) as u32;
    let started = Instant::now();
    let counts = loop {
        let counts = p.bus.counts().await;
        if counts.ready == wanted || started.elapsed() > Duration::from_secs(3) {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(counts, Counts { ready: wanted, ..Counts::default() }, "{done} of {} done", tickets.len());

    // A fresh worker finishes the rest, posting no note twice.
    p.answers.set_delay(Duration::ZERO);
    let started = Instant::now();
    p.spawn_worker(apply(true), settings(lease)).await;
    let entries = p.wait_done(&tickets, WAIT).await;
    eprintln!("a fresh worker finished the remaining {wanted} in {:?}", started.elapsed());
    p.stop_workers().await;
    p.assert_bus_drained().await;
    let after = p.snapshot().await;
    assert_one_note_each(&after, &entries);
    assert_eq!(new_notes(&p.before, &after).len(), tickets.len());
}

// ---------------------------------------------------------------------------------------------
// Duplicates of one ticket's event (a webhook and the poller both saw the new ticket).

async fn duplicate_events_in_flight_post_one_note(mut p: Pipeline) {
    let tickets = p.untriaged(3);
    p.answers.set_delay(Duration::from_millis(300));
    p.spawn_worker(apply(true), settings(Duration::from_secs(2))).await;
    let mut events = Vec::new();
    for t in &tickets {
        let pair = [created(t), created(t)];
        for event in &pair {
            p.publisher.publish(event).await.unwrap();
        }
        events.extend(pair);
    }
    let entries = p.wait_done(&tickets, WAIT).await;
    // The second copy of each waits (the first one holds the key), then finds it done.
    p.wait_bus_settled().await;
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let after = p.snapshot().await;
    assert_one_note_each(&after, &entries);
    assert_eq!(new_notes(&p.before, &after).len(), tickets.len(), "one note per ticket, not per event");
    let mut asked = p.answers.asked();
    asked.sort();
    assert_eq!(asked, tickets, "one triage per ticket");
    for e in &entries {
        assert!(events.iter().any(|x| x.event_id == e.event_id), "{e:?}");
    }
}

async fn a_shadow_resumed_by_another_event_stores_one_proposal(mut p: Pipeline) {
    let t = p.untriaged(1).remove(0);
    // A crashed attempt for the webhook's event stored the proposal but not Done.
    let webhook = created(&t);
    let stale = "crashed-worker";
    let k = key(&t);
    let d = decision(DEFAULT_CATEGORY);
    p.store.claim(&k, &webhook.event_id, stale, Duration::from_millis(1)).await.unwrap();
    p.store.record_decision(&k, stale, &act::record_of(&d, &Report::default())).await.unwrap();
    let first = p
        .store
        .insert_proposal(&deskpilot::store::NewProposal {
            connection_id: CONN.into(),
            ticket_id: t.clone(),
            event_id: webhook.event_id.clone(),
            decision: serde_json::to_value(&d).unwrap(),
            report: json!({}),
            mode: "shadow".into(),
            why_shadowed: "connection is in shadow mode".into(),
            ticket_subject: None,
            ticket_url: None,
            ticket_before: None,
        })
        .await
        .unwrap();
    // The poller's event for the same ticket comes first.
    p.spawn_worker(shadow(), settings(Duration::from_secs(30))).await;
    let poll = TicketEvent::new(EventKind::TicketCreated, CONN, &t, EventSource::Poll);
    p.publisher.publish(&poll).await.unwrap();
    let entries = p.wait_done(std::slice::from_ref(&t), WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;

    let proposals = p.proposals().await;
    assert_eq!(proposals.len(), 1, "{proposals:#?}");
    assert_eq!((proposals[0].id, proposals[0].event_id.as_str()), (first, webhook.event_id.as_str()));
    let outcome = format!("shadowed as proposal {first}: connection is in shadow mode");
    assert_eq!(entries[0].outcome.as_deref(), Some(outcome.as_str()));
    assert!(p.answers.asked().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The store's disk fills up while events arrive.

/// With the SQLite store's disk full, no event is acked (nothing could be recorded) and none is
/// dead-lettered: each one waits in the retry tiers. Once there is room again every ticket is
/// applied with exactly one note and the bus drains. (The store alone on a full disk is covered
/// by `store_disk_full`.) Needs root to mount the small disk, as that test does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_holds_events_in_the_retry_tiers_until_there_is_room() {
    let Some(disk) = SmallDisk::mount("8m") else { return };
    let mut p = Pipeline::with_store(BusKind::Amqp, TestStoreUrl::sqlite_in(disk.path())).await;
    let tickets = p.untriaged(8);
    let filler = disk.fill(0);
    p.spawn_worker(apply(true), settings(Duration::from_secs(30))).await;
    p.publish(&tickets).await;

    wait_until("the full disk sends events to the retry tiers", WAIT, || async {
        p.bus.counts().await.delayed > 0
    })
    .await;
    // A few more rounds through the tiers on the full disk (the worker gives up after 12).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = p.done_count(&tickets).await;
    assert!(held < tickets.len(), "every event went through despite the full disk");
    assert!(p.bus.dead_letters().await.is_empty(), "a full disk dead-letters nothing");

    tokio::fs::remove_file(&filler).await.expect("make room");
    let entries = p.wait_done(&tickets, WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;
    assert!(p.bus.dead_letters().await.is_empty(), "nothing was dead-lettered");
    let after = p.snapshot().await;
    assert_one_note_each(&after, &entries);
    assert_others_untouched(&p.before, &after, &tickets);
    println!("disk full: {held} of {} tickets done before room was made", tickets.len());
}

// ---------------------------------------------------------------------------------------------
// Regressions of bugs found while writing these tests.

/// Builds a worker for `p` without a consumer, to hand it deliveries one by one.
async fn bare_worker(p: &Pipeline, lease: Duration) -> Arc<Worker> {
    p.app(&apply(true), settings(lease)).await.worker()
}

/// The service's configuration for a pipeline: the embedded defaults with the LLM at `llm` (no
/// retries inside the client: every LLM failure reaches the worker) and the demo connection on
/// `sandbox`.
fn service_config(sandbox: &RunningSandbox, llm: &MockServer) -> Config {
    let quoted = |s: &str| format!("{s:?}");
    let env = [
        ("DESKPILOT__LLM__BASE_URL", quoted(&format!("{}/v1", llm.uri()))),
        ("DESKPILOT__LLM__MODEL", quoted(MODEL)),
        ("DESKPILOT__LLM__MAX_RETRIES", "0".to_owned()),
        ("DESKPILOT__LLM__REQUEST_TIMEOUT_SECS", "5".to_owned()),
        ("DESKPILOT__LLM__TOTAL_TIMEOUT_SECS", "10".to_owned()),
        ("DESKPILOT__LLM__MAX_RETRY_AFTER_SECS", "2".to_owned()),
    ];
    let mut config = Config::load_from(None, env).expect("the test configuration");
    config.connections = vec![demo_connection(&sandbox.base_url, &shadow())];
    config
}

/// The demo connection of the sandbox at `base_url`, acting as `policy` says.
fn demo_connection(base_url: &str, policy: &ActPolicy) -> ConnectionConfig {
    let backend = BackendConfig::Unified(UnifiedConfig {
        base_url: Some(base_url.to_owned()),
        region: None,
        api_key: Some(KEY.into()),
        api_key_env: None,
        category_cache_secs: 300,
    });
    ConnectionConfig {
        mode: policy.mode,
        confidence_threshold: policy.confidence_threshold,
        automated_categories: policy.automated_categories.iter().cloned().collect(),
        automation: policy.category_thresholds.clone(),
        notes_internal_verified: policy.notes_internal_verified,
        routing: policy.routing.clone(),
        priority_values: policy.priority_values.clone(),
        note_user_id: policy.note_user_id.clone(),
        ..ConnectionConfig::new(CONN, backend)
    }
}

/// A worker that is slow (the LLM takes longer than its lease) renews its claim, so a second copy
/// of the event waits instead of taking the ticket over; the slow one finishes, nothing is
/// dead-lettered and there is one note. (Before renewal, the slow worker lost its lease and
/// dead-lettered a finished event; a lost lease is now retried, never dead-lettered.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_worker_keeps_its_claim_and_nothing_is_dead_lettered() {
    let p = Pipeline::new(BusKind::Memory, TestStoreKind::Sqlite).await;
    let TestBus::Memory(bus) = &p.bus else { unreachable!() };
    let t = p.untriaged(1).remove(0);
    let (first, second) = (created(&t), created(&t));
    p.publisher.publish(&first).await.unwrap();
    p.publisher.publish(&second).await.unwrap();
    let mut consumer = bus.consumer();
    let d1 = consumer.next().await.unwrap().unwrap();
    let d2 = consumer.next().await.unwrap().unwrap();

    let slow = bare_worker(&p, Duration::from_millis(300)).await;
    p.answers.set_delay(Duration::from_secs(1));
    let a = tokio::spawn({
        let slow = slow.clone();
        async move { slow.handle(d1, CancellationToken::new()).await }
    });
    wait_until("the slow worker is at the LLM", WAIT, || async { p.answers.asked().len() == 1 }).await;
    p.answers.set_delay(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(400)).await; // longer than its lease: renewed meanwhile
    let b = bare_worker(&p, Duration::from_secs(30)).await.handle(d2, CancellationToken::new()).await;
    assert!(
        matches!(&b, deskpilot::worker::Disposition::Retried(why) if why.contains("being handled")),
        "{b:?}"
    );
    let a = a.await.unwrap();
    assert!(matches!(a, deskpilot::worker::Disposition::Acked(_)), "{a:?}");
    assert_eq!(p.entry(&t).await.unwrap().step, Step::Done);
    assert_eq!(marked_notes(&p.snapshot().await, &t).len(), 1);
    assert_eq!(p.answers.asked().len(), 1, "the second copy never reached the LLM");
    assert!(bus.dead_letters(10).is_empty());
}

/// Events handed back at shutdown must be free for the next worker at once, not after the
/// stopped worker's lease (600 s by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handed_back_events_are_not_held_by_the_stopped_workers_lease() {
    let mut p = Pipeline::new(BusKind::Memory, TestStoreKind::Sqlite).await;
    let tickets = p.untriaged(3);
    p.answers.set_delay(Duration::from_millis(500));
    let lease = Duration::from_secs(30);
    let first = p
        .spawn_worker(
            apply(true),
            WorkerSettings { drain_deadline: Duration::from_millis(100), ..settings(lease) },
        )
        .await;
    p.publish(&tickets).await;
    wait_until("three events are at the LLM", WAIT, || async { p.answers.asked().len() == 3 }).await;
    p.stop_worker(first).await;
    assert_eq!(p.done_count(&tickets).await, 0, "all three were handed back");
    p.answers.set_delay(Duration::ZERO);
    p.spawn_worker(apply(true), settings(lease)).await;
    p.wait_done(&tickets, Duration::from_secs(5)).await;
}
