//! Drives every Zendesk operation deskpilot uses against an account URL and fails on the first
//! error. Run through Prism's validating proxy in front of the sandbox's Zendesk flavour, it
//! checks the requests we send and the responses the flavour returns against Zendesk's OpenAPI
//! description (whose paths carry no `.json` suffix).
//!
//! Usage: `cargo run --example zendesk_contract -- ACCOUNT_URL API_TOKEN CATEGORY_FIELD_ID`

use anyhow::{Context, bail};
use deskpilot::{
    http::HttpSettings,
    ticketing::{
        ListQuery, NewNote, TicketPatch, TicketReader, Ticketing, TicketingError, all_notes, all_tickets,
        collect_all,
        zendesk::{TicketExport, ZendeskAuth, ZendeskClient, wire::CategorySource},
    },
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, token, field] = args.as_slice() else {
        bail!("usage: zendesk_contract ACCOUNT_URL API_TOKEN CATEGORY_FIELD_ID");
    };
    let field: u64 = field.parse().context("CATEGORY_FIELD_ID must be a number")?;
    let auth =
        || ZendeskAuth::ApiToken { email: "agent@sandbox.example".into(), token: token.clone().into() };
    let settings = HttpSettings::default();
    let client =
        ZendeskClient::new(url, auth(), TicketExport::Search, CategorySource::Field(field), &settings)?;
    let incremental =
        ZendeskClient::new(url, auth(), TicketExport::Incremental, CategorySource::Field(field), &settings)?;

    let categories = client.list_categories().await.context("category field")?;
    let since = time::macros::datetime!(2026-01-01 00:00 UTC);
    let q = ListQuery { limit: Some(50), ..ListQuery::updated_since(since) };
    let tickets = collect_all(all_tickets(&client, q.clone())).await.context("search export, to the end")?;
    let changed =
        collect_all(all_tickets(&incremental, q)).await.context("incremental export, to the end")?;
    let first = tickets.first().context("the helpdesk has no tickets")?;
    let id = first.id.clone().context("ticket without id")?;
    let ticket = client.get_ticket(&id).await.context("get ticket")?;
    if let Some(customer) = &ticket.customer_id {
        client.get_customer(customer).await.context("get requester")?;
    }
    let notes = collect_all(all_notes(&client, ListQuery { limit: Some(2), ..ListQuery::notes_of(&id) }))
        .await
        .context("comments")?;
    let patch = TicketPatch {
        priority: Some("high".into()),
        category_id: categories.first().and_then(|c| c.id.clone()),
        tags: Some(vec!["contract".into()]),
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
        "contract ok: {} categories, {} tickets exported, {} changed, {} comments on ticket {id}",
        categories.len(),
        tickets.len(),
        changed.len(),
        notes.len()
    );
    Ok(())
}
