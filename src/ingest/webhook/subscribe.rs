//! Asking a helpdesk to send its webhooks: Unified.to's subscription API (unified-ticketing.md
//! §6.2), and for native helpdesks the steps an admin takes in the vendor's UI, which has no such
//! API for these events.

use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::http::HttpSettings;

/// The ticket events deskpilot subscribes to.
pub const TICKET_EVENTS: [&str; 2] = ["created", "updated"];

/// Unified.to's `/unified/webhook` for one workspace.
pub struct UnifiedSubscriptions {
    client: reqwest::Client,
    base_url: String,
    api_key: SecretString,
}

impl UnifiedSubscriptions {
    /// A client of the API at `base_url` (Unified's, or the sandbox) with the workspace key.
    pub fn new(base_url: &str, api_key: SecretString, http: &HttpSettings) -> anyhow::Result<Self> {
        let client = crate::http::client_builder(http.connect_timeout, http.request_timeout).build()?;
        Ok(Self { client, base_url: base_url.trim_end_matches('/').to_owned(), api_key })
    }

    /// Creates one subscription to `event` on `connection`'s tickets, delivered to `hook_url`;
    /// with `include_all`, every existing ticket is sent first. Returns the subscription.
    pub async fn create(
        &self,
        connection: &str,
        hook_url: &str,
        event: &str,
        include_all: bool,
    ) -> anyhow::Result<Value> {
        let body = json!({"connection_id": connection, "hook_url": hook_url, "object_type": "ticketing_ticket",
                          "event": event, "webhook_type": "virtual"});
        let request = self
            .client
            .post(format!("{}/unified/webhook", self.base_url))
            .query(&[("include_all", include_all)])
            .json(&body);
        self.send(request, &format!("create the `{event}` subscription of connection `{connection}`")).await
    }

    /// The subscriptions of `connection` (all of the workspace's with `None`).
    pub async fn list(&self, connection: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let mut request = self.client.get(format!("{}/unified/webhook", self.base_url));
        if let Some(c) = connection {
            request = request.query(&[("connection_id", c)]);
        }
        match self.send(request, "list the webhook subscriptions").await? {
            Value::Array(items) => Ok(items),
            other => bail!("Unified.to answered the subscription list with {other} instead of an array"),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(self.api_key.expose_secret())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(crate::http::describe_transport_error)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("could not {what} at {}", self.base_url))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let known = [self.api_key.expose_secret()];
            let text = crate::http::redact_secrets(crate::http::clip(&text, 500), &known);
            bail!("could not {what}: {} answered {status}: {text}", self.base_url);
        }
        serde_json::from_str(&text).with_context(|| format!("could not {what}: the answer is not JSON"))
    }
}

/// What an admin does in a native helpdesk so that it posts to `url`, or `None` for `unified`.
pub fn native_steps(backend: &str, url: &str) -> Option<String> {
    let steps = match backend {
        "zendesk" => format!(
            "In Zendesk Admin Center > Apps and integrations > Webhooks, create a webhook:\n\
             1. Connection method: Zendesk events; events: Ticket created, and the ticket changes to \
             follow (status, priority, comment added, ...).\n\
             2. Endpoint URL: {url}   Request method: POST   Request format: JSON.\n\
             3. Save, then open the webhook and reveal its signing secret: set it as this connection's \
             webhook_secret (or webhook_secret_env).\n\
             Deliveries are verified with X-Zendesk-Webhook-Signature and refused outside \
             ingest.webhook_timestamp_tolerance_secs."
        ),
        "intercom" => format!(
            "In the Intercom Developer Hub, open your app > Webhooks:\n\
             1. Endpoint URL: {url}\n\
             2. Topics: ticket.created and the ticket.* topics to follow (or conversation.user.created \
             and conversation.* if you triage conversations).\n\
             3. Set the app's client secret (Basic information page) as this connection's webhook_secret.\n\
             Deliveries are verified with X-Hub-Signature."
        ),
        "freshdesk" => format!(
            "In Freshdesk Admin > Workflows > Automations, add a rule on ticket creation and one on \
             ticket updates, each with the action Trigger webhook:\n\
             1. Request type POST, URL {url}, encoding JSON.\n\
             2. Custom header X-Webhook-Secret: <a long random value>; set the same value as this \
             connection's webhook_secret.\n\
             3. Content (advanced): {{\"event\": \"ticket.created\" (or \"ticket.updated\"), \
             \"ticket_id\": \"{{{{ticket.id}}}}\", \"updated_at\": \"{{{{ticket.updated_at}}}}\"}}"
        ),
        "servicenow" => format!(
            "In ServiceNow, add a Business Rule on the incident table (after insert and update) that \
             sends an outbound REST message:\n\
             1. POST {url}, content type application/json.\n\
             2. Header X-Webhook-Secret: <a long random value> (or Basic auth with it as the password); \
             set the same value as this connection's webhook_secret.\n\
             3. Body: {{\"event\": \"incident.updated\", \"sys_id\": current.sys_id, \"number\": \
             current.number, \"sys_updated_on\": current.sys_updated_on, \"operation\": \
             current.operation()}}"
        ),
        _ => return None,
    };
    Some(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_native_backend_has_steps_naming_the_url() {
        for backend in ["zendesk", "intercom", "freshdesk", "servicenow"] {
            let steps = native_steps(backend, "https://hooks.example/webhooks/c1").unwrap();
            assert!(steps.contains("https://hooks.example/webhooks/c1"), "{backend}: {steps}");
            assert!(steps.contains("webhook_secret"), "{backend}: {steps}");
        }
        assert!(native_steps("unified", "u").is_none());
    }
}
