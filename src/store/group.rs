//! Group commit of shadowed tickets' last commits on a SQLite file.
//!
//! Each such commit is flushed to disk before its event is acked, and on a SQLite file the flush
//! (an fsync of the WAL, with the block writes behind it) costs more CPU than the statements.
//! Finishers that arrive while the writer is busy queue here; whichever takes the writer next
//! runs every queued finish in one transaction, so one flush makes them all durable, and hands
//! each its own result. A finisher alone runs alone, as before, with no wait added.
//!
//! A batch is one script (one call to the connection): the single finish's two statements once
//! per item with its parameters renumbered, padded with items that match nothing up to a power
//! of two so that few distinct scripts are ever prepared. A batch that fails (a statement error)
//! is rolled back and its items run one by one, so one bad item fails alone.

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
/// Parameters of one finish in a batch script.
const PARAMS_PER_ITEM: usize = 23;

/// Stands for the proposal's id in an outcome text until SQL puts the id in its place.
pub(super) const PROPOSAL_ID: &str = "\u{1}proposal-id\u{1}";

/// One finish: the proposal is inserted only while the key's lease is held (checked under the
/// write lock, so the two statements agree), and `Done` returns the item's number and the
/// proposal's id; no row back means the lease is lost and nothing was written for it.
/// `$1..$4` key and holder, `$5` outcome with `$6` standing for the id, `$7..$14` the decision's
/// columns, `$15` whether to record them, `$16..$22` the proposal, `$23` the item's number.
const ITEM: &str = concat!(
    "INSERT INTO proposals (connection_id, ticket_id, event_id, decision, report, mode, why_shadowed, \
     ticket_subject, ticket_url, status, created_at) \
     SELECT $21, $22, $16, $7, $8, $17, $18, $19, $20, 'pending', ",
    sql!(@sqlite NOW),
    " WHERE EXISTS (SELECT 1 FROM ledger WHERE connection_id = $1 AND ticket_id = $2 AND kind = $3 \
     AND claimed_by = $4 AND lease_until IS NOT NULL) \
     ON CONFLICT (connection_id, ticket_id, event_id) DO NOTHING; ",
    "UPDATE ledger SET step = 'done', \
     outcome = replace($5, $6, CAST((SELECT id FROM proposals WHERE connection_id = $21 \
     AND ticket_id = $22 AND event_id = $16) AS TEXT)), \
     decision = CASE WHEN $15 = 1 THEN $7 ELSE decision END, \
     report = CASE WHEN $15 = 1 THEN $8 ELSE report END, \
     origin = CASE WHEN $15 = 1 THEN $9 ELSE origin END, \
     prompt_version = CASE WHEN $15 = 1 THEN $10 ELSE prompt_version END, \
     prompt_tokens = CASE WHEN $15 = 1 THEN $11 ELSE prompt_tokens END, \
     completion_tokens = CASE WHEN $15 = 1 THEN $12 ELSE completion_tokens END, \
     cost_usd = CASE WHEN $15 = 1 THEN $13 ELSE cost_usd END, \
     latency_ms = CASE WHEN $15 = 1 THEN $14 ELSE latency_ms END, \
     decided_at = CASE WHEN $15 = 1 THEN ",
    sql!(@sqlite NOW),
    " ELSE decided_at END, finished_at = ",
    sql!(@sqlite NOW),
    ", lease_until = NULL, updated_at = ",
    sql!(@sqlite NOW),
    " WHERE connection_id = $1 AND ticket_id = $2 AND kind = $3 AND claimed_by = $4 \
     AND lease_until IS NOT NULL \
     RETURNING $23 AS item, (SELECT id FROM proposals WHERE connection_id = $21 AND ticket_id = $22 \
     AND event_id = $16) AS proposal_id; "
);

/// The batch scripts, by size: `SCRIPTS[k]` commits `2^k` items.
static SCRIPTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let placeholder = regex::Regex::new(r"\$(\d+)").expect("a valid pattern");
    (0..=MAX_BATCH.trailing_zeros())
        .map(|k| {
            let mut script = String::from("BEGIN IMMEDIATE; ");
            for i in 0..1usize << k {
                let item = placeholder.replace_all(ITEM, |c: &regex::Captures<'_>| {
                    let n: usize = c[1].parse().expect("digits");
                    format!("${}", n + i * PARAMS_PER_ITEM)
                });
                script.push_str(&item);
            }
            script.push_str("COMMIT");
            script
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
        let script: &'static str = &SCRIPTS[size.trailing_zeros() as usize];
        let mut query = sqlx::query(script);
        for (i, (finish, _)) in batch.iter().enumerate() {
            query = bind(query, finish, i as i64);
        }
        for _ in batch.len()..size {
            query = bind_nothing(query);
        }
        match writer.script(query).await {
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
            // `script` rolled the batch back: each runs alone and gets its own answer.
            Err(_) if batch.len() > 1 => {
                for (finish, reply) in batch {
                    let query = bind(sqlx::query(SCRIPTS[0].as_str()), &finish, 0);
                    let result = writer
                        .script(query)
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
    fn batch_scripts_number_every_item_s_parameters_apart() {
        assert_eq!(SCRIPTS.len(), 6, "1, 2, 4, 8, 16 and 32 items");
        let one = &SCRIPTS[0];
        assert!(one.starts_with("BEGIN IMMEDIATE; ") && one.ends_with("COMMIT"));
        assert!(one.contains("$23 AS item") && !one.contains("$24"));
        let four = &SCRIPTS[2];
        assert_eq!(four.matches("INSERT INTO proposals").count(), 4);
        assert!(four.contains(&format!("${} AS item", 4 * PARAMS_PER_ITEM)));
        assert!(!four.contains(&format!("${}", 4 * PARAMS_PER_ITEM + 1)));
    }
}
