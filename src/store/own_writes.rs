//! What deskpilot itself wrote to a ticket, and when: the question the ingest loop guard asks
//! before it reports a ticket change as new work.
//!
//! Two places record helpdesk writes: the ledger (a worker's patch and note: from `decided_at`,
//! recorded before the first write, to the row's last update once finished or released, or to
//! the end of the lease while a worker is still on it) and the proposals a reviewer approved
//! (from `reviewed_at` to `applied_at`). Shadowed work wrote nothing.

use std::time::Duration;

use time::OffsetDateTime;

use super::{
    cursors::epoch_ms,
    error::StoreError,
    handle::Store,
    sql::{from_ms, get},
};

/// The newest write window of `$1`/`$2` that contains `$3` widened by `$4` on both sides. A
/// worker still on the key (its lease live, the decision recorded) may write until its lease
/// ends: a helpdesk can announce the patch before the worker has recorded it.
const NEAREST: &str = "SELECT wrote_until FROM ( \
     SELECT wrote_until FROM ( \
       SELECT decided_at, CASE WHEN step = 'done' OR lease_until IS NULL THEN updated_at \
         ELSE lease_until END AS wrote_until FROM ledger \
       WHERE connection_id = $1 AND ticket_id = $2 AND decided_at IS NOT NULL \
         AND ((step = 'done' AND outcome LIKE 'applied%') OR step = 'ticket_updated' \
           OR (step = 'decided' AND lease_until IS NOT NULL)) \
     ) AS ledger_writes WHERE decided_at - $4 <= $3 AND wrote_until + $4 >= $3 \
     UNION ALL \
     SELECT applied_at AS wrote_until FROM proposals WHERE connection_id = $1 AND ticket_id = $2 \
       AND status = 'applied' AND applied_at IS NOT NULL \
       AND COALESCE(reviewed_at, applied_at) - $4 <= $3 AND applied_at + $4 >= $3 \
   ) AS writes ORDER BY wrote_until DESC LIMIT 1";

impl Store {
    /// When deskpilot's own write that explains a change of ticket `ticket_id` at `at` ended: a
    /// write to that ticket whose span, widened by `tolerance` for the helpdesk's clock, contains
    /// `at`. `None` when no write of deskpilot's explains it (a person or another tool changed the
    /// ticket, or deskpilot never wrote to it).
    pub async fn own_write_near(
        &self,
        connection_id: &str,
        ticket_id: &str,
        at: OffsetDateTime,
        tolerance: Duration,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let at_ms = epoch_ms(at);
        let tolerance_ms = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
        let row = sqlx::query(NEAREST)
            .bind(connection_id)
            .bind(ticket_id)
            .bind(at_ms)
            .bind(tolerance_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("own_write_near"))?;
        row.map(|row| from_ms("own write", get(&row, "wrote_until")?)).transpose()
    }
}
