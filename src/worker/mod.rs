//! The consume → gather → decide → act → ack loop.
//!
//! Per delivery: ledger claim → (resume at the ledger's step) triage → act (which records the
//! decision and finishes the key: one commit when shadowing) → ack. Nothing is acked before its effects are durable. Transient failures (429,
//! 5xx, timeouts, store busy, a key held by another replica) go to the next delay tier; permanent
//! ones (bad payload, unknown connection, ticket 404, invalid decision after repair) go to dead
//! letters with the reason. Before a ticket is decided its LLM budgets are checked: once one is
//! spent the ticket follows `on_budget_exhausted` (the rules, the fallback model, or back to the
//! broker until the reset without using a try). Concurrency is bounded by `max_in_flight` (also
//! the broker prefetch) and, when the LLM's calls go through a limiter, by its current limit.
//! On shutdown the loop stops taking deliveries, lets in-flight work finish until a deadline, then
//! hands whatever is left back to the broker: work still deciding at once (its claim released),
//! work that has begun writing to the helpdesk at its next write (its claim left to expire), so a
//! request in flight never races another worker's (see [`act::Fence`]).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    sync::{Notify, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod observer;
mod outcome;

pub use observer::run_outcomes;
pub use outcome::Disposition;
use outcome::{Failure, recorded_decision};

use crate::{
    act::{self, ActContext, ActPolicy, Fence, Outcome, Stop},
    bus::{Consumer, Delivery},
    events::{EventKind, TicketEvent},
    http::error_chain,
    store::{ClaimOutcome, DecisionRecord, Entry, LedgerKey, Step, Store},
    ticketing::{DynTicketing, Ticket, TicketingError},
    triage::{
        Engine, Policy, Report, Route, Triage, TriageError,
        budget::{Budgets, OnBudgetExhausted},
        decision::no_longer_fits,
    },
};

/// One helpdesk connection as the worker sees it.
#[derive(Clone)]
pub struct Connection {
    /// Its client.
    pub helpdesk: DynTicketing,
    /// What triage may propose.
    pub triage: Policy,
    /// How decisions are acted on.
    pub act: ActPolicy,
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This replica's id (ledger lease holder).
    pub worker_id: String,
    /// Events handled at once.
    pub max_in_flight: usize,
    /// How long a claim is held before another replica may take over a crashed attempt.
    pub lease: Duration,
    /// How long shutdown waits for in-flight work before handing it back.
    pub drain_deadline: Duration,
    /// Tries of one event before a transient failure is given up and dead-lettered.
    pub max_attempts: u32,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            max_in_flight: 32,
            lease: Duration::from_secs(600),
            drain_deadline: Duration::from_secs(30),
            max_attempts: 12,
        }
    }
}

/// The worker: shared state of every in-flight event.
pub struct Worker {
    engine: Arc<Engine>,
    store: Store,
    connections: HashMap<String, Connection>,
    settings: WorkerSettings,
    /// The LLM budgets, when any is set.
    budgets: Option<Arc<Budgets>>,
    /// Deliveries taken so far (numbers each delivery's lease holder id).
    deliveries: AtomicU64,
}

impl Worker {
    /// A worker over these connections.
    pub fn new(
        engine: Arc<Engine>,
        store: Store,
        connections: HashMap<String, Connection>,
        settings: WorkerSettings,
    ) -> Self {
        Self { engine, store, connections, settings, budgets: None, deliveries: AtomicU64::new(0) }
    }

    /// This worker, checking `budgets` before each decision and following their policy once one
    /// is spent.
    pub fn with_budgets(mut self, budgets: Option<Arc<Budgets>>) -> Self {
        self.budgets = budgets;
        self
    }

    /// Consumes until `shutdown` is cancelled (or the consumer ends), then drains.
    pub async fn run_until_stopped(self: Arc<Self>, mut consumer: Consumer, shutdown: CancellationToken) {
        let max_in_flight = self.settings.max_in_flight.max(1);
        let permits = Arc::new(Semaphore::new(max_in_flight));
        let mut tasks = JoinSet::new();
        let hand_back = CancellationToken::new();
        // Events wait in the broker, not here, while the LLM's limiter holds calls back: the next
        // delivery is taken only while the events in hand are within its current limit.
        let limiter = self.engine.limiter();
        let finished = Arc::new(Notify::new());
        tracing::info!(worker = %self.settings.worker_id, max_in_flight = self.settings.max_in_flight, "worker started");
        'consume: loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            if let Some(limiter) = &limiter {
                while !limiter.admits(max_in_flight - permits.available_permits()) {
                    tokio::select! {
                        _ = shutdown.cancelled() => break 'consume,
                        () = finished.notified() => {}
                        () = limiter.changed() => {}
                    }
                }
            }
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = consumer.next() => d,
            };
            let delivery = match delivery {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error; continuing");
                    continue;
                }
                None => {
                    tracing::info!("consumer ended");
                    break;
                }
            };
            let worker = self.clone();
            let hand_back = hand_back.clone();
            let finished = finished.clone();
            tasks.spawn(async move {
                let disposition = worker.handle(delivery, hand_back).await;
                // The slot is free before the loop is told, so it counts it free.
                drop(permit);
                finished.notify_one();
                disposition
            });
            // Reap finished tasks so the set does not grow with the number of events handled.
            while let Some(done) = tasks.try_join_next() {
                report_panic(done);
            }
        }
        consumer.close().await;
        while let Some(done) = tasks.try_join_next() {
            report_panic(done);
        }
        tracing::info!(in_flight = tasks.len(), "worker stopping; finishing in-flight events");
        let drained = tokio::time::timeout(self.settings.drain_deadline, async {
            while let Some(done) = tasks.join_next().await {
                report_panic(done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(left = tasks.len(), "drain deadline passed; handing the rest back to the broker");
            hand_back.cancel();
            while let Some(done) = tasks.join_next().await {
                report_panic(done);
            }
        }
        tracing::info!("worker stopped");
    }

    /// Handles one delivery to its end (ack, retry, dead letter or requeue on hand-back).
    pub async fn handle(&self, delivery: Delivery, hand_back: CancellationToken) -> Disposition {
        // Fields given at creation, not recorded later: a JSON log layer formats a span's fields
        // again on every `record`.
        let parsed = delivery.event.as_ref().ok();
        let span = tracing::info_span!(
            "event",
            event_id = parsed.map(|e| e.event_id.as_str()),
            connection = parsed.map(|e| e.connection_id.as_str()),
            ticket = parsed.map(|e| e.ticket_id.as_str()),
            attempt = delivery.attempt,
            redelivered = delivery.redelivered,
        );
        let started = Instant::now();
        let disposition = async {
            let event = match &delivery.event {
                Ok(e) => e.clone(),
                Err(e) => {
                    let reason = format!("bad payload: {e}");
                    return self.dead_letter(delivery, reason).await;
                }
            };
            // One holder id per delivery: two copies of an event in this process must not both hold
            // the key (the store grants a claim again to the same holder).
            let holder = format!("{}/{}", self.settings.worker_id, self.deliveries.fetch_add(1, Ordering::Relaxed));
            let fence = Fence::default();
            let work = self.process(&event, &holder, &fence);
            // Past the drain deadline an attempt still deciding is dropped at once; one that has
            // begun writing to the helpdesk is stopped at its next write instead (see `Fence`).
            let handed_back = async {
                hand_back.cancelled().await;
                fence.stop(Stop::Shutdown);
                if fence.started_writing() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                result = work => match result {
                    // Stopped between two helpdesk writes: the claim is left to expire, so no
                    // other worker resumes the ticket while a write of this one may be landing.
                    Err(f) if f.stopped == Some(Stop::Shutdown) => self.requeue(delivery).await,
                    Ok(what) => match delivery.ack().await {
                        Ok(()) => Disposition::Acked(what),
                        // The effects are durable; the broker redelivers and the ledger says Done.
                        Err(e) => { tracing::warn!(error = %e, "ack failed after the effects were recorded"); Disposition::Acked(what) }
                    },
                    Err(f) if f.held => self.hold(delivery, f).await,
                    Err(f) if f.retryable && delivery.attempt < self.settings.max_attempts => {
                        self.retry(delivery, &event, f).await
                    }
                    Err(f) if f.retryable => {
                        let reason = format!("gave up after {} attempts: {}", delivery.attempt, f.reason);
                        self.dead_letter(delivery, reason).await
                    }
                    Err(f) => self.dead_letter(delivery, f.reason).await,
                },
                _ = handed_back => {
                    // Nothing was written: let the next worker claim it at once instead of
                    // waiting out this lease.
                    if let Err(e) = self.store.release(&LedgerKey::from(&event), &holder).await {
                        tracing::debug!(error = %e, "could not release the claim of a handed-back event");
                    }
                    self.requeue(delivery).await
                }
            }
        }
        .instrument(span.clone())
        .await;
        let _enter = span.enter();
        let outcome = disposition.label();
        metrics::counter!("deskpilot_events_total", "outcome" => outcome).increment(1);
        metrics::histogram!("deskpilot_event_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        match &disposition {
            Disposition::Acked(what) => {
                tracing::info!(outcome, detail = %what, elapsed_ms = started.elapsed().as_millis() as u64, "event done")
            }
            Disposition::Retried(why) | Disposition::DeadLettered(why) => {
                tracing::warn!(outcome, reason = %why, "event not done")
            }
            Disposition::Requeued => tracing::info!(outcome, "event handed back"),
            Disposition::Held(why) => tracing::debug!(outcome, reason = %why, "event waits for the budget"),
        }
        disposition
    }

    /// The work of one event, resumable from the ledger. `Ok` = durable and ready to ack.
    async fn process(&self, event: &TicketEvent, holder: &str, fence: &Fence) -> Result<String, Failure> {
        if event.kind != EventKind::TicketCreated {
            return Ok(format!("ignored: deskpilot triages ticket.created, not {}", event.kind));
        }
        let Some(conn) = self.connections.get(&event.connection_id) else {
            return Err(Failure::permanent(format!(
                "unknown connection `{}` (configured: {})",
                event.connection_id,
                self.connection_ids()
            )));
        };
        // A ticket held for a spent budget goes back before it touches the store: it may come
        // round many times before the budget resets. (Checked again before deciding.)
        self.route(&event.connection_id).await?;
        let key = LedgerKey::from(event);
        let mut claim = self.store.claim(&key, &event.event_id, holder, self.settings.lease).await?;
        if let ClaimOutcome::Done(entry) = &claim
            && entry.failed
        {
            // Failed for good earlier and dead-lettered; seeing it again means an operator replayed
            // it (or a duplicate arrived), so it gets one more full attempt.
            tracing::info!(last_error = ?entry.last_error, "reopening a ticket that failed before");
            self.store.reopen(&key).await?;
            claim = self.store.claim(&key, &event.event_id, holder, self.settings.lease).await?;
        }
        let entry = match claim {
            ClaimOutcome::Done(entry) => {
                return Ok(format!("already done: {}", entry.outcome.unwrap_or_default()));
            }
            ClaimOutcome::Busy { holder, until } => {
                let wait = (until - time::OffsetDateTime::now_utc()).try_into().ok();
                return Err(Failure {
                    reason: format!("ticket is being handled by {holder}"),
                    retryable: true,
                    retry_after: wait,
                    stopped: None,
                    held: false,
                });
            }
            ClaimOutcome::Claimed(entry) => entry,
        };
        let result = {
            // Keep the claim alive through slow steps (an LLM past its retries, a rate-limited
            // helpdesk) so no other replica takes the ticket over while this one still works on it.
            let work = self.resume(conn, event, &key, holder, entry, fence);
            tokio::pin!(work);
            let period = (self.settings.lease / 3).max(Duration::from_millis(100));
            let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            let mut held = true;
            loop {
                tokio::select! {
                    result = &mut work => break result,
                    _ = renew.tick(), if held => {
                        match self.store.renew(&key, holder, self.settings.lease).await {
                            Ok(_) => {}
                            Err(e @ crate::store::StoreError::LeaseLost { .. }) => {
                                // Another worker took the ticket over: this one must not write
                                // to the helpdesk again.
                                tracing::warn!(error = %e, "lost the claim; stopping before the next helpdesk write");
                                fence.stop(Stop::LeaseLost);
                                held = false;
                            }
                            Err(e) => tracing::warn!(error = %e, "could not renew the claim"),
                        }
                    }
                }
            }
        };
        match &result {
            // Nothing was tried: the next delivery claims it at once, with no failure on record.
            Err(f) if f.held => {
                if let Err(e) = self.store.release(&key, holder).await {
                    tracing::debug!(error = %e, "could not release the claim of a held event");
                }
            }
            Err(f) if f.stopped.is_none() => {
                if let Err(e) = self.store.record_failure(&key, holder, &f.reason, !f.retryable).await {
                    tracing::warn!(error = %e, "could not record the failure in the ledger");
                }
            }
            _ => {}
        }
        result
    }

    async fn resume(
        &self,
        conn: &Connection,
        event: &TicketEvent,
        key: &LedgerKey,
        worker: &str,
        entry: Entry,
        fence: &Fence,
    ) -> Result<String, Failure> {
        let mut step = entry.step;
        let mut read = None;
        let recorded = match entry.decision {
            Some(record) if step >= Step::Decided => Some((recorded_decision(&record)?, record)),
            _ => None,
        };
        // A retry or a replay hours later: a decision nothing was written for yet is checked
        // against today's categories and tag policy, and decided again if it no longer fits.
        // (Today's mode is applied by `act` either way.)
        let recorded = match recorded {
            Some((decision, record)) if step == Step::Decided => {
                let categories = conn.helpdesk.list_categories().await.map_err(|e| Failure {
                    retryable: e.is_retryable(),
                    retry_after: e.retry_after(),
                    reason: format!("re-checking the recorded decision: {}", error_chain(&e)),
                    stopped: None,
                    held: false,
                })?;
                match no_longer_fits(&decision, &categories, &conn.triage.tags) {
                    Some(why) => {
                        tracing::info!(%why, "the recorded decision no longer fits; deciding again");
                        // Recorded anew: the ledger's `decided` step takes a new decision.
                        step = Step::Claimed;
                        None
                    }
                    None => Some((decision, record)),
                }
            }
            other => other,
        };
        let (decision, record) = match recorded {
            Some(recorded) => recorded,
            None => {
                let route = self.route(&event.connection_id).await?;
                let started = Instant::now();
                let (triage, ticket) = match self.decide(conn, event, &route).await {
                    Err(TriageError::Helpdesk(TicketingError::NotFound { resource })) => {
                        return Err(Failure::permanent(format!("{resource} not found in the helpdesk")));
                    }
                    other => other?,
                };
                metrics::histogram!("deskpilot_stage_seconds", "stage" => "decide")
                    .record(started.elapsed().as_secs_f64());
                record_usage(&event.connection_id, &triage.report);
                if let (Some(budgets), Some(cost)) = (&self.budgets, triage.report.cost_usd) {
                    budgets.record(&event.connection_id, cost).await;
                }
                // Recorded by `act`: with the key's last commit when nothing is written to the
                // helpdesk, before the first helpdesk write otherwise.
                let record = DecisionRecord {
                    ticket_before: serde_json::to_value(act::TriageFields::of(&ticket)).ok(),
                    ..act::record_of(&triage.decision, &triage.report)
                };
                read = Some(ticket);
                (triage.decision, record)
            }
        };
        let started = Instant::now();
        let ctx = ActContext { key, event_id: &entry.event_id, worker, step, ticket: read.as_ref(), fence };
        let outcome =
            act::act(&self.store, conn.helpdesk.as_ref(), &conn.act, ctx, &decision, &record).await?;
        metrics::histogram!("deskpilot_stage_seconds", "stage" => "act")
            .record(started.elapsed().as_secs_f64());
        let label = match &outcome {
            Outcome::Applied { .. } => "applied",
            Outcome::Shadowed { .. } => "shadowed",
        };
        metrics::counter!("deskpilot_decisions_total", "connection" => event.connection_id.clone(), "result" => label).increment(1);
        Ok(outcome.describe())
    }

    /// Reads the ticket and decides, keeping the ticket as read so acting need not read it again
    /// just to describe a proposal.
    async fn decide(
        &self,
        conn: &Connection,
        event: &TicketEvent,
        route: &Route,
    ) -> Result<(Triage, Ticket), TriageError> {
        let gathered = Arc::new(self.engine.gather(conn.helpdesk.as_ref(), &event.ticket_id).await?);
        let triage = self.engine.decide_shared(gathered.clone(), &conn.triage, route).await?;
        Ok((triage, gathered.ticket.clone()))
    }

    /// How this connection's next ticket is decided: by the configured models while its budgets
    /// last, then as `on_budget_exhausted` says; a hold is a [`Failure::held`].
    async fn route(&self, connection: &str) -> Result<Route, Failure> {
        let Some(budgets) = &self.budgets else { return Ok(Route::Configured) };
        let Some(spent) = budgets.check(connection).await else { return Ok(Route::Configured) };
        Ok(match budgets.on_exhausted() {
            OnBudgetExhausted::DecideWithRules => {
                Route::Rules(format!("{spent}; the rules decide meanwhile"))
            }
            OnBudgetExhausted::SwitchToFallbackModel => Route::Fallback,
            OnBudgetExhausted::HoldUntilReset => {
                let wait = spent.resets_in(time::OffsetDateTime::now_utc());
                return Err(Failure::held(format!("{spent}; held until then"), wait));
            }
        })
    }

    async fn hold(&self, delivery: Delivery, f: Failure) -> Disposition {
        let delay = f.retry_after.unwrap_or_default();
        match delivery.postpone(&f.reason, delay).await {
            Ok(()) => Disposition::Held(f.reason),
            Err(e) => {
                tracing::error!(error = %e, "could not return a held event to the broker");
                Disposition::Held(format!("{} (delay tier failed: {e})", f.reason))
            }
        }
    }

    async fn retry(&self, delivery: Delivery, event: &TicketEvent, f: Failure) -> Disposition {
        tracing::info!(ticket = %event.ticket_id, attempt = delivery.attempt, reason = %f.reason, "retrying later");
        match delivery.retry(&f.reason, f.retry_after).await {
            Ok(()) => Disposition::Retried(f.reason),
            Err(e) => {
                // The bus gave the original back to the queue (or the broker will, with its
                // channel), so nothing is lost; it comes back without the delay.
                tracing::error!(error = %e, "could not move the event to a delay tier");
                Disposition::Retried(format!("{} (delay tier failed: {e})", f.reason))
            }
        }
    }

    async fn requeue(&self, delivery: Delivery) -> Disposition {
        if let Err(e) = delivery.requeue().await {
            tracing::warn!(error = %e, "requeue failed; the broker redelivers when the channel closes");
        }
        Disposition::Requeued
    }

    async fn dead_letter(&self, delivery: Delivery, reason: String) -> Disposition {
        match delivery.dead_letter(&reason).await {
            Ok(()) => Disposition::DeadLettered(reason),
            Err(e) => {
                tracing::error!(error = %e, "could not dead-letter the event");
                Disposition::DeadLettered(format!("{reason} (dead-letter publish failed: {e})"))
            }
        }
    }

    fn connection_ids(&self) -> String {
        let mut ids: Vec<_> = self.connections.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids.join(", ")
    }
}

fn record_usage(connection: &str, r: &Report) {
    metrics::counter!("deskpilot_llm_prompt_tokens_total").increment(u64::from(r.usage.prompt_tokens));
    metrics::counter!("deskpilot_llm_completion_tokens_total")
        .increment(u64::from(r.usage.completion_tokens));
    for m in &r.models {
        if let Some(cost) = m.cost_usd {
            let labels = [("connection", connection.to_owned()), ("model", m.model.clone())];
            metrics::counter!("deskpilot_llm_cost_microdollars_total", &labels)
                .increment((cost * 1e6).round() as u64);
        }
    }

    metrics::histogram!("deskpilot_llm_seconds").record(r.llm_latency_ms as f64 / 1000.0);
}

fn report_panic(done: Result<Disposition, tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        // The delivery was dropped unacked, so the broker redelivers it; the ledger resumes it.
        tracing::error!(error = %e, "an event task panicked");
    }
}
