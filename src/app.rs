//! The one place that wires the service from a [`Config`]: the helpdesk clients, the store, the
//! bus, the triage engine and the act policies are built once here, and every command, the demo,
//! the tests and the benchmarks start the service through [`App`].
//!
//! [`App::serve`] runs the chosen [`Services`] (the worker, ingest, or both) under one shutdown
//! signal, with one HTTP router for every surface on `[server] addr`: `GET /metrics`,
//! `GET /healthz`, `GET /readyz` ([`App::router`]) and, when ingest runs,
//! `POST /webhooks/{connection_id}` ([`App::ingest`]).

pub mod parts;
mod probe;
mod server;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    bus::{Bus, BusHealth, Publisher},
    config::Config,
    ingest::{
        Ingest,
        loop_guard::LoopGuard,
        poll::{PollSettings, Poller, replica_id},
        webhook::{WebhookConnection, WebhookReceiver, WebhookSettings},
    },
    store::Store,
    ticketing::{DynTicketReader, DynTicketing},
    triage::Engine,
    worker::{Connection, Worker, WorkerSettings},
};

/// Which services [`App::serve`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Services {
    /// Consume events, triage and act (`deskpilot worker`).
    pub worker: bool,
    /// Receive webhooks and run the pollers (`deskpilot ingest`).
    pub ingest: bool,
}

impl Services {
    /// The worker alone.
    pub const WORKER: Services = Services { worker: true, ingest: false };
    /// Ingest alone.
    pub const INGEST: Services = Services { worker: false, ingest: true };
    /// Both, in one process (`deskpilot serve`).
    pub const ALL: Services = Services { worker: true, ingest: true };
    /// Neither: only the HTTP surfaces, the review page among them (`deskpilot review`).
    pub const REVIEW: Services = Services { worker: false, ingest: false };
}

/// The wired service.
pub struct App {
    store: Store,
    bus: Bus,
    engine: Arc<Engine>,
    connections: HashMap<String, Connection>,
    webhook_connections: HashMap<String, WebhookConnection>,
    webhook_settings: WebhookSettings,
    /// How each polled connection is polled.
    polls: Vec<(String, PollSettings)>,
    /// The loop guard's tolerance (`[ingest] own_write_tolerance_secs`).
    own_write_tolerance: Duration,
    worker_settings: WorkerSettings,
    /// The LLM budgets, when any is set.
    budgets: Option<Arc<crate::triage::budget::Budgets>>,
    services: Services,
    server_addr: Option<String>,
    /// Whether the worker is taking events (`/readyz`).
    consuming: Arc<AtomicBool>,
    /// Whether ingest is taking webhooks (`/readyz`).
    ingesting: Arc<AtomicBool>,
    /// The worker's consumer once connected (`/readyz`).
    bus_health: Arc<std::sync::Mutex<Option<BusHealth>>>,
    /// Whether the helpdesks answer (`/readyz`).
    probes: Arc<probe::HelpdeskProbes>,
    /// Who may use the review page; `None`: it is not served.
    review_access: Option<crate::review::page::Access>,
    /// The store was opened here (not supplied), so [`App::serve`] closes it at the end.
    owns_store: bool,
}

/// Builds an [`App`] from a config, with parts the config cannot express supplied instead: a bus
/// shared with other apps in the process, a store opened elsewhere, sub-second worker timings.
pub struct AppBuilder<'a> {
    config: &'a Config,
    bus: Option<Bus>,
    store: Option<Store>,
    worker_settings: Option<WorkerSettings>,
    services: Services,
}

impl AppBuilder<'_> {
    /// Use this bus instead of the one `[bus]` describes.
    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Use this store instead of opening `[store] url` (it stays open when the app stops).
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Use these worker settings instead of `[worker]`'s.
    pub fn worker_settings(mut self, settings: WorkerSettings) -> Self {
        self.worker_settings = Some(settings);
        self
    }

    /// Run these services (default: the worker alone).
    pub fn services(mut self, services: Services) -> Self {
        self.services = services;
        self
    }

    /// Builds the helpdesk clients and the engine (checking the prompts and rules), opens the
    /// store (running its migrations) and describes the bus. Nothing connects to the broker yet.
    pub async fn build(self) -> anyhow::Result<App> {
        let config = self.config;
        let engine = Arc::new(parts::engine(config)?);
        let connections = parts::connections(config)?;
        let webhook_connections = parts::webhook_connections(config)?;
        let probes = probe::HelpdeskProbes::new(
            connections.iter().map(|(id, c)| (id.clone(), c.helpdesk.clone())).collect(),
        );
        let review_token = config.review_token().context("the [review] token")?;
        let review_access = (review_token.is_some() || config.review.allow_anonymous_loopback).then(|| {
            let addr = config.server.addr().unwrap_or_default();
            crate::review::page::Access::new(review_token, config.review.allow_anonymous_loopback, addr)
        });
        let owns_store = self.store.is_none();
        let store = match self.store {
            Some(store) => store,
            None => Store::connect(config.store.url.expose()).await.context("could not open the store")?,
        };
        Ok(App {
            budgets: parts::budgets(config, &store),
            store,
            bus: self.bus.unwrap_or_else(|| parts::bus(config)),
            engine,
            connections,
            webhook_connections,
            webhook_settings: parts::webhook_settings(config),
            polls: parts::poll_settings(config),
            own_write_tolerance: config.ingest.own_write_tolerance(),
            worker_settings: self.worker_settings.unwrap_or_else(|| parts::worker_settings(config)),
            services: self.services,
            server_addr: config.server.addr().map(str::to_owned),
            consuming: Arc::new(AtomicBool::new(false)),
            ingesting: Arc::new(AtomicBool::new(false)),
            bus_health: Arc::default(),
            probes: Arc::new(probes),
            review_access,
            owns_store,
        })
    }
}

impl App {
    /// The service as `config` describes it.
    pub async fn build(config: &Config) -> anyhow::Result<App> {
        App::builder(config).build().await
    }

    /// A builder that may replace some parts (see [`AppBuilder`]).
    pub fn builder(config: &Config) -> AppBuilder<'_> {
        AppBuilder { config, bus: None, store: None, worker_settings: None, services: Services::WORKER }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The review of the proposals of every configured connection.
    pub fn reviews(&self) -> crate::review::Reviews {
        crate::review::Reviews::new(self.store.clone(), self.connections.clone())
    }

    /// The bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The triage engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The helpdesk client of a connection.
    pub fn helpdesk(&self, connection: &str) -> Option<&DynTicketing> {
        self.connections.get(connection).map(|c| &c.helpdesk)
    }

    /// A publisher on the bus (on RabbitMQ, a connection of its own, confirmed publishes).
    pub async fn publisher(&self) -> anyhow::Result<Publisher> {
        let (publisher, mut consumer) = self.bus.connect().await.context("could not connect to the bus")?;
        consumer.close().await;
        Ok(publisher)
    }

    /// The worker over every connection.
    pub fn worker(&self) -> Arc<Worker> {
        Arc::new(
            Worker::new(
                self.engine.clone(),
                self.store.clone(),
                self.connections.clone(),
                self.worker_settings.clone(),
            )
            .with_budgets(self.budgets.clone()),
        )
    }

    /// Binds `[server] addr`, or `None` when the server is off.
    pub async fn bind(&self) -> anyhow::Result<Option<TcpListener>> {
        let Some(addr) = &self.server_addr else { return Ok(None) };
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!("server.addr {addr} cannot be bound (in use?); set another, or \"\" for no HTTP server")
        })?;
        Ok(Some(listener))
    }

    /// The services [`App::serve`] runs.
    pub fn services(&self) -> Services {
        self.services
    }

    /// The ingest side: the webhook receiver over every connection, publishing with `publisher`,
    /// and beside it a poller per connection with a poll interval, under this process's
    /// [`replica_id`].
    pub fn ingest(&self, publisher: Publisher) -> Ingest {
        let receiver = WebhookReceiver::new(
            self.webhook_connections.clone(),
            publisher.clone(),
            self.webhook_settings.clone(),
        )
        .with_loop_guard(LoopGuard::new(self.store.clone()).with_tolerance(self.own_write_tolerance));
        let mut ingest = Ingest::new(receiver);
        let replica = replica_id();
        for (id, settings) in &self.polls {
            let Some(helpdesk) = self.connections.get(id) else { continue };
            let reader: DynTicketReader = helpdesk.helpdesk.clone();
            let poller =
                Poller::new(id, reader, self.store.clone(), publisher.clone(), settings.clone(), &replica);
            ingest.add_task(format!("poll {id}"), move |stop| poller.run(stop));
        }
        ingest
    }

    /// Runs the chosen services (and the HTTP router on `listener`, if any) until `shutdown`,
    /// then drains the worker, lets open webhook requests finish, stops the server and closes
    /// what it opened.
    pub async fn serve(
        self,
        listener: Option<TcpListener>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        // The review page alone needs no bus.
        let (publisher, mut consumer) = if self.services.worker || self.services.ingest {
            let (p, c) = self.bus.connect().await.context("could not connect to the bus")?;
            (Some(p), Some(c))
        } else {
            (None, None)
        };
        if self.services.worker
            && let Some(consumer) = &consumer
        {
            *self.bus_health.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(consumer.health());
        }
        let ingest = match (&publisher, self.services.ingest) {
            (Some(publisher), true) => Some(self.ingest(publisher.clone())),
            _ => None,
        };
        let mut router = self.router();
        if let Some(ingest) = &ingest {
            router = router.merge(ingest.receiver().router());
        }
        let http_stop = CancellationToken::new();
        let http = match listener {
            Some(listener) => Some(server::spawn(listener, router, http_stop.clone())?),
            None => None,
        };
        tracing::info!(
            worker = self.services.worker,
            ingest = self.services.ingest,
            connections = %self.connection_ids(),
            store = self.store.backend(),
            bus = %self.bus.describe(),
            model = ?self.engine.model(),
            "ready"
        );
        let ingesting = ingest.map(|ingest| {
            tracing::info!(
                webhooks = ?ingest.receiver().connections(),
                tasks = ?ingest.task_names(),
                "ingest running"
            );
            self.ingesting.store(true, Ordering::Release);
            tokio::spawn(ingest.run_until_stopped(shutdown.child_token()))
        });
        match consumer.take() {
            Some(consumer) if self.services.worker => {
                // What people set on the tickets later: recorded beside the triage.
                let outcomes =
                    self.bus.connect_outcomes().await.context("could not connect to the outcomes queue")?;
                let observing = tokio::spawn(crate::worker::run_outcomes(
                    outcomes,
                    self.store.clone(),
                    Arc::new(self.connections.clone()),
                    shutdown.child_token(),
                ));
                let worker = self.worker();
                self.consuming.store(true, Ordering::Release);
                worker.run_until_stopped(consumer, shutdown).await;
                self.consuming.store(false, Ordering::Release);
                let _ = observing.await;
            }
            Some(mut consumer) => {
                consumer.close().await;
                shutdown.cancelled().await;
            }
            None => shutdown.cancelled().await,
        }
        if let Some(task) = ingesting {
            let _ = task.await;
        }
        self.ingesting.store(false, Ordering::Release);
        // Metrics and health stay up while the worker drains; webhook requests in flight finish
        // (and get their confirms) before the publisher closes.
        http_stop.cancel();
        if let Some(task) = http {
            let _ = task.await;
        }
        if let Some(publisher) = publisher {
            publisher.close().await;
        }
        if self.owns_store {
            self.store.close().await;
        }
        Ok(())
    }

    /// The HTTP surfaces every process has: `/metrics`, `/healthz`, `/readyz` (ready when the
    /// chosen services run).
    pub fn router(&self) -> axum::Router {
        let readiness = server::Readiness {
            consuming: self.services.worker.then(|| self.consuming.clone()),
            ingesting: self.services.ingest.then(|| self.ingesting.clone()),
            bus: self.bus_health.clone(),
            // Not where webhooks come in: a load balancer would route every helpdesk's webhooks
            // away from a replica because one helpdesk is down, though receiving needs none.
            helpdesks: (!self.services.ingest).then(|| self.probes.clone()),
        };
        let router = server::router(self.store.clone(), readiness);
        match &self.review_access {
            Some(access) => router.merge(crate::review::page::router(self.reviews(), access.clone())),
            None => router,
        }
    }

    fn connection_ids(&self) -> String {
        let mut ids: Vec<&str> = self.connections.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids.join(", ")
    }
}

/// Runs `services` as `config` describes them until `shutdown`, with the HTTP server on
/// `[server] addr`.
pub async fn run(config: &Config, services: Services, shutdown: CancellationToken) -> anyhow::Result<()> {
    let app = App::builder(config).services(services).build().await?;
    let listener = app.bind().await?;
    app.serve(listener, shutdown).await
}
