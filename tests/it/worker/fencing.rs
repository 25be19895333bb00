//! Never two notes: a worker stopping or losing its claim while a helpdesk write is in flight.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::{
    body::{Body, to_bytes},
    extract::Request,
    http::{Method, header},
    response::Response,
};
use tokio::net::TcpListener;

use super::*;

/// A helpdesk in front of the sandbox whose note POSTs take `delay`. Each request is forwarded in
/// a task of its own, so, as on a real server, a note is created even when the client that sent
/// it stopped waiting.
struct SlowNotes {
    url: String,
    posts: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for SlowNotes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: String,
    delay: Duration,
    posts: Arc<AtomicUsize>,
}

async fn slow_notes(upstream: &str, delay: Duration) -> SlowNotes {
    let posts = Arc::new(AtomicUsize::new(0));
    let up = Upstream { client: http_client(), url: upstream.to_owned(), delay, posts: posts.clone() };
    let app = axum::Router::new().fallback(move |request: Request| forward(up.clone(), request));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let task = tokio::spawn(async move { axum::serve(listener, app).await.expect("the proxy serves") });
    SlowNotes { url, posts, task }
}

async fn forward(up: Upstream, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.expect("the request body");
    let slow = parts.method == Method::POST && parts.uri.path().ends_with("/note");
    let target = format!("{}{}", up.url, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut outgoing = up.client.request(parts.method.clone(), target).body(body);
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let processed = tokio::spawn(async move {
        if slow {
            up.posts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(up.delay).await;
        }
        let answer = outgoing.send().await.expect("the sandbox answers");
        let status = answer.status();
        let kind = answer.headers().get(header::CONTENT_TYPE).cloned();
        (status, kind, answer.bytes().await.expect("the sandbox's body"))
    });
    let (status, kind, bytes) = processed.await.expect("the forwarding task");
    let mut response = Response::builder().status(status);
    if let Some(kind) = kind {
        response = response.header(header::CONTENT_TYPE, kind);
    }
    response.body(Body::from(bytes)).expect("a response")
}

/// A note POST that outlasts both the drain deadline and the lease. The stopping worker waits for
/// it, keeping its claim alive meanwhile, instead of handing the ticket to a second worker that
/// cannot see the note yet and would post another. (Before the fence, the stopping worker dropped
/// the request at the deadline and released its claim: two notes.)
pub(super) async fn a_note_in_flight_at_shutdown_is_never_posted_twice(mut p: Pipeline) {
    let tickets = p.untriaged(1);
    let delay = Duration::from_millis(2500);
    let proxy = slow_notes(&p.sandbox.base_url, delay).await;
    let lease = Duration::from_secs(1);
    let drain = Duration::from_millis(200);
    let first = p
        .spawn_worker_at(&proxy.url, apply(true), WorkerSettings { drain_deadline: drain, ..settings(lease) })
        .await;
    p.publish(&tickets).await;
    wait_until("the note POST is in flight", WAIT, || async { proxy.posts.load(Ordering::SeqCst) == 1 })
        .await;

    // A second replica is ready to take over whatever the first hands back.
    p.spawn_worker(apply(true), settings(lease)).await;
    p.stop_worker(first).await;
    let entries = p.wait_done(&tickets, WAIT).await;
    // Whatever the first worker sent has landed by now.
    tokio::time::sleep(delay + Duration::from_millis(500)).await;
    p.stop_workers().await;

    let after = p.snapshot().await;
    assert_one_note_each(&after, &entries);
    assert_eq!(new_notes(&p.before, &after).len(), 1, "one note in all");
    assert!(p.bus.dead_letters().await.is_empty());
    p.assert_bus_drained().await;
}
