//! The harness every area shares: a sandbox helpdesk, a triage engine whose LLM is a wiremock
//! OpenAI-compatible server, chat-completion bodies shaped like the real ones, a fresh store per
//! test (a SQLite file or a PostgreSQL database), and the broker's names and queues.

pub mod browser;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use deskpilot::{
    http::HttpSettings,
    sandbox::{self, RunningSandbox, SandboxOptions},
    ticketing::unified::UnifiedClient,
    triage::{
        Engine, EngineSettings,
        llm::{LlmSettings, OpenAiCompatible},
        prompt::Prompts,
        rules::Rules,
    },
};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

/// The sandbox's API key.
pub const KEY: &str = "test-key";
/// The configured model.
pub const MODEL: &str = "gpt-4o-mini";
/// The chat completions route under the mock's `/v1`.
pub const COMPLETIONS: &str = "/v1/chat/completions";
/// The demo connection's categories, all active in the bundled data, in the order the sandbox
/// lists them (by id).
pub const DEMO_CATEGORIES: [&str; 8] = [
    "cat-account-access",
    "cat-billing",
    "cat-bug",
    "cat-feature-request",
    "cat-outage",
    "cat-refunds",
    "cat-security",
    "cat-shipping",
];

/// A sandbox serving the bundled data (connections `demo` and `acme-retail`).
pub async fn start_sandbox() -> RunningSandbox {
    sandbox::spawn(SandboxOptions {
        data_dir: None,
        api_key: KEY.into(),
        webhook_url: None,
        webhook_secret: None,
        state: None,
    })
    .await
    .expect("sandbox starts")
}

/// A Unified client for one connection of the sandbox.
pub fn helpdesk(sb: &RunningSandbox, connection: &str) -> UnifiedClient {
    UnifiedClient::new(&sb.base_url, connection, KEY.into(), &HttpSettings::default()).unwrap()
}

/// LLM settings against the mock: 3 retries, short timeouts, `Retry-After` honoured up to 2 s.
pub fn llm_settings(mock: &MockServer) -> LlmSettings {
    LlmSettings {
        base_url: format!("{}/v1", mock.uri()),
        max_retries: 3,
        // Long enough for the retries' jittered backoff (0.5–1 s, 1–2 s, 2–4 s), short otherwise.
        total_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(2),
        max_retry_after: Duration::from_secs(2),
        ..LlmSettings::new("unused", MODEL)
    }
}

/// An engine with the real client, embedded prompts and rules.
pub fn engine_with(llm: LlmSettings, settings: EngineSettings) -> Engine {
    let client = OpenAiCompatible::new(llm).expect("client builds");
    Engine::new(
        Some(Arc::new(client)),
        Prompts::embedded().expect("embedded prompts"),
        Rules::embedded().expect("embedded rules"),
        MODEL,
        settings,
    )
}

/// An engine with [`llm_settings`] and default engine settings.
pub fn engine(mock: &MockServer) -> Engine {
    engine_with(llm_settings(mock), EngineSettings::default())
}

/// Token usage for a completion body.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    pub prompt: u32,
    pub completion: u32,
    pub cached: u32,
}

pub const USAGE: Tokens = Tokens { prompt: 1500, completion: 120, cached: 0 };

/// A chat completion exactly as OpenAI sends it.
pub fn completion_full(content: Option<&str>, finish_reason: &str, usage: Tokens) -> Value {
    json!({
        "id": "chatcmpl-BXoGq4Yk9v2LmZpQ7rTn3cWd",
        "object": "chat.completion",
        "created": 1_767_225_600,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": finish_reason
        }],
        "usage": {
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.completion,
            "total_tokens": usage.prompt + usage.completion,
            "prompt_tokens_details": {"cached_tokens": usage.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
            }
        },
        "service_tier": "default",
        "system_fingerprint": "fp_560af6e559"
    })
}

/// A chat completion with `content`, `finish_reason: "stop"` and [`USAGE`].
pub fn completion(content: &str) -> Value {
    completion_full(Some(content), "stop", USAGE)
}

/// 200 with [`completion`].
pub fn ok(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(completion(content))
}

/// An OpenAI error response.
pub fn openai_error(status: u16, message: &str, kind: &str, code: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

/// A decision that passes validation, as the model would write it.
pub fn valid_decision(category: Option<&str>) -> Value {
    json!({
        "category_id": category,
        "priority": "HIGH",
        "tags": ["billing", "double-charge"],
        "language": "en",
        "sentiment": "negative",
        "summary": "The customer was charged twice this month and wants one charge reversed.",
        "draft_reply": "Hi Tom, thanks for reaching out. I'm checking the two charges with our billing team and will get back to you shortly.",
        "confidence": 0.86,
        "needs_human": false,
        "reason": "A duplicate charge is a billing problem with money charged wrongly, so HIGH."
    })
}

/// [`valid_decision`] as the answer text.
pub fn valid_answer(category: Option<&str>) -> String {
    valid_decision(category).to_string()
}

/// Answers with the given responses in order, repeating the last one.
pub struct Script {
    responses: Vec<ResponseTemplate>,
    next: AtomicUsize,
}

impl Script {
    pub fn new(responses: Vec<ResponseTemplate>) -> Self {
        assert!(!responses.is_empty());
        Self { responses, next: AtomicUsize::new(0) }
    }
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.next.fetch_add(1, Ordering::SeqCst).min(self.responses.len() - 1);
        self.responses[i].clone()
    }
}

/// A mock LLM answering `POST /v1/chat/completions` with `responder`, expecting `expect` calls
/// when given (checked on drop).
pub async fn mock_llm(responder: impl Respond + 'static, expect: Option<u64>) -> MockServer {
    let server = MockServer::start().await;
    let mut mock = Mock::given(method("POST")).and(path(COMPLETIONS)).respond_with(responder);
    if let Some(n) = expect {
        mock = mock.expect(n);
    }
    mock.mount(&server).await;
    server
}

/// The JSON bodies of the chat requests received so far.
pub async fn chat_requests(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .iter()
        .filter(|r| r.url.path() == COMPLETIONS)
        .map(|r| r.body_json::<Value>().expect("a JSON request body"))
        .collect()
}

/// `(role, content)` of every message of a request body.
pub fn messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .expect("messages array")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().expect("role").to_owned(),
                m["content"].as_str().expect("string content").to_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Real infrastructure for one test (used by `worker`): a store of its own (SQLite file or a fresh
// PostgreSQL database) and a RabbitMQ corner of its own (random names, deleted afterwards). When
// PostgreSQL or RabbitMQ cannot be reached the test fails and says how to start them.

/// PostgreSQL admin URL (allowed to CREATE DATABASE): `DESKPILOT_TEST_PG_URL`, else the local server.
pub fn pg_admin_url() -> String {
    std::env::var("DESKPILOT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database of one's own on the real PostgreSQL, `DROP … WITH (FORCE)` when dropped (also when
/// the test panicked).
pub struct PgTestDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl PgTestDatabase {
    /// `CREATE DATABASE <prefix>_<uuid>` on the test server ([`pg_admin_url`]).
    pub async fn create(prefix: &str) -> PgTestDatabase {
        Self::create_on(&pg_admin_url(), prefix).await
    }

    /// `CREATE DATABASE <prefix>_<uuid>` through `admin_url`.
    pub async fn create_on(admin_url: &str, prefix: &str) -> PgTestDatabase {
        use sqlx::Connection as _;
        let admin_url = admin_url.to_owned();
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin_url} ({e}). Start it with: \
                 pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            )
        });
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin_url}: {e}"));
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("PostgreSQL admin URL");
        url.set_path(&name);
        if !url.query_pairs().any(|(k, _)| k == "sslmode") {
            // The local server has no TLS; `prefer` would spend time finding out on every connection.
            url.query_pairs_mut().append_pair("sslmode", "disable");
        }
        PgTestDatabase { admin_url, name, url: url.to_string() }
    }
}

impl Drop for PgTestDatabase {
    fn drop(&mut self) {
        use sqlx::Connection as _;
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside the test's runtime: do the async work on a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// Which database a test's store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStoreKind {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the real PostgreSQL.
    Postgres,
}

/// A store URL of one's own, removed when dropped.
pub struct TestStoreUrl {
    /// The URL to give `Store::connect`.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgTestDatabase>,
}

impl TestStoreUrl {
    /// A new, empty store location.
    pub async fn new(kind: TestStoreKind) -> TestStoreUrl {
        match kind {
            TestStoreKind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let in_dir = TestStoreUrl::sqlite_in(dir.path());
                TestStoreUrl { _dir: Some(dir), ..in_dir }
            }
            TestStoreKind::Postgres => {
                let pg = PgTestDatabase::create("test_worker").await;
                TestStoreUrl { url: pg.url.clone(), _dir: None, _pg: Some(pg) }
            }
        }
    }

    /// A SQLite file in `dir`, which the caller keeps (e.g. a [`SmallDisk`]).
    pub fn sqlite_in(dir: &Path) -> TestStoreUrl {
        let url = format!("sqlite://{}", dir.join("store.db").display());
        TestStoreUrl { url, _dir: None, _pg: None }
    }

    /// Opens (and migrates) the store.
    pub async fn connect(&self) -> deskpilot::store::Store {
        deskpilot::store::Store::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("Store::connect({}): {}", self.url, error_chain(&e)))
    }
}

/// A tmpfs of `size` mounted on a fresh temp dir; unmounted on drop.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(size: &str) -> Option<SmallDisk> {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallDisk { dir }),
            other if ci => {
                panic!("mounting a {size} tmpfs for the full-disk test failed ({other:?}); CI runs as root")
            }
            other => {
                eprintln!("skipped: cannot mount a tmpfs here ({other:?}); run as root to include this test");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk refuses another byte, then gives `room` bytes back; returns
    /// its path.
    pub fn fill(&self, room: u64) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler file");
        for chunk in [64 * 1024, 4096, 512, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).and_then(|()| file.sync_data()).is_ok() {}
        }
        let len = file.metadata().expect("filler size").len();
        file.set_len(len.saturating_sub(room)).expect("give room back");
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The broker: `DESKPILOT_TEST_AMQP_URL`, else the local RabbitMQ as guest.
pub fn amqp_test_url() -> String {
    std::env::var("DESKPILOT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Fails the test (never skips it) when nothing listens at the broker's address.
pub fn require_broker(url: &str) {
    use std::net::{TcpStream, ToSocketAddrs};
    let uri: lapin::uri::AMQPUri = url.parse().unwrap_or_else(|e| panic!("bad AMQP URL {url}: {e}"));
    let addr = format!("{}:{}", uri.authority.host, uri.authority.port);
    let reachable = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(reachable, "RabbitMQ not reachable at {addr}: start it with `rabbitmq-server -detached`");
}

/// Bus settings with `test-<uuid>` names and the given retry tiers.
pub fn random_bus_settings(tiers: &[Duration]) -> deskpilot::bus::BusSettings {
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let mut settings =
        deskpilot::bus::BusSettings::new(format!("{prefix}.events"), format!("{prefix}.triage"));
    settings.retry_delays = tiers.to_vec();
    settings
}

/// The name of the retry-tier queue for `delay` (as the bus names it).
pub fn retry_tier_queue(s: &deskpilot::bus::BusSettings, delay: Duration) -> String {
    if delay.subsec_millis() == 0 && delay.as_secs() > 0 {
        format!("{}.retry.{}s", s.queue, delay.as_secs())
    } else {
        format!("{}.retry.{}ms", s.queue, delay.as_millis())
    }
}

/// Deletes every queue and exchange of `s`, the outcomes queue's too (on a thread and connection of its own, so it can run
/// in `Drop`). Stop the consumers first: a live consumer declares its topology again.
pub fn delete_bus_topology(url: &str, s: &deskpilot::bus::BusSettings) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let queue = s.queue.clone();
    let (url, s) = (url.to_owned(), s.clone());
    let cleanup = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await?;
            let channel = conn.create_channel().await?;
            // The work queue, the outcomes queue beside it, each with its retry tiers, and the
            // dead-letter queue they share.
            let outcomes = s.outcomes();
            let mut queues = vec![s.dead_queue.clone()];
            for q in [&s, &outcomes] {
                queues.push(q.queue.clone());
                queues.extend(q.retry_delays.iter().map(|d| retry_tier_queue(q, *d)));
            }
            for queue in queues {
                let _ = channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await;
            }
            for exchange in [&s.exchange, &s.dead_queue] {
                let _ =
                    channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
            }
            conn.close(200, "OK".into()).await
        })
    });
    if !matches!(cleanup.join(), Ok(Ok(()))) {
        eprintln!("warning: could not delete the test topology of {queue}");
    }
}

/// Runs `rabbitmqctl` and returns its output; fails the test when it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("rabbitmqctl cannot run ({e}); it comes with rabbitmq-server"));
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ticket id a chat request is about: the `Ticket: <id>` line of the fenced ticket data.
pub fn ticket_of_request(body: &Value) -> Option<String> {
    let messages = body["messages"].as_array()?;
    messages.iter().filter_map(|m| m["content"].as_str()).find_map(|text| {
        let data = &text[text.find("<ticket_data>")?..];
        let line = data.lines().find_map(|l| l.strip_prefix("Ticket: "))?;
        Some(line.trim().to_owned())
    })
}

/// Publishes any body to `exchange` with `routing_key` over `conn`, as another client could, and
/// waits for the broker's confirm.
pub async fn publish_raw(conn: &lapin::Connection, exchange: &str, routing_key: &str, body: &[u8]) {
    use lapin::{
        BasicProperties, Confirmation,
        options::{BasicPublishOptions, ConfirmSelectOptions},
    };
    let channel = conn.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(confirm, Confirmation::Ack(None));
    let _ = channel.close(200, "OK".into()).await;
}

/// `deskpilot_store_commit_seconds{op}` of one store operation (`claim`, `finish`, ...) as the
/// Prometheus exposition shows it: the count and the cumulative buckets (`(bound in seconds,
/// count)`, `+Inf` last); zero and none when absent.
pub fn store_commits(exposition: &str, op: &str) -> (f64, Vec<(f64, f64)>) {
    let label = format!("op=\"{op}\"");
    let value = |line: &str| line.rsplit(' ').next()?.parse::<f64>().ok();
    let label = label.as_str();
    let ours =
        |prefix: &'static str| exposition.lines().filter(move |l| l.starts_with(prefix) && l.contains(label));
    let count = ours("deskpilot_store_commit_seconds_count").find_map(value).unwrap_or(0.0);
    let buckets = ours("deskpilot_store_commit_seconds_bucket")
        .filter_map(|l| Some((l.split("le=\"").nth(1)?.split('"').next()?.parse().ok()?, value(l)?)))
        .collect();
    (count, buckets)
}

/// Creates a ticket in the sandbox's `demo` helpdesk through its Unified.to API (which sends the
/// `created` webhook where one is subscribed) and returns it as the sandbox answered.
pub async fn create_demo_ticket(
    base_url: &str,
    key: &str,
    subject: &str,
    description: &str,
) -> serde_json::Value {
    http_client()
        .post(format!("{base_url}/ticketing/demo/ticket"))
        .bearer_auth(key)
        .json(&serde_json::json!({"subject": subject, "description": description}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A plain HTTP client for talking to the servers a test starts (TLS needs the process's crypto
/// provider, which this installs).
pub fn http_client() -> reqwest::Client {
    deskpilot::http::client_builder(Duration::from_secs(5), Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap()
}

/// A TCP proxy to the broker that can cut every connection and refuse new ones, like a broker
/// restart or a network partition, or freeze them: open, but nothing the broker sends arrives.
pub struct Proxy {
    /// The broker URL through the proxy.
    pub url: String,
    up: tokio::sync::watch::Sender<bool>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// Starts a proxy to the broker at `broker_url`, up.
    pub async fn start(broker_url: &str) -> Self {
        let uri: lapin::uri::AMQPUri = broker_url.parse().unwrap();
        let upstream = format!("{}:{}", uri.authority.host, uri.authority.port);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = tokio::sync::watch::channel(true);
        let (frozen, _) = tokio::sync::watch::channel(false);
        let state = up.clone();
        let freezer = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut up = state.subscribe();
                if !*up.borrow_and_update() {
                    continue; // refused: dropped at once
                }
                let upstream = upstream.clone();
                let frozen = freezer.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = pump(&client, &server, None) => {}
                        _ = pump(&server, &client, Some(frozen)) => {}
                        _ = up.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        let url = broker_url.replacen(&format!(":{}", uri.authority.port), &format!(":{port}"), 1);
        assert_ne!(url, broker_url, "the proxy URL points to the proxy");
        Self { url, up, frozen }
    }

    /// Frozen: connections stay open, but what the broker sends (confirms, heartbeats) is dropped.
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }

    /// Up: connections pass; down: open ones are cut and new ones refused.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// Copies bytes from `from` to `to` until either side closes; drops them while `frozen`.
async fn pump(
    from: &tokio::net::TcpStream,
    to: &tokio::net::TcpStream,
    frozen: Option<tokio::sync::watch::Receiver<bool>>,
) -> std::io::Result<()> {
    use std::io::ErrorKind::WouldBlock;
    let mut buf = vec![0; 64 * 1024];
    loop {
        from.readable().await?;
        let n = match from.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if frozen.as_ref().is_some_and(|f| *f.borrow()) {
            continue;
        }
        let mut sent = 0;
        while sent < n {
            to.writable().await?;
            match to.try_write(&buf[sent..n]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// HTTP settings for client tests against wiremock: short timeouts, quick retries, a 1 MiB body cap.
pub fn fast_settings() -> deskpilot::http::HttpSettings {
    deskpilot::http::HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
        retry: deskpilot::http::RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(2),
        },
        max_concurrent_requests: 16,
        max_response_bytes: 1 << 20,
    }
}

/// Runs `deskpilot demo --backend <backend>` over two sandbox tickets (decided by the fallback
/// rules: no LLM is configured) and checks that both went through that connector.
pub async fn demo_runs_through(backend: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("demo.db").display().to_string();
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_deskpilot"))
            .env_clear()
            .env("DESKPILOT_LOG", "warn")
            .args(["demo", "--once", "--backend", backend, "--limit", "2", "--store", &store])
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "stdout: {out}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains(&format!("demo: published 2 tickets through the {backend} connector")), "{out}");
    assert!(out.contains("2 proposals stored, 0 dead-lettered"), "{out}");
}

/// Posts a two-line draft with HTML in it as a note on `ticket` through `helpdesk` (a vendor
/// flavour of the sandbox `sb`) and checks that the sandbox stored it internal with its text,
/// and that it is listed last with its visibility; returns the stored note.
pub async fn a_note_is_stored_and_listed_internal(
    sb: &RunningSandbox,
    helpdesk: &dyn deskpilot::ticketing::Ticketing,
    ticket: &str,
) -> deskpilot::ticketing::Note {
    use deskpilot::ticketing::{ListQuery, NewNote, NoteVisibility, all_notes, collect_all};
    let before = sb.snapshot("demo").await.unwrap();
    let text = "Draft <b>reply</b>\nsecond line";
    let note = NewNote { ticket_id: ticket.to_owned(), description: text.into(), user_id: None, raw: None };
    let created = helpdesk.create_note(&note).await.unwrap();
    assert_eq!(created.visibility, Some(NoteVisibility::Internal));
    let after = sb.snapshot("demo").await.unwrap();
    let mut stored: Vec<_> =
        after.notes.values().filter(|n| !before.notes.contains_key(n.id.as_deref().unwrap())).collect();
    assert_eq!(stored.len(), 1);
    let stored = stored.remove(0).clone();
    assert_eq!(stored.visibility, Some(NoteVisibility::Internal), "stored internal");
    assert_eq!(stored.description.as_deref(), Some(text));
    let listed = collect_all(all_notes(helpdesk, ListQuery::notes_of(ticket))).await.unwrap();
    let last = listed.last().unwrap();
    assert_eq!((last.id.as_ref(), last.visibility), (created.id.as_ref(), Some(NoteVisibility::Internal)));
    stored
}

/// Loads a configuration file holding `toml`, with the one environment variable `var` set.
pub fn load_config(toml: &str, var: (&str, &str)) -> anyhow::Result<deskpilot::config::Config> {
    use std::io::Write;
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(toml.as_bytes()).unwrap();
    deskpilot::config::Config::load_from(Some(f.path()), vec![(var.0.to_owned(), var.1.to_owned())])
}

/// Why a configuration of one connection `head` (its id, backend and fixed keys) plus `keys` is
/// refused, on one line.
pub fn refusal_of(head: &str, keys: &str, var: (&str, &str)) -> String {
    format!("{:#}", load_config(&format!("{head}{keys}\n"), var).expect_err("the config should be rejected"))
}

/// A configuration file with the `demo` connection on `sb` and no HTTP retries.
pub fn sandbox_config_file(sb: &RunningSandbox) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    let toml = format!(
        "[http]\nmax_retries = 0\n\n[[connections]]\nid = \"demo\"\nbackend = \"unified\"\n\
         base_url = \"{}\"\napi_key = \"{KEY}\"\n",
        sb.base_url
    );
    f.write_all(toml.as_bytes()).unwrap();
    f
}

/// `deskpilot --config <config> <command> <args>`, run from the crate's root with a clean
/// environment plus `env`.
pub async fn run_with_config(
    config: &Path,
    command: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deskpilot"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).env_clear().env("DESKPILOT_LOG", "warn");
    cmd.envs(env.iter().map(|(k, v)| (k, v))).arg("--config").arg(config).arg(command).args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs")).await.unwrap()
}

/// The JSON a successful command printed on stdout.
pub fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "exit {:?}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON report on stdout")
}
