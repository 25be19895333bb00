//! Group commit of shadowed tickets' last commits on a SQLite file.
//!
//! Each such commit is flushed to disk before its event is acked, and on a SQLite file the flush
//! (an fsync of the WAL, with the block writes behind it) costs more CPU than the statements.
//! Finishers that arrive while the writer is busy queue here; whichever takes the writer next
//! runs every queued finish in one transaction, so one flush makes them all durable, and hands
//! each its own result. A finisher alone runs alone, as before, with no wait added.
//!
//! A batch is ONE statement: a row per item inserted into a TEMP table of the write
//! connection, whose trigger does each item's work before its row goes in (the proposal, inserted
//! only while the key's lease is held, then `Done`) and skips the row when the lease is lost.
//! `RETURNING` gives back the item's number and proposal id of every row that went in. One
//! statement commits on its own, so nothing can be left half-done between statements, and the
//! connection's thread answers twice (the rows, then the commit) where a `BEGIN … COMMIT` script
//! answers once per statement, each answer waking the runtime when it idles. Batches are padded
//! with items that match nothing up to a power of two so that few distinct statements are ever
//! prepared. A batch that fails is rolled back whole and its items run one by one, so one bad
//! item fails alone.

use std::sync::LazyLock;

use sqlx::{Any, any::AnyArguments, query::Query};
use tokio::sync::oneshot;

use super::{
    entry::LedgerKey,
    ledger::{DecisionColumns, MAX_DETAIL_CHARS},
    queue::{Queue, QueueTicket},
    sql::{clip, get, sql},
    writer::Writer,
};

/// Most finishes committed together (a power of two).
const MAX_BATCH: usize = 32;
/// Parameters of one finish in a batch statement: the columns of `finishing`, in order.
const PARAMS_PER_ITEM: usize = 23;

/// Stands for the proposal's id in an outcome text until SQL puts the id in its place.
pub(super) const PROPOSAL_ID: &str = "\u{1}proposal-id\u{1}";

/// Run once on the write connection that commits finishes (TEMP objects belong to it alone and
/// live as long as it does). A finish's row carries the key and holder, the outcome with the
/// stand-in for the id, the decision's columns and whether to record them, and the proposal.
/// The trigger runs BEFORE the row goes in, so `RETURNING` already sees the proposal; it keeps
/// the table down to the last row it let in.
pub(super) const SETUP: &str = concat!(
    "PRAGMA temp_store = MEMORY; ",
    "CREATE TEMP TABLE IF NOT EXISTS finishing (\
     connection_id TEXT, ticket_id TEXT, kind TEXT, worker TEXT, outcome TEXT, marker TEXT, \
     decision TEXT, report TEXT, origin TEXT, prompt_version TEXT, prompt_tokens INTEGER, \
     completion_tokens INTEGER, cost_usd REAL, latency_ms INTEGER, record_decision INTEGER, \
     event_id TEXT, mode TEXT, why_shadowed TEXT, ticket_subject TEXT, ticket_url TEXT, \
     p_connection_id TEXT, p_ticket_id TEXT, item INTEGER); ",
    "CREATE TEMP TRIGGER IF NOT EXISTS finishing_commits BEFORE INSERT ON finishing BEGIN ",
    "SELECT RAISE(IGNORE) WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE connection_id = NEW.connection_id \
     AND ticket_id = NEW.ticket_id AND kind = NEW.kind AND claimed_by = NEW.worker \
     AND lease_until IS NOT NULL); ",
    "INSERT INTO proposals (connection_id, ticket_id, event_id, decision, report, mode, why_shadowed, \
     ticket_subject, ticket_url, status, created_at) \
     VALUES (NEW.p_connection_id, NEW.p_ticket_id, NEW.event_id, NEW.decision, NEW.report, NEW.mode, \
     NEW.why_shadowed, NEW.ticket_subject, NEW.ticket_url, 'pending', ",
    sql!(@sqlite NOW),
    ") ON CONFLICT (connection_id, ticket_id, event_id) DO NOTHING; ",
    "UPDATE ledger SET step = 'done', \
     outcome = replace(NEW.outcome, NEW.marker, CAST((SELECT id FROM proposals \
     WHERE connection_id = NEW.p_connection_id AND ticket_id = NEW.p_ticket_id \
     AND event_id = NEW.event_id) AS TEXT)), \
     decision = CASE WHEN NEW.record_decision = 1 THEN NEW.decision ELSE decision END, \
     report = CASE WHEN NEW.record_decision = 1 THEN NEW.report ELSE report END, \
     origin = CASE WHEN NEW.record_decision = 1 THEN NEW.origin ELSE origin END, \
     prompt_version = CASE WHEN NEW.record_decision = 1 THEN NEW.prompt_version ELSE prompt_version END, \
     prompt_tokens = CASE WHEN NEW.record_decision = 1 THEN NEW.prompt_tokens ELSE prompt_tokens END, \
     completion_tokens = CASE WHEN NEW.record_decision = 1 THEN NEW.completion_tokens \
     ELSE completion_tokens END, \
     cost_usd = CASE WHEN NEW.record_decision = 1 THEN NEW.cost_usd ELSE cost_usd END, \
     latency_ms = CASE WHEN NEW.record_decision = 1 THEN NEW.latency_ms ELSE latency_ms END, \
     decided_at = CASE WHEN NEW.record_decision = 1 THEN ",
    sql!(@sqlite NOW),
    " ELSE decided_at END, finished_at = ",
    sql!(@sqlite NOW),
    ", lease_until = NULL, updated_at = ",
    sql!(@sqlite NOW),
    " WHERE connection_id = NEW.connection_id AND ticket_id = NEW.ticket_id AND kind = NEW.kind \
     AND claimed_by = NEW.worker AND lease_until IS NOT NULL; ",
    "DELETE FROM finishing; ",
    "END"
);

/// The batch statements, by size: `STATEMENTS[k]` commits `2^k` items.
static STATEMENTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    (0..=MAX_BATCH.trailing_zeros())
        .map(|k| {
            let rows: Vec<String> = (0..1usize << k)
                .map(|i| {
                    let params: Vec<String> =
                        (1..=PARAMS_PER_ITEM).map(|n| format!("${}", n + i * PARAMS_PER_ITEM)).collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            format!(
                "INSERT INTO finishing VALUES {} RETURNING item, (SELECT id FROM proposals \
                 WHERE connection_id = finishing.p_connection_id AND ticket_id = finishing.p_ticket_id \
                 AND event_id = finishing.event_id) AS proposal_id",
                rows.join(", ")
            )
        })
        .collect()
});

/// A shadowed ticket's last commit, owned so that whichever finisher holds the writer can run it.
pub(super) struct Finish {
    pub(super) key: LedgerKey,
    pub(super) worker: String,
    /// With [`PROPOSAL_ID`] where the proposal's id goes.
    pub(super) outcome: String,
    pub(super) columns: DecisionColumns,
    pub(super) record_decision: bool,
    /// The proposal's own fields (its decision and report are in `columns`).
    pub(super) connection_id: String,
    pub(super) ticket_id: String,
    pub(super) event_id: String,
    pub(super) mode: String,
    pub(super) why_shadowed: String,
    pub(super) ticket_subject: Option<String>,
    pub(super) ticket_url: Option<String>,
}

/// The proposal's id, or `None` when the lease was lost.
pub(super) type Finished = Result<Option<i64>, sqlx::Error>;

/// Finishes waiting for the writer.
#[derive(Default)]
pub(crate) struct FinishQueue(Queue<Finish, Finished>);

impl FinishQueue {
    /// Queues `finish`; its result arrives on the receiver once some holder of the writer has
    /// run it. The ticket removes it again if it is still waiting when dropped.
    pub(super) fn push(
        &self,
        finish: Finish,
    ) -> (QueueTicket<'_, Finish, Finished>, oneshot::Receiver<Finished>) {
        self.0.push(finish)
    }

    /// Runs up to [`MAX_BATCH`] queued finishes (whose callers still wait) on `writer`, one
    /// transaction for all, and answers each.
    pub(super) async fn run(&self, writer: &mut Writer<'_>) {
        let batch = self.0.take(MAX_BATCH);
        if batch.is_empty() {
            return;
        }
        let size = batch.len().next_power_of_two();
        let statement: &'static str = &STATEMENTS[size.trailing_zeros() as usize];
        let mut query = sqlx::query(statement);
        for (i, (finish, _)) in batch.iter().enumerate() {
            query = bind(query, finish, i as i64);
        }
        for _ in batch.len()..size {
            query = bind_nothing(query);
        }
        match writer.rows(query).await {
            Ok(rows) => {
                // A finish with no row back lost its lease; its caller reads who holds it now.
                let mut ids = vec![None; batch.len()];
                for row in &rows {
                    let (Ok(item), Ok(id)) = (get::<i64>(row, "item"), get::<i64>(row, "proposal_id")) else {
                        continue;
                    };
                    if let Some(slot) = usize::try_from(item).ok().and_then(|i| ids.get_mut(i)) {
                        *slot = Some(id);
                    }
                }
                for ((_, reply), id) in batch.into_iter().zip(ids) {
                    let _ = reply.send(Ok(id));
                }
            }
            // The statement was rolled back whole: each runs alone and gets its own answer.
            Err(_) if batch.len() > 1 => {
                for (finish, reply) in batch {
                    let query = bind(sqlx::query(STATEMENTS[0].as_str()), &finish, 0);
                    let result = writer
                        .rows(query)
                        .await
                        .map(|rows| rows.first().and_then(|r| get(r, "proposal_id").ok()));
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                if let Some((_, reply)) = batch.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

fn bind<'q>(query: Query<'q, Any, AnyArguments>, f: &'q Finish, item: i64) -> Query<'q, Any, AnyArguments> {
    let query =
        f.key.bind(query).bind(f.worker.as_str()).bind(clip(&f.outcome, MAX_DETAIL_CHARS)).bind(PROPOSAL_ID);
    DecisionColumns::bind(query, Some(&f.columns))
        .bind(i64::from(f.record_decision))
        .bind(f.event_id.as_str())
        .bind(f.mode.as_str())
        .bind(f.why_shadowed.as_str())
        .bind(f.ticket_subject.as_deref())
        .bind(f.ticket_url.as_deref())
        .bind(f.connection_id.as_str())
        .bind(f.ticket_id.as_str())
        .bind(item)
}

/// An item that matches no key: every parameter NULL, so its statements change nothing.
fn bind_nothing(mut query: Query<'_, Any, AnyArguments>) -> Query<'_, Any, AnyArguments> {
    for _ in 0..PARAMS_PER_ITEM {
        query = query.bind(None::<&str>);
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_statements_number_every_item_s_parameters_apart() {
        assert_eq!(STATEMENTS.len(), 6, "1, 2, 4, 8, 16 and 32 items");
        let one = &STATEMENTS[0];
        assert!(one.contains("VALUES ($1, $2,") && one.contains(", $23) RETURNING") && !one.contains("$24"));
        let four = &STATEMENTS[2];
        assert_eq!(four.matches("), (").count(), 3, "four rows");
        let last = 4 * PARAMS_PER_ITEM;
        assert!(
            four.contains(&format!("(${}, ", 3 * PARAMS_PER_ITEM + 1))
                && four.contains(&format!(", ${last})"))
        );
        assert!(!four.contains(&format!("${}", last + 1)));
    }

    #[tokio::test]
    async fn the_temp_table_has_a_column_per_parameter() {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect("sqlite::memory:").await.unwrap();
        super::super::migrate::migrator(super::super::Backend::Sqlite).run(&mut conn).await.unwrap();
        sqlx::raw_sql(SETUP).execute(&mut conn).await.unwrap();
        let columns: i64 = sqlx::query_scalar("SELECT count(*) FROM pragma_table_info('finishing', 'temp')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(columns, PARAMS_PER_ITEM as i64);
    }
}
