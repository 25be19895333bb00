//! Embedded migrations, one directory per backend (`migrations/sqlite`, `migrations/postgres`).
//!
//! `sqlx::migrate!` needs sqlx's `macros` feature (proc macros that compile both drivers into the
//! build); we embed the same files with `include_str!` and build the [`Migrator`] at runtime
//! instead. sqlx records each migration's SHA-384 checksum in `_sqlx_migrations`, so an edited,
//! already-applied file is refused at connect: add a new numbered file instead.
//!
//! To add a migration: write `NNNN_name.sql` in BOTH directories and list it in [`SQLITE`] and
//! [`POSTGRES`] (a unit test checks the lists against the directories).

use std::borrow::Cow;

use sqlx::{
    SqlSafeStr,
    migrate::{Migration, MigrationType, Migrator},
};

use super::sql::Backend;

/// (version, description, SQL) for SQLite.
const SQLITE: &[(i64, &str, &str)] = &[
    (1, "store", include_str!("../../migrations/sqlite/0001_store.sql")),
    (2, "ledger_ticket_before", include_str!("../../migrations/sqlite/0002_ledger_ticket_before.sql")),
    (3, "poll_cursor_lease", include_str!("../../migrations/sqlite/0003_poll_cursor_lease.sql")),
    (
        4,
        "ingest_cursor_created_since",
        include_str!("../../migrations/sqlite/0004_ingest_cursor_created_since.sql"),
    ),
    (5, "review", include_str!("../../migrations/sqlite/0005_review.sql")),
    (6, "outcomes", include_str!("../../migrations/sqlite/0006_outcomes.sql")),
    (7, "ledger_spend", include_str!("../../migrations/sqlite/0007_ledger_spend.sql")),
];

/// (version, description, SQL) for PostgreSQL.
const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "store", include_str!("../../migrations/postgres/0001_store.sql")),
    (2, "ledger_ticket_before", include_str!("../../migrations/postgres/0002_ledger_ticket_before.sql")),
    (3, "poll_cursor_lease", include_str!("../../migrations/postgres/0003_poll_cursor_lease.sql")),
    (
        4,
        "ingest_cursor_created_since",
        include_str!("../../migrations/postgres/0004_ingest_cursor_created_since.sql"),
    ),
    (5, "review", include_str!("../../migrations/postgres/0005_review.sql")),
    (6, "outcomes", include_str!("../../migrations/postgres/0006_outcomes.sql")),
    (7, "ledger_spend", include_str!("../../migrations/postgres/0007_ledger_spend.sql")),
];

/// The migrator for a backend. Runs each migration in a transaction; on PostgreSQL sqlx takes an
/// advisory lock first, so replicas starting together apply each migration once.
pub(crate) fn migrator(backend: Backend) -> Migrator {
    let list = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    Migrator::with_migrations(
        list.iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn files(dir: &str) -> Vec<(i64, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dir);
        let mut out: Vec<(i64, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .map(|name| {
                let (version, rest) = name.split_once('_').expect("NNNN_name.sql");
                (version.parse().expect("numeric version"), rest.trim_end_matches(".sql").to_owned())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_migration_file_is_embedded_for_both_backends() {
        for (dir, list) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let embedded: Vec<(i64, String)> = list.iter().map(|&(v, d, _)| (v, d.to_owned())).collect();
            assert_eq!(files(dir), embedded, "migrations/{dir} and the list in store/migrate.rs differ");
        }
        assert_eq!(files("sqlite"), files("postgres"), "both backends need the same migrations");
    }
}
