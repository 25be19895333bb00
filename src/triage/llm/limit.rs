//! Calls to one LLM endpoint kept within its limits: an adaptive concurrency limit (AIMD), the
//! rate-limit headers the server sends, and configured requests and tokens per minute as token
//! buckets.
//!
//! Every attempt takes a [`Permit`] from the endpoint's [`Limiter`] and hands back how it went.
//! The limit grows while calls succeed at the latency they had (one more per success until the
//! first overload, then one per limit's worth of successes) and halves on a 429, a timeout or a
//! 503, once per round of calls. A 429, `retry-after(-ms)` or a header saying nothing is left
//! pauses every call until the server's wait is over. Written here rather than taken from a crate:
//! tower's and governor's limiters are fixed-rate, and none reads OpenAI's headers.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use reqwest::{StatusCode, header::HeaderMap};
use serde::{Deserialize, Serialize};
use tokio::{sync::Notify, time::Instant};

use super::LlmError;
use crate::http::parse_retry_after;

/// Whether calls to the LLM go through a [`Limiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimiterMode {
    /// Adaptive concurrency, the server's rate-limit headers and the configured rates.
    #[default]
    Adaptive,
    /// As many calls as the worker's concurrency allows; a 429 is a retry like a 5xx.
    Off,
}

/// What bounds the calls to one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallLimits {
    /// Whether calls are limited at all.
    pub mode: LimiterMode,
    /// Requests per minute the account allows (`[llm] requests_per_minute`).
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute the account allows, prompt plus answer reserve (`[llm] tokens_per_minute`).
    pub tokens_per_minute: Option<u32>,
}

/// First concurrency limit: low enough for a local server with few slots, and doubled each
/// round of successful calls until the first overload.
const INITIAL_LIMIT: f64 = 4.0;

/// Highest concurrency limit (the worker's own concurrency bounds it well before).
const MAX_LIMIT: f64 = 1024.0;

/// The limit is multiplied by this on an overload.
const BACKOFF: f64 = 0.5;

/// A success slower than this many times the usual latency does not grow the limit: the server
/// is queueing.
const LATENCY_TOLERANCE: f64 = 2.0;

/// Successes after which the usual latency is taken again (a model or prompt size may change).
const BASELINE_SAMPLES: u32 = 200;

/// The pause after a 429 that says neither how long to wait nor when the limit resets.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// Events the worker holds beyond the limit, as a share of it: while some events are gathering
/// or acting, the others still fill the limit.
const EVENT_HEADROOM: f64 = 0.25;

/// How one call went, as the limiter learns from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered (even if the answer itself was unusable).
    Answered,
    /// 429, timeout or 503: the server has more than it can take.
    Overloaded,
    /// Any other failure: says nothing about the server's load.
    Failed,
}

impl Outcome {
    /// What a call's result says about the server's load.
    pub fn of<T>(result: &Result<T, LlmError>) -> Self {
        match result {
            Ok(_) => Self::Answered,
            Err(LlmError::RateLimited { .. }) => Self::Overloaded,
            Err(LlmError::Unavailable { detail })
                if detail.starts_with("timed out") || detail.starts_with("HTTP 503") =>
            {
                Self::Overloaded
            }
            Err(LlmError::Incomplete { .. } | LlmError::Refused { .. } | LlmError::Malformed { .. }) => {
                Self::Answered
            }
            Err(_) => Self::Failed,
        }
    }
}

/// The adaptive limit, rate buckets and server pause of one endpoint.
#[derive(Debug)]
pub struct Limiter {
    /// The endpoint, for metrics.
    endpoint: String,
    /// Longest server pause waited in-process; a longer one fails the call at once.
    max_pause: Duration,
    state: Mutex<State>,
    /// Wakes calls waiting for a slot: one was released or the limit grew.
    released: Notify,
    /// Wakes the worker when the limit changed.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    /// Before the first overload the limit grows by one per success.
    slow_start: bool,
    /// Calls that started before the last decrease do not decrease it again.
    decreased_at: Option<Instant>,
    /// The usual latency of a call, and the least seen since it was taken.
    baseline: Option<Duration>,
    window_min: Option<Duration>,
    window_samples: u32,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// No call starts before this: the server asked for a pause.
    resume_at: Option<Instant>,
    /// Tokens of the latest call, the least the next one will need.
    last_cost: f64,
    /// 429s since the last success: after the first, the server's wait for what one call needs
    /// did not hold (its window is fixed, not refilled continuously), so the whole reset is waited.
    refusals: u32,
}

/// Why a call is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Concurrency,
    Requests,
    Tokens,
    Server,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Self::Concurrency => "concurrency",
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Server => "server",
        }
    }
}

/// A token bucket holding a minute's worth, refilled continuously (as OpenAI's limits are):
/// configured, or learned from the server's headers when nothing is configured.
#[derive(Debug, Clone)]
struct Bucket {
    capacity: f64,
    level: f64,
    per_sec: f64,
    at: Instant,
    learned: bool,
}

impl Bucket {
    fn per_minute(n: u32, now: Instant) -> Self {
        let n = f64::from(n);
        Self { capacity: n, level: n, per_sec: n / 60.0, at: now, learned: false }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.per_sec).min(self.capacity);
        self.at = now;
    }

    /// How long until `amount` is there (`amount` at most the capacity).
    fn wait_for(&self, amount: f64) -> Duration {
        let missing = amount.min(self.capacity) - self.level;
        if missing <= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(missing / self.per_sec) }
    }
}

enum Admit {
    Go { saturated: bool },
    Wait(Reason, Option<Duration>),
}

impl State {
    fn new(limits: &CallLimits, now: Instant) -> Self {
        Self {
            limit: INITIAL_LIMIT,
            in_flight: 0,
            slow_start: true,
            decreased_at: None,
            baseline: None,
            window_min: None,
            window_samples: 0,
            requests: limits.requests_per_minute.map(|n| Bucket::per_minute(n, now)),
            tokens: limits.tokens_per_minute.map(|n| Bucket::per_minute(n, now)),
            resume_at: None,
            last_cost: 0.0,
            refusals: 0,
        }
    }

    fn slots(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    fn admit(&mut self, now: Instant, cost: f64, waited_for_slot: bool) -> Admit {
        if let Some(at) = self.resume_at.filter(|at| *at > now) {
            return Admit::Wait(Reason::Server, Some(at - now));
        }
        if self.in_flight >= self.slots() {
            return Admit::Wait(Reason::Concurrency, None);
        }
        for (bucket, amount, reason) in
            [(&mut self.requests, 1.0, Reason::Requests), (&mut self.tokens, cost, Reason::Tokens)]
        {
            if let Some(b) = bucket {
                b.refill(now);
                let wait = b.wait_for(amount);
                if !wait.is_zero() {
                    return Admit::Wait(reason, Some(wait));
                }
            }
        }
        if let Some(b) = &mut self.requests {
            b.level -= 1.0;
        }
        if let Some(b) = &mut self.tokens {
            b.level -= cost.min(b.capacity);
        }
        self.last_cost = cost;
        self.in_flight += 1;
        Admit::Go { saturated: waited_for_slot || self.in_flight >= self.slots() }
    }

    /// Learns from one finished call; true when the limit changed.
    fn release(&mut self, now: Instant, started: Instant, saturated: bool, outcome: Option<Outcome>) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        let before = self.limit;
        match outcome {
            Some(Outcome::Answered) => {
                let latency = now.saturating_duration_since(started);
                let usual = self.sample(latency);
                if saturated && latency.as_secs_f64() <= usual.as_secs_f64() * LATENCY_TOLERANCE {
                    let step = if self.slow_start { 1.0 } else { 1.0 / self.limit };
                    self.limit = (self.limit + step).min(MAX_LIMIT);
                }
            }
            Some(Outcome::Overloaded) if self.decreased_at.is_none_or(|at| started >= at) => {
                self.limit = (self.limit * BACKOFF).max(1.0);
                self.slow_start = false;
                self.decreased_at = Some(now);
            }
            _ => {}
        }
        self.limit != before
    }

    /// Records a successful call's latency; returns the usual latency.
    fn sample(&mut self, latency: Duration) -> Duration {
        self.window_min = Some(self.window_min.map_or(latency, |m| m.min(latency)));
        self.window_samples += 1;
        if self.baseline.is_none() || self.window_samples >= BASELINE_SAMPLES {
            self.baseline = self.window_min.take();
            self.window_samples = 0;
        }
        self.baseline.unwrap_or(latency)
    }

    /// Learns from a response's rate-limit headers: our buckets never hold more than the server
    /// says remains, and a 429 or an exhausted limit pauses every call.
    fn observe(&mut self, now: Instant, status: StatusCode, h: &RateLimitHeaders) {
        for (bucket, limit) in [(&mut self.requests, &h.requests), (&mut self.tokens, &h.tokens)] {
            match bucket {
                Some(b) => {
                    b.refill(now);
                    if b.learned
                        && let (Some(capacity), Some(per_sec)) = (limit.limit, limit.per_sec())
                    {
                        (b.capacity, b.per_sec) = (capacity, per_sec);
                    } else if let Some(capacity) = limit.limit.filter(|c| *c >= 1.0) {
                        // A server holding less than a minute's worth at once: no burst beyond it.
                        b.capacity = b.capacity.min(capacity);
                    }
                    // What the server has not counted yet was taken here already: the lower holds.
                    let remaining = limit.remaining.unwrap_or(f64::INFINITY);
                    b.level = b.level.min(remaining).min(b.capacity);
                }
                None => {
                    if let (Some(capacity), Some(level), Some(per_sec)) =
                        (limit.limit, limit.remaining, limit.per_sec())
                    {
                        *bucket = Some(Bucket { capacity, level, per_sec, at: now, learned: true });
                    }
                }
            }
        }
        let limited = status == StatusCode::TOO_MANY_REQUESTS;
        // 429s to calls sent together, while a pause holds, are one refusal.
        let pausing = self.resume_at.is_some_and(|at| at > now);
        self.refusals = match (limited, pausing) {
            (false, _) => 0,
            (true, true) => self.refusals.max(1),
            (true, false) => self.refusals + 1,
        };
        let whole = self.refusals > 1;
        let need_tokens = self.last_cost.max(1.0);
        let exhausted = [h.requests.refill_wait(1.0, whole), h.tokens.refill_wait(need_tokens, whole)]
            .into_iter()
            .flatten()
            .max();
        let pause =
            if limited { Some(h.retry_after.or(exhausted).unwrap_or(DEFAULT_PAUSE)) } else { exhausted };
        if let Some(pause) = pause.filter(|p| !p.is_zero()) {
            let until = now + pause;
            self.resume_at = Some(self.resume_at.map_or(until, |at| at.max(until)));
        }
    }
}

impl Limiter {
    /// A limiter for `endpoint` (named in metrics); `None` when `limits` turn it off.
    pub fn new(endpoint: impl Into<String>, limits: &CallLimits, max_pause: Duration) -> Option<Self> {
        if limits.mode == LimiterMode::Off {
            return None;
        }
        let limiter = Self {
            endpoint: endpoint.into(),
            max_pause,
            state: Mutex::new(State::new(limits, Instant::now())),
            released: Notify::new(),
            changed: Notify::new(),
        };
        limiter.publish(INITIAL_LIMIT);
        Some(limiter)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current concurrency limit.
    pub fn limit(&self) -> f64 {
        self.lock().limit
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Whether a worker holding `events` events (the next one included) may take one more: the
    /// limit and a little headroom for events that are not calling the LLM at the moment.
    pub fn admits(&self, events: usize) -> bool {
        let limit = self.limit();
        events as f64 <= (limit * (1.0 + EVENT_HEADROOM)).ceil() + 1.0
    }

    /// Resolves when the limit changes next.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Waits until a call costing `tokens` (prompt plus answer reserve) may start. A pause the
    /// server asked for that is longer than the in-process maximum fails at once as
    /// [`LlmError::RateLimited`], so the caller can hand the event back for later.
    pub async fn acquire(self: &Arc<Self>, tokens: u32) -> Result<Permit, LlmError> {
        let asked = Instant::now();
        let mut waited: Option<Reason> = None;
        let mut waited_for_slot = false;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let now = Instant::now();
            let admitted = self.lock().admit(now, f64::from(tokens), waited_for_slot);
            match admitted {
                Admit::Go { saturated } => {
                    if let Some(reason) = waited {
                        metrics::histogram!(
                            "deskpilot_llm_limiter_wait_seconds",
                            "endpoint" => self.endpoint.clone(), "reason" => reason.label()
                        )
                        .record(now.saturating_duration_since(asked).as_secs_f64());
                    }
                    return Ok(Permit { limiter: self.clone(), started: now, saturated, outcome: None });
                }
                Admit::Wait(Reason::Server, Some(pause)) if pause > self.max_pause => {
                    return Err(LlmError::RateLimited {
                        retry_after: Some(pause),
                        detail: format!(
                            "the server asked for a pause of {}s, longer than [llm] max_retry_after_secs",
                            pause.as_secs()
                        ),
                    });
                }
                Admit::Wait(reason, wait) => {
                    // The first reason a call waited is the one it is counted under.
                    waited.get_or_insert(reason);
                    waited_for_slot |= reason == Reason::Concurrency;
                    match wait {
                        Some(wait) => {
                            tokio::select! {
                                () = &mut released => {}
                                () = tokio::time::sleep(wait) => {}
                            }
                        }
                        None => released.await,
                    }
                }
            }
        }
    }

    /// Learns from the status and rate-limit headers of any response of this endpoint.
    pub fn observe(&self, status: StatusCode, headers: &HeaderMap) {
        let h = RateLimitHeaders::read(headers);
        self.lock().observe(Instant::now(), status, &h);
    }

    fn release(&self, started: Instant, saturated: bool, outcome: Option<Outcome>) {
        let (changed, limit) = {
            let mut s = self.lock();
            (s.release(Instant::now(), started, saturated, outcome), s.limit)
        };
        if changed {
            self.publish(limit);
            self.changed.notify_waiters();
        }
        self.released.notify_waiters();
    }

    fn publish(&self, limit: f64) {
        metrics::gauge!("deskpilot_llm_concurrency_limit", "endpoint" => self.endpoint.clone()).set(limit);
    }
}

/// One call's place within the limits; dropping it frees the place. Tell it how the call went
/// with [`Permit::finish`], or the call teaches the limiter nothing.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    started: Instant,
    saturated: bool,
    outcome: Option<Outcome>,
}

impl Permit {
    /// Frees the place with how the call went.
    pub fn finish(mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release(self.started, self.saturated, self.outcome);
    }
}

/// One limit as a response reports it.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct HeaderLimit {
    limit: Option<f64>,
    remaining: Option<f64>,
    reset: Option<Duration>,
}

impl HeaderLimit {
    fn read(headers: &HeaderMap, kind: &str) -> Self {
        // Azure sends -1 for a limit it does not report.
        let number = |name: String| {
            let value = headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok()?;
            (value.is_finite() && value >= 0.0).then_some(value)
        };
        Self {
            limit: number(format!("x-ratelimit-limit-{kind}")),
            remaining: number(format!("x-ratelimit-remaining-{kind}")),
            reset: headers
                .get(format!("x-ratelimit-reset-{kind}"))
                .and_then(|v| v.to_str().ok())
                .and_then(parse_reset),
        }
    }

    /// The rate the limit refills at, when the headers tell: what is missing, over the time until
    /// it is all back.
    fn per_sec(&self) -> Option<f64> {
        let (limit, remaining, reset) = (self.limit?, self.remaining?, self.reset?.as_secs_f64());
        (limit > remaining && reset > 0.0).then(|| (limit - remaining) / reset)
    }

    /// How long until `need` is available again, when less remains. The reset header is the time
    /// until the whole limit is back; with the limit known, the part of it `need` takes (as
    /// OpenAI refills continuously), unless `whole`.
    fn refill_wait(&self, need: f64, whole: bool) -> Option<Duration> {
        let remaining = self.remaining?;
        if remaining >= need {
            return None;
        }
        let reset = self.reset.unwrap_or(DEFAULT_PAUSE);
        let share = match self.limit {
            Some(limit) if limit > remaining && !whole => ((need - remaining) / (limit - remaining)).min(1.0),
            _ => 1.0,
        };
        Some(reset.mul_f64(share))
    }
}

/// The rate-limit headers of OpenAI and Azure OpenAI.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct RateLimitHeaders {
    requests: HeaderLimit,
    tokens: HeaderLimit,
    /// `retry-after-ms` (Azure), else `retry-after`.
    retry_after: Option<Duration>,
}

impl RateLimitHeaders {
    fn read(headers: &HeaderMap) -> Self {
        let retry_after_ms = headers
            .get("retry-after-ms")
            .and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok())
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0));
        Self {
            requests: HeaderLimit::read(headers, "requests"),
            tokens: HeaderLimit::read(headers, "tokens"),
            retry_after: retry_after_ms.or_else(|| parse_retry_after(headers)),
        }
    }
}

/// Reads a reset time as OpenAI writes it (`1s`, `6m0s`, `20ms`, `1h2m3.5s`) or as plain
/// seconds (`2`, `0.5`).
pub fn parse_reset(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let mut rest = value;
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !is_number(c))?;
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.find(is_number).unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit..];
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn limits(rpm: Option<u32>, tpm: Option<u32>) -> CallLimits {
        CallLimits { mode: LimiterMode::Adaptive, requests_per_minute: rpm, tokens_per_minute: tpm }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn reset_times_read_as_openai_writes_them() {
        let ms = Duration::from_millis;
        assert_eq!(parse_reset("1s"), Some(ms(1000)));
        assert_eq!(parse_reset("6m0s"), Some(ms(360_000)));
        assert_eq!(parse_reset("20ms"), Some(ms(20)));
        assert_eq!(parse_reset("1h2m3.5s"), Some(ms(3_723_500)));
        assert_eq!(parse_reset("2"), Some(ms(2000)));
        assert_eq!(parse_reset("0.25"), Some(ms(250)));
        for bad in ["", "soon", "5x", "s", "-1", "1s2"] {
            assert_eq!(parse_reset(bad), None, "{bad}");
        }
    }

    #[test]
    fn off_builds_no_limiter() {
        let off = CallLimits { mode: LimiterMode::Off, ..limits(Some(10), None) };
        assert!(Limiter::new("e", &off, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn the_limit_grows_when_used_and_halves_once_per_round_of_overloads() {
        let t0 = Instant::now();
        let mut s = State::new(&limits(None, None), t0);
        let later = t0 + Duration::from_millis(100);
        // Slow start: one more per saturated success.
        assert!(matches!(s.admit(t0, 10.0, true), Admit::Go { saturated: true }));
        assert!(s.release(later, t0, true, Some(Outcome::Answered)));
        assert_eq!(s.limit, INITIAL_LIMIT + 1.0);
        // An unsaturated success does not grow it.
        assert!(matches!(s.admit(t0, 10.0, false), Admit::Go { saturated: false }));
        assert!(!s.release(later, t0, false, Some(Outcome::Answered)));
        // Two overloads of calls started before the decrease halve it once.
        let _ = s.admit(t0, 10.0, false);
        let _ = s.admit(t0, 10.0, false);
        assert!(s.release(later, t0, false, Some(Outcome::Overloaded)));
        assert_eq!(s.limit, (INITIAL_LIMIT + 1.0) * BACKOFF);
        assert!(!s.release(later, t0, false, Some(Outcome::Overloaded)));
        // After the first overload it grows by 1/limit per success.
        let before = s.limit;
        let _ = s.admit(later, 10.0, true);
        s.release(later + Duration::from_millis(100), later, true, Some(Outcome::Answered));
        assert!((s.limit - (before + 1.0 / before)).abs() < 1e-9, "{}", s.limit);
        // A call much slower than usual does not grow it.
        let before = s.limit;
        let _ = s.admit(later, 10.0, true);
        s.release(later + Duration::from_secs(5), later, true, Some(Outcome::Answered));
        assert_eq!(s.limit, before);
    }

    #[test]
    fn calls_wait_for_a_slot_then_for_the_buckets() {
        let t0 = Instant::now();
        let mut s = State::new(&limits(Some(60), Some(600)), t0);
        for _ in 0..INITIAL_LIMIT as usize {
            assert!(matches!(s.admit(t0, 100.0, false), Admit::Go { .. }));
        }
        assert!(matches!(s.admit(t0, 100.0, false), Admit::Wait(Reason::Concurrency, None)));
        s.release(t0, t0, false, None);
        // 4 × 100 of 600 tokens are spent: 200 left, so a call of 300 waits 100 / 10 per second.
        match s.admit(t0, 300.0, false) {
            Admit::Wait(Reason::Tokens, Some(wait)) => assert_eq!(wait, Duration::from_secs(10)),
            _ => panic!("expected a wait for tokens"),
        }
        // A call larger than the whole bucket waits for a full bucket, not forever.
        match s.admit(t0, 10_000.0, false) {
            Admit::Wait(Reason::Tokens, Some(wait)) => assert_eq!(wait, Duration::from_secs(40)),
            _ => panic!("expected a wait for tokens"),
        }
    }

    #[test]
    fn a_429_pauses_calls_for_the_time_the_server_gives() {
        let t0 = Instant::now();
        let mut s = State::new(&limits(None, None), t0);
        let h = RateLimitHeaders::read(&headers(&[("retry-after-ms", "1500"), ("retry-after", "2")]));
        s.observe(t0, StatusCode::TOO_MANY_REQUESTS, &h);
        assert_eq!(s.resume_at, Some(t0 + Duration::from_millis(1500)), "retry-after-ms wins");
        assert!(
            matches!(s.admit(t0, 1.0, false), Admit::Wait(Reason::Server, Some(d)) if d == Duration::from_millis(1500))
        );
        assert!(matches!(s.admit(t0 + Duration::from_millis(1500), 1.0, false), Admit::Go { .. }));

        // Without retry-after: the reset of the exhausted limit, scaled to what is needed.
        let mut s = State::new(&limits(None, None), t0);
        s.last_cost = 100.0;
        let h = RateLimitHeaders::read(&headers(&[
            ("x-ratelimit-limit-requests", "600"),
            ("x-ratelimit-remaining-requests", "12"),
            ("x-ratelimit-reset-requests", "1m"),
            ("x-ratelimit-limit-tokens", "200000"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]));
        s.observe(t0, StatusCode::TOO_MANY_REQUESTS, &h);
        // 100 of 200 000 tokens come back in 100 / 200 000 of 6 minutes: 180 ms.
        assert_eq!(s.resume_at, Some(t0 + Duration::from_millis(180)));

        // Another call's 429 while the pause holds: the same round.
        s.observe(t0 + Duration::from_millis(100), StatusCode::TOO_MANY_REQUESTS, &h);
        assert_eq!(s.resume_at, Some(t0 + Duration::from_millis(280)));
        // A 429 after the pause: the server's window is not refilled continuously; the whole reset.
        let t1 = t0 + Duration::from_millis(300);
        s.observe(t1, StatusCode::TOO_MANY_REQUESTS, &h);
        assert_eq!(s.resume_at, Some(t1 + Duration::from_secs(360)));

        // Nothing at all: a default pause.
        let mut s = State::new(&limits(None, None), t0);
        s.observe(t0, StatusCode::TOO_MANY_REQUESTS, &RateLimitHeaders::default());
        assert_eq!(s.resume_at, Some(t0 + DEFAULT_PAUSE));
    }

    #[test]
    fn a_success_lowers_the_buckets_to_what_the_server_says_remains() {
        let t0 = Instant::now();
        let mut s = State::new(&limits(Some(600), Some(200_000)), t0);
        let h = RateLimitHeaders::read(&headers(&[
            ("x-ratelimit-remaining-requests", "5"),
            ("x-ratelimit-remaining-tokens", "-1"),
            ("x-ratelimit-reset-requests", "20ms"),
        ]));
        s.observe(t0, StatusCode::OK, &h);
        assert_eq!(s.requests.as_ref().unwrap().level, 5.0);
        assert_eq!(s.requests.as_ref().unwrap().capacity, 600.0, "no limit header: the configured one");
        assert_eq!(s.tokens.as_ref().unwrap().level, 200_000.0, "-1 means not reported");
        assert_eq!(s.resume_at, None, "requests remain");
        let h = RateLimitHeaders::read(&headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "20ms"),
        ]));
        s.observe(t0, StatusCode::OK, &h);
        assert_eq!(s.resume_at, Some(t0 + Duration::from_millis(20)), "none left: wait for the reset");
        // A server that holds less at once than a minute's worth bounds the burst, not the rate.
        let h = RateLimitHeaders::read(&headers(&[("x-ratelimit-limit-tokens", "20000")]));
        s.observe(t0, StatusCode::OK, &h);
        let tokens = s.tokens.as_ref().unwrap();
        assert_eq!((tokens.capacity, tokens.per_sec), (20_000.0, 200_000.0 / 60.0));
    }

    #[test]
    fn without_configured_rates_the_servers_limit_is_learned_from_its_headers() {
        let t0 = Instant::now();
        let mut s = State::new(&limits(None, None), t0);
        // 6 a second: 4 remain, the other 2 are back in a third of a second.
        let h = RateLimitHeaders::read(&headers(&[
            ("x-ratelimit-limit-requests", "6"),
            ("x-ratelimit-remaining-requests", "4"),
            ("x-ratelimit-reset-requests", "333ms"),
        ]));
        s.observe(t0, StatusCode::OK, &h);
        for _ in 0..4 {
            assert!(matches!(s.admit(t0, 1.0, false), Admit::Go { .. }));
            s.release(t0, t0, false, None);
        }
        match s.admit(t0, 1.0, false) {
            Admit::Wait(Reason::Requests, Some(wait)) => {
                assert!((0.16..0.17).contains(&wait.as_secs_f64()), "{wait:?}")
            }
            _ => panic!("expected a wait for the learned requests limit"),
        }
    }

    #[tokio::test]
    async fn a_pause_longer_than_the_maximum_fails_at_once() {
        let limiter = Arc::new(Limiter::new("e", &limits(None, None), Duration::from_secs(5)).unwrap());
        limiter.observe(StatusCode::TOO_MANY_REQUESTS, &headers(&[("retry-after", "60")]));
        match limiter.acquire(1).await {
            Err(LlmError::RateLimited { retry_after: Some(d), .. }) => assert!(d > Duration::from_secs(59)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_buckets_hold_the_configured_rates() {
        // 120 requests and 60 000 tokens a minute; calls of 1 000 tokens: tokens bind at one a
        // second after the first minute's worth, requests alone would allow two.
        let t0 = Instant::now();
        let mut s = State::new(&limits(Some(120), Some(60_000)), t0);
        let mut now = t0;
        let mut started = Vec::new();
        while started.len() < 180 {
            match s.admit(now, 1000.0, false) {
                Admit::Go { .. } => {
                    started.push(now);
                    s.release(now, now, false, None);
                }
                Admit::Wait(_, Some(wait)) => now += wait,
                Admit::Wait(_, None) => panic!("no call is in flight"),
            }
        }
        // A full bucket of 60 at once, then 120 more over the next 120 seconds.
        assert_eq!(started.iter().filter(|t| **t == t0).count(), 60);
        let took = (started[179] - t0).as_secs_f64();
        assert!((119.9..=120.1).contains(&took), "{took}");
    }
}
