//! An OpenAI-compatible chat endpoint that answers every request with a valid triage decision
//! after a fixed latency, standing in for the model; optionally enforcing an account's requests
//! and tokens per window as OpenAI does (shared with benches/llm_limits.rs).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

/// The model name the worker is configured with.
pub const MODEL: &str = "bench-model";

/// An account's limits: `requests` and `tokens` per `window`, each a bucket holding a window's
/// worth and refilled continuously. A request takes its messages' characters / 4 plus its
/// `max_completion_tokens` from the tokens, which is how OpenAI counts it against the limit.
#[derive(Debug, Clone, Copy)]
pub struct Enforced {
    /// Requests per window.
    pub requests: u32,
    /// Tokens per window.
    pub tokens: u32,
    /// The window (OpenAI's is a minute).
    pub window: Duration,
}

/// What the server saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Requests answered 200, with when each arrived.
    pub answered: Vec<Instant>,
    /// Requests answered 429.
    pub refused: u64,
    /// Tokens the answered requests took.
    pub tokens: u64,
}

struct Limits {
    enforced: Enforced,
    requests: f64,
    tokens: f64,
    at: Instant,
}

#[derive(Clone)]
struct Server {
    latency: Duration,
    limits: Option<Arc<Mutex<Limits>>>,
    seen: Arc<Mutex<Seen>>,
}

/// Serves `/v1/chat/completions` on a free local port, enforcing `enforced` when given; returns
/// its base URL (`…/v1`) and what it saw.
pub async fn spawn(
    latency: Duration,
    enforced: Option<Enforced>,
) -> anyhow::Result<(String, Arc<Mutex<Seen>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let limits = enforced.map(|e| {
        let full =
            Limits { enforced: e, requests: e.requests.into(), tokens: e.tokens.into(), at: Instant::now() };
        Arc::new(Mutex::new(full))
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = Server { latency, limits, seen: seen.clone() };
    let router = Router::new().route("/v1/chat/completions", post(complete)).with_state(server);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((format!("http://{addr}/v1"), seen))
}

async fn complete(State(server): State<Server>, Json(request): Json<Value>) -> Response {
    let arrived = Instant::now();
    let headers = match &server.limits {
        Some(limits) => match limits.lock().unwrap().take(arrived, cost(&request)) {
            Ok(headers) => headers,
            Err(refusal) => {
                server.seen.lock().unwrap().refused += 1;
                return *refusal;
            }
        },
        None => HeaderMap::new(),
    };
    {
        let mut seen = server.seen.lock().unwrap();
        seen.answered.push(arrived);
        seen.tokens += cost(&request) as u64;
    }
    tokio::time::sleep(server.latency).await;
    (headers, Json(completion())).into_response()
}

/// The tokens a request takes from the limit: its messages' characters / 4 and its answer cap.
fn cost(request: &Value) -> f64 {
    let chars: usize = request["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["content"].as_str()).map(|c| c.chars().count()).sum())
        .unwrap_or(0);
    let answer = request["max_completion_tokens"].as_u64().or(request["max_tokens"].as_u64()).unwrap_or(16);
    (chars as f64 / 4.0).ceil() + answer as f64
}

impl Limits {
    /// Takes one request of `tokens`, returning the rate-limit headers to answer with, or the 429
    /// OpenAI sends when either limit has too little left.
    fn take(&mut self, now: Instant, tokens: f64) -> Result<HeaderMap, Box<Response>> {
        let e = self.enforced;
        let window = e.window.as_secs_f64();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.requests = (self.requests + elapsed * f64::from(e.requests) / window).min(e.requests.into());
        self.tokens = (self.tokens + elapsed * f64::from(e.tokens) / window).min(e.tokens.into());
        self.at = now;
        let short = if self.requests < 1.0 {
            Some(("requests", "RPM", e.requests, f64::from(e.requests) - self.requests, 1.0 - self.requests))
        } else if self.tokens < tokens {
            Some(("tokens", "TPM", e.tokens, f64::from(e.tokens) - self.tokens, tokens - self.tokens))
        } else {
            None
        };
        if let Some((kind, unit, limit, used, missing)) = short {
            let wait = Duration::from_secs_f64(missing * window / f64::from(limit));
            let message = format!(
                "Rate limit reached for {MODEL} in organization org-bench on {kind} per min ({unit}): Limit \
                 {limit}, Used {used:.0}, Requested {requested:.0}. Please try again in {wait}. Visit \
                 https://platform.openai.com/account/rate-limits to learn more.",
                requested = if kind == "requests" { 1.0 } else { tokens },
                wait = go_duration(wait),
            );
            let body = json!({"error": {"message": message, "type": kind, "param": null, "code": "rate_limit_exceeded"}});
            return Err(Box::new(
                (StatusCode::TOO_MANY_REQUESTS, self.headers(), Json(body)).into_response(),
            ));
        }
        self.requests -= 1.0;
        self.tokens -= tokens;
        Ok(self.headers())
    }

    /// `x-ratelimit-*` as OpenAI sends them: the limits, what remains, and the time until each is
    /// full again.
    fn headers(&self) -> HeaderMap {
        let e = self.enforced;
        let window = e.window.as_secs_f64();
        let reset = |limit: u32, level: f64| {
            go_duration(Duration::from_secs_f64(
                (f64::from(limit) - level).max(0.0) * window / f64::from(limit),
            ))
        };
        let mut h = HeaderMap::new();
        let mut set = |name: &'static str, value: String| {
            h.insert(name, HeaderValue::from_str(&value).expect("an ASCII header value"));
        };
        set("x-ratelimit-limit-requests", e.requests.to_string());
        set("x-ratelimit-limit-tokens", e.tokens.to_string());
        set("x-ratelimit-remaining-requests", (self.requests.max(0.0).floor() as u64).to_string());
        set("x-ratelimit-remaining-tokens", (self.tokens.max(0.0).floor() as u64).to_string());
        set("x-ratelimit-reset-requests", reset(e.requests, self.requests));
        set("x-ratelimit-reset-tokens", reset(e.tokens, self.tokens));
        h
    }
}

/// A duration as OpenAI's headers write it: `20ms`, `1.5s`, `6m0s`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..1000 => format!("{}ms", ms.max(1)),
        1000..60_000 => format!("{}s", ms as f64 / 1000.0),
        _ => format!("{}m{}s", ms / 60_000, (ms % 60_000) as f64 / 1000.0),
    }
}

/// A chat completion carrying a decision on the demo helpdesk's categories, with a draft.
fn completion() -> Value {
    let decision = json!({
        "category_id": "cat-billing",
        "priority": "HIGH",
        "tags": ["billing", "double-charge"],
        "language": "en",
        "sentiment": "negative",
        "summary": "The customer was charged twice and asks for a refund of the second charge.",
        "draft_reply": "Hi,\n\nsorry about the double charge. I have asked our billing team to refund the \
                        second payment; you will see it within 5 business days.\n\nBest regards",
        "confidence": 0.86,
        "needs_human": false,
        "reason": "Two identical charges on one invoice are a billing matter."
    });
    json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": decision.to_string()}
        }],
        "usage": {"prompt_tokens": 1500, "completion_tokens": 120, "total_tokens": 1620}
    })
}
