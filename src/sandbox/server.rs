//! Starting and stopping the sandbox, and the state its handlers share.

use std::{fmt, path::PathBuf, sync::Arc};

use anyhow::{Context, bail};
use tokio::{net::TcpListener, sync::RwLock, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{
    data::{self, Connections, Helpdesk},
    error::ApiError,
    query::Fields,
    resource::TicketChange,
    routes,
    subscription::Subscriptions,
    webhook::Webhooks,
};

/// How to run the sandbox.
#[derive(Clone, Default)]
pub struct SandboxOptions {
    /// A directory of `<connection_id>.json` data files; `None` serves the bundled sample data.
    pub data_dir: Option<PathBuf>,
    /// The bearer token every `/ticketing/...` request must carry. Must not be empty.
    pub api_key: String,
    /// Where to POST ticket events, Unified.to-style; `None` disables webhooks.
    pub webhook_url: Option<String>,
    /// The secret that signs deliveries (`sig`); without one `sig` is `""`.
    pub webhook_secret: Option<String>,
    /// A JSON file holding the whole state: loaded at start when it exists (instead of the data),
    /// rewritten after every change.
    pub state: Option<PathBuf>,
}

impl fmt::Debug for SandboxOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxOptions")
            .field("data_dir", &self.data_dir)
            .field("api_key", &"<redacted>")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "<redacted>"))
            .field("state", &self.state)
            .finish()
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    /// Every connection's helpdesk. Writers hold the lock through the state-file save, so saves
    /// happen in the order of the changes.
    pub(crate) desks: RwLock<Connections>,
    /// Webhook subscriptions (`/unified/webhook`).
    pub(crate) subscriptions: std::sync::Mutex<Subscriptions>,
    api_key: String,
    state_path: Option<PathBuf>,
    webhooks: Webhooks,
}

impl AppState {
    /// Whether `token` is the API key (compared in constant time).
    pub(crate) fn accepts(&self, token: &str) -> bool {
        let (a, b) = (token.as_bytes(), self.api_key.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Saves the state file, if there is one. On failure the change stays in memory and the
    /// client gets a 500 saying so.
    pub(crate) async fn save(&self, desks: &Connections) -> Result<(), ApiError> {
        let Some(path) = &self.state_path else { return Ok(()) };
        data::save(path, desks).await.map_err(|e| {
            tracing::error!(error = format!("{e:#}"), "could not save the sandbox state");
            ApiError::internal(format!("the change was made but the state file could not be written: {e:#}"))
        })
    }

    /// Queues the initial sync of a new subscription (`include_all=true`) to `hook_url`.
    pub(crate) fn announce_existing(
        &self,
        hook_url: &str,
        subscription: &serde_json::Value,
        objects: Vec<serde_json::Value>,
    ) {
        self.webhooks.initial(hook_url, subscription, objects);
    }

    /// Queues the webhook deliveries of a ticket change: to `--webhook-url` and to every
    /// matching subscription.
    pub(crate) fn announce(&self, connection: &str, change: Option<TicketChange>) {
        let Some(change) = change else { return };
        let subscribed = self
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ticket_hooks(connection, change.event.as_str());
        match Fields::default().render(&change.ticket) {
            Ok(ticket) => self.webhooks.ticket_event(connection, change.event, &ticket, subscribed),
            Err(e) => tracing::error!(error = ?e, "could not render a ticket for a webhook"),
        }
    }
}

/// A loaded sandbox, ready to serve.
struct Prepared {
    state: Arc<AppState>,
    webhook_task: JoinHandle<()>,
    webhook_shutdown: CancellationToken,
}

fn prepare(opts: SandboxOptions, shutdown: &CancellationToken) -> anyhow::Result<Prepared> {
    if opts.api_key.is_empty() {
        bail!("the sandbox needs a non-empty api key");
    }
    let desks = data::load(opts.data_dir.as_deref(), opts.state.as_deref())?;
    let webhook_shutdown = shutdown.child_token();
    let started = time::OffsetDateTime::now_utc();
    let (webhooks, webhook_task) =
        Webhooks::start(opts.webhook_url, opts.webhook_secret, started, webhook_shutdown.clone())
            .context("starting the sandbox webhook sender")?;
    let state = AppState {
        desks: RwLock::new(desks),
        subscriptions: Default::default(),
        api_key: opts.api_key,
        state_path: opts.state,
        webhooks,
    };
    Ok(Prepared { state: Arc::new(state), webhook_task, webhook_shutdown })
}

async fn run(listener: TcpListener, prepared: Prepared, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Prepared { state, webhook_task, webhook_shutdown } = prepared;
    let addr = listener.local_addr()?;
    let connections: Vec<String> = state.desks.read().await.keys().cloned().collect();
    tracing::info!(%addr, ?connections, "sandbox helpdesk listening");
    let served = axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("sandbox server failed");
    webhook_shutdown.cancel();
    if let Err(e) = webhook_task.await {
        tracing::error!(error = %e, "sandbox webhook task panicked");
    }
    served
}

/// Serves the sandbox on `listener` until `shutdown` fires.
///
/// Fails at once if the data (or state file) cannot be read or parsed; the error names the file
/// and carries serde's message.
pub async fn serve(
    listener: TcpListener,
    opts: SandboxOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let prepared = prepare(opts, &shutdown)?;
    run(listener, prepared, shutdown).await
}

/// Starts the sandbox on `127.0.0.1` and a free port, in the background (for tests).
pub async fn spawn(opts: SandboxOptions) -> anyhow::Result<RunningSandbox> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the sandbox to 127.0.0.1:0")?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let prepared = prepare(opts, &shutdown)?;
    let state = prepared.state.clone();
    let task = tokio::spawn(run(listener, prepared, shutdown.clone()));
    Ok(RunningSandbox { base_url, shutdown, task: Some(task), state })
}

/// A sandbox running in the background; dropping it stops it.
pub struct RunningSandbox {
    /// Where it listens, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub base_url: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    state: Arc<AppState>,
}

impl RunningSandbox {
    /// A copy of one connection's helpdesk as it is now, or `None` for an unknown connection.
    pub async fn snapshot(&self, connection: &str) -> Option<Helpdesk> {
        self.state.desks.read().await.get(connection).cloned()
    }

    /// The connection ids served.
    pub async fn connections(&self) -> Vec<String> {
        self.state.desks.read().await.keys().cloned().collect()
    }

    /// Stops the server and waits until it has finished (open requests and the webhook task).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.context("the sandbox task panicked")?,
            None => Ok(()),
        }
    }
}

impl fmt::Debug for RunningSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningSandbox").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
