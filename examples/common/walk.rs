//! The walk every native connector's contract example makes: categories, tickets changed since
//! a time read to the end, one ticket, its customer, its notes, an update, an internal note and
//! an unknown ticket, failing on the first error. Each example builds its client and its patch.

use anyhow::{Context, bail};
use deskpilot::ticketing::{
    Category, ListQuery, NewNote, Ticket, TicketPatch, Ticketing, TicketingError, all_notes, all_tickets,
    collect_all,
};

/// What a walk read, for the example's last line.
pub struct Walked {
    /// Categories listed.
    pub categories: usize,
    /// Tickets listed to the end.
    pub tickets: usize,
    /// Notes of the first ticket.
    pub notes: usize,
    /// The ticket updated and noted.
    pub ticket: String,
}

/// Walks `client`; `notes_page` is the page size of the notes walk, `patch` the update to send.
#[allow(dead_code, reason = "each example uses one of the two walks")]
pub async fn walk(
    client: &dyn Ticketing,
    notes_page: Option<u32>,
    patch: impl FnOnce(&Ticket, &[Category]) -> TicketPatch,
) -> anyhow::Result<Walked> {
    walk_to(client, notes_page, patch, "999999").await
}

/// [`walk`], with `missing` as the unknown ticket (for a backend whose ids have a shape, such as
/// ServiceNow's 32-hex `sys_id`s, so the proxy checks the request and not the id).
pub async fn walk_to(
    client: &dyn Ticketing,
    notes_page: Option<u32>,
    patch: impl FnOnce(&Ticket, &[Category]) -> TicketPatch,
    missing: &str,
) -> anyhow::Result<Walked> {
    let categories = client.list_categories().await.context("categories")?;
    client.tags_in_use().await.context("tags in use")?;
    let since = time::macros::datetime!(2026-01-01 00:00 UTC);
    let q = ListQuery { limit: Some(50), ..ListQuery::updated_since(since) };
    let tickets = collect_all(all_tickets(client, q)).await.context("tickets updated since, to the end")?;
    let first = tickets.first().context("the helpdesk has no tickets")?;
    let id = first.id.clone().context("ticket without id")?;
    let ticket = client.get_ticket(&id).await.context("get ticket")?;
    if let Some(customer) = &ticket.customer_id {
        client.get_customer(customer).await.context("get customer")?;
    }
    let notes = collect_all(all_notes(client, ListQuery { limit: notes_page, ..ListQuery::notes_of(&id) }))
        .await
        .context("notes")?;
    client.update_ticket(&id, &patch(&ticket, &categories)).await.context("update ticket")?;
    let note =
        NewNote { ticket_id: id.clone(), description: "contract check".into(), user_id: None, raw: None };
    client.create_note(&note).await.context("create note")?;
    let unknown = client.get_ticket(missing).await;
    if !matches!(unknown, Err(TicketingError::NotFound { .. })) {
        bail!("an unknown ticket should be NotFound, got {unknown:?}");
    }
    Ok(Walked { categories: categories.len(), tickets: tickets.len(), notes: notes.len(), ticket: id })
}
