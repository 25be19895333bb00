//! The live part of the demo: new tickets created in the sandbox about once a second, from
//! templates in several languages and with the bundled helpdesk's customers, each shown in the
//! terminal as soon as the worker has decided it.

use std::{collections::VecDeque, time::Duration};

use anyhow::Context;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{
    bus::Publisher,
    events::{EventKind, EventSource, TicketEvent},
    store::{LedgerKey, Step, Store},
};

/// The templates new tickets are drawn from.
const TEMPLATES: &str = include_str!("../../../data/demo/new-tickets.json");

/// How often a new ticket is created.
const EVERY: Duration = Duration::from_secs(1);

/// How long a ticket may wait for its decision before the demo stops waiting for it.
const PATIENCE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Deserialize)]
struct Template {
    language: String,
    subject: String,
    description: String,
}

/// Where and how the stream creates tickets.
pub(super) struct Stream<'a> {
    /// The sandbox's base URL and API key.
    pub sandbox_url: &'a str,
    /// The sandbox's API key.
    pub api_key: &'a str,
    /// The connection the tickets are created in.
    pub connection: &'a str,
    /// The customers to file them for.
    pub customers: Vec<String>,
    /// Publishes each ticket's event by hand, under the id its connector sees (native
    /// connectors: the sandbox's webhooks are Unified-style only); `None` when the sandbox's
    /// webhook brings it.
    pub publish: Option<ByHand>,
}

/// Publishing by hand: the publisher, and the id the connector knows a sandbox ticket by.
pub(super) type ByHand = (Publisher, fn(&str) -> String);

impl Stream<'_> {
    /// Creates `count` tickets (or until `stop`), one per second, printing each as it is decided;
    /// returns how many were created and decided.
    pub(super) async fn run(
        &self,
        store: &Store,
        count: Option<usize>,
        stop: &CancellationToken,
    ) -> anyhow::Result<(usize, usize)> {
        let templates: Vec<Template> = serde_json::from_str(TEMPLATES).expect("the bundled templates parse");
        let client = crate::http::client_builder(Duration::from_secs(5), Duration::from_secs(30)).build()?;
        let mut waiting: VecDeque<(String, Template, tokio::time::Instant)> = VecDeque::new();
        let (mut created, mut decided) = (0usize, 0usize);
        let mut tick = tokio::time::interval(EVERY);
        let mut check = tokio::time::interval(Duration::from_millis(200));
        loop {
            let more = count.is_none_or(|n| created < n);
            if !more && waiting.is_empty() {
                break;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick(), if more => {
                    let template = &templates[created % templates.len()];
                    let customer = &self.customers[created % self.customers.len().max(1)];
                    let id = self.create(&client, template, customer).await?;
                    let id = match &self.publish {
                        Some((publisher, id_of)) => {
                            let id = id_of(&id);
                            let event = TicketEvent::new(EventKind::TicketCreated, self.connection, &id, EventSource::Manual);
                            publisher.publish(&event).await.context("could not publish a demo ticket")?;
                            id
                        }
                        None => id,
                    };
                    created += 1;
                    waiting.push_back((id, template.clone(), tokio::time::Instant::now()));
                }
                _ = check.tick() => {
                    let mut still = VecDeque::new();
                    while let Some((id, template, since)) = waiting.pop_front() {
                        let key = LedgerKey::new(self.connection, &id, EventKind::TicketCreated);
                        match store.entry(&key).await? {
                            Some(e) if e.step == Step::Done || e.failed => {
                                println!("{}", line(&id, &template, &e));
                                decided += 1;
                            }
                            _ if since.elapsed() > PATIENCE => println!("#{id} {}: no decision after {}s", template.subject, PATIENCE.as_secs()),
                            _ => still.push_back((id, template, since)),
                        }
                    }
                    waiting = still;
                }
            }
        }
        Ok((created, decided))
    }

    /// Creates one ticket in the sandbox through its Unified.to API; returns its id.
    async fn create(&self, client: &reqwest::Client, t: &Template, customer: &str) -> anyhow::Result<String> {
        let url = format!("{}/ticketing/{}/ticket", self.sandbox_url, self.connection);
        let body = serde_json::json!({
            "subject": t.subject, "description": t.description, "customer_id": customer, "status": "ACTIVE",
        });
        let response = client.post(&url).bearer_auth(self.api_key).json(&body).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "could not create a demo ticket: POST {url}: {}",
            response.status()
        );
        let created: serde_json::Value =
            response.json().await.context("the sandbox's answer to a new ticket")?;
        created["id"].as_str().map(str::to_owned).context("the sandbox's new ticket has no id")
    }
}

/// One decided ticket, on one line: subject, category, priority, tags, confidence, the draft's
/// first line, tokens and latency.
fn line(id: &str, t: &Template, e: &crate::store::Entry) -> String {
    let subject: String = t.subject.chars().take(44).collect();
    let Some(record) = &e.decision else {
        return format!(
            "#{id} [{}] {subject}: failed: {}",
            t.language,
            e.last_error.as_deref().unwrap_or("?")
        );
    };
    let d = &record.decision;
    let tags: Vec<&str> =
        d["tags"].as_array().map(|t| t.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    let draft: String = d["draft_reply"]
        .as_str()
        .and_then(|s| s.lines().next())
        .unwrap_or("(no draft)")
        .chars()
        .take(50)
        .collect();
    format!(
        "#{id} [{}] {subject} → {} {} [{}] conf {:.2} · {draft} · {} tokens · {} ms",
        t.language,
        d["category_id"].as_str().unwrap_or("-"),
        d["priority"].as_str().unwrap_or("-"),
        tags.join(", "),
        d["confidence"].as_f64().unwrap_or(0.0),
        record.prompt_tokens.unwrap_or(0) + record.completion_tokens.unwrap_or(0),
        record.latency_ms.unwrap_or(0),
    )
}
