//! Drives every Freshdesk operation deskpilot uses against an API root and fails on the first
//! error. Run through Prism's validating proxy in front of the sandbox's Freshdesk flavour, it
//! checks the requests we send and the responses the flavour returns against the (unofficial)
//! Freshdesk OpenAPI description, whose paths have no `/api/v2` prefix.
//!
//! Usage: `cargo run --example freshdesk_contract -- API_ROOT API_KEY`

#[path = "common/walk.rs"]
mod walk;

use anyhow::bail;
use deskpilot::{
    http::HttpSettings,
    ticketing::{TicketPatch, freshdesk::FreshdeskClient},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [api_root, api_key] = args.as_slice() else {
        bail!("usage: freshdesk_contract API_ROOT API_KEY");
    };
    let client = FreshdeskClient::at_api_root(api_root, api_key.clone().into(), &HttpSettings::default())?;
    let walked = walk::walk(&client, None, |ticket, categories| {
        let mut tags = ticket.tags.clone();
        tags.push("contract".into());
        TicketPatch {
            priority: Some("high".into()),
            category_id: categories.first().and_then(|c| c.id.clone()),
            tags: Some(tags),
            ..TicketPatch::default()
        }
    })
    .await?;
    println!(
        "contract ok: {} types, {} tickets, {} conversations on ticket {}",
        walked.categories, walked.tickets, walked.notes, walked.ticket
    );
    Ok(())
}
