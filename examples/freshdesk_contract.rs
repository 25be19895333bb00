//! Drives every Freshdesk operation deskpilot uses against an API root and fails on the first
//! error. Run through Prism's validating proxy in front of the sandbox's Freshdesk flavour, it
//! checks the requests we send and the responses the flavour returns against the (unofficial)
//! Freshdesk OpenAPI description, whose paths have no `/api/v2` prefix.
//!
//! Usage: `cargo run --example freshdesk_contract -- API_ROOT API_KEY`

use anyhow::{Context, bail};
use deskpilot::{
    http::HttpSettings,
    ticketing::{
        ListQuery, NewNote, TicketPatch, TicketReader, Ticketing, TicketingError, all_notes, all_tickets,
        collect_all, freshdesk::FreshdeskClient,
    },
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [api_root, api_key] = args.as_slice() else {
        bail!("usage: freshdesk_contract API_ROOT API_KEY");
    };
    let client = FreshdeskClient::at_api_root(api_root, api_key.clone().into(), &HttpSettings::default())?;

    let categories = client.list_categories().await.context("ticket fields")?;
    let since = time::macros::datetime!(2026-01-01 00:00 UTC);
    let q = ListQuery { limit: Some(50), ..ListQuery::updated_since(since) };
    let tickets = collect_all(all_tickets(&client, q)).await.context("tickets updated since, to the end")?;
    let first = tickets.first().context("the helpdesk has no tickets")?;
    let id = first.id.clone().context("ticket without id")?;
    let ticket = client.get_ticket(&id).await.context("get ticket")?;
    if let Some(customer) = &ticket.customer_id {
        client.get_customer(customer).await.context("get contact")?;
    }
    let notes = collect_all(all_notes(&client, ListQuery::notes_of(&id))).await.context("conversations")?;
    let mut tags = ticket.tags.clone();
    tags.push("contract".into());
    let patch = TicketPatch {
        priority: Some("high".into()),
        category_id: categories.first().and_then(|c| c.id.clone()),
        tags: Some(tags),
        ..TicketPatch::default()
    };
    client.update_ticket(&id, &patch).await.context("update ticket")?;
    let note =
        NewNote { ticket_id: id.clone(), description: "contract check".into(), user_id: None, raw: None };
    client.create_note(&note).await.context("create note")?;
    let missing = client.get_ticket("999999").await;
    if !matches!(missing, Err(TicketingError::NotFound { .. })) {
        bail!("an unknown ticket should be NotFound, got {missing:?}");
    }
    println!(
        "contract ok: {} types, {} tickets, {} conversations on ticket {id}",
        categories.len(),
        tickets.len(),
        notes.len()
    );
    Ok(())
}
