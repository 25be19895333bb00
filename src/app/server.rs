//! The service's HTTP router and its server task.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::probe::HelpdeskProbes;
use crate::{bus::BusHealth, store::Store};

/// How long `/readyz` waits for the store to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What must be running for the process to be ready: each flag that is present must be set.
#[derive(Clone, Default)]
pub(super) struct Readiness {
    /// The worker takes events.
    pub(super) consuming: Option<Arc<AtomicBool>>,
    /// Ingest takes webhooks and runs its pollers.
    pub(super) ingesting: Option<Arc<AtomicBool>>,
    /// The worker's consumer, once it is connected: is it consuming?
    pub(super) bus: Arc<std::sync::Mutex<Option<BusHealth>>>,
    /// The connections' helpdesks: do they answer?
    pub(super) helpdesks: Option<Arc<HelpdeskProbes>>,
}

impl Readiness {
    /// Why the process is not ready yet, if it is not.
    fn waiting_for(&self) -> Option<&'static str> {
        let unset =
            |flag: &Option<Arc<AtomicBool>>| flag.as_ref().is_some_and(|f| !f.load(Ordering::Acquire));
        if unset(&self.consuming) {
            Some("the worker is not taking events")
        } else if unset(&self.ingesting) {
            Some("ingest is not taking webhooks")
        } else {
            None
        }
    }
}

#[derive(Clone)]
struct Health {
    store: Store,
    readiness: Readiness,
}

/// `/metrics` (Prometheus text), `/healthz` (the process is up), `/readyz` (it takes work).
pub(super) fn router(store: Store, readiness: Readiness) -> Router {
    let metrics = crate::telemetry::metrics();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = match &metrics {
                    Some(handle) => (StatusCode::OK, handle.render()),
                    None => {
                        (StatusCode::NOT_FOUND, "metrics are recorded elsewhere in this process\n".into())
                    }
                };
                std::future::ready(body)
            }),
        )
        .route("/healthz", get(|| std::future::ready("ok\n")))
        .route("/readyz", get(ready))
        .with_state(Health { store, readiness })
}

/// 200 when the services of this process run (the worker takes events, ingest takes webhooks)
/// and what they depend on answers: the store, the broker, every connection's helpdesk. 503
/// otherwise, naming each dependency that does not (a load balancer or orchestrator then routes
/// around this replica); 200 again once they are back.
async fn ready(State(health): State<Health>) -> (StatusCode, String) {
    if let Some(reason) = health.readiness.waiting_for() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n"));
    }
    let mut problems = Vec::new();
    match tokio::time::timeout(READY_TIMEOUT, health.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("the store fails: {e}")),
        Err(_) => problems.push(format!("the store did not answer within {}s", READY_TIMEOUT.as_secs())),
    }
    let bus = health.readiness.bus.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    if let Some(bus) = bus {
        match tokio::time::timeout(READY_TIMEOUT, bus.problem()).await {
            Ok(None) => {}
            Ok(Some(problem)) => problems.push(format!("the broker: {problem}")),
            Err(_) => problems.push("the broker: still connecting".into()),
        }
    }
    if let Some(probes) = &health.readiness.helpdesks {
        problems.extend(probes.problems().await);
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", problems.join("; ")))
    }
}

/// Serves `router` on `listener` until `stop`, and keeps the metrics recorder tidy meanwhile.
pub(super) fn spawn(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving http://{addr}/metrics, /healthz and /readyz");
    Ok(tokio::spawn(async move {
        let upkeep = crate::telemetry::metrics().map(|handle| {
            let stop = stop.clone();
            tokio::spawn(async move {
                // Histograms keep their samples until upkeep folds them into buckets.
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => handle.run_upkeep(),
                    }
                }
            })
        });
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::warn!(error = %e, "the HTTP server stopped");
        }
        if let Some(upkeep) = upkeep {
            let _ = upkeep.await;
        }
    }))
}
