//! `deskpilot ingest | serve`: the ingest side alone, or ingest and the worker in one process.

use anyhow::bail;

use crate::{app::Services, config::Config};

/// `deskpilot ingest`: webhooks and pollers publishing to RabbitMQ until SIGTERM/Ctrl-C.
pub(super) async fn ingest(config: &Config) -> anyhow::Result<()> {
    // On the in-process bus nobody else could consume what this process publishes.
    super::worker::amqp_url(config)?;
    needs_server(config, "ingest")?;
    crate::app::run(config, Services::INGEST, crate::shutdown::on_signals()).await
}

/// `deskpilot serve`: ingest and the worker in one process, on whichever bus `[bus]` names.
pub(super) async fn serve(config: &Config) -> anyhow::Result<()> {
    if !config.connections.iter().any(|c| c.takes_webhooks()) {
        tracing::info!("no connection has a webhook_secret, so no webhook is taken");
    }
    needs_server(config, "serve")?;
    crate::app::run(config, Services::ALL, crate::shutdown::on_signals()).await
}

/// Webhooks arrive over HTTP, so these commands need `[server] addr`.
fn needs_server(config: &Config, command: &str) -> anyhow::Result<()> {
    if config.server.addr().is_none() {
        bail!(
            "`deskpilot {command}` receives webhooks on the HTTP server, but server.addr is empty; set it, \
             e.g. DESKPILOT__SERVER__ADDR=0.0.0.0:8080"
        );
    }
    Ok(())
}
