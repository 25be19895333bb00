//! The worker at the pace of the LLM's limiter: a backlog waits in the broker, not in memory,
//! while the limiter lets few calls run.

use super::*;

pub(super) async fn a_backlog_waits_in_the_broker_at_the_llm_limiters_pace(mut p: Pipeline) {
    let tickets = p.untriaged(12);
    // Slow answers: no call ends, so the limiter's first limit of 4 calls holds while we look.
    p.answers.set_delay(Duration::from_millis(1500));
    p.spawn_worker(shadow(), WorkerSettings { max_in_flight: 12, ..settings(Duration::from_secs(30)) }).await;
    p.publish(&tickets).await;
    wait_until("four events are at the LLM", WAIT, || async { p.answers.asked().len() >= 4 }).await;
    // Time for the worker to take whatever else it would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = p.bus.counts().await;
    assert_eq!(p.answers.asked().len(), 4, "4 calls at once, the limiter's first limit");
    // The limit and its headroom (a quarter, and one) in hand; the bus would hand out 10.
    assert!(counts.unacked <= 6, "events in hand: {counts:?}");
    assert!(counts.ready >= 6, "the rest waits in the broker: {counts:?}");

    let entries = p.wait_done(&tickets, WAIT).await;
    p.stop_workers().await;
    p.assert_bus_drained().await;
    assert!(entries.iter().all(|e| e.attempts == 0), "no event went to a retry tier");
}
