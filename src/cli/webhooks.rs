//! `deskpilot webhooks register | list`: have a helpdesk post its ticket changes to
//! `POST /webhooks/<connection>` of `deskpilot ingest`.

use anyhow::bail;
use clap::Subcommand;

use super::print_json;
use crate::{
    app::parts::http_settings,
    config::{BackendConfig, Config, ConnectionConfig},
    ingest::webhook::subscribe::{TICKET_EVENTS, UnifiedSubscriptions, native_steps},
};

/// `deskpilot webhooks ...`.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Subscribe a connection's ticket changes (created, updated) to URL: through Unified.to's
    /// API, or, for a native helpdesk, print the steps to take in its admin UI
    Register {
        /// Connection id from the config
        #[arg(long, value_name = "ID")]
        connection: String,
        /// Where deliveries go: deskpilot ingest's POST /webhooks/<connection id>, as the
        /// helpdesk reaches it
        #[arg(long, value_name = "URL", value_parser = parse_url)]
        url: String,
        /// Also send every existing ticket once (Unified.to's include_all)
        #[arg(long)]
        include_all: bool,
    },
    /// List a connection's subscriptions (every unified connection's without --connection)
    List {
        /// Connection id from the config
        #[arg(long, value_name = "ID")]
        connection: Option<String>,
        /// One line of JSON per subscription instead of a table
        #[arg(long)]
        json: bool,
    },
}

fn parse_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(s.to_owned()),
        Ok(_) => Err("expected an http:// or https:// URL".into()),
        Err(e) => Err(format!("{e}; expected e.g. https://deskpilot.example.com/webhooks/demo")),
    }
}

fn unified(config: &Config, conn: &ConnectionConfig) -> anyhow::Result<Option<UnifiedSubscriptions>> {
    let BackendConfig::Unified(u) = &conn.backend else { return Ok(None) };
    Ok(Some(UnifiedSubscriptions::new(u.base_url(), config.credential(conn)?, &http_settings(config))?))
}

pub(super) async fn run(config: &Config, cmd: WebhooksCommand) -> anyhow::Result<()> {
    match cmd {
        WebhooksCommand::Register { connection, url, include_all } => {
            let conn = config.connection(&connection)?;
            let Some(api) = unified(config, conn)? else {
                let steps = native_steps(conn.backend.name(), &url).unwrap_or_default();
                println!("{steps}");
                return Ok(());
            };
            for event in TICKET_EVENTS {
                let sub = api.create(&connection, &url, event, include_all && event == "created").await?;
                println!(
                    "subscribed: {} ticket {event} of connection {connection} -> {url}",
                    sub["id"].as_str().unwrap_or("?")
                );
            }
            if !conn.takes_webhooks() {
                println!(
                    "note: connection {connection} has no webhook_secret yet; set it (or webhook_secret_env) \
                     to the workspace secret, or its deliveries are refused"
                );
            }
            Ok(())
        }
        WebhooksCommand::List { connection, json } => {
            let connections: Vec<&ConnectionConfig> = match &connection {
                Some(id) => vec![config.connection(id)?],
                None => config
                    .connections
                    .iter()
                    .filter(|c| matches!(c.backend, BackendConfig::Unified(_)))
                    .collect(),
            };
            if connections.is_empty() {
                bail!(
                    "no unified connection is configured; subscriptions of native helpdesks live in their admin UI"
                );
            }
            for conn in connections {
                let Some(api) = unified(config, conn)? else {
                    bail!(
                        "connection `{}` is a {} connection: its webhooks are listed in the helpdesk's admin UI",
                        conn.id,
                        conn.backend.name()
                    );
                };
                let subs = api.list(Some(&conn.id)).await?;
                if subs.is_empty() && !json {
                    println!("no subscriptions for connection {}", conn.id);
                }
                for s in subs {
                    if json {
                        print_json(&s, true)?;
                    } else {
                        let field = |k: &str| s[k].as_str().unwrap_or("-").to_owned();
                        println!(
                            "{}  {}  {} {}  -> {}{}",
                            field("id"),
                            field("connection_id"),
                            field("object_type"),
                            field("event"),
                            field("hook_url"),
                            if s["is_paused"].as_bool() == Some(true) { "  (paused)" } else { "" }
                        );
                    }
                }
            }
            Ok(())
        }
    }
}
