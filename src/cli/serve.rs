//! `deskpilot ingest | serve | review`: the ingest side alone, ingest and the worker in one
//! process, or the review page alone.

use anyhow::bail;
use clap::Args;

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

/// Options of `review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Listen here instead of on server.addr
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

/// `deskpilot review`: the review page (and health and metrics) alone, until SIGTERM/Ctrl-C.
pub(super) async fn review(config: &Config, args: ReviewArgs) -> anyhow::Result<()> {
    let mut config = config.clone();
    if let Some(addr) = args.listen {
        config.server.addr = addr;
    }
    needs_server(&config, "review")?;
    if config.review_token()?.is_none() && !config.review.allow_anonymous_loopback {
        bail!(
            "the review page needs a token: set [review] token_env (e.g. token_env = \"DESKPILOT_REVIEW_TOKEN\") \
             or token; or, on a loopback address only, [review] allow_anonymous_loopback = true"
        );
    }
    let addr = config.server.addr().unwrap_or_default().to_owned();
    let loopback = addr.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
    if config.review_token()?.is_none() && !loopback {
        bail!(
            "allow_anonymous_loopback only opens the review page on a loopback address, and {addr} is not one; \
             set a [review] token, or listen on 127.0.0.1"
        );
    }
    crate::app::run(&config, Services::REVIEW, crate::shutdown::on_signals()).await
}

/// These commands serve over HTTP (webhooks, the review page), so they need `[server] addr`.
fn needs_server(config: &Config, command: &str) -> anyhow::Result<()> {
    if config.server.addr().is_none() {
        bail!(
            "`deskpilot {command}` serves over HTTP, but server.addr is empty; set it, \
             e.g. DESKPILOT__SERVER__ADDR=0.0.0.0:8080"
        );
    }
    Ok(())
}
