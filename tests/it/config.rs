//! Loading, layering and validating the configuration, through `Config::load_from` with an
//! explicit environment (the process environment is never touched).

use std::{io::Write, path::Path, time::Duration};

use deskpilot::{
    app::parts::{helpdesk_for, http_settings},
    config::{BUILT_BACKENDS, BackendConfig, Config, Mode},
    triage::llm::LimiterMode,
};
use secrecy::ExposeSecret;
use tempfile::NamedTempFile;

type Env = Vec<(String, String)>;

fn env(vars: &[(&str, &str)]) -> Env {
    vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn file(toml: &str) -> NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(toml.as_bytes()).unwrap();
    f
}

fn load(toml: &str, vars: &[(&str, &str)]) -> anyhow::Result<Config> {
    let f = file(toml);
    Config::load_from(Some(f.path()), env(vars))
}

/// The whole error chain on one line, with the file path of `f` replaced by `FILE`.
/// The error of building a connection's client.
fn client_error(c: &Config, id: &str) -> String {
    match helpdesk_for(c, id) {
        Ok(_) => panic!("connection `{id}` should not build"),
        Err(e) => format!("{e:#}"),
    }
}

fn error_of(toml: &str, vars: &[(&str, &str)]) -> String {
    let f = file(toml);
    let e = Config::load_from(Some(f.path()), env(vars)).expect_err("the config should be rejected");
    format!("{e:#}").replace(&f.path().display().to_string(), "FILE")
}

const UNIFIED: &str = r#"
[[connections]]
id = "demo"
backend = "unified"
base_url = "http://127.0.0.1:8081"
api_key = "sandbox"
"#;

#[test]
fn defaults_parse_and_validate() {
    let c = Config::load_from(None, Env::new()).unwrap();
    assert_eq!(c.llm.base_url, "https://api.openai.com/v1");
    assert_eq!(c.llm.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
    assert_eq!(c.llm.model, "gpt-4o-mini");
    assert_eq!(c.bus.amqp_url(), None, "empty bus.url means the in-process bus");
    assert_eq!((c.bus.exchange.as_str(), c.bus.queue.as_str()), ("deskpilot.events", "deskpilot.triage"));
    assert_eq!(c.store.url.expose(), "sqlite://data/deskpilot.db");
    assert_eq!(c.worker.concurrency, 32);

    let [demo] = c.connections.as_slice() else { panic!("one default connection") };
    assert_eq!(demo.id, "demo");
    assert_eq!(demo.mode, Mode::Shadow);
    assert_eq!(demo.confidence_threshold, 0.85);
    assert!(!demo.notes_internal_verified);
    let BackendConfig::Unified(u) = &demo.backend else { panic!("demo is a unified connection") };
    assert_eq!(u.base_url(), "http://127.0.0.1:8081");
    assert_eq!(u.api_key.as_ref().map(|k| k.expose_secret()), Some("sandbox"));
    assert_eq!(u.category_cache(), Duration::from_secs(300));

    let client = helpdesk_for(&c, "demo").expect("the demo client builds without the network");
    assert_eq!(client.backend(), "unified");
}

#[test]
fn example_documents_every_backend_of_this_build_and_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let c = Config::load_from(Some(&path), Env::new()).unwrap();
    let backends: Vec<_> = c.connections.iter().map(|c| c.backend.name()).collect();
    for backend in BUILT_BACKENDS {
        assert!(backends.contains(backend), "example.toml has no {backend} connection: {backends:?}");
    }
    assert_eq!(http_settings(&c).retry.max_retry_after, Duration::from_secs(30));
    assert_eq!(c.server.addr(), Some("127.0.0.1:8080"));
}

#[test]
fn default_toml_is_the_embedded_defaults() {
    let on_disk = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml"));
    assert_eq!(on_disk.unwrap(), deskpilot::config::DEFAULTS);
}

#[test]
fn file_then_env_override_the_defaults() {
    let toml = "[worker]\nconcurrency = 12\n[llm]\nmodel = \"from-file\"\n";
    let c = load(toml, &[]).unwrap();
    assert_eq!(c.worker.concurrency, 12);
    assert_eq!(c.llm.model, "from-file");
    assert_eq!(c.llm.request_timeout(), Duration::from_secs(60), "untouched keys keep their default");

    let c =
        load(toml, &[("DESKPILOT__WORKER__CONCURRENCY", "7"), ("DESKPILOT__LLM__MODEL", "gpt-4o")]).unwrap();
    assert_eq!(c.worker.concurrency, 7);
    assert_eq!(c.llm.model, "gpt-4o");
    assert!(c.sources().iter().any(|s| s == "DESKPILOT__WORKER__CONCURRENCY"), "{:?}", c.sources());

    let c = Config::load_from(None, env(&[("DESKPILOT__WORKER__CONCURRENCY", "7")])).unwrap();
    assert_eq!(c.worker.concurrency, 7);
}

#[test]
fn env_values_read_like_toml_so_numbers_need_quotes_to_be_strings() {
    let e = Config::load_from(None, env(&[("DESKPILOT__LLM__MODEL", "4")])).unwrap_err();
    assert!(format!("{e:#}").contains(r#"quote it: DESKPILOT__LLM__MODEL='"..."'"#), "{e:#}");
    let c = Config::load_from(None, env(&[("DESKPILOT__LLM__MODEL", "\"4\"")])).unwrap();
    assert_eq!(c.llm.model, "4");
}

#[test]
fn a_file_with_connections_replaces_the_demo_connection() {
    let c = load(&UNIFIED.replace("\"demo\"", "\"mine\""), &[]).unwrap();
    let ids: Vec<_> = c.connections.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["mine"]);
}

#[test]
fn unknown_keys_are_named_with_their_source() {
    let e = error_of("[llm]\nmodle = \"gpt-4o\"\n", &[]);
    assert!(e.contains("llm.modle in FILE: unknown key; [llm] takes base_url"), "{e}");

    let e = error_of("[lmm]\nmodel = \"gpt-4o\"\n", &[]);
    assert!(e.contains("lmm in FILE: unknown key; the top level takes llm, bus"), "{e}");

    let e = Config::load_from(None, env(&[("DESKPILOT__LLM__MODLE", "x")])).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("llm.modle from environment variable DESKPILOT__LLM__MODLE: unknown key"), "{e}");

    let e = error_of(&format!("{UNIFIED}regoin = \"eu\"\n"), &[]);
    assert!(
        e.contains(r#"connections[0] (id = "demo") in FILE: unknown key `regoin` for backend `unified`"#),
        "{e}"
    );
}

#[test]
fn wrong_types_name_the_key_the_file_and_what_is_expected() {
    let e = error_of("[worker]\nconcurrency = \"lots\"\n", &[]);
    assert!(
        e.contains(
            r#"worker.concurrency in FILE: invalid type: found string "lots", expected a whole number"#
        ),
        "{e}"
    );

    let e = Config::load_from(None, env(&[("DESKPILOT__WORKER__CONCURRENCY", "lots")])).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("worker.concurrency from environment variable DESKPILOT__WORKER__CONCURRENCY"), "{e}");

    let e = error_of(&format!("{UNIFIED}mode = \"yolo\"\n"), &[]);
    assert!(
        e.contains(r#"connections[0] (id = "demo") in FILE: `mode`: unknown value `yolo`; expected one of shadow, apply, apply_if_confident"#),
        "{e}"
    );
    let e = error_of(&format!("{UNIFIED}region = \"mars\"\n"), &[]);
    assert!(e.contains("`region`: unknown value `mars`; expected one of us, eu, au"), "{e}");

    let e = error_of(&format!("{UNIFIED}category_cache_secs = \"5m\"\n"), &[]);
    assert!(e.contains("`category_cache_secs`: invalid type"), "{e}");
}

#[test]
fn syntax_errors_name_the_file() {
    let e = error_of("[worker\nconcurrency = 1\n", &[]);
    assert!(e.contains("in FILE"), "{e}");
}

#[test]
fn a_missing_config_file_is_an_error_naming_it() {
    let e = Config::load_from(Some(Path::new("/nonexistent/deskpilot.toml")), Env::new()).unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent/deskpilot.toml"), "{e:#}");
}

#[test]
fn backend_specific_keys_are_required() {
    let toml = format!(
        "{UNIFIED}\n[[connections]]\nid = \"zd\"\nbackend = \"zendesk\"\nemail = \"a@acme.com\"\napi_token_env = \"T\"\n"
    );
    let e = error_of(&toml, &[]);
    assert!(e.contains(r#"connections[1] (id = "zd") in FILE: backend `zendesk` needs `subdomain`"#), "{e}");

    let e = error_of("[[connections]]\nid = \"x\"\nbackend = \"zendsk\"\n", &[]);
    assert!(e.contains("unknown backend `zendsk`; expected one of unified, zendesk"), "{e}");

    let e = error_of("[[connections]]\nid = \"x\"\n", &[]);
    assert!(e.contains("missing key `backend`"), "{e}");
}

#[test]
fn credentials_need_exactly_one_source() {
    let neither = UNIFIED.replace("api_key = \"sandbox\"", "");
    let e = error_of(&neither, &[]);
    assert!(
        e.contains(r#"connections[0] (id = "demo"): backend `unified` needs `api_key` or `api_key_env`"#),
        "{e}"
    );

    let both = UNIFIED.replace("api_key = \"sandbox\"", "api_key = \"k\"\napi_key_env = \"K\"");
    let e = error_of(&both, &[]);
    assert!(e.contains("set only one of `api_key` and `api_key_env`"), "{e}");
}

#[test]
fn a_missing_credential_variable_fails_when_the_client_is_built() {
    let toml = UNIFIED.replace("api_key = \"sandbox\"", "api_key_env = \"UNIFIED_API_KEY\"");
    let c = load(&toml, &[]).expect("validation does not need the variable");
    assert_eq!(
        client_error(&c, "demo"),
        r#"connection `demo`: api_key_env = "UNIFIED_API_KEY" but that environment variable is not set"#
    );

    let c = load(&toml, &[("UNIFIED_API_KEY", "k")]).unwrap();
    assert!(helpdesk_for(&c, "demo").is_ok());
}

#[test]
fn unknown_connections_list_the_configured_ids() {
    let c = Config::load_from(None, Env::new()).unwrap();
    assert_eq!(client_error(&c, "nope"), "unknown connection `nope`; configured connections: demo");
}

#[test]
fn every_backend_a_connection_can_name_has_a_client_in_this_build() {
    // A backend that parsed but had no client would fail only at connect.
    let mut named: Vec<_> = deskpilot::config::BACKENDS.to_vec();
    let mut built: Vec<_> = BUILT_BACKENDS.to_vec();
    named.sort();
    built.sort();
    assert_eq!(named, built);
}

#[test]
fn freshdesk_connections_take_a_domain_or_a_base_url() {
    let fd = "[[connections]]\nid = \"fd\"\nbackend = \"freshdesk\"\napi_key = \"k\"\n";
    let e = error_of(fd, &[]);
    assert!(e.contains(r#"backend `freshdesk` needs `domain` (e.g. domain = "acme.freshdesk.com")"#), "{e}");
    let e = error_of(&format!("{fd}base_url = \"ftp://x\"\n"), &[]);
    assert!(e.contains(r#"base_url = "ftp://x" must be an http:// or https:// URL"#), "{e}");

    let c = load(&format!("{fd}domain = \"acme\"\n"), &[]).unwrap();
    let BackendConfig::Freshdesk(f) = &c.connections[0].backend else { panic!("not freshdesk") };
    assert_eq!(f.base_url(), "https://acme.freshdesk.com");
    assert_eq!(f.category_cache(), Duration::from_secs(300));
    assert_eq!(helpdesk_for(&c, "fd").unwrap().backend(), "freshdesk");

    let c = load(&format!("{fd}base_url = \"http://127.0.0.1:8081/freshdesk\"\n"), &[]).unwrap();
    assert_eq!(c.connections[0].backend.location(), "http://127.0.0.1:8081/freshdesk");
}

#[test]
fn the_server_address_is_checked_and_may_be_empty() {
    let c = Config::load_from(None, env(&[("DESKPILOT__SERVER__ADDR", "\"\"")])).unwrap();
    assert_eq!(c.server.addr(), None, "empty = no HTTP server");
    let e = error_of("[server]\naddr = \"localhost:eighty\"\n", &[]);
    assert!(
        e.contains(r#"server.addr = "localhost:eighty" must be empty (no HTTP server) or an address"#),
        "{e}"
    );
}

#[test]
fn ids_must_be_unique_and_non_empty() {
    let e = error_of(&format!("{UNIFIED}{UNIFIED}"), &[]);
    assert!(
        e.contains(r#"connections[1] (id = "demo"): duplicate id, connections[0] already uses it"#),
        "{e}"
    );

    let e = error_of(&UNIFIED.replace("\"demo\"", "\"\""), &[]);
    assert!(e.contains("`id` must not be empty"), "{e}");
}

#[test]
fn cross_field_rules_are_checked_together() {
    let toml = format!(
        "[worker]\nconcurrency = 0\n[bus]\nurl = \"redis://x\"\n{}region = \"eu\"\nconfidence_threshold = 1.5\n",
        UNIFIED
    );
    let e = error_of(&toml, &[]);
    for expected in [
        "4 problems",
        "worker.concurrency = 0 must be between 1 and 4096",
        "bus.url = \"redis://x\" must be empty (in-process bus) or an amqp://",
        "set either `base_url` or `region`, not both",
        "confidence_threshold = 1.5 must be between 0 and 1",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in {e}");
    }
}

#[test]
fn openai_base_url_applies_only_when_nothing_else_set_it() {
    let local = [("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")];

    let c = Config::load_from(None, env(&local)).unwrap();
    assert_eq!(c.llm.base_url, "http://127.0.0.1:11434/v1");
    assert!(c.llm.base_url_from_env());
    assert!(c.llm.api_key().is_none());
    assert!(c.llm.is_configured(), "a non-OpenAI base_url needs no key");

    let c = load("[llm]\nbase_url = \"https://api.openai.com/v1\"\n", &local).unwrap();
    assert_eq!(c.llm.base_url, "https://api.openai.com/v1", "the file wins, even with the default value");
    assert!(!c.llm.base_url_from_env());

    let vars = [local[0], ("DESKPILOT__LLM__BASE_URL", "https://llm.internal/v1")];
    let c = Config::load_from(None, env(&vars)).unwrap();
    assert_eq!(c.llm.base_url, "https://llm.internal/v1");
}

#[test]
fn openai_api_key_is_the_fallback_key() {
    let c = Config::load_from(None, Env::new()).unwrap();
    assert!(c.llm.api_key().is_none());
    assert!(!c.llm.is_configured(), "OpenAI without a key is not configured");

    let c = Config::load_from(None, env(&[("OPENAI_API_KEY", "sk-env")])).unwrap();
    assert_eq!(c.llm.api_key().map(|k| k.expose_secret()), Some("sk-env"));
    assert_eq!(c.llm.key_origin(), "environment variable OPENAI_API_KEY");
    assert!(c.llm.is_configured());

    let c = load("[llm]\napi_key = \"sk-file\"\n", &[("OPENAI_API_KEY", "sk-env")]).unwrap();
    assert_eq!(c.llm.api_key().map(|k| k.expose_secret()), Some("sk-file"), "api_key wins");

    let c = load("[llm]\napi_key_env = \"MY_LLM_KEY\"\n", &[("OPENAI_API_KEY", "sk-env")]).unwrap();
    assert!(c.llm.api_key().is_none(), "a named variable replaces OPENAI_API_KEY");
    assert_eq!(c.llm.key_origin(), "environment variable MY_LLM_KEY is not set");
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let toml = format!(
        "[llm]\napi_key = \"sk-very-secret\"\n[bus]\nurl = \"amqp://user:hunter2@rabbit:5672/%2f\"\n\
         [store]\nurl = \"postgres://app:s3cret@db/deskpilot\"\n{}",
        UNIFIED.replace("\"sandbox\"", "\"unified-secret\"")
    );
    let c = load(&toml, &[("OPENAI_API_KEY", "sk-env-secret")]).unwrap();
    let debug = format!("{c:?}");
    for secret in ["sk-very-secret", "hunter2", "s3cret", "unified-secret", "sk-env-secret"] {
        assert!(!debug.contains(secret), "{secret} leaked into {debug}");
    }
    assert_eq!(c.bus.url.redacted(), "amqp://user:***@rabbit:5672/%2f");
}

#[test]
fn http_section_builds_the_client_settings() {
    let c =
        load("[http]\nconnect_timeout_secs = 2\nrequest_timeout_secs = 9\nmax_retries = 0\n", &[]).unwrap();
    let s = http_settings(&c);
    assert_eq!((s.connect_timeout, s.request_timeout), (Duration::from_secs(2), Duration::from_secs(9)));
    assert_eq!(s.retry.max_retries, 0);
}

#[test]
fn privacy_is_global_with_connection_overrides() {
    use deskpilot::{
        app::parts::triage_policy,
        triage::privacy::{Kind, Mode as PrivacyMode},
    };
    let toml = r#"
[privacy]
kinds = ["email", "card"]
patterns = [{ name = "order", regex = '\bORD-\d{6,}\b' }]

[[connections]]
id = "plain"
backend = "unified"
api_key = "k"

[[connections]]
id = "strict"
backend = "unified"
api_key = "k"
privacy = { mode = "redact", patterns = [{ name = "account", regex = '\bACC\d+\b' }] }
"#;
    let c = load(toml, &[]).unwrap();
    let plain = triage_policy(&c, c.connection("plain").unwrap()).unwrap();
    assert_eq!(plain.privacy.mode, PrivacyMode::Pseudonymise, "the default mode");
    assert_eq!(plain.privacy.kinds.iter().copied().collect::<Vec<_>>(), [Kind::Email, Kind::Card]);
    let strict = triage_policy(&c, c.connection("strict").unwrap()).unwrap();
    assert_eq!(strict.privacy.mode, PrivacyMode::Redact);
    let names: Vec<_> = strict.privacy.patterns.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["order", "account"]);
    let mut p = strict.privacy.pseudonymiser(None);
    assert_eq!(p.text("ORD-1234567 ACC42 a@x.com 4111111111111111"), "[ORDER] [ACCOUNT] [EMAIL] [CARD]");

    let off = load("[privacy]\nmode = \"off\"\n", &[("DESKPILOT__PRIVACY__MODE", "\"off\"")]).unwrap();
    assert_eq!(off.privacy.mode(), PrivacyMode::Off);
}

#[test]
fn bad_privacy_settings_are_refused_with_the_reason() {
    let e = error_of("[privacy]\npatterns = [{ name = \"order\", regex = \"(\" }]\n", &[]);
    assert!(e.contains("privacy pattern `order`: the regex does not compile"), "{e}");
    let e = error_of("[privacy]\nmode = \"hide\"\n", &[]);
    assert!(e.contains("hide"), "{e}");
    let conn = "[[connections]]\nid = \"x\"\nbackend = \"unified\"\napi_key = \"k\"\n";
    let e =
        error_of(&format!("{conn}privacy = {{ patterns = [{{ name = \"email\", regex = \"x\" }}] }}\n"), &[]);
    assert!(e.contains("connections[0] (id = \"x\"): privacy pattern name `email` is not usable"), "{e}");
}

/// `[connections.automation]` as an operator (or the agreement report's suggestion) writes it:
/// thresholds per category, reaching the act policy; one outside 0..=1 is refused by its key.
#[test]
fn per_category_thresholds_load_from_the_automation_table() {
    let toml = format!(
        "{UNIFIED}mode = \"apply_if_confident\"\nautomated_categories = [\"cat-billing\"]\n\n\
         [connections.automation]\ncat-outage = 0.85\ncat-shipping = 0.8\n"
    );
    let c = load(&toml, &[]).unwrap();
    let policy = deskpilot::app::parts::act_policy(&c.connections[0]);
    assert_eq!(
        policy.category_thresholds.into_iter().collect::<Vec<_>>(),
        [("cat-outage".to_owned(), 0.85), ("cat-shipping".to_owned(), 0.8)]
    );
    assert!(policy.automated_categories.contains("cat-billing"));

    let e = error_of(&toml.replace("cat-outage = 0.85", "cat-outage = 1.2"), &[]);
    assert!(e.contains("[connections.automation] cat-outage = 1.2 must be between 0 and 1"), "{e}");
}

#[test]
fn the_stronger_model_is_checked_and_shares_the_llm_endpoint_unless_given_its_own() {
    let e =
        error_of("[llm.escalation]\nmodel = \" \"\nbelow_confidence = 1.5\nbase_url = \"ftp://x\"\n", &[]);
    for expected in [
        "3 problems",
        "llm.escalation.model must name the stronger model",
        "llm.escalation.below_confidence = 1.5 must be above 0 and at most 1",
        "llm.escalation.base_url = \"ftp://x\" must be an http:// or https:// URL",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in {e}");
    }

    let c = load(
        "[llm.escalation]\nmodel = \"gpt-4o\"\nbelow_confidence = 0.7\n",
        &[("OPENAI_API_KEY", "sk-one")],
    )
    .unwrap();
    let (url, key) = c.escalation_endpoint().unwrap().expect("an escalation");
    assert_eq!(url, "https://api.openai.com/v1");
    assert_eq!(key.map(|k| k.expose_secret().to_owned()).as_deref(), Some("sk-one"), "the [llm] key");

    let own =
        "[llm.escalation]\nmodel = \"big\"\nbelow_confidence = 0.7\nbase_url = \"http://gpu:8000/v1\"\n";
    let c = load(own, &[("OPENAI_API_KEY", "sk-one")]).unwrap();
    let (url, key) = c.escalation_endpoint().unwrap().unwrap();
    assert_eq!(
        (url.as_str(), key.is_none()),
        ("http://gpu:8000/v1", true),
        "another server: no key of [llm]'s"
    );
    let c = load(&format!("{own}api_key_env = \"GPU_KEY\"\n"), &[("GPU_KEY", "sk-gpu")]).unwrap();
    let key = c.escalation_endpoint().unwrap().unwrap().1.unwrap();
    assert_eq!(key.expose_secret(), "sk-gpu");
    let c = load(&format!("{own}api_key_env = \"GPU_KEY\"\n"), &[]).unwrap();
    let e = format!("{:#}", c.escalation_endpoint().unwrap_err());
    assert!(
        e.contains("llm.escalation.api_key_env = \"GPU_KEY\" but that environment variable is not set"),
        "{e}"
    );
}

#[test]
fn budgets_are_checked_with_the_prices_and_the_fallback_model_they_need() {
    let c = load(
        &format!(
            "[llm]\ndaily_budget_usd = 20.0\nmonthly_budget_usd = 400\non_budget_exhausted = \"hold_until_reset\"\n\
             {UNIFIED}daily_budget_usd = 5\n"
        ),
        &[],
    )
    .unwrap();
    assert_eq!((c.llm.daily_budget_usd, c.llm.monthly_budget_usd), (Some(20.0), Some(400.0)));
    assert_eq!(c.connections[0].daily_budget_usd, Some(5.0));
    assert_eq!(c.llm.on_budget_exhausted, deskpilot::config::OnBudgetExhausted::HoldUntilReset);

    let e = error_of(
        &format!(
            "[llm]\nmodel = \"my-model\"\nmonthly_budget_usd = -3\non_budget_exhausted = \"switch_to_fallback_model\"\n\
             [llm.escalation]\nmodel = \"gpt-4o\"\nbelow_confidence = 0.7\n{UNIFIED}daily_budget_usd = 0\n"
        ),
        &[],
    );
    for expected in [
        "4 problems",
        "llm.monthly_budget_usd = -3 must be a positive amount of US dollars",
        "connections[0] (id = \"demo\"): daily_budget_usd = 0 must be a positive amount",
        "llm.on_budget_exhausted = \"switch_to_fallback_model\" needs llm.fallback_model",
        "a budget is set, but llm.model = \"my-model\" has no price: add [llm.prices.\"my-model\"]",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in {e}");
    }
    let e = error_of("[llm]\nfallback_model = \"gpt-4o-mini\"\n", &[]);
    assert!(e.contains("llm.fallback_model = \"gpt-4o-mini\" is only used with llm.on_budget_exhausted = \"switch_to_fallback_model\""), "{e}");
    let e = error_of("[llm]\non_budget_exhausted = \"wait\"\n", &[]);
    assert!(e.contains("decide_with_rules") && e.contains("hold_until_reset"), "the choices are named: {e}");
}

#[test]
fn llm_rate_limits_are_read_and_checked() {
    let c = load("[llm]\nrequests_per_minute = 500\ntokens_per_minute = 200000\n", &[]).unwrap();
    let limits = c.llm.call_limits();
    assert_eq!(limits.mode, LimiterMode::Adaptive, "adaptive by default");
    assert_eq!((limits.requests_per_minute, limits.tokens_per_minute), (Some(500), Some(200_000)));

    let e = error_of("[llm]\nrequests_per_minute = 0\n", &[]);
    assert!(e.contains("llm.requests_per_minute = 0 would never send a request"), "{e}");
    let e = error_of("[llm]\ntokens_per_minute = 2000\n[triage]\nanswer_reserve_tokens = 1200\n", &[]);
    assert!(e.contains("llm.tokens_per_minute = 2000 leaves no room for a request"), "{e}");
    assert!(e.contains("answer_reserve_tokens = 1200"), "{e}");
    let e = error_of("[llm]\nlimiter = \"off\"\ntokens_per_minute = 200000\n", &[]);
    assert!(e.contains("need llm.limiter = \"adaptive\""), "{e}");
    let e = error_of("[llm]\nlimiter = \"fast\"\n", &[]);
    assert!(e.contains("fast") && e.contains("adaptive"), "{e}");
}
