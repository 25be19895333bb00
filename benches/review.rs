//! The review page's list over a large store: 10 000 proposals in SQLite, then `GET /review`
//! (the first page, with its counts per status) rendered many times through the service's
//! router over loopback. Prints p50/p99/max latency of the first page, and of a filtered one
//! (category and confidence); target: the first page under 100 ms. Exits non-zero when missed.
//!
//! Run: `cargo bench --bench review`. Options after `--`: `--proposals 10000`, `--requests 200`.

use std::{collections::HashMap, time::Instant};

use deskpilot::{
    review::{Reviews, page},
    store::{NewProposal, Store},
};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

fn proposal(i: usize) -> NewProposal {
    let category = ["cat-billing", "cat-bug", "cat-outage", "cat-refund"][i % 4];
    NewProposal {
        connection_id: if i.is_multiple_of(3) { "acme" } else { "demo" }.into(),
        ticket_id: format!("{}", 100_000 + i),
        event_id: format!("evt-{i}"),
        decision: serde_json::json!({
            "category_id": category, "priority": "NORMAL", "tags": ["refund", "vip"], "language": "en",
            "sentiment": "neutral", "summary": "Customer asks about a double charge on the last invoice.",
            "draft_reply": "Hello, thank you for writing. ".repeat(20), "confidence": (i % 100) as f64 / 100.0,
            "needs_human": false, "reason": "Mentions a duplicate charge.", "origin": {"kind": "llm", "model": "m"}
        }),
        report: serde_json::json!({"usage": {"prompt_tokens": 2400, "completion_tokens": 300}}),
        mode: "shadow".into(),
        why_shadowed: "connection is in shadow mode".into(),
        ticket_subject: Some(format!("Charged twice for order {i}")),
        ticket_url: None,
        ticket_before: None,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(client: &reqwest::Client, url: &str, requests: usize) -> Vec<f64> {
    let mut ms = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let r = client.get(url).send().await.expect("GET");
        assert_eq!(r.status(), 200, "{url}");
        let body = r.text().await.expect("body");
        assert!(body.contains("<table>"), "a page of proposals");
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    ms
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    deskpilot::http::install_crypto_provider();
    let proposals = arg("--proposals", 10_000);
    let requests = arg("--requests", 200);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("review.db").display());
    let store = Store::connect(&url).await.expect("the store");
    let started = Instant::now();
    for i in 0..proposals {
        store.insert_proposal(&proposal(i)).await.expect("insert");
    }
    println!("stored {proposals} proposals in {:.1}s", started.elapsed().as_secs_f64());

    let router =
        page::router(Reviews::new(store, HashMap::new()), page::Access::new(None, true, "127.0.0.1:0"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();

    let mut missed = false;
    for (what, path) in [
        ("first page", "/review".to_owned()),
        ("filtered page", "/review?category=cat-refund&min_confidence=0.5&connection=demo".to_owned()),
    ] {
        let ms = measure(&client, &format!("{base}{path}"), requests).await;
        let (p50, p99, max) = (percentile(&ms, 0.5), percentile(&ms, 0.99), ms[ms.len() - 1]);
        println!("{what}: {requests} requests, p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
        if what == "first page" && p99 >= 100.0 {
            println!("target missed: the first page's p99 should be under 100 ms");
            missed = true;
        }
    }
    if missed {
        std::process::exit(1);
    }
}
