//! `deskpilot tickets list|get`: read tickets through a connection, as JSON on stdout.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::print_json;
use crate::{
    config::Config,
    ticketing::{
        DynTicketReader, DynTicketing, ListQuery, SortField, SortOrder, TicketingError, all_notes,
        all_tickets, collect_all,
    },
};

/// `deskpilot tickets ...`.
#[derive(Debug, Subcommand)]
pub enum TicketsCommand {
    /// Print a JSON array of normalized tickets
    List(ListArgs),
    /// Print one ticket (with --with-notes: {"ticket", "customer", "notes"})
    Get(GetArgs),
}

/// Which connection and how to print.
#[derive(Debug, Args)]
struct Target {
    /// Connection id from the config (optional when only one is configured)
    #[arg(long, env = "DESKPILOT_CONNECTION", value_name = "ID")]
    connection: Option<String>,

    /// One line of JSON instead of pretty-printed
    #[arg(long)]
    compact: bool,
}

/// Options of `tickets list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: Target,

    /// Only tickets updated at or after this RFC 3339 time (oldest first), e.g. 2024-05-01T00:00:00Z
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339)]
    updated_gte: Option<OffsetDateTime>,

    /// Tickets per page (1–100); without --all only the first page is printed
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    limit: Option<u32>,

    /// Follow every page instead of printing only the first
    #[arg(long)]
    all: bool,

    /// Free-text search (subject, description, customer)
    #[arg(long, value_name = "TEXT")]
    query: Option<String>,
}

/// Options of `tickets get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    target: Target,

    /// The ticket's id in the helpdesk
    #[arg(value_name = "TICKET_ID")]
    id: String,

    /// Also print the ticket's notes and its customer
    #[arg(long)]
    with_notes: bool,
}

pub(super) async fn run(config: &Config, cmd: TicketsCommand) -> anyhow::Result<()> {
    match cmd {
        TicketsCommand::List(args) => list(config, args).await,
        TicketsCommand::Get(args) => get(config, args).await,
    }
}

async fn list(config: &Config, args: ListArgs) -> anyhow::Result<()> {
    let (id, client) = connect(config, &args.target)?;
    let mut query = ListQuery { limit: args.limit, query: args.query, ..ListQuery::default() };
    if let Some(since) = args.updated_gte {
        query.updated_gte = Some(since);
        // Oldest first, so paging stays stable while tickets keep changing.
        query.sort = Some(SortField::UpdatedAt);
        query.order = Some(SortOrder::Asc);
    }
    let tickets = if args.all {
        collect_all(all_tickets(client.as_ref(), query)).await
    } else {
        client.list_tickets(&query).await.map(|page| page.items)
    }
    .with_context(|| format!("could not list the tickets of connection `{id}`"))?;
    print_json(&tickets, args.target.compact)
}

async fn get(config: &Config, args: GetArgs) -> anyhow::Result<()> {
    let (conn, client) = connect(config, &args.target)?;
    let what = || format!("could not read ticket `{}` of connection `{conn}`", args.id);
    let ticket = client.get_ticket(&args.id).await.with_context(what)?;
    if !args.with_notes {
        return print_json(&ticket, args.target.compact);
    }
    let notes =
        collect_all(all_notes(client.as_ref(), ListQuery::notes_of(&args.id))).await.with_context(what)?;
    let customer = match ticket.customer_id.as_deref() {
        Some(customer_id) => match client.get_customer(customer_id).await {
            Ok(c) => Some(c),
            // A deleted customer should not hide the ticket.
            Err(TicketingError::NotFound { .. }) => {
                tracing::warn!(customer_id, "the ticket's customer does not exist; printing null");
                None
            }
            Err(e) => return Err(e).with_context(what),
        },
        None => None,
    };
    print_json(&json!({ "ticket": ticket, "customer": customer, "notes": notes }), args.target.compact)
}

/// The connection named by `--connection` (or the only one) and its client, read only.
fn connect(config: &Config, target: &Target) -> anyhow::Result<(String, DynTicketReader)> {
    let (id, client) = connection_client(config, target.connection.as_deref())?;
    Ok((id, client))
}

/// The connection with this id (or the only one configured) and its client.
pub(super) fn connection_client(config: &Config, id: Option<&str>) -> anyhow::Result<(String, DynTicketing)> {
    let id = match (id, config.connections.as_slice()) {
        (Some(id), _) => id.to_owned(),
        (None, [only]) => only.id.clone(),
        (None, _) => anyhow::bail!(
            "which connection? pass --connection ID; configured connections: {}",
            config.connection_ids()
        ),
    };
    let client = crate::app::parts::helpdesk_for(config, &id)?;
    Ok((id, client))
}

fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("{e}; expected an RFC 3339 date-time such as 2024-05-01T00:00:00Z"))
}
