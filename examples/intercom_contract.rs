//! Drives every Intercom operation deskpilot uses against an API root and fails on the first
//! error. Run through Prism's validating proxy in front of the sandbox's Intercom flavour, it
//! checks the requests we send and the responses the flavour returns against Intercom's own
//! OpenAPI description (version 2.14).
//!
//! Usage: `cargo run --example intercom_contract -- API_ROOT ACCESS_TOKEN`

#[path = "common/walk.rs"]
mod walk;

use anyhow::bail;
use deskpilot::{
    http::HttpSettings,
    ticketing::{TicketPatch, TicketStatus, intercom::IntercomClient},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [api_root, token] = args.as_slice() else {
        bail!("usage: intercom_contract API_ROOT ACCESS_TOKEN");
    };
    let client = IntercomClient::new(api_root, token.clone().into(), &HttpSettings::default())?;
    // Intercom takes no priority and no change of ticket type: open, the assignee and tags.
    let walked = walk::walk(&client, Some(1), |ticket, _| TicketPatch {
        status: Some(TicketStatus::Active),
        user_id: ticket.user_id.clone(),
        tags: Some(vec!["contract".into()]),
        ..TicketPatch::default()
    })
    .await?;
    println!(
        "contract ok: {} ticket types, {} tickets, {} parts on ticket {}",
        walked.categories, walked.tickets, walked.notes, walked.ticket
    );
    Ok(())
}
