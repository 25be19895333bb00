//! Statements that differ per backend, and small row helpers.
//!
//! All SQL is portable (`$N` placeholders, `ON CONFLICT`, `RETURNING`, window functions) except
//! the clock: [`sql!`] expands `NOW` to the database's current time in epoch milliseconds, so every
//! lease decision uses ONE clock (the database's) however skewed the replicas' clocks are.

use sqlx::{Row, any::AnyRow};
use time::OffsetDateTime;

use super::StoreError;

/// One statement in its two spellings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    pub(crate) sqlite: &'static str,
    pub(crate) postgres: &'static str,
}

/// Builds a [`Sql`] from string literals, the tokens `NOW` (current time, epoch ms) and `RANK`
/// (the ledger step's order, 0..=4), and `[name]` (the literal a `name!()` macro expands to, for
/// shared column lists), concatenated at compile time.
macro_rules! sql {
    (@sqlite NOW) => { "CAST(unixepoch('subsec') * 1000 AS INTEGER)" };
    (@postgres NOW) => { "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)" };
    (@$backend:ident RANK) => {
        "CASE step WHEN 'claimed' THEN 0 WHEN 'decided' THEN 1 WHEN 'ticket_updated' THEN 2 \
         WHEN 'note_posted' THEN 3 ELSE 4 END"
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
        assert!(s.sqlite.ends_with("END FROM ledger"));
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("hi", 10), "hi");
    }
}
