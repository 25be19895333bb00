//! `deskpilot worker | publish | bus setup | dead list|replay`: the RabbitMQ pipeline.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::print_json;
use crate::{
    app::parts::bus_settings,
    bus,
    config::Config,
    events::{EventKind, EventSource, TicketEvent},
};

/// Options of `publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Connection id from the config
    #[arg(long, value_name = "ID")]
    connection: String,
    /// The ticket's id in the helpdesk
    #[arg(long, value_name = "TICKET_ID")]
    ticket: String,
    /// Event kind (the worker triages ticket.created)
    #[arg(long, default_value = "ticket.created", value_parser = parse_kind)]
    kind: EventKind,
}

/// `deskpilot bus ...`.
#[derive(Debug, Subcommand)]
pub enum BusCommand {
    /// Declare the exchange, work queue, retry tiers and dead-letter queue (idempotent)
    Setup,
}

/// `deskpilot dead ...`.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead-lettered events with their reasons (leaves them in the queue)
    List {
        /// At most this many
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One line of JSON per event instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Move dead-lettered events back to the work queue (attempts reset)
    Replay {
        /// At most this many (default: all)
        #[arg(long)]
        limit: Option<usize>,
    },
}

fn parse_kind(s: &str) -> Result<EventKind, String> {
    EventKind::parse(s)
        .ok_or_else(|| format!("`{s}` is not an event kind; use ticket.created or ticket.updated"))
}

pub(super) fn amqp_url(config: &Config) -> anyhow::Result<&str> {
    match config.bus.amqp_url() {
        Some(url) => Ok(url),
        None => bail!(
            "bus.url is empty (the in-process bus), so there is no broker to talk to; set bus.url \
             (DESKPILOT__BUS__URL=amqp://guest:guest@127.0.0.1:5672/%2f) to use RabbitMQ"
        ),
    }
}

/// `deskpilot worker`: consume, triage and act until SIGTERM/Ctrl-C, serving metrics and health.
pub(super) async fn worker(config: &Config) -> anyhow::Result<()> {
    amqp_url(config)?;
    crate::app::run(config, crate::app::Services::WORKER, crate::shutdown::on_signals()).await
}

/// `deskpilot publish`: one manual event, confirmed by the broker.
pub(super) async fn publish(config: &Config, args: PublishArgs) -> anyhow::Result<()> {
    config.connection(&args.connection)?;
    let url = amqp_url(config)?;
    let event = TicketEvent::new(args.kind, &args.connection, &args.ticket, EventSource::Manual);
    let (publisher, mut consumer) = bus::connect(url, &bus_settings(config)).await.context("broker")?;
    consumer.close().await;
    publisher.publish(&event).await.context("publish")?;
    publisher.close().await;
    print_json(&event, true)
}

/// `deskpilot bus setup`.
pub(super) async fn bus(config: &Config, cmd: BusCommand) -> anyhow::Result<()> {
    match cmd {
        BusCommand::Setup => {
            let settings = bus_settings(config);
            bus::setup(amqp_url(config)?, &settings).await.context("bus setup")?;
            println!(
                "declared exchange {}, queue {} (bound to ticket.created), retry tiers {}, dead-letter queue {}",
                settings.exchange,
                settings.queue,
                settings
                    .retry_delays
                    .iter()
                    .map(|d| format!("{}s", d.as_secs()))
                    .collect::<Vec<_>>()
                    .join("/"),
                settings.dead_queue
            );
            Ok(())
        }
    }
}

/// `deskpilot dead list|replay`.
pub(super) async fn dead(config: &Config, cmd: DeadCommand) -> anyhow::Result<()> {
    let url = amqp_url(config)?;
    let settings = bus_settings(config);
    match cmd {
        DeadCommand::List { limit, json } => {
            let letters = bus::dead_letters(url, &settings, limit).await.context("list dead letters")?;
            if letters.is_empty() && !json {
                println!("no dead-lettered events in {}", settings.dead_queue);
            }
            for d in &letters {
                let (connection, ticket, event_id) = match &d.event_or_body {
                    Ok(e) => (e.connection_id.clone(), e.ticket_id.clone(), e.event_id.clone()),
                    Err(body) => ("?".into(), "?".into(), format!("(not an event: {} bytes)", body.len())),
                };
                let failed_at = d.failed_at.map(crate::ticketing::model::format_timestamp);
                if json {
                    print_json(
                        &json!({"event_id": event_id, "connection_id": connection, "ticket_id": ticket,
                                "reason": d.reason, "attempt": d.attempt, "failed_at": failed_at,
                                "routing_key": d.routing_key}),
                        true,
                    )?;
                } else {
                    println!(
                        "{event_id}  {connection}/{ticket}  attempt {}  {}  {}",
                        d.attempt,
                        failed_at.unwrap_or_else(|| "-".into()),
                        d.reason
                    );
                }
            }
            Ok(())
        }
        DeadCommand::Replay { limit } => {
            let n = bus::replay_dead_letters(url, &settings, limit).await.context("replay dead letters")?;
            println!("replayed {n} event(s) to {}", settings.exchange);
            Ok(())
        }
    }
}
