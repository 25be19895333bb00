//! `deskpilot check`: what the configuration says, and whether every connection answers.

use std::fmt::Write as _;

use anyhow::anyhow;
use futures::future::join_all;

use crate::config::{Config, ConnectionConfig, Mode, redact_url};

/// Category names shown per connection before "and N more".
const SHOWN_CATEGORIES: usize = 8;

pub(super) async fn run(config: &Config) -> anyhow::Result<()> {
    print!("{}", summary(config));
    if config.connections.is_empty() {
        println!("connections: none configured; add a [[connections]] table (see config/example.toml)");
        return Ok(());
    }
    println!("connections ({}):", config.connections.len());
    let results = join_all(config.connections.iter().map(|c| probe(config, c))).await;
    let mut failed = Vec::new();
    for (conn, result) in config.connections.iter().zip(results) {
        println!("{}", describe_connection(conn));
        if conn.mode != Mode::Shadow && conn.allowed_tags.is_empty() {
            println!(
                "    warning: no allowed_tags: only tags already used on this helpdesk's tickets are \
                 written; list the tags deskpilot may add in allowed_tags"
            );
        }
        match result {
            Ok(line) => println!("    OK: {line}"),
            Err(e) => {
                // The line above already names the connection.
                let text = format!("{e:#}");
                let text = text.strip_prefix(&format!("connection `{}`: ", conn.id)).unwrap_or(&text);
                println!("    FAILED: {}", text.replace('\n', "\n      "));
                if let Some(hint) = hint(conn, &e) {
                    println!("    hint: {hint}");
                }
                failed.push(conn.id.as_str());
            }
        }
    }
    match failed.len() {
        0 => Ok(()),
        n => Err(anyhow!("{n} of {} connections failed: {}", config.connections.len(), failed.join(", "))),
    }
}

/// How calls to the LLM are limited, in words.
fn calls(llm: &crate::config::LlmConfig) -> String {
    if llm.limiter == crate::triage::llm::LimiterMode::Off {
        return "limiter off: as many at once as worker.concurrency, a 429 retried like a 5xx".to_owned();
    }
    let rates: Vec<String> = [(llm.requests_per_minute, "requests"), (llm.tokens_per_minute, "tokens")]
        .into_iter()
        .filter_map(|(n, what)| n.map(|n| format!("{n} {what}")))
        .collect();
    let within = match rates.as_slice() {
        [] => String::new(),
        rates => format!(", paced within {} a minute", rates.join(" and ")),
    };
    format!("adaptive concurrency, following the server's rate-limit headers{within}")
}

fn summary(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "configuration: OK ({})", config.sources().join(" + "));

    let llm = &config.llm;
    let base_url = redact_url(&llm.base_url);
    let from_env = if llm.base_url_from_env() { " (from OPENAI_BASE_URL)" } else { "" };
    let key = match llm.api_key() {
        Some(_) => format!("key set ({})", llm.key_origin()),
        None => format!("no key ({})", llm.key_origin()),
    };
    let _ = writeln!(out, "llm:     model {} at {base_url}{from_env}; {key}", llm.model);
    if !llm.is_configured() {
        let _ = writeln!(
            out,
            "         not configured: no key and base_url is OpenAI's; triage will use its rules fallback"
        );
    }
    if llm.is_configured() {
        let _ = writeln!(out, "         calls: {}", calls(llm));
    }
    if let Some(e) = &llm.escalation {
        let at = e.base_url.as_deref().map_or_else(|| "the same server".to_owned(), redact_url);
        let _ = writeln!(
            out,
            "         stronger model {} at {at}, below confidence {:.2} or after an invalid answer",
            e.model, e.below_confidence
        );
    }
    let usd = |v: Option<f64>| v.map_or("none".to_owned(), |v| format!("${v:.2}"));
    let budgets: Vec<String> = std::iter::once(("overall", llm.daily_budget_usd, llm.monthly_budget_usd))
        .chain(config.connections.iter().map(|c| (c.id.as_str(), c.daily_budget_usd, c.monthly_budget_usd)))
        .filter(|(_, day, month)| day.is_some() || month.is_some())
        .map(|(scope, day, month)| format!("{scope} {} a day, {} a month", usd(day), usd(month)))
        .collect();
    if !budgets.is_empty() {
        let then = match (llm.on_budget_exhausted.as_str(), &llm.fallback_model) {
            (policy, Some(model)) => format!("{policy} ({model})"),
            (policy, None) => policy.to_owned(),
        };
        let _ = writeln!(out, "         budgets (UTC): {}; once spent: {then}", budgets.join("; "));
    }

    let bus = &config.bus;
    match bus.amqp_url() {
        None => {
            let _ = writeln!(out, "bus:     in-process (bus.url is empty)");
        }
        Some(_) => {
            let _ = writeln!(
                out,
                "bus:     {}, exchange {}, queue {}",
                bus.url.redacted(),
                bus.exchange,
                bus.queue
            );
        }
    }
    let _ = writeln!(out, "store:   {}", config.store.url.redacted());
    let _ = writeln!(out, "worker:  concurrency {}", config.worker.concurrency);
    let http = &config.http;
    let _ = writeln!(
        out,
        "http:    connect timeout {}s, request timeout {}s, {} retries, Retry-After honoured up to {}s, \
         at most {} requests in flight per helpdesk",
        http.connect_timeout_secs,
        http.request_timeout_secs,
        http.max_retries,
        http.max_retry_after_secs,
        http.max_concurrent_requests
    );
    out
}

fn describe_connection(conn: &ConnectionConfig) -> String {
    let mode = match conn.mode {
        Mode::ApplyIfConfident => format!("{} (>= {})", conn.mode, conn.confidence_threshold),
        mode => mode.to_string(),
    };
    let mut line = format!(
        "  {}: {} at {}, mode {mode}",
        conn.id,
        conn.backend.name(),
        redact_url(&conn.backend.location())
    );
    if conn.mode == Mode::ApplyIfConfident {
        let _ = write!(line, "\n    {}", automation(conn));
    }
    line
}

/// Which categories `apply_if_confident` applies, and from what confidence.
fn automation(conn: &ConnectionConfig) -> String {
    // A category with its own threshold is listed there only: its own threshold is the one used.
    let global: Vec<&str> = conn
        .automated_categories
        .iter()
        .filter(|c| !conn.automation.contains_key(*c))
        .map(String::as_str)
        .collect();
    let mut parts = Vec::new();
    if !global.is_empty() {
        parts.push(format!("{} at >= {}", global.join(", "), conn.confidence_threshold));
    }
    parts.extend(conn.automation.iter().map(|(c, t)| format!("{c} at >= {t}")));
    if parts.is_empty() {
        "automated: no category (everything is shadowed; list categories in automated_categories \
         or [connections.automation])"
            .to_owned()
    } else {
        format!("automated: {}", parts.join(", "))
    }
}

/// A next step for failures an operator meets on day one.
fn hint(conn: &ConnectionConfig, e: &anyhow::Error) -> Option<&'static str> {
    let refused = format!("{e:#}").contains("could not connect");
    let location = conn.backend.location();
    let local = url::Url::parse(&location)
        .ok()
        .and_then(|u| u.host_str().map(|h| matches!(h, "127.0.0.1" | "localhost" | "[::1]")))
        .unwrap_or(false);
    (refused && local).then_some("nothing answers there; for the sandbox, run `deskpilot sandbox` first")
}

/// Builds the client and reads the categories.
async fn probe(config: &Config, conn: &ConnectionConfig) -> anyhow::Result<String> {
    let client = crate::app::parts::helpdesk(config, conn)?;
    let categories = client.list_categories().await?;
    let mut names: Vec<&str> =
        categories.iter().map(|c| c.name.as_deref().or(c.id.as_deref()).unwrap_or("?")).collect();
    let more = names.len().saturating_sub(SHOWN_CATEGORIES);
    names.truncate(SHOWN_CATEGORIES);
    let mut line = match categories.len() {
        0 => "reachable, but it has no categories (triage will leave category_id unset)".to_owned(),
        1 => format!("1 category: {}", names.join(", ")),
        n => format!("{n} categories: {}", names.join(", ")),
    };
    if more > 0 {
        let _ = write!(line, ", and {more} more");
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{BackendConfig, UnifiedConfig};

    #[test]
    fn apply_if_confident_lists_each_category_with_the_threshold_it_is_applied_from() {
        let backend = BackendConfig::Unified(UnifiedConfig {
            base_url: Some("http://127.0.0.1:8081".into()),
            region: None,
            api_key: Some("k".into()),
            api_key_env: None,
            category_cache_secs: 300,
        });
        let mut conn =
            ConnectionConfig { mode: Mode::ApplyIfConfident, ..ConnectionConfig::new("demo", backend) };
        assert!(describe_connection(&conn).ends_with("automated: no category (everything is shadowed; list categories in automated_categories or [connections.automation])"));
        conn.automated_categories = vec!["cat-billing".into(), "cat-outage".into()];
        conn.automation = BTreeMap::from([("cat-outage".into(), 0.9), ("cat-bug".into(), 0.8)]);
        let text = describe_connection(&conn);
        assert!(
            text.ends_with("mode apply_if_confident (>= 0.85)\n    automated: cat-billing at >= 0.85, cat-bug at >= 0.8, cat-outage at >= 0.9"),
            "{text}"
        );
    }
}
