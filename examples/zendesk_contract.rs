//! Drives every Zendesk operation deskpilot uses against an account URL and fails on the first
//! error. Run through Prism's validating proxy in front of the sandbox's Zendesk flavour, it
//! checks the requests we send and the responses the flavour returns against Zendesk's OpenAPI
//! description (whose paths carry no `.json` suffix).
//!
//! Usage: `cargo run --example zendesk_contract -- ACCOUNT_URL API_TOKEN CATEGORY_FIELD_ID`

#[path = "common/walk.rs"]
mod walk;

use anyhow::{Context, bail};
use deskpilot::{
    http::HttpSettings,
    ticketing::{
        ListQuery, TicketPatch, all_tickets, collect_all,
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

    let walked = walk::walk(&client, Some(2), |_, categories| TicketPatch {
        priority: Some("high".into()),
        category_id: categories.first().and_then(|c| c.id.clone()),
        tags: Some(vec!["contract".into()]),
        ..TicketPatch::default()
    })
    .await?;
    let since = time::macros::datetime!(2026-01-01 00:00 UTC);
    let q = ListQuery { limit: Some(50), ..ListQuery::updated_since(since) };
    let changed =
        collect_all(all_tickets(&incremental, q)).await.context("incremental export, to the end")?;
    println!(
        "contract ok: {} categories, {} tickets exported, {} changed, {} comments on ticket {}",
        walked.categories,
        walked.tickets,
        changed.len(),
        walked.notes,
        walked.ticket
    );
    Ok(())
}
