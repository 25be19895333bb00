//! The store: SQLite (default, one file, one process) or PostgreSQL (many replicas).
//!
//! It holds the **idempotency ledger** (one row per `(connection, ticket, event kind)`: which
//! step is done, the validated decision, the lease of the worker on it), the **shadow proposals**
//! and their reviews, and the **ingest cursors** (where each poller and backfill stands, under a
//! lease). It is what turns at-least-once delivery into exactly-once effects: a redelivered
//! event claims its key, sees how far an earlier attempt got and finishes from there (DESIGN.md,
//! "Delivery guarantees").
//!
//! **One code path, two backends.** Queries run through sqlx's `AnyPool` with portable SQL (`$N`
//! placeholders, `ON CONFLICT`, `RETURNING`, window functions); only the clock expression differs
//! (`sql.rs`). Timestamps are epoch milliseconds and JSON is TEXT, because the Any driver
//! carries only integers, floats, text and blobs. Migrations live in `migrations/sqlite` and
//! `migrations/postgres`, are embedded in the binary and run at [`Store::connect`]. Decisions
//! arrive as a [`DecisionRecord`], so the store knows nothing of triage's types.
//!
//! **Every operation is one statement or one transaction**, and every write that returns has
//! committed: on SQLite a commit is flushed to disk first (`synchronous = FULL`), so nothing is
//! acked before its effects are durable. A key's last commit, `Done` with its proposal and
//! decision, is one transaction (`finish.rs`).
//!
//! **The database is the lock.** Every ledger write checks the lease holder in its `WHERE`, so
//! there is no read-modify-write window: [`Store::claim`] is a single
//! `INSERT … ON CONFLICT DO UPDATE … WHERE <claimable> RETURNING …`, which PostgreSQL runs under
//! the row lock (concurrent claimers of one key serialise and re-check the condition) and SQLite
//! runs under its single writer lock. Lease times come from the database clock, so replicas with
//! skewed clocks still agree on who holds a key.
//!
//! Knobs: the URL (`store.url`) and [`StoreOptions`] (pool size, acquire timeout). SQLite files
//! are opened with `mode=rwc` (created if missing, parent directory too), WAL journal and sqlx's
//! 5 s `busy_timeout`; their writes go through ONE connection under an async lock and their reads
//! through a small pool beside it (`writer.rs`). PostgreSQL uses the pool for everything.

mod cursors;
mod entry;
mod error;
mod finish;
mod handle;
mod ledger;
mod migrate;
mod outcomes;
mod own_writes;
mod pool;
mod proposals;
mod record;
mod review;
pub(crate) mod sql;
mod stats;
mod writer;

pub use cursors::{CursorClaim, CursorStep, IngestCursor, SeenChange};
pub use entry::{ClaimOutcome, Entry, LedgerKey, Step};
pub use error::StoreError;
pub use handle::Store;
pub use outcomes::{NewOutcome, Outcome};
pub use pool::{StoreOptions, redact};
pub use proposals::{NewProposal, Proposal, ProposalFilter, ProposalStatus};
pub use record::{DecidedBy, DecisionRecord};
pub use review::{ReviewAction, Transition};
pub use sql::Backend;
pub use stats::{ConnectionStats, ProposalCounts, Spend, Stats};
