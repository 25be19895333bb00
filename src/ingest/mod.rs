//! Ingest: what helpdesks say, turned into ticket events on the bus.
//!
//! - [`webhook`]: `POST /webhooks/{connection_id}`, each backend's signature checked on the raw
//!   bytes, answered 2xx only once the broker confirmed every event of the delivery;
//! - [`poll`]: the `updated_gte` poller with its stored, leased cursor (`deskpilot ingest`);
//! - [`backfill`]: the initial sync of a connection's history (`deskpilot backfill`);
//! - [`loop_guard`]: changes caused by deskpilot's own writes are not reported as work.
//!
//! Every event is [`TicketEvent::observed`](crate::events::TicketEvent::observed): its id derives
//! from the connection, the ticket, the kind and the ticket's `updated_at`, so the same change
//! reported twice (a poll overlapping a webhook, a resumed backfill) is dropped by the worker's
//! ledger.
//!
//! [`Ingest`] is what `deskpilot ingest` (and `deskpilot serve`, with the worker) runs: the app
//! builds it ([`crate::App::ingest`]), mounts the receiver on its one router, and runs the
//! long-running tasks (the pollers, [`Ingest::add_task`]) under the same shutdown signal.

pub mod backfill;
pub mod loop_guard;
mod pages;
pub mod poll;
mod walk;
pub mod webhook;

use std::{future::Future, pin::Pin};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use walk::{Tally, WalkError};

use self::webhook::WebhookReceiver;

type Task = Box<dyn FnOnce(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// The ingest side of the service: the webhook receiver and the tasks that run beside it.
pub struct Ingest {
    receiver: WebhookReceiver,
    tasks: Vec<(String, Task)>,
}

impl Ingest {
    /// Ingest with this receiver and no tasks yet.
    pub fn new(receiver: WebhookReceiver) -> Self {
        Self { receiver, tasks: Vec::new() }
    }

    /// The webhook receiver (its [`router`](WebhookReceiver::router) goes on the app's router).
    pub fn receiver(&self) -> &WebhookReceiver {
        &self.receiver
    }

    /// Adds a task that runs until the token it is given is cancelled, e.g. one connection's
    /// poller. `name` appears in logs.
    pub fn add_task<F, Fut>(&mut self, name: impl Into<String>, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push((name.into(), Box::new(move |token| Box::pin(task(token)))));
    }

    /// The names of the tasks, in the order they were added.
    pub fn task_names(&self) -> Vec<&str> {
        self.tasks.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// Runs every task until `shutdown`, then waits for each to finish. A task that ends early or
    /// panics is logged; the others go on.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        let mut running = JoinSet::new();
        for (name, task) in self.tasks {
            let future = task(shutdown.child_token());
            running.spawn(async move {
                future.await;
                name
            });
        }
        while let Some(done) = running.join_next().await {
            match done {
                Ok(name) if !shutdown.is_cancelled() => {
                    tracing::warn!(task = name, "an ingest task ended early")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "an ingest task panicked"),
            }
        }
    }
}
