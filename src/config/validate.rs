//! Ranges and cross-field rules, every problem reported at once.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow};
use url::Url;

use super::Config;

impl Config {
    /// Checks ranges and cross-field rules, reporting every problem at once.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };

        let llm = &self.llm;
        check(
            is_http_url(&llm.base_url),
            format!("llm.base_url = {:?} must be an http:// or https:// URL", llm.base_url),
        );
        check(!llm.model.trim().is_empty(), "llm.model must not be empty".into());
        check(llm.connect_timeout_secs > 0, "llm.connect_timeout_secs must be at least 1".into());
        check(llm.request_timeout_secs > 0, "llm.request_timeout_secs must be at least 1".into());

        if let Some(url) = self.bus.amqp_url() {
            check(
                Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "amqp" | "amqps")),
                format!(
                    "bus.url = {:?} must be empty (in-process bus) or an amqp:// or amqps:// URL, \
                     e.g. amqp://guest:guest@127.0.0.1:5672/%2f",
                    self.bus.url.redacted()
                ),
            );
        }
        check(!self.bus.exchange.trim().is_empty(), "bus.exchange must not be empty".into());
        check(!self.bus.queue.trim().is_empty(), "bus.queue must not be empty".into());

        let store = self.store.url.expose();
        check(
            ["sqlite:", "postgres://", "postgresql://"].iter().any(|p| store.starts_with(p)),
            format!(
                "store.url = {:?} must start with sqlite: (e.g. sqlite://data/deskpilot.db) or postgres://",
                self.store.url.redacted()
            ),
        );

        check(
            (1..=4096).contains(&self.worker.concurrency),
            format!("worker.concurrency = {} must be between 1 and 4096", self.worker.concurrency),
        );
        check(
            (1..=256).contains(&self.worker.threads),
            format!("worker.threads = {} must be between 1 and 256", self.worker.threads),
        );
        check(
            (1..=1024).contains(&self.http.max_response_mb),
            format!(
                "http.max_response_mb = {} must be between 1 and 1024 (largest helpdesk answer read, MiB)",
                self.http.max_response_mb
            ),
        );
        check(
            (1..=100_000).contains(&self.triage.max_notes),
            format!(
                "triage.max_notes = {} must be between 1 and 100000 (notes read per ticket, newest first)",
                self.triage.max_notes
            ),
        );
        check(
            (1..=1024).contains(&self.http.max_concurrent_requests),
            format!(
                "http.max_concurrent_requests = {} must be between 1 and 1024 (requests in flight to one helpdesk)",
                self.http.max_concurrent_requests
            ),
        );
        check(llm.total_timeout_secs > 0, "llm.total_timeout_secs must be at least 1".into());
        check(
            llm.requests_per_minute != Some(0),
            "llm.requests_per_minute = 0 would never send a request; set the account's limit for \
             this model, or remove the key to rely on the server's headers"
                .into(),
        );
        if let Some(tpm) = llm.tokens_per_minute {
            check(
                tpm >= self.triage.answer_reserve_tokens.saturating_mul(2),
                format!(
                    "llm.tokens_per_minute = {tpm} leaves no room for a request: each takes its prompt \
                     plus triage.answer_reserve_tokens = {}; set the account's limit for this model \
                     (at least twice the reserve), or remove the key",
                    self.triage.answer_reserve_tokens
                ),
            );
        }
        if llm.limiter == crate::triage::llm::LimiterMode::Off {
            check(
                llm.requests_per_minute.is_none() && llm.tokens_per_minute.is_none(),
                "llm.requests_per_minute and llm.tokens_per_minute need llm.limiter = \"adaptive\"; \
                 with limiter = \"off\" nothing would hold calls to them"
                    .into(),
            );
        }
        check(
            (0.0..=2.0).contains(&llm.temperature),
            format!("llm.temperature = {} must be between 0 and 2", llm.temperature),
        );
        let t = &self.triage;
        check(
            (500..=1_000_000).contains(&t.prompt_budget_tokens),
            format!(
                "triage.prompt_budget_tokens = {} must be between 500 and 1000000",
                t.prompt_budget_tokens
            ),
        );
        check(
            (100..=100_000).contains(&t.answer_reserve_tokens),
            format!(
                "triage.answer_reserve_tokens = {} must be between 100 and 100000",
                t.answer_reserve_tokens
            ),
        );
        if let Some(context) = llm.context_tokens {
            let least = 500 + t.answer_reserve_tokens as usize;
            check(
                context >= least,
                format!(
                    "llm.context_tokens = {context} leaves less than 500 tokens for the prompt after \
                     triage.answer_reserve_tokens = {}; give the server's real context size (at least {least}) \
                     or lower the answer reserve",
                    t.answer_reserve_tokens
                ),
            );
        }
        check(
            llm.tokenizer != Some(crate::triage::tokens::TokenizerChoice::Server)
                || llm.context_tokens.is_some(),
            "llm.tokenizer = \"server\" needs llm.context_tokens, the server's context window in its own \
             tokens (llama-server -c, vLLM --max-model-len), to fit prompts to the server's count"
                .into(),
        );
        check(t.limits.max_tags > 0, "triage.limits.max_tags must be at least 1".into());
        check(t.limits.max_draft_chars >= 100, "triage.limits.max_draft_chars must be at least 100".into());
        let w = &self.worker;
        check(w.lease_secs >= 30, format!("worker.lease_secs = {} must be at least 30", w.lease_secs));
        check(
            !w.retry_delays_secs.is_empty() && w.retry_delays_secs.iter().all(|d| (1..=86_400).contains(d)),
            "worker.retry_delays_secs must list at least one delay of 1 to 86400 seconds".into(),
        );
        check(
            (2..=1000).contains(&w.delivery_limit),
            format!("worker.delivery_limit = {} must be between 2 and 1000", w.delivery_limit),
        );
        check(
            self.server.addr().is_none_or(|a| a.parse::<std::net::SocketAddr>().is_ok()),
            format!(
                "server.addr = {:?} must be empty (no HTTP server) or an address such as 127.0.0.1:8080",
                self.server.addr
            ),
        );
        check(self.http.connect_timeout_secs > 0, "http.connect_timeout_secs must be at least 1".into());
        check(self.http.request_timeout_secs > 0, "http.request_timeout_secs must be at least 1".into());

        problems.extend(self.ingest.problems());
        problems.extend(self.spend_problems());
        if let Err(bad) = self.privacy.compiled_patterns() {
            problems.extend(bad);
        }

        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, conn) in self.connections.iter().enumerate() {
            let at = format!("connections[{i}] (id = {:?})", conn.id);
            if let Some(first) = seen.insert(conn.id.as_str(), i) {
                problems.push(format!("{at}: duplicate id, connections[{first}] already uses it"));
            }
            for problem in conn.problems() {
                problems.push(format!("{at}: {problem}"));
            }
        }

        match problems.len() {
            0 => Ok(()),
            1 => Err(anyhow!("{}", problems[0])).context("invalid configuration"),
            n => Err(anyhow!("{n} problems:\n- {}", problems.join("\n- "))).context("invalid configuration"),
        }
    }
}

pub(super) fn is_http_url(s: &str) -> bool {
    Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}
