//! Drives every Unified.to ticketing operation deskpilot uses against a base URL and fails on the
//! first error. `scripts/contract-check.sh` runs it through Prism's validating proxy in front of
//! the sandbox, so both the requests we send and the responses the sandbox returns are checked
//! against Unified's OpenAPI description.
//!
//! Usage: `cargo run --example unified_contract -- BASE_URL CONNECTION_ID API_KEY`

use anyhow::{Context, bail};
use deskpilot::{
    http::HttpSettings,
    ticketing::{
        ListQuery, NewNote, TicketPatch, TicketReader, Ticketing, all_tickets, collect_all,
        unified::UnifiedClient,
    },
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base_url, connection, api_key] = args.as_slice() else {
        bail!("usage: unified_contract BASE_URL CONNECTION_ID API_KEY");
    };
    let client =
        UnifiedClient::new(base_url, connection.as_str(), api_key.clone().into(), &HttpSettings::default())?;

    let categories = client.list_categories().await.context("list categories")?;
    let tickets = collect_all(all_tickets(&client, ListQuery { limit: Some(25), ..ListQuery::default() }))
        .await
        .context("list tickets across pages")?;
    let first = tickets.first().context("the connection has no tickets")?;
    let ticket_id = first.id.clone().context("ticket without id")?;
    let since = first.updated_at.context("ticket without updated_at")?;
    let recent = client.list_tickets(&ListQuery::updated_since(since)).await.context("updated_gte")?;
    let only_some =
        ListQuery { fields: vec!["id".into(), "subject".into()], limit: Some(5), ..ListQuery::default() };
    client.list_tickets(&only_some).await.context("fields")?;
    let ticket = client.get_ticket(&ticket_id).await.context("get ticket")?;
    if let Some(customer_id) = &ticket.customer_id {
        client.get_customer(customer_id).await.context("get customer")?;
    }
    let notes = client.list_notes(&ListQuery::notes_of(&ticket_id)).await.context("list notes")?;
    let patch = TicketPatch { tags: Some(ticket.tags.clone()), ..TicketPatch::default() };
    client.update_ticket(&ticket_id, &patch).await.context("patch ticket")?;
    let note = NewNote {
        ticket_id: ticket_id.clone(),
        description: "contract check".into(),
        user_id: None,
        raw: None,
    };
    client.create_note(&note).await.context("create note")?;
    let missing = client.get_ticket("does-not-exist").await;
    if !matches!(missing, Err(deskpilot::ticketing::TicketingError::NotFound { .. })) {
        bail!("an unknown ticket id should be NotFound, got {missing:?}");
    }
    println!(
        "contract ok: {} categories, {} tickets ({} updated since {}), {} notes on ticket {ticket_id}",
        categories.len(),
        tickets.len(),
        recent.items.len(),
        deskpilot::ticketing::model::format_timestamp(since),
        notes.items.len()
    );
    Ok(())
}
