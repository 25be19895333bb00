//! The one place that wires the service from a [`Config`]: the helpdesk clients, the store, the
//! bus, the triage engine and the act policies are built once here, and every command, the demo,
//! the tests and the benchmarks start the service through [`App`].
//!
//! [`App::serve`] runs the chosen services under one shutdown signal, with one HTTP router for
//! every surface ([`App::router`]: `GET /metrics`, `GET /healthz`, `GET /readyz`) on `[server] addr`.

pub mod parts;
mod server;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    bus::{Bus, Publisher},
    config::Config,
    store::Store,
    ticketing::DynTicketing,
    triage::Engine,
    worker::{Connection, Worker, WorkerSettings},
};

/// The wired service.
pub struct App {
    store: Store,
    bus: Bus,
    engine: Arc<Engine>,
    connections: HashMap<String, Connection>,
    worker_settings: WorkerSettings,
    server_addr: Option<String>,
    /// Whether the worker is taking events (`/readyz`).
    consuming: Arc<AtomicBool>,
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

    /// Builds the helpdesk clients and the engine (checking the prompts and rules), opens the
    /// store (running its migrations) and describes the bus. Nothing connects to the broker yet.
    pub async fn build(self) -> anyhow::Result<App> {
        let config = self.config;
        let engine = Arc::new(parts::engine(config)?);
        let connections = parts::connections(config)?;
        let owns_store = self.store.is_none();
        let store = match self.store {
            Some(store) => store,
            None => Store::connect(config.store.url.expose()).await.context("could not open the store")?,
        };
        Ok(App {
            store,
            bus: self.bus.unwrap_or_else(|| parts::bus(config)),
            engine,
            connections,
            worker_settings: self.worker_settings.unwrap_or_else(|| parts::worker_settings(config)),
            server_addr: config.server.addr().map(str::to_owned),
            consuming: Arc::new(AtomicBool::new(false)),
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
        AppBuilder { config, bus: None, store: None, worker_settings: None }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
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
        Arc::new(Worker::new(
            self.engine.clone(),
            self.store.clone(),
            self.connections.clone(),
            self.worker_settings.clone(),
        ))
    }

    /// Binds `[server] addr`, or `None` when the server is off.
    pub async fn bind(&self) -> anyhow::Result<Option<TcpListener>> {
        let Some(addr) = &self.server_addr else { return Ok(None) };
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!("server.addr {addr} cannot be bound (in use?); set another, or \"\" for no HTTP server")
        })?;
        Ok(Some(listener))
    }

    /// Runs the worker (and the HTTP router on `listener`, if any) until `shutdown`, then drains
    /// the worker, stops the server and closes the store it opened.
    pub async fn serve(
        self,
        listener: Option<TcpListener>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let (_publisher, consumer) = self.bus.connect().await.context("could not connect to the bus")?;
        let http_stop = CancellationToken::new();
        let http = match listener {
            Some(listener) => Some(server::spawn(listener, self.router(), http_stop.clone())?),
            None => None,
        };
        tracing::info!(
            connections = %self.connection_ids(),
            store = self.store.backend(),
            bus = %self.bus.describe(),
            model = ?self.engine.model(),
            "worker ready"
        );
        let worker = self.worker();
        self.consuming.store(true, Ordering::Release);
        worker.run_until_stopped(consumer, shutdown).await;
        self.consuming.store(false, Ordering::Release);
        // Metrics and health stay up while the worker drains, then go.
        http_stop.cancel();
        if let Some(task) = http {
            let _ = task.await;
        }
        if self.owns_store {
            self.store.close().await;
        }
        Ok(())
    }

    /// Every HTTP surface of the service: `/metrics`, `/healthz`, `/readyz`.
    pub fn router(&self) -> axum::Router {
        server::router(self.store.clone(), self.consuming.clone())
    }

    fn connection_ids(&self) -> String {
        let mut ids: Vec<&str> = self.connections.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids.join(", ")
    }
}

/// Runs the service `config` describes until `shutdown`: the worker, and the HTTP server on
/// `[server] addr`.
pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    let listener = app.bind().await?;
    app.serve(listener, shutdown).await
}
