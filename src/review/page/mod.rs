//! The review page at `/review`: the proposals, newest first, with filters and counts per
//! status; each proposal with its ticket as the helpdesk has it now; and the forms that approve
//! (as proposed or edited) or reject it. Server-rendered HTML; every piece of ticket text is
//! untrusted and is escaped by the templates (auto-escaping HTML), and a strict
//! Content-Security-Policy lets no script run.
//!
//! Access ([`Access`]): the sign-in form (the `[review] token` and a name for the records) sets a
//! session cookie; scripts send `Authorization: Bearer <token>`; with `allow_anonymous_loopback`
//! and a server bound to a loopback address, anyone who can reach it may use it. Browsers without
//! access are sent to the sign-in form, everything else gets 401.

mod access;
mod forms;
mod report;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Extension, Router,
    extract::{Path, Query, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use minijinja::{Environment, context};
use serde::Serialize;

pub use access::Access;
use access::Identity;

use super::{ReviewError, Reviews};
use crate::{
    store::{Proposal, ProposalFilter, ProposalStatus},
    ticketing::{PriorityLevel, model::format_timestamp},
};

/// Proposals per page of the list.
const PAGE: u32 = 50;

/// What every answer of the page carries: no script, no framing, no caching of ticket text.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

struct PageState {
    reviews: Reviews,
    access: Access,
    templates: Environment<'static>,
}

type Shared = Arc<PageState>;

/// The review page's routes, to merge into the service router.
pub fn router(reviews: Reviews, access: Access) -> Router {
    let mut templates = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../../../templates/review/base.html")),
        ("list.html", include_str!("../../../templates/review/list.html")),
        ("detail.html", include_str!("../../../templates/review/detail.html")),
        ("sign_in.html", include_str!("../../../templates/review/sign_in.html")),
        ("message.html", include_str!("../../../templates/review/message.html")),
        ("report.html", include_str!("../../../templates/review/report.html")),
    ] {
        templates.add_template(name, source).expect("the bundled review templates parse");
    }
    let state = Arc::new(PageState { reviews, access, templates });
    let guarded = Router::new()
        .route("/review", get(list))
        .route("/review/{id}", get(detail))
        .route("/review/{id}/approve", post(forms::approve))
        .route("/review/{id}/reject", post(forms::reject))
        .route("/review/sign-out", post(forms::sign_out))
        .route("/review/report", get(report::report))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/review/sign-in", get(forms::sign_in_form).post(forms::sign_in))
        .route("/review/style.css", get(style))
        .merge(guarded)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Lets in who has access (handing the handlers their [`Identity`]); sends a browser without it
/// to the sign-in form and answers anything else 401.
async fn guard(State(state): State<Shared>, mut request: Request, next: Next) -> Response {
    if let Some(who) = state.access.identify(request.headers()) {
        request.extensions_mut().insert(who);
        return next.run(request).await;
    }
    let browser = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if browser && request.method() == axum::http::Method::GET {
        let next_url = request.uri().path_and_query().map_or("/review", |p| p.as_str());
        let query =
            url::form_urlencoded::Serializer::new(String::new()).append_pair("next", next_url).finish();
        return Redirect::to(&format!("/review/sign-in?{query}")).into_response();
    }
    let mut r = (
        StatusCode::UNAUTHORIZED,
        "401: the review page needs a sign-in at /review/sign-in, or `Authorization: Bearer <token>` \
         (the [review] token of the configuration)\n",
    )
        .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"deskpilot review\""));
    r
}

/// Sets the security headers on every answer of the page.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: with it, browsers send `Origin: null` on the page's own form posts.
    // Links out to a helpdesk carry `rel=noreferrer` instead.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../../templates/review/style.css"))
}

/// An answer that says what went wrong.
struct PageError(StatusCode, String);

impl From<ReviewError> for PageError {
    fn from(e: ReviewError) -> Self {
        Self(status_of(&e), e.to_string())
    }
}

/// The HTTP status that tells what kind of failure `e` is.
fn status_of(e: &ReviewError) -> StatusCode {
    match e {
        ReviewError::NotFound(_) => StatusCode::NOT_FOUND,
        ReviewError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ReviewError::Settled { .. } | ReviewError::Unreadable { .. } => StatusCode::CONFLICT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

/// Renders template `name` with `ctx`, plus who is signed in and the forms' CSRF token.
fn render(
    state: &PageState,
    who: &Identity,
    name: &str,
    ctx: minijinja::Value,
) -> Result<Html<String>, PageError> {
    let signed_in = matches!(who, Identity::Session { .. }).then(|| who.actor());
    let ctx = context! { signed_in, csrf => state.access.csrf(who), ..ctx };
    state
        .templates
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map(Html)
        .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, format!("rendering {name}: {e}")))
}

/// A non-empty query parameter.
fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn filter_of(q: &HashMap<String, String>) -> Result<ProposalFilter, PageError> {
    let bad = |what: &str| PageError(StatusCode::BAD_REQUEST, what.to_owned());
    let number = |name: &str| -> Result<Option<f64>, PageError> {
        param(q, name)
            .map(|v| v.parse::<f64>().map_err(|_| bad(&format!("{name} must be a number from 0 to 1"))))
            .transpose()
    };
    Ok(ProposalFilter {
        connection: param(q, "connection").map(str::to_owned),
        status: param(q, "status")
            .map(|s| ProposalStatus::parse(s).ok_or_else(|| bad(&format!("`{s}` is not a proposal status"))))
            .transpose()?,
        category: param(q, "category").map(str::to_owned),
        min_confidence: number("min_confidence")?,
        max_confidence: number("max_confidence")?,
        text: param(q, "text").map(str::to_owned),
        limit: PAGE,
        before_id: param(q, "before")
            .map(|v| v.parse().map_err(|_| bad("before must be a proposal id")))
            .transpose()?,
    })
}

/// One row of the list.
#[derive(Serialize)]
struct Row {
    id: i64,
    status: &'static str,
    connection: String,
    ticket: String,
    subject: String,
    category: String,
    priority: String,
    confidence: String,
    created_at: String,
}

fn text_of(d: &serde_json::Value, name: &str) -> String {
    match d.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The decision's confidence as shown: two decimals (it is stored as an `f32`).
fn confidence_of(d: &serde_json::Value) -> String {
    d.get("confidence").and_then(serde_json::Value::as_f64).map_or(String::new(), |c| format!("{c:.2}"))
}

fn row(p: &Proposal) -> Row {
    let d = p.decision_to_apply();
    Row {
        id: p.id,
        status: p.status.as_str(),
        connection: p.connection_id.clone(),
        ticket: p.ticket_id.clone(),
        subject: p.ticket_subject.clone().unwrap_or_default(),
        category: text_of(d, "category_id"),
        priority: text_of(d, "priority").to_lowercase(),
        confidence: confidence_of(d),
        created_at: format_timestamp(p.created_at),
    }
}

async fn list(
    State(state): State<Shared>,
    Extension(who): Extension<Identity>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Html<String>, PageError> {
    let filter = filter_of(&q)?;
    let (page, counts) = state.reviews.list(&filter).await?;
    let counts: HashMap<&str, u64> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    let next_before = (page.len() == PAGE as usize).then(|| page.last().map(|p| p.id)).flatten();
    let next_query = next_before.map(|before| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in q.iter().filter(|(k, _)| k.as_str() != "before") {
            url.append_pair(k, v);
        }
        url.append_pair("before", &before.to_string());
        format!("/review?{}", url.finish())
    });
    let shown: HashMap<&str, String> =
        ["status", "connection", "category", "min_confidence", "max_confidence", "text"]
            .into_iter()
            .map(|k| (k, param(&q, k).unwrap_or_default().to_owned()))
            .collect();
    let statuses: Vec<&str> = ProposalStatus::ALL.iter().map(|s| s.as_str()).collect();
    let rows: Vec<Row> = page.iter().map(row).collect();
    let rows = minijinja::Value::from(minijinja::value::Serde(rows));
    render(
        &state,
        &who,
        "list.html",
        context! { rows, counts, statuses, filter => shown, next_before, next_query },
    )
}

/// What the detail page says after a form was carried out (`?done=`); fixed texts only.
fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "applied" => "Approved and applied: the triage was written and the draft posted as an internal note.",
        "already_applied" => "This proposal had been applied already; approving it again changed nothing.",
        "superseded" => "Not applied: the ticket was closed or deleted first, so the proposal is superseded.",
        "rejected" => "Rejected.",
        _ => return None,
    })
}

async fn detail(
    State(state): State<Shared>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Html<String>, PageError> {
    let id: i64 = id.parse().map_err(|_| PageError(StatusCode::NOT_FOUND, format!("no proposal `{id}`")))?;
    let o = state.reviews.open(id).await?;
    let p = &o.proposal;
    let d = p.decision_to_apply();
    let report = &p.report;
    let figures = format!(
        "{} prompt + {} completion tokens · ${} · {} ms",
        text_of(&report["usage"], "prompt_tokens"),
        text_of(&report["usage"], "completion_tokens"),
        text_of(report, "cost_usd"),
        text_of(report, "llm_latency_ms"),
    );
    let tags = d.get("tags").and_then(serde_json::Value::as_array).map_or(String::new(), |t| {
        t.iter().filter_map(serde_json::Value::as_str).collect::<Vec<_>>().join(", ")
    });
    let ticket = o.ticket.as_ref().map(|t| {
        context! {
            subject => t.subject.clone().unwrap_or_default(),
            customer => t.customer_id.clone().unwrap_or_default(),
            status => t.status.as_ref().map(|s| format!("{s:?}")).unwrap_or_default(),
        }
    });
    let notes: Vec<minijinja::Value> = o
        .notes
        .iter()
        .map(|n| {
            context! {
                author => format!("{:?}", n.author()).to_lowercase(),
                visibility => match n.visibility {
                    Some(crate::ticketing::NoteVisibility::Internal) => "internal",
                    Some(crate::ticketing::NoteVisibility::Public) => "public",
                    _ => "unknown",
                },
                at => n.created_at.map(format_timestamp).unwrap_or_default(),
                text => n.description.clone().unwrap_or_default(),
            }
        })
        .collect();
    let actions: Vec<minijinja::Value> = o
        .actions
        .iter()
        .map(|a| context! { at => format_timestamp(a.at), action => a.action.clone(), actor => a.actor.clone(), reason => a.reason.clone() })
        .collect();
    // Only a web link is offered: a `javascript:` or other scheme from a helpdesk is not followed.
    let url = p.ticket_url.clone().filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    let category = text_of(d, "category_id");
    let category_name = o
        .categories
        .iter()
        .find(|c| c.id.as_deref() == Some(category.as_str()))
        .and_then(|c| c.name.clone())
        .unwrap_or_default();
    let categories: Vec<minijinja::Value> = o
        .categories
        .iter()
        .filter(|c| c.active())
        .filter_map(|c| {
            let id = c.id.clone()?;
            let name = c.name.clone().unwrap_or_else(|| id.clone());
            Some(context! { id, name })
        })
        .collect();
    let priorities: Vec<String> =
        PriorityLevel::ALL.iter().map(|p| format!("{p:?}").to_lowercase()).collect();
    let priority = text_of(d, "priority").to_lowercase();
    // An approval whose application stopped half-way is resumed by approving it again.
    let can_approve = matches!(p.status, ProposalStatus::Pending | ProposalStatus::Approved);
    let proposal = context! {
        id => p.id, status => p.status.as_str(), connection => p.connection_id.clone(), ticket => p.ticket_id.clone(),
        url, why_shadowed => p.why_shadowed.clone(), review_reason => p.review_reason.clone(),
        reviewed_by => p.reviewed_by.clone(), note_id => p.applied_note_id.clone(),
        pending => p.status == ProposalStatus::Pending, can_approve,
    };
    let decision = context! {
        category, category_name, priority, tags,
        language => text_of(d, "language"), sentiment => text_of(d, "sentiment"),
        confidence => confidence_of(d), summary => text_of(d, "summary"), reason => text_of(d, "reason"),
        draft => text_of(d, "draft_reply"), figures,
    };
    let reasons: Vec<minijinja::Value> =
        super::REJECT_REASONS.iter().map(|&(code, label)| context! { code, label }).collect();
    render(
        &state,
        &who,
        "detail.html",
        context! {
            p => proposal, d => decision, ticket, notes, actions, changed => o.changed,
            categories, priorities, reasons, notice => notice(param(&q, "done")),
        },
    )
}
