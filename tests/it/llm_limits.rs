//! Calls to the LLM within its limits, against a fake OpenAI server (wiremock) that answers 429
//! with OpenAI's rate-limit headers and error body: the limit shrinks and calls wait as the
//! server says, the configured rates hold, and a burst the server cannot take still gets through.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::helpers::*;
use deskpilot::triage::{
    Policy,
    llm::{
        CallLimits, ChatMessage, ChatModel, ChatRequest, LimiterMode, LlmError, LlmSettings, OpenAiCompatible,
    },
};
use futures::future::join_all;
use serde_json::json;
use wiremock::{Request, Respond, ResponseTemplate};

/// OpenAI's 429 for an exhausted requests-per-minute limit, with `headers`.
fn rate_limited(limit: u32, headers: &[(&str, &str)]) -> ResponseTemplate {
    let mut template = openai_error(
        429,
        &format!(
            "Rate limit reached for {MODEL} in organization org-test on requests per min (RPM): Limit \
             {limit}, Used {limit}, Requested 1. Visit https://platform.openai.com/account/rate-limits \
             to learn more."
        ),
        "requests",
        Some("rate_limit_exceeded"),
    );
    for (name, value) in headers {
        template = template.insert_header(*name, *value);
    }
    template
}

fn request(prompt_tokens: u32, answer_tokens: u32) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::system("Triage the ticket."), ChatMessage::user("My invoice is wrong.")],
        schema_name: "triage_decision",
        schema: Arc::new(json!({"type": "object"})),
        max_completion_tokens: answer_tokens,
        prompt_tokens: Some(prompt_tokens),
    }
}

fn client(settings: LlmSettings) -> OpenAiCompatible {
    OpenAiCompatible::new(settings).expect("client builds")
}

#[tokio::test]
async fn a_429_with_openai_headers_shrinks_the_limit_and_waits_as_told() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    // Out of tokens (reset in 800 ms), requests left: the pause is the tokens' reset.
    let limited = rate_limited(
        500,
        &[
            ("x-ratelimit-remaining-requests", "499"),
            ("x-ratelimit-reset-requests", "120ms"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "800ms"),
        ],
    );
    let script = Script::new(vec![limited, ok(&valid_answer(Some("cat-billing")))]);
    let metrics = deskpilot::telemetry::metrics().expect("the recorder of this binary");
    let llm = mock_llm(script, Some(2)).await;
    let engine = engine(&llm);
    let limiter = engine.limiter().expect("the limiter is on by default");
    let before = limiter.limit();
    let endpoint = format!("endpoint=\"{}/v1 {MODEL}\"", llm.uri());
    let line = |exposition: &str, prefix: &str, labels: &str| {
        exposition
            .lines()
            .find(|l| l.starts_with(prefix) && l.contains(&endpoint) && l.contains(labels))
            .map(str::to_owned)
    };
    let server_waits = |exposition: &str| {
        line(exposition, "deskpilot_llm_limiter_wait_seconds_count", "reason=\"server\"")
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // wiremock hands out pooled servers: an earlier test may have used this address already.
    let waits_before = server_waits(&metrics.render());

    let started = Instant::now();
    let triage = engine.triage(&hd, "1001", &Policy::new("demo")).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(800),
        "x-ratelimit-reset-tokens: 800ms was waited ({elapsed:?})"
    );
    assert_eq!((triage.report.llm_calls, triage.report.llm_attempts), (1, 2));
    assert!(limiter.limit() < before, "the limit shrank from {before} to {}", limiter.limit());
    assert_eq!(limiter.in_flight(), 0);

    // In /metrics: this endpoint's limit, and the call's wait for the server's pause.
    let exposition = metrics.render();
    let limit = line(&exposition, "deskpilot_llm_concurrency_limit", "")
        .unwrap_or_else(|| panic!("no limit:\n{exposition}"));
    assert!(limit.ends_with(&format!(" {}", limiter.limit())), "{limit}");
    assert_eq!(server_waits(&exposition), waits_before + 1, "one wait for the server's pause:\n{exposition}");
    assert!(
        exposition.contains(&format!("deskpilot_llm_rate_limited_total{{model=\"{MODEL}\"}}")),
        "{exposition}"
    );
}

#[tokio::test]
async fn a_429_does_not_spend_the_calls_retries_while_its_wait_is_short() {
    // Three 429s in a row, with one retry allowed: the limiter sends it again each time the
    // server's wait is over, so the call still gets its answer.
    let limited = || rate_limited(500, &[("x-ratelimit-remaining-requests", "0"), ("retry-after-ms", "150")]);
    let script = Script::new(vec![limited(), limited(), limited(), ok(&valid_answer(None))]);
    let llm = mock_llm(script, Some(4)).await;
    let settings = LlmSettings { max_retries: 1, ..llm_settings(&llm) };
    let started = Instant::now();
    let answer = client(settings).complete(&request(100, 100)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "retry-after-ms: 150 thrice: {:?}",
        started.elapsed()
    );
    assert_eq!(answer.attempts, 4);
}

#[tokio::test]
async fn a_429_with_a_wait_beyond_the_cap_hands_the_call_back_and_pauses_the_next() {
    let llm = mock_llm(rate_limited(500, &[("retry-after", "400")]), Some(1)).await;
    let client = client(llm_settings(&llm));
    let first = client.complete(&request(100, 100)).await.unwrap_err();
    assert!(matches!(first, LlmError::RateLimited { .. }), "{first:?}");
    // The server is not asked again while its pause lasts: the next call fails at once with
    // the wait that is left, for the worker to delay the event by.
    let started = Instant::now();
    let next = client.complete(&request(100, 100)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    let LlmError::RateLimited { retry_after: Some(wait), .. } = next else { panic!("{next:?}") };
    assert!(wait > Duration::from_secs(350), "{wait:?}");
}

#[tokio::test]
async fn the_tokens_per_minute_bucket_holds_the_configured_rate() {
    // 60 000 tokens a minute, calls of 1 000: a minute's worth (60 calls) at once, then one a
    // second; 63 calls take three seconds more.
    let llm = mock_llm(ok(&valid_answer(None)), Some(63)).await;
    let limits = CallLimits {
        mode: LimiterMode::Adaptive,
        requests_per_minute: None,
        tokens_per_minute: Some(60_000),
    };
    let client = client(LlmSettings { limits, total_timeout: Duration::from_secs(30), ..llm_settings(&llm) });
    let started = Instant::now();
    let call = request(900, 100);
    let answers = join_all((0..63).map(|_| client.complete(&call))).await;
    let elapsed = started.elapsed();
    assert!(answers.iter().all(Result::is_ok), "{:?}", answers.iter().find(|a| a.is_err()));
    assert!(elapsed >= Duration::from_millis(2900), "the bucket held 60 000 tokens a minute: {elapsed:?}");
}

/// A server allowing `per_second` requests a second from a bucket of as many, refilled
/// continuously as OpenAI's are, answering 429 with OpenAI's headers and body beyond that; it
/// counts both.
#[derive(Clone)]
struct Enforcing(Arc<Mutex<Bucket>>);

struct Bucket {
    per_second: f64,
    level: f64,
    at: Instant,
    answered: u32,
    refused: u32,
}

impl Enforcing {
    fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        let bucket = Bucket { per_second, level: per_second, at: Instant::now(), answered: 0, refused: 0 };
        Self(Arc::new(Mutex::new(bucket)))
    }

    fn counts(&self) -> (u32, u32) {
        let b = self.0.lock().unwrap();
        (b.answered, b.refused)
    }
}

impl Respond for Enforcing {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let mut b = self.0.lock().unwrap();
        let now = Instant::now();
        b.level = (b.level + now.duration_since(b.at).as_secs_f64() * b.per_second).min(b.per_second);
        b.at = now;
        let limit = b.per_second as u32;
        if b.level < 1.0 {
            b.refused += 1;
            let reset = format!("{}ms", ((b.per_second - b.level) / b.per_second * 1000.0).ceil());
            return rate_limited(
                limit,
                &[
                    ("x-ratelimit-limit-requests", &limit.to_string()),
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", &reset),
                ],
            );
        }
        b.level -= 1.0;
        b.answered += 1;
        let reset = format!("{}ms", ((b.per_second - b.level) / b.per_second * 1000.0).ceil());
        ok(&valid_answer(None))
            .insert_header("x-ratelimit-limit-requests", limit.to_string().as_str())
            .insert_header("x-ratelimit-remaining-requests", (b.level.floor() as u32).to_string().as_str())
            .insert_header("x-ratelimit-reset-requests", reset.as_str())
    }
}

/// 24 calls at once to a server taking 6 a second, each call allowed one retry.
async fn burst(mode: LimiterMode) -> (Vec<Result<(), LlmError>>, (u32, u32)) {
    let server = Enforcing::new(6);
    let llm = mock_llm(server.clone(), None).await;
    let limits = CallLimits { mode, ..CallLimits::default() };
    let settings =
        LlmSettings { limits, max_retries: 1, total_timeout: Duration::from_secs(20), ..llm_settings(&llm) };
    let client = client(settings);
    let call = request(100, 100);
    let results = join_all((0..24).map(|_| client.complete(&call))).await;
    (results.into_iter().map(|r| r.map(|_| ())).collect(), server.counts())
}

#[tokio::test]
async fn a_burst_beyond_the_servers_rate_gets_through_with_few_429s() {
    let (results, (answered, refused)) = burst(LimiterMode::Adaptive).await;
    assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find(|r| r.is_err()));
    assert_eq!(answered, 24);
    assert!(refused <= 6, "{refused} calls were answered 429");

    // The same burst without the limiter: calls spend their retry on 429s and fail.
    let (results, (_, refused)) = burst(LimiterMode::Off).await;
    let failed = results.iter().filter(|r| matches!(r, Err(LlmError::RateLimited { .. }))).count();
    assert!(failed > 0 && refused > 6, "without the limiter: {failed} failed, {refused} answered 429");
}
