//! `StoreError`: what went wrong, classified by what the caller does next ([`StoreError::is_retryable`]).

use sqlx::migrate::MigrateError;

/// A store failure.
///
/// `Display` names the operation and never includes the database password (URLs are redacted);
/// the driver's error is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is not one the store understands.
    #[error("store.url `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database could not be opened or reached.
    #[error("store.url `{url_redacted}`: cannot connect")]
    Connect {
        /// The URL with any password replaced by `***`.
        url_redacted: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrations failed (the schema is older or newer than this binary, or a statement failed).
    #[error("store.url `{url_redacted}`: migrations failed")]
    Migrate {
        /// The URL with any password replaced by `***`.
        url_redacted: String,
        /// The migrator's error.
        #[source]
        source: MigrateError,
    },
    /// A statement failed.
    #[error("store: {op} failed")]
    Query {
        /// The store operation (`claim`, `insert_proposal`, ...).
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The caller no longer holds the lease on a ledger key (it expired and another worker took
    /// the key, it was released, or the key does not exist). The caller must stop working on it.
    #[error("store: lease on `{key}` lost by `{worker}` (now held by {})", holder.as_deref().unwrap_or("nobody"))]
    LeaseLost {
        /// The ledger key (`connection/ticket/kind`).
        key: String,
        /// The worker that asked.
        worker: String,
        /// Who holds it now, if anyone.
        holder: Option<String>,
    },
    /// A stored value could not be read back (bad JSON, unknown step or status).
    #[error("store: corrupt {what}: {detail}")]
    Corrupt {
        /// Which value (`ledger.decision`, `proposals.status`, ...).
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A proposal status change that the review flow does not allow.
    #[error("store: proposal status cannot go from {from} to {to}")]
    InvalidTransition {
        /// Status expected now.
        from: &'static str,
        /// Status asked for.
        to: &'static str,
    },
    /// A ledger key changed state on every attempt to claim it (extreme contention).
    #[error("store: ledger key `{key}` kept changing while being claimed")]
    Contended {
        /// The ledger key.
        key: String,
    },
}

impl StoreError {
    pub(crate) fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { op, source }
    }

    /// Whether trying again later may succeed: the database was busy or locked, the pool timed
    /// out, the connection dropped, or PostgreSQL reported a serialization failure, deadlock,
    /// lock timeout, shutdown or too many connections, or a claim met extreme contention.
    /// Everything else (bad URL, failed migrations, constraint violations, corrupt rows, lost
    /// leases) is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect { source, .. } | StoreError::Query { source, .. } => sqlx_retryable(source),
            StoreError::Migrate { source: MigrateError::Execute(source), .. } => sqlx_retryable(source),
            StoreError::Contended { .. } => true,
            _ => false,
        }
    }
}

fn sqlx_retryable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            true
        }
        sqlx::Error::Database(db) => {
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite primary result codes (extended codes keep them in the low byte):
                // 5 SQLITE_BUSY, 6 SQLITE_LOCKED, 10 SQLITE_IOERR, 13 SQLITE_FULL. A full or
                // failing disk is worth another attempt (an operator may make room); after the
                // last one the event is dead-lettered with the reason, not lost.
                return db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13));
            }
            // PostgreSQL SQLSTATEs: class 08 connection exception, 25006 read_only_sql_transaction
            // (a failover left this connection on a standby), 40001 serialization_failure,
            // 40P01 deadlock_detected, 55P03 lock_not_available, 57014 query_canceled (a
            // statement timeout), 57P01..57P03 shutdown / cannot connect now, class 53
            // insufficient resources (53100 disk_full, 53200 out_of_memory, 53300
            // too_many_connections).
            db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(
                        &*code,
                        "25006" | "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03"
                    )
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let q = |source| StoreError::Query { op: "t", source };
        assert!(q(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(q(sqlx::Error::Io(std::io::Error::other("reset"))).is_retryable());
        assert!(!q(sqlx::Error::RowNotFound).is_retryable());
        assert!(!StoreError::LeaseLost { key: "k".into(), worker: "w".into(), holder: None }.is_retryable());
        let e = StoreError::LeaseLost {
            key: "c/1/ticket.created".into(),
            worker: "a".into(),
            holder: Some("b".into()),
        };
        assert_eq!(e.to_string(), "store: lease on `c/1/ticket.created` lost by `a` (now held by b)");
    }
}
