//! An OpenAI-compatible chat endpoint that answers every request with a valid triage decision
//! after a fixed latency, standing in for the model.

use std::time::Duration;

use axum::{Json, Router, routing::post};
use serde_json::{Value, json};

/// The model name the worker is configured with.
pub const MODEL: &str = "bench-model";

/// Serves `/v1/chat/completions` on a free local port; returns its base URL (`…/v1`).
pub async fn spawn(latency: Duration) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(_request): Json<Value>| async move {
            tokio::time::sleep(latency).await;
            Json(completion())
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}/v1"))
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
