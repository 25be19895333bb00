//! Opening the store: URL → backend, SQLite file preparation, pool settings, migrations.

use std::{io::ErrorKind, path::Path, str::FromStr, time::Duration};

use sqlx::{
    AnyConnection, AnyPool, Connection,
    any::{AnyConnectOptions, AnyPoolOptions},
};

use super::{
    error::StoreError,
    migrate,
    sql::Backend,
    writer::{Writer, begin_statement},
};

/// Pool settings (the URL says where; these say how much).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most connections the pool opens (an in-memory SQLite store always uses exactly one).
    pub max_connections: u32,
    /// How long an operation waits for a free connection before failing with a retryable error.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_connections: 10, acquire_timeout: Duration::from_secs(10) }
    }
}

/// What a store URL resolved to.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) backend: Backend,
    /// The URL handed to sqlx.
    pub(crate) url: String,
    /// `sqlite::memory:`.
    pub(crate) in_memory: bool,
}

/// Reads a store URL: `sqlite://PATH` / `sqlite:PATH` (the file and its parent directory are
/// created), `sqlite::memory:`, or `postgres://` / `postgresql://`.
pub(crate) fn target(url: &str) -> Result<Target, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl { url: redact(url), reason: reason.to_owned() };
    let trimmed = url.trim();
    if let Some(rest) = trimmed.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, params) = match rest.split_once('?') {
            Some((path, params)) => (path, Some(params)),
            None => (rest, None),
        };
        if path == ":memory:" {
            return Ok(Target { backend: Backend::Sqlite, url: "sqlite::memory:".into(), in_memory: true });
        }
        if path.is_empty() {
            return Err(invalid("no database file (expected sqlite://PATH or sqlite::memory:)"));
        }
        // `mode=rwc` creates the file if missing (sqlx's default is to fail), unless the URL
        // already chooses a mode (e.g. `mode=ro`).
        let params = params.filter(|p| !p.is_empty());
        let has_mode = params.is_some_and(|p| p.split('&').any(|kv| kv.starts_with("mode=")));
        let mut params: Vec<&str> = params.map(|p| p.split('&').collect()).unwrap_or_default();
        if !has_mode {
            params.push("mode=rwc");
        }
        return Ok(Target {
            backend: Backend::Sqlite,
            url: format!("sqlite:{path}?{}", params.join("&")),
            in_memory: false,
        });
    }
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        url::Url::parse(trimmed).map_err(|e| invalid(&format!("not a valid URL: {e}")))?;
        return Ok(Target { backend: Backend::Postgres, url: trimmed.to_owned(), in_memory: false });
    }
    Err(invalid("unsupported scheme (expected sqlite://PATH, sqlite::memory: or postgres://USER@HOST/DB)"))
}

/// What a store opened: the pool, and where its writes run.
pub(crate) struct Opened {
    pub(crate) pool: AnyPool,
    pub(crate) writer: Writer,
}

/// Opens the pool (and a SQLite file's write connection), prepares SQLite (parent directory,
/// WAL) and runs the backend's migrations. `url` is the URL as configured (for error messages).
pub(crate) async fn open(url: &str, target: &Target, options: &StoreOptions) -> Result<Opened, StoreError> {
    sqlx::any::install_default_drivers();
    let url_redacted = redact(url);
    let connect_err = |source| StoreError::Connect { url_redacted: url_redacted.clone(), source };

    if target.backend == Backend::Sqlite && !target.in_memory {
        create_parent_dir(&target.url).map_err(|e| connect_err(sqlx::Error::Io(e)))?;
    }

    let connect_options = AnyConnectOptions::from_str(&target.url).map_err(connect_err)?;
    let pool_options = AnyPoolOptions::new().acquire_timeout(options.acquire_timeout);
    let migrate_err = |source| StoreError::Migrate { url_redacted: url_redacted.clone(), source };
    let begin = begin_statement(target.backend);

    if target.in_memory {
        // Every connection to `sqlite::memory:` is a database of its own: keep exactly one, forever.
        let pool = pool_options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(connect_options)
            .await
            .map_err(connect_err)?;
        migrate::migrator(target.backend).run(&pool).await.map_err(migrate_err)?;
        return Ok(Opened { writer: Writer::Pool { pool: pool.clone(), begin }, pool });
    }

    // One direct connection first: it says at once why it fails (a pool retries a refused
    // connection until its acquire timeout and then reports only "timed out").
    let mut conn =
        tokio::time::timeout(options.acquire_timeout, AnyConnection::connect_with(&connect_options))
            .await
            .unwrap_or_else(|_| {
                let waited = options.acquire_timeout;
                Err(sqlx::Error::Io(std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!("no answer within {waited:?}"),
                )))
            })
            .map_err(connect_err)?;
    if target.backend == Backend::Sqlite {
        // WAL lets readers run beside the one writer and is a property of the file, so setting it
        // once here covers every later connection. (Switching needs an exclusive lock that
        // busy_timeout cannot wait for; on a file already in WAL mode it is a no-op.)
        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut conn).await.map_err(connect_err)?;
    }
    migrate::migrator(target.backend).run(&mut conn).await.map_err(migrate_err)?;

    // On SQLite the pool only reads (the connection above stays as the writer); a ping before
    // every acquire is a thread round trip for a local file that cannot silently drop a
    // connection.
    let (max_connections, test_before_acquire) = match target.backend {
        Backend::Sqlite => (options.max_connections.clamp(1, 2), false),
        Backend::Postgres => (options.max_connections.max(1), true),
    };
    let pool = pool_options
        .max_connections(max_connections)
        .test_before_acquire(test_before_acquire)
        .connect_with(connect_options)
        .await
        .map_err(connect_err)?;
    if target.backend == Backend::Postgres {
        let _ = conn.close().await;
        return Ok(Opened { writer: Writer::Pool { pool: pool.clone(), begin }, pool });
    }
    // Every write an ack or a helpdesk write depends on must survive a power cut: each commit
    // is flushed to disk before it returns.
    sqlx::query("PRAGMA synchronous = FULL").execute(&mut conn).await.map_err(connect_err)?;
    Ok(Opened { pool, writer: Writer::sqlite(conn, options.acquire_timeout) })
}

/// Creates the directory that will hold the SQLite file.
fn create_parent_dir(sqlx_url: &str) -> std::io::Result<()> {
    let path = sqlx_url.trim_start_matches("sqlite:");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let path = percent_decode(path);
    match Path::new(&path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent),
        _ => Ok(()),
    }
}

/// `%XX` decoding as sqlx applies it to SQLite paths.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = s.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL with its password (userinfo or `password=` parameter) replaced by `***`, for errors
/// and logs.
pub fn redact(url: &str) -> String {
    if url.trim_start().starts_with("sqlite:") {
        return url.to_owned();
    }
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some("***"));
        }
        if parsed.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v =
                        if k.eq_ignore_ascii_case("password") { "***".to_owned() } else { v.into_owned() };
                    (k.into_owned(), v)
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return parsed.to_string();
    }
    // Unparseable: hide everything between the scheme and the last `@`, and any query.
    let head = url.split_once('?').map_or(url, |(h, _)| h);
    match (head.find("://"), head.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &head[..scheme_end], &head[at + 1..])
        }
        _ => head.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        let t = target("sqlite://data/deskpilot.db").unwrap();
        assert_eq!(
            (t.backend, t.url.as_str(), t.in_memory),
            (Backend::Sqlite, "sqlite:data/deskpilot.db?mode=rwc", false)
        );
        assert_eq!(target("sqlite:///tmp/x.db").unwrap().url, "sqlite:/tmp/x.db?mode=rwc");
        assert_eq!(target("sqlite:x.db?mode=ro").unwrap().url, "sqlite:x.db?mode=ro");
        assert!(target("sqlite::memory:").unwrap().in_memory);
        assert!(target("sqlite://").unwrap_err().to_string().contains("no database file"));
    }

    #[test]
    fn other_urls() {
        assert_eq!(target("postgres://u@h/db").unwrap().backend, Backend::Postgres);
        assert_eq!(target("postgresql://u@h/db").unwrap().backend, Backend::Postgres);
        let err = target("mysql://root:hunter2@h/db").unwrap_err().to_string();
        assert!(err.starts_with("store.url `mysql://root:***@h/db`: unsupported scheme"), "{err}");
    }

    #[test]
    fn passwords_never_shown() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/deskpilot"), "postgres://app:***@db:5432/deskpilot");
        assert_eq!(
            redact("postgres://app@db/x?password=s3cret&sslmode=require"),
            "postgres://app@db/x?password=***&sslmode=require"
        );
        let odd = redact("postgres://app:p@ss word@db/x");
        assert!(!odd.contains("ss") && odd.ends_with("@db/x"), "{odd}");
        // Unparseable (bad port): the whole userinfo goes.
        assert_eq!(redact("postgres://app:s3cret@db:port/x?password=a"), "postgres://***@db:port/x");
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b%3Fc%zz"), "a b?c%zz");
    }
}
