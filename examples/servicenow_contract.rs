//! Drives every ServiceNow operation deskpilot uses against a Table API root and fails on the
//! first error. Run through Prism's validating proxy in front of the sandbox's ServiceNow
//! flavour, it checks the requests we send and the responses the flavour returns against the
//! (unofficial) Table API description, whose paths start at `/table` (no `/api/now`).
//!
//! Usage: `cargo run --example servicenow_contract -- API_ROOT USER PASSWORD`

#[path = "common/walk.rs"]
mod walk;

use anyhow::bail;
use deskpilot::{
    http::HttpSettings,
    ticketing::{
        Category, Ticket, TicketPatch,
        servicenow::{ServiceNowAuth, ServiceNowClient},
    },
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [api_root, username, password] = args.as_slice() else {
        bail!("usage: servicenow_contract API_ROOT USER PASSWORD");
    };
    let auth = ServiceNowAuth::Basic { username: username.clone(), password: password.clone().into() };
    let client = ServiceNowClient::at_api_root(api_root, auth, &HttpSettings::default())?;
    // Incidents have no tags; an unknown incident is a well-formed sys_id no record has.
    let patch = |_: &Ticket, categories: &[Category]| TicketPatch {
        priority: Some("high".into()),
        category_id: categories.first().and_then(|c| c.id.clone()),
        ..TicketPatch::default()
    };
    let w = walk::walk_to(&client, Some(2), patch, "00000000000000000000000000000000").await?;
    println!(
        "contract ok: {} category choices, {} incidents, {} journal entries on incident {}",
        w.categories, w.tickets, w.notes, w.ticket
    );
    Ok(())
}
