//! The outcomes consumer: every `ticket.updated` on the outcomes queue has its ticket read again
//! and what people set on it recorded against deskpilot's proposal for it
//! ([`review::outcomes::observe`](crate::review::outcomes::observe)). One event at a time: the
//! helpdesk read is cheap, changes come at people's pace, and the queue holds the rest.
//!
//! A helpdesk or store failure that may pass is retried through the queue's retry tiers; anything
//! else is dead-lettered with the reason. A ticket deskpilot made no proposal for is simply acked.

use std::{collections::HashMap, sync::Arc};

use tokio_util::sync::CancellationToken;

use super::Connection;
use crate::{
    bus::{Consumer, Delivery},
    review::outcomes,
    store::Store,
};

/// Consumes the outcomes queue until `shutdown`.
pub async fn run_outcomes(
    mut consumer: Consumer,
    store: Store,
    connections: Arc<HashMap<String, Connection>>,
    shutdown: CancellationToken,
) {
    tracing::info!("outcomes consumer started");
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            d = consumer.next() => d,
        };
        match next {
            Some(Ok(delivery)) => observe(delivery, &store, &connections).await,
            Some(Err(e)) => tracing::warn!(error = %e, "outcomes consumer error; continuing"),
            None => break,
        }
    }
    consumer.close().await;
    tracing::info!("outcomes consumer stopped");
}

async fn observe(delivery: Delivery, store: &Store, connections: &HashMap<String, Connection>) {
    let event = match &delivery.event {
        Ok(event) => event.clone(),
        Err(e) => {
            let reason = format!("not a ticket event: {e}");
            settle(delivery.dead_letter(&reason).await);
            return;
        }
    };
    let Some(conn) = connections.get(&event.connection_id) else {
        let reason = format!("connection `{}` is not configured in this worker", event.connection_id);
        settle(delivery.dead_letter(&reason).await);
        return;
    };
    match outcomes::observe(store, conn.helpdesk.as_ref(), &event.connection_id, &event.ticket_id).await {
        Ok(observed) => {
            if let Some(o) = &observed {
                tracing::debug!(connection = %event.connection_id, ticket = %event.ticket_id,
                                proposal = o.proposal_id, closed = o.closed, changed = o.changed, "outcome observed");
            }
            metrics::counter!("deskpilot_outcomes_total", "connection" => event.connection_id.clone(),
                              "result" => if observed.is_some() { "recorded" } else { "no_proposal" })
            .increment(1);
            settle(delivery.ack().await);
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(connection = %event.connection_id, ticket = %event.ticket_id, error = %e,
                           "outcome not read; retrying later");
            settle(delivery.retry(&e.to_string(), None).await);
        }
        Err(e) => {
            tracing::warn!(connection = %event.connection_id, ticket = %event.ticket_id, error = %e,
                           "outcome not read; dead-lettered");
            settle(delivery.dead_letter(&e.to_string()).await);
        }
    }
}

/// A settle that failed leaves the message with the broker, which delivers it again.
fn settle(result: Result<(), crate::bus::BusError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "an outcome event could not be settled; the broker delivers it again");
    }
}
