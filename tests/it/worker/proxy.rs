//! A helpdesk in front of the sandbox that misbehaves on chosen requests: answers late, or
//! answers something else than the sandbox would.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::{
    body::{Body, to_bytes},
    extract::Request,
    http::{Method, StatusCode, header},
    response::Response,
};
use tokio::net::TcpListener;

use super::*;

/// What the proxy does to a request.
#[derive(Clone)]
pub(super) enum Fault {
    /// Forward it after this long. The request is forwarded in a task of its own, so, as on a
    /// real server, it takes effect even when the client that sent it stopped waiting.
    Delay(Duration),
    /// Answer this instead of forwarding.
    Answer { status: StatusCode, content_type: &'static str, body: Vec<u8> },
}

/// The running proxy; dropping it stops it.
pub(super) struct Proxy {
    /// Where it listens.
    pub url: String,
    /// Requests a fault was applied to.
    pub faulted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Rule = Arc<dyn Fn(&Method, &str) -> Option<Fault> + Send + Sync>;

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: String,
    rule: Rule,
    faulted: Arc<AtomicUsize>,
}

impl Proxy {
    /// A proxy to `upstream` applying `rule(method, path)` to every request.
    pub async fn start(
        upstream: &str,
        rule: impl Fn(&Method, &str) -> Option<Fault> + Send + Sync + 'static,
    ) -> Proxy {
        let faulted = Arc::new(AtomicUsize::new(0));
        let up = Upstream {
            client: http_client(),
            url: upstream.to_owned(),
            rule: Arc::new(rule),
            faulted: faulted.clone(),
        };
        let app = axum::Router::new().fallback(move |request: Request| forward(up.clone(), request));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let task = tokio::spawn(async move { axum::serve(listener, app).await.expect("the proxy serves") });
        Proxy { url, faulted, task }
    }
}

async fn forward(up: Upstream, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let fault = (up.rule)(&parts.method, parts.uri.path());
    if fault.is_some() {
        up.faulted.fetch_add(1, Ordering::SeqCst);
    }
    let delay = match fault {
        Some(Fault::Answer { status, content_type, body }) => {
            return Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .expect("a response");
        }
        Some(Fault::Delay(delay)) => delay,
        None => Duration::ZERO,
    };
    let body = to_bytes(body, usize::MAX).await.expect("the request body");
    let target = format!("{}{}", up.url, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut outgoing = up.client.request(parts.method.clone(), target).body(body);
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let processed = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
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
