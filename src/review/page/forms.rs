//! The page's forms: sign in and out, approve (as proposed or edited), reject. Each post is
//! checked for its CSRF token and origin, goes through [`Reviews`](super::Reviews) like the CLI,
//! and answers a browser with a redirect to the proposal (a script asking for JSON gets JSON).

use axum::{
    Extension, Form, Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use minijinja::context;
use serde::Deserialize;
use serde_json::json;

use super::{
    PageError, Shared,
    access::{self, Access, Identity},
    status_of,
};
use crate::{
    review::{Approval, Edits, ReviewError},
    ticketing::PriorityLevel,
    triage::decision::{Decision, normalize_tag},
};

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct SignIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

/// Where to go after signing in: a page of the review, never elsewhere.
fn next_page(next: &str) -> &str {
    if next.starts_with("/review") && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/review"
    }
}

fn sign_in_page(state: &Shared, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let ctx = context! { next => next_page(next), error, asks_token => state.access.asks_token() };
    match state.templates.get_template("sign_in.html").and_then(|t| t.render(ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => PageError(StatusCode::INTERNAL_SERVER_ERROR, format!("rendering sign_in.html: {e}"))
            .into_response(),
    }
}

/// `GET /review/sign-in`.
pub(super) async fn sign_in_form(
    State(state): State<Shared>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    sign_in_page(&state, q.get("next").map_or("/review", String::as_str), None, StatusCode::OK)
}

/// `POST /review/sign-in`: checks the token and sets the session cookie.
pub(super) async fn sign_in(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    if !access::same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "403: sign-in must come from the review page itself\n")
            .into_response();
    }
    let refuse = |why: &str| sign_in_page(&state, &form.next, Some(why), StatusCode::UNAUTHORIZED);
    let Some(name) = access::clean_name(&form.name) else {
        return refuse("Give your name: it is recorded with what you approve or reject.");
    };
    if state.access.asks_token() && !state.access.token_matches(&form.token) {
        tracing::warn!("review sign-in refused: wrong token");
        return refuse(
            "That is not the review token. It is the [review] token (or token_env) of deskpilot's configuration.",
        );
    }
    tracing::info!(reviewer = %name, "review sign-in");
    let cookie = state.access.sign_in(&name, access::over_https(&headers));
    ([(header::SET_COOKIE, cookie)], Redirect::to(next_page(&form.next))).into_response()
}

/// A form that only carries its CSRF token.
#[derive(Debug, Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /review/sign-out`.
pub(super) async fn sign_out(
    State(state): State<Shared>,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if !state.access.form_is_genuine(&who, &headers, form.csrf.as_deref()) {
        return forged();
    }
    ([(header::SET_COOKIE, Access::sign_out())], Redirect::to("/review/sign-in")).into_response()
}

fn forged() -> Response {
    (
        StatusCode::FORBIDDEN,
        "403: this form did not come from the review page (its security token is missing or stale); \
         reload the page and try again\n",
    )
        .into_response()
}

/// The approve form's fields: none for "approve as proposed"; the edit form sends every field
/// prefilled, and only those that differ from the proposal count as edits.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ApproveForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    tags: Option<String>,
    #[serde(default)]
    draft: Option<String>,
}

impl ApproveForm {
    /// The reviewer's edits: the fields that differ from `proposed`.
    fn edits(&self, proposed: &Decision) -> Result<Edits, ReviewError> {
        let mut edits = Edits::default();
        if let Some(c) = &self.category {
            let c = c.trim();
            if proposed.category_id.as_deref().unwrap_or_default() != c {
                edits.category_id = Some(c.to_owned());
            }
        }
        if let Some(p) = self.priority.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            let level = PriorityLevel::ALL
                .into_iter()
                .find(|l| format!("{l:?}").eq_ignore_ascii_case(p))
                .ok_or_else(|| ReviewError::Invalid(format!("`{p}` is not a priority")))?;
            if level != proposed.priority {
                edits.priority = Some(level);
            }
        }
        if let Some(raw) = &self.tags {
            let tags: Vec<String> =
                raw.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
            let normalized: Vec<String> = tags.iter().filter_map(|t| normalize_tag(t)).collect();
            let same = normalized.len() == tags.len()
                && normalized.len() == proposed.tags.len()
                && normalized.iter().all(|t| proposed.tags.contains(t));
            if !same {
                edits.tags = Some(tags);
            }
        }
        if let Some(draft) = &self.draft {
            // Browsers send textareas with CRLF line ends.
            let draft = draft.replace("\r\n", "\n");
            if draft.trim() != proposed.draft_reply.as_deref().unwrap_or_default().trim() {
                edits.draft = Some(draft);
            }
        }
        Ok(edits)
    }
}

/// Whether the client asked for JSON (scripts) rather than a page.
fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/json"))
}

/// A failed action: JSON for scripts, a page with the message and a way back for browsers.
fn failed(state: &Shared, who: &Identity, headers: &HeaderMap, id: i64, e: &ReviewError) -> Response {
    let status = status_of(e);
    if wants_json(headers) {
        return (status, Json(json!({ "error": e.to_string() }))).into_response();
    }
    match super::render(state, who, "message.html", context! { id, message => e.to_string() }) {
        Ok(html) => (status, html).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /review/{id}/approve`: approves as proposed, or with the edit form's changes.
pub(super) async fn approve(
    State(state): State<Shared>,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<ApproveForm>,
) -> Response {
    if !state.access.form_is_genuine(&who, &headers, form.csrf.as_deref()) {
        return forged();
    }
    let outcome = async {
        let proposal = state.reviews.store().proposal(id).await?.ok_or(ReviewError::NotFound(id))?;
        let proposed: Decision = serde_json::from_value(proposal.decision.clone())
            .map_err(|e| ReviewError::Unreadable { id, detail: e.to_string() })?;
        let edits = form.edits(&proposed)?;
        state.reviews.approve(id, &who.actor(), &edits).await
    }
    .await;
    match outcome {
        Ok(approval) if wants_json(&headers) => Json(approval).into_response(),
        Ok(approval) => {
            let done = match approval {
                Approval::Applied { .. } => "applied",
                Approval::AlreadyApplied { .. } => "already_applied",
                Approval::Superseded { .. } => "superseded",
            };
            Redirect::to(&format!("/review/{id}?done={done}")).into_response()
        }
        Err(e) => failed(&state, &who, &headers, id, &e),
    }
}

/// The reject form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct RejectForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    text: String,
}

/// `POST /review/{id}/reject`.
pub(super) async fn reject(
    State(state): State<Shared>,
    Extension(who): Extension<Identity>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<RejectForm>,
) -> Response {
    if !state.access.form_is_genuine(&who, &headers, form.csrf.as_deref()) {
        return forged();
    }
    match state.reviews.reject(id, &who.actor(), &form.reason, &form.text).await {
        Ok(()) if wants_json(&headers) => Json(json!({ "outcome": "rejected" })).into_response(),
        Ok(()) => Redirect::to(&format!("/review/{id}?done=rejected")).into_response(),
        Err(e) => failed(&state, &who, &headers, id, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fields_that_differ_from_the_proposal_are_edits() {
        let proposed: Decision = serde_json::from_value(json!({
            "category_id": "billing", "priority": "NORMAL", "tags": ["refund", "vip"],
            "language": "en", "sentiment": "neutral", "summary": "s", "draft_reply": "Hello,\nthanks.",
            "confidence": 0.9, "needs_human": false, "reason": "r", "origin": {"kind": "llm", "model": "m"},
        }))
        .unwrap();
        let same = ApproveForm {
            category: Some("billing".into()),
            priority: Some("normal".into()),
            tags: Some(" vip, refund ".into()),
            draft: Some("Hello,\r\nthanks.\r\n".into()),
            ..ApproveForm::default()
        };
        assert!(same.edits(&proposed).unwrap().is_empty());
        let edited = ApproveForm {
            category: Some("shipping".into()),
            priority: Some("HIGH".into()),
            tags: Some("refund".into()),
            draft: Some("Hi".into()),
            ..ApproveForm::default()
        };
        let e = edited.edits(&proposed).unwrap();
        assert_eq!(e.category_id.as_deref(), Some("shipping"));
        assert_eq!(e.priority, Some(PriorityLevel::High));
        assert_eq!(e.tags, Some(vec!["refund".to_owned()]));
        assert_eq!(e.draft.as_deref(), Some("Hi"));
        let bad = ApproveForm { priority: Some("asap".into()), ..ApproveForm::default() };
        assert!(bad.edits(&proposed).unwrap_err().to_string().contains("`asap` is not a priority"));
        assert!(next_page("https://evil.example/").starts_with("/review"));
        assert_eq!(next_page("//evil.example/review"), "/review");
        assert_eq!(next_page("/review/7"), "/review/7");
    }
}
