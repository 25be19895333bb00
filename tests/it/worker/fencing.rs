//! Never two notes: a worker stopping or losing its claim while a helpdesk write is in flight.

use std::sync::atomic::Ordering;

use axum::http::Method;

use super::{
    proxy::{Fault, Proxy},
    *,
};

/// A note POST that outlasts both the drain deadline and the lease. The stopping worker waits for
/// it, keeping its claim alive meanwhile, instead of handing the ticket to a second worker that
/// cannot see the note yet and would post another. (Before the fence, the stopping worker dropped
/// the request at the deadline and released its claim: two notes.)
pub(super) async fn a_note_in_flight_at_shutdown_is_never_posted_twice(mut p: Pipeline) {
    let tickets = p.untriaged(1);
    let delay = Duration::from_millis(2500);
    // A note is created only once its POST has been processed, as on a slow helpdesk.
    let proxy = Proxy::start(&p.sandbox.base_url, move |m, path| {
        (m == Method::POST && path.ends_with("/note")).then_some(Fault::Delay(delay))
    })
    .await;
    let lease = Duration::from_secs(1);
    let drain = Duration::from_millis(200);
    let first = p
        .spawn_worker_at(&proxy.url, apply(true), WorkerSettings { drain_deadline: drain, ..settings(lease) })
        .await;
    p.publish(&tickets).await;
    wait_until("the note POST is in flight", WAIT, || async { proxy.faulted.load(Ordering::SeqCst) == 1 })
        .await;

    // A second replica is ready to take over whatever the first hands back.
    p.spawn_worker(apply(true), settings(lease)).await;
    p.stop_worker(first).await;
    let entries = p.wait_done(&tickets, WAIT).await;
    // Whatever the first worker sent has landed by now.
    tokio::time::sleep(delay + Duration::from_millis(500)).await;
    p.stop_workers().await;

    let after = p.snapshot().await;
    assert_one_note_each(&after, &entries);
    assert_eq!(new_notes(&p.before, &after).len(), 1, "one note in all");
    assert!(p.bus.dead_letters().await.is_empty());
    p.assert_bus_drained().await;
}
