//! The two backends, the statements that differ between them, and small row helpers.
//!
//! All SQL is portable (`$N` placeholders, `ON CONFLICT`, `RETURNING`, window functions) except
//! the clock: [`sql!`] expands `NOW` to the database's current time in epoch milliseconds, so every
//! lease decision uses ONE clock (the database's) however skewed the replicas' clocks are.

use std::fmt;

use sqlx::{Row, any::AnyRow};
use time::OffsetDateTime;

use super::error::StoreError;

/// Which database is behind a [`Store`](super::Store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// One SQLite file (or memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// `"sqlite"` or `"postgres"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One statement in its two spellings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    pub(crate) sqlite: &'static str,
    pub(crate) postgres: &'static str,
}

impl Sql {
    /// The spelling for `backend`.
    pub(crate) fn text(self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

/// Builds a [`Sql`] from string literals, the tokens `NOW` (current time, epoch ms) and `RANK`
/// (the ledger step's order, 0..=3, as [`Step::rank`](super::entry::Step::rank)), and `[name]`
/// (the literal a `name!()` macro expands to, for shared column lists), concatenated at compile
/// time.
macro_rules! sql {
    (@sqlite NOW) => { "CAST(unixepoch('subsec') * 1000 AS INTEGER)" };
    (@postgres NOW) => { "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)" };
    (@$backend:ident RANK) => {
        "CASE step WHEN 'claimed' THEN 0 WHEN 'decided' THEN 1 WHEN 'ticket_updated' THEN 2 ELSE 3 END"
    };
    (@$backend:ident [$columns:ident]) => { $columns!() };
    (@$backend:ident $lit:literal) => { $lit };
    ($($piece:tt)+) => {
        $crate::store::sql::Sql {
            sqlite: concat!($($crate::store::sql::sql!(@sqlite $piece)),+),
            postgres: concat!($($crate::store::sql::sql!(@postgres $piece)),+),
        }
    };
}
pub(crate) use sql;

/// Epoch milliseconds → time.
pub(crate) fn from_ms(what: &'static str, ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Corrupt { what, detail: format!("timestamp {ms}: {e}") })
}

/// Optional epoch milliseconds → time.
pub(crate) fn from_opt_ms(what: &'static str, ms: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    ms.map(|ms| from_ms(what, ms)).transpose()
}

/// Reads a column, reporting a missing or mistyped column as corrupt.
pub(crate) fn get<'r, T>(row: &'r AnyRow, what: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(what).map_err(|e| StoreError::Corrupt { what, detail: e.to_string() })
}

/// Parses a JSON column.
pub(crate) fn json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt { what, detail: e.to_string() })
}

/// A non-negative count from the database.
pub(crate) fn count(what: &'static str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt { what, detail: format!("negative count {n}") })
}

/// A count for the database (whose integers are signed), capped at `i64::MAX`.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Keeps stored texts (errors, reasons) to a sane size, on a character boundary.
pub(crate) fn clip(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_substitutes_the_clock_per_backend() {
        let s = sql!("SELECT " NOW ", " RANK " FROM ledger");
        assert!(s.sqlite.starts_with("SELECT CAST(unixepoch('subsec')"));
        assert!(s.postgres.contains("statement_timestamp()"));
        assert!(s.postgres.contains("CASE step WHEN 'claimed' THEN 0"));
        assert!(s.sqlite.ends_with("ELSE 3 END FROM ledger"));
        assert_eq!(s.text(Backend::Postgres), s.postgres);
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("hi", 10), "hi");
    }
}
