//! `deskpilot sandbox`: serve the sandbox helpdesk until Ctrl-C or SIGTERM.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context;
use clap::Args;
use tokio::{net::TcpListener, time::Instant};

use crate::sandbox::{self, SandboxOptions};

/// Options of `deskpilot sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free one
    #[arg(long, env = "DESKPILOT_SANDBOX_ADDR", default_value = "127.0.0.1:8081")]
    addr: String,

    /// Directory of <connection_id>.json data files, instead of the bundled sample helpdesks
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,

    /// Bearer token clients must send (the default config's demo connection uses `sandbox`)
    #[arg(long, env = "DESKPILOT_SANDBOX_API_KEY", default_value = "sandbox", hide_env_values = true)]
    api_key: String,

    /// POST ticket events here, like Unified.to's webhooks
    #[arg(long, value_name = "URL", value_parser = parse_http_url)]
    webhook_url: Option<String>,

    /// Secret that signs webhook deliveries
    #[arg(long, value_name = "SECRET", env = "DESKPILOT_SANDBOX_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,

    /// JSON file keeping the sandbox's state across restarts (loaded if present, saved on change)
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,

    /// Print a configuration whose connections reach a sandbox at --addr with --api-key (the
    /// Unified ones and one per vendor flavour), and exit
    #[arg(long)]
    print_config: bool,
}

/// The `[[connections]]` of a sandbox at `addr`: its Unified connections and one per flavour.
fn sandbox_config(addr: &str, api_key: &str) -> String {
    // A wildcard or port-0 address is not one a client can reach: print the loopback instead.
    let addr = match addr.parse::<SocketAddr>() {
        Ok(mut a) => {
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
            }
            a.to_string()
        }
        Err(_) => addr.to_owned(),
    };
    let key = format!("{api_key:?}");
    let mut out = format!(
        "# Connections to the deskpilot sandbox at http://{addr} (`deskpilot sandbox --addr {addr}`).\n"
    );
    for id in ["demo", "acme-retail"] {
        out.push_str(&format!(
            "\n[[connections]]\nid = \"{id}\"\nbackend = \"unified\"\nbase_url = \"http://{addr}\"\napi_key = {key}\n"
        ));
    }
    out.push_str(&format!(
        "\n# The demo helpdesk through its Freshdesk API v2 flavour.\n[[connections]]\nid = \"demo-freshdesk\"\n\
         backend = \"freshdesk\"\nbase_url = \"http://{addr}/freshdesk\"\napi_key = {key}\n"
    ));
    out.push_str(&format!(
        "\n# The demo helpdesk through its Zendesk Support flavour (categories: the dropdown field).\n\
         [[connections]]\nid = \"demo-zendesk\"\nbackend = \"zendesk\"\nsubdomain = \"sandbox\"\n\
         base_url = \"http://{addr}/zendesk\"\nemail = \"agent@sandbox.example\"\napi_token = {key}\n\
         category_field_id = {}\n",
        crate::sandbox::ZENDESK_CATEGORY_FIELD_ID
    ));
    out.push_str(&format!(
        "\n# The demo helpdesk through its Intercom flavour (categories: the ticket types).\n\
         [[connections]]\nid = \"demo-intercom\"\nbackend = \"intercom\"\n\
         base_url = \"http://{addr}/intercom\"\naccess_token = {key}\n"
    ));
    out.push_str(&format!(
        "\n# The demo helpdesk through its ServiceNow Table API flavour (incidents; categories: the\n\
         # incident category's choices). Basic auth: any user name, the API key as the password.\n\
         [[connections]]\nid = \"demo-servicenow\"\nbackend = \"servicenow\"\n\
         base_url = \"http://{addr}/servicenow\"\nusername = \"deskpilot.integration\"\npassword = {key}\n"
    ));
    out
}

pub(super) async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    if args.print_config {
        print!("{}", sandbox_config(&args.addr, &args.api_key));
        return Ok(());
    }
    let shutdown = crate::shutdown::on_signals();
    let listener =
        TcpListener::bind(&args.addr).await.with_context(|| format!("could not listen on {}", args.addr))?;
    let mut addr = listener.local_addr().context("could not read the bound address")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
    }
    let opts = SandboxOptions {
        data_dir: args.data,
        api_key: args.api_key,
        webhook_url: args.webhook_url,
        webhook_secret: args.webhook_secret,
        state: args.state,
    };
    let mut server = tokio::spawn(sandbox::serve(listener, opts, shutdown));
    // The ready line is printed only once the sandbox answers, so that bad data fails without it;
    // scripts (and the CLI tests) wait for it on stdout. The log line lists the connections.
    tokio::select! {
        done = &mut server => return done.context("the sandbox task panicked")?,
        ready = wait_until_healthy(addr) => ready?,
    }
    println!("sandbox helpdesk listening on http://{addr} (Ctrl-C to stop)");
    server.await.context("the sandbox task panicked")?
}

/// Polls `GET /health` until it answers 200.
async fn wait_until_healthy(addr: SocketAddr) -> anyhow::Result<()> {
    let client =
        crate::http::client_builder(Duration::from_secs(1), Duration::from_secs(1)).no_proxy().build()?;
    let url = format!("http://{addr}/health");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            outcome if Instant::now() >= deadline => {
                anyhow::bail!("the sandbox did not answer GET {url} within 10s (last: {outcome:?})")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn parse_http_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(s.to_owned()),
        Ok(_) => Err("expected an http:// or https:// URL".into()),
        Err(e) => Err(format!("{e}; expected e.g. http://127.0.0.1:8080/webhooks/unified")),
    }
}
