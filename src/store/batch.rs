//! Group commit of single flushed writes on a SQLite file (recording a decision before the
//! helpdesk is written, finishing an applied ticket, recording a failure, ...).
//!
//! As with shadowed tickets' finishes (`group.rs`), the flush costs more than the statement, and
//! applied tickets reach these writes together. Writes that arrive while the writer is busy
//! queue here; whichever caller takes the writer next runs the queued ones in one transaction,
//! one flush for all, and hands each its own count of changed rows. A write alone runs alone,
//! as before, in its own autocommit statement.
//!
//! In a batch each statement still runs on its own: one that fails is undone alone (SQLite
//! backs out the failing statement and keeps the transaction) and its caller gets the error;
//! the others commit. Results are only handed out once the commit is on disk; a failed commit
//! fails every item of the batch, and each caller retries as after any failed write.

use sqlx::{Any, Execute, SqlStr, any::AnyArguments, query::Query};
use tokio::sync::oneshot;

use super::{
    queue::{Queue, QueueTicket},
    writer::Writer,
};

/// Most writes committed together.
const MAX_BATCH: usize = 32;

/// Rows changed, or why the statement (or its batch's commit) failed.
pub(super) type Written = Result<u64, sqlx::Error>;

/// A statement with its parameters, owned so that whichever caller holds the writer can run it.
pub(super) struct Write {
    sql: SqlStr,
    arguments: Option<AnyArguments>,
}

/// Flushed single writes waiting for the writer.
#[derive(Default)]
pub(crate) struct WriteQueue(Queue<Write, Written>);

impl WriteQueue {
    /// Queues `query` (one statement); its result arrives on the receiver once some holder of
    /// the writer has committed it. The ticket removes it again if it is still waiting when
    /// dropped. A query whose parameters failed to encode is answered at once.
    pub(super) fn push(
        &self,
        mut query: Query<'_, Any, AnyArguments>,
    ) -> (Option<QueueTicket<'_, Write, Written>>, oneshot::Receiver<Written>) {
        match query.take_arguments() {
            Ok(arguments) => {
                let (ticket, rx) = self.0.push(Write { sql: query.sql(), arguments });
                (Some(ticket), rx)
            }
            Err(e) => {
                let (reply, rx) = oneshot::channel();
                let _ = reply.send(Err(sqlx::Error::Encode(e)));
                (None, rx)
            }
        }
    }

    /// Runs up to [`MAX_BATCH`] queued writes (whose callers still wait) on `writer`, in one
    /// transaction when there are several, and answers each.
    pub(super) async fn run(&self, writer: &mut Writer<'_>) {
        let (mut queries, replies): (Vec<_>, Vec<_>) = self
            .0
            .take(MAX_BATCH)
            .into_iter()
            .map(|(w, reply)| (sqlx::query_with(w.sql, w.arguments.unwrap_or_default()), reply))
            .unzip();
        let results = match queries.len() {
            0 => return,
            1 => vec![writer.changed(queries.pop().expect("one query")).await],
            _ => match writer.together(queries).await {
                Ok(results) => results,
                Err(e) => {
                    let text = format!("the batch this write was committed in failed: {e}");
                    replies.iter().map(|_| Err(sqlx::Error::Protocol(text.clone()))).collect()
                }
            },
        };
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[tokio::test]
    async fn writes_arriving_together_each_get_their_own_answer_and_a_bad_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::connect(&url).await.unwrap();
        let create = sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
        store.write("test", create).await.unwrap();

        // The first takes the writer alone; the others queue behind it and commit as one batch.
        let writes = (0..24i64).map(|i| {
            let store = &store;
            async move {
                let query = match i {
                    // NOT NULL violated: this statement fails, the rest of its batch commits.
                    7 => sqlx::query("INSERT INTO t (id, v) VALUES ($1, NULL)").bind(i),
                    // Matches nothing.
                    9 => sqlx::query("UPDATE t SET v = 'y' WHERE id = $1").bind(1000 + i),
                    _ => sqlx::query("INSERT INTO t (id, v) VALUES ($1, 'x')").bind(i),
                };
                store.write("test", query).await
            }
        });
        let results = futures::future::join_all(writes).await;
        for (i, result) in results.iter().enumerate() {
            match i {
                7 => assert!(result.is_err(), "the bad insert fails: {result:?}"),
                9 => assert_eq!(result.as_ref().unwrap(), &0, "nothing to update"),
                _ => assert_eq!(result.as_ref().unwrap(), &1, "item {i}"),
            }
        }
        store.close().await;

        let reopened = Store::connect(&url).await.unwrap();
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM t ORDER BY id").fetch_all(&reopened.pool).await.unwrap();
        let expected: Vec<i64> = (0..24).filter(|i| *i != 7 && *i != 9).collect();
        assert_eq!(ids, expected, "every good write committed, on disk");
        reopened.close().await;
    }
}
