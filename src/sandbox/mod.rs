//! The sandbox helpdesk: a local server that speaks Unified.to's Ticketing API
//! (`/ticketing/{connection_id}/{ticket|customer|note|category}[/{id}]`) over sample data.
//!
//! It is the demo's helpdesk and the test double of the Unified client, so it follows
//! `unified-ticketing.md` §1–§7 wherever that reference is specific, and picks one documented
//! behaviour where it is silent:
//!
//! - **Connections.** One per data file `<connection_id>.json`; the bundled ones are `demo` and
//!   `acme-retail`. An unknown connection is a 404.
//! - **Auth.** Every `/ticketing/...` route needs `Authorization: Bearer <api key>` (scheme in any
//!   case); otherwise 401. `GET /health` needs none.
//! - **Errors.** Always JSON: `{"error": "<message>", "status": <code>}`; 400 for a bad parameter or
//!   body (naming the parameter, or quoting serde), 401, 404 for unknown connections, ids and
//!   routes, 405, 500 when the state file cannot be written.
//! - **Lists.** A bare JSON array. `limit` (default and cap 100; 0 means the default), `offset`,
//!   `updated_gte` (RFC 3339, `updated_at >= value`; items without `updated_at` never match),
//!   `sort` = `updated_at|created_at|name` (tickets sort by `subject` and notes by `description`
//!   for `name`), `order` = `asc|desc` (default `asc`), `query` (case-insensitive substring of
//!   subject, description, name, emails, telephones), and the filters of §2. Without `sort`, items
//!   come in id order, numbers numerically (`2` before `10`). Unknown parameters are ignored;
//!   unknown `sort`/`order` values and non-numeric `limit`/`offset` are a 400.
//! - **`fields`.** Repeated keys, comma-separated, or both. Exactly the listed fields come back;
//!   unknown names are ignored. `raw` appears only when asked for (`raw`, or `raw.<name>` for single
//!   vendor fields). The `raw` query parameter (vendor passthrough) is accepted and ignored.
//! - **Output.** The model types, limited to Unified's field names; never a `null` (also not
//!   inside `raw`); dates RFC 3339 in UTC with `Z`.
//! - **Writes.** POST answers 200 with the created object; `id`, `created_at` and `updated_at` are
//!   always server-assigned (ignored in bodies). New ids continue the table's `<prefix><number>`
//!   sequence (zero padding kept) and are never reused. PUT and PATCH behave alike: fields merge,
//!   `null` clears one, the whole object comes back, and `updated_at` moves forward (never
//!   backwards, even over future-dated sample data); a write that changes nothing is a no-op.
//!   New tickets default to `ACTIVE`; `CLOSED` stamps `closed_at` if absent; reopening clears it.
//!   A note needs an existing `ticket_id` (400 without, 404 for an unknown ticket) and bumps its
//!   ticket's `updated_at`. DELETE answers 200 with an empty body; deleting a ticket deletes its
//!   notes.
//! - **Webhooks.** A ticket created (`created`), updated by PUT/PATCH or given a new note
//!   (`updated`) is POSTed Unified-style in the background, signed with [`sign_delivery`], to the
//!   sandbox's hook URL and to every subscription made with `POST /unified/webhook` for that
//!   connection, `ticketing_ticket` and event (`GET /unified/webhook[/{id}]` lists and reads them,
//!   `DELETE /unified/webhook/{id}` removes one; kept in memory).
//! - **Zendesk.** The same helpdesks in Zendesk Support's own API under `/zendesk/api/v2/...`
//!   (`demo`) and `/zendesk/{connection_id}/api/v2/...` (`src/sandbox/zendesk.rs`).
//! - **State.** In memory; with a state file, loaded from it at start and saved after each change.
//! - **Flavours.** The same data in a vendor's own API shape under its prefix: Freshdesk API v2 at
//!   `/freshdesk/api/v2/...` (see `freshdesk.rs`), Intercom's API 2.14 at `/intercom/...` (see
//!   `intercom.rs`), ServiceNow's Table API at `/servicenow/api/now/table/...` (see `servicenow.rs`).

mod data;
mod error;
mod freshdesk;
mod intercom;
mod markup;
mod query;
mod resource;
mod routes;
mod server;
mod servicenow;
mod subscription;
mod table;
mod webhook;
mod zendesk;

pub use data::Helpdesk;
pub use server::{RunningSandbox, SandboxOptions, serve, spawn};
pub use servicenow::sys_id as servicenow_sys_id;
pub use table::Table;
pub use webhook::sign_delivery;
pub use zendesk::CATEGORY_FIELD_ID as ZENDESK_CATEGORY_FIELD_ID;
