//! The review page on the service router: the token is required, ticket text renders inert, the
//! security headers are set, the list filters and pages, and a proposal opens with its ticket.

use deskpilot::{App, config::Config, store::NewProposal};

/// The embedded defaults with the demo connection on `sandbox`, a SQLite store in `dir`, and the
/// review page behind `[review] token` (or open on loopback when `anonymous`).
fn config(sandbox: &deskpilot::sandbox::RunningSandbox, dir: &std::path::Path, anonymous: bool) -> Config {
    let mut config = crate::app::config(sandbox, dir);
    if anonymous {
        config.review.allow_anonymous_loopback = true;
    } else {
        config.review.token = Some("review-secret".into());
    }
    config
}

const HOSTILE: &str = "<script>alert(1)</script> {{ 7*7 }} <img src=x onerror=alert(2)>";

fn proposal(ticket: &str, category: &str, confidence: f64) -> NewProposal {
    NewProposal {
        connection_id: "demo".into(),
        ticket_id: ticket.into(),
        event_id: format!("evt-{ticket}"),
        decision: serde_json::json!({
            "category_id": category, "priority": "HIGH", "tags": ["refund"], "language": "en",
            "sentiment": "neutral", "summary": HOSTILE, "draft_reply": format!("Draft: {HOSTILE}"),
            "confidence": confidence, "needs_human": false, "reason": "r", "origin": {"kind": "llm", "model": "m"}
        }),
        report: serde_json::json!({"usage": {"prompt_tokens": 900, "completion_tokens": 120}, "cost_usd": 0.0004, "llm_latency_ms": 812}),
        mode: "shadow".into(),
        why_shadowed: "connection is in shadow mode".into(),
        ticket_subject: Some(HOSTILE.into()),
        ticket_url: Some("javascript:alert(3)".into()),
        ticket_before: None,
    }
}

/// Serves `app`'s router on a free port; returns its URL.
async fn serve(app: &App) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = crate::helpers::http_client().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

#[tokio::test]
async fn the_review_page_needs_the_token_and_renders_ticket_text_inert() {
    let sandbox = crate::helpers::start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(&config(&sandbox, dir.path(), false)).await.expect("the app builds");
    let mut ids = Vec::new();
    for (ticket, category, confidence) in [("1001", "cat-billing", 0.92), ("1002", "cat-bug", 0.41)] {
        ids.push(app.store().insert_proposal(&proposal(ticket, category, confidence)).await.unwrap());
    }
    let url = serve(&app).await;

    for path in ["/review", &format!("/review/{}", ids[0])] {
        for token in [None, Some("wrong")] {
            let r = get(&format!("{url}{path}"), token).await;
            assert_eq!(r.status(), 401, "{path} with {token:?}");
            let body = r.text().await.unwrap();
            assert!(!body.contains("alert"), "nothing of a ticket without the token");
        }
    }

    let list = get(&format!("{url}/review"), Some("review-secret")).await;
    assert_eq!(list.status(), 200);
    let csp = list.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    assert_eq!(list.headers()["x-content-type-options"], "nosniff");
    let html = list.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "escaped: {html}");
    assert!(!html.contains("<script>") && !html.contains("<img src=x"), "no markup from a ticket");
    assert!(
        html.contains("&gt; {{ 7*7 }} &lt;img") && !html.contains("&gt; 49 &lt;"),
        "template syntax stays text"
    );
    assert!(html.contains("pending 2"), "counts per status");

    let low =
        get(&format!("{url}/review?max_confidence=0.5"), Some("review-secret")).await.text().await.unwrap();
    assert!(low.contains(&format!("/review/{}", ids[1])) && !low.contains(&format!("/review/{}\"", ids[0])));
    let bad = get(&format!("{url}/review?status=maybe"), Some("review-secret")).await;
    assert_eq!(bad.status(), 400);

    let detail = get(&format!("{url}/review/{}", ids[0]), Some("review-secret")).await;
    assert_eq!(detail.status(), 200);
    let html = detail.text().await.unwrap();
    assert!(html.contains("Draft: &lt;script&gt;"), "the draft, escaped");
    assert!(!html.contains("javascript:"), "a non-web ticket link is not offered");
    assert!(html.contains("900 prompt + 120 completion tokens"), "figures: {html}");
    assert!(html.contains("I was charged twice") || html.contains("<article"), "the conversation now");
    assert_eq!(get(&format!("{url}/review/999999"), Some("review-secret")).await.status(), 404);
}

#[tokio::test]
async fn on_loopback_the_page_can_be_opened_without_a_token_when_allowed() {
    let sandbox = crate::helpers::start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(&config(&sandbox, dir.path(), true)).await.expect("the app builds");
    let url = serve(&app).await;
    let r = get(&format!("{url}/review"), None).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("No proposal matches."));
}

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A form post as a browser sends it from the page: `site` as `Sec-Fetch-Site`, with `cookie`.
async fn post_form(url: &str, cookie: Option<&str>, site: &str, body: &str) -> reqwest::Response {
    let mut request = no_redirects()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", site)
        .body(body.to_owned());
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// The value of `name="csrf"` on a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn signing_in_sets_a_session_and_forms_without_its_token_or_from_elsewhere_are_refused() {
    let sandbox = crate::helpers::start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(&config(&sandbox, dir.path(), false)).await.expect("the app builds");
    // An open ticket nobody has triaged: opening its proposal does not supersede it.
    let id = app.store().insert_proposal(&proposal("1064", "cat-billing", 0.9)).await.unwrap();
    let url = serve(&app).await;
    let client = no_redirects();

    // A browser without a session is sent to the form; a script is told 401.
    let r = client.get(format!("{url}/review/{id}")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("/review/sign-in?next=%2Freview%2F{id}"));
    let form = client.get(format!("{url}/review/sign-in?next=/review/{id}")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("name=\"token\""));

    let wrong = post_form(&format!("{url}/review/sign-in"), None, "same-origin", "name=ana&token=nope").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let elsewhere =
        post_form(&format!("{url}/review/sign-in"), None, "cross-site", "name=ana&token=review-secret").await;
    assert_eq!(elsewhere.status(), 403);
    let next = format!("/review/{id}");
    let body = format!("name=Ana&token=review-secret&next={}", next.replace('/', "%2F"));
    let signed = post_form(&format!("{url}/review/sign-in"), None, "same-origin", &body).await;
    assert_eq!(signed.status(), 303);
    assert_eq!(signed.headers()["location"], next.as_str());
    let set_cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let page = client.get(format!("{url}{next}")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csrf = csrf_of(&page.text().await.unwrap());

    // Without the form's token, or posted from another site, nothing happens.
    let reject = format!("{url}/review/{id}/reject");
    let forged = post_form(&reject, Some(&cookie), "same-origin", "reason=spam").await;
    assert_eq!(forged.status(), 403);
    let cross = post_form(&reject, Some(&cookie), "cross-site", &format!("reason=spam&csrf={csrf}")).await;
    assert_eq!(cross.status(), 403);
    let unsigned = post_form(&reject, None, "same-origin", &format!("reason=spam&csrf={csrf}")).await;
    assert_eq!(unsigned.status(), 401);
    let stored = app.store().proposal(id).await.unwrap().unwrap();
    assert_eq!(stored.status.as_str(), "pending", "nothing changed");

    // With both, the rejection is recorded under the name signed in with.
    let done =
        post_form(&reject, Some(&cookie), "same-origin", &format!("reason=spam&text=bot&csrf={csrf}")).await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], format!("/review/{id}?done=rejected"));
    let stored = app.store().proposal(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.reviewed_by.as_deref(), stored.review_reason.as_deref()),
        (Some("Ana"), Some("spam: bot"))
    );
    let again = post_form(&reject, Some(&cookie), "same-origin", &format!("reason=spam&csrf={csrf}")).await;
    assert_eq!(again.status(), 409);
    assert!(again.text().await.unwrap().contains("was rejected by Ana"), "says where it stands");

    let out =
        post_form(&format!("{url}/review/sign-out"), Some(&cookie), "same-origin", &format!("csrf={csrf}"))
            .await;
    assert_eq!(out.status(), 303);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn the_agreement_page_shows_each_category_s_figures_curve_and_recommendation() {
    let sandbox = crate::helpers::start_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(&config(&sandbox, dir.path(), false)).await.expect("the app builds");
    // Three closed tickets: people kept cat-billing twice and chose cat-refunds once.
    for (ticket, person) in [("1001", "cat-billing"), ("1002", "cat-billing"), ("1003", "cat-refunds")] {
        let id = app.store().insert_proposal(&proposal(ticket, "cat-billing", 0.9)).await.unwrap();
        let tags = Vec::new();
        let outcome = deskpilot::store::NewOutcome {
            proposal_id: id,
            connection_id: "demo",
            ticket_id: ticket,
            category_id: Some(person),
            priority: Some("HIGH"),
            tags: &tags,
            closed: true,
        };
        assert!(app.store().record_outcome(&outcome).await.unwrap());
    }
    let url = serve(&app).await;
    assert_eq!(get(&format!("{url}/review/report"), None).await.status(), 401);
    let page =
        get(&format!("{url}/review/report?min_closed=2&min_precision=0.6"), Some("review-secret")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("demo / cat-billing"), "{html}");
    assert!(html.contains("67 % [21 %–94 %] over 3"), "agreement with its interval: {html}");
    assert!(html.contains("cat-refunds ×1"), "the confusion");
    assert!(html.contains("[connections.automation] cat-billing = 0.50"), "the promotion line");
    assert!(html.contains("<polyline points=\""), "the curve");
    let bad = get(&format!("{url}/review/report?min_precision=2"), Some("review-secret")).await;
    assert_eq!(bad.status(), 400);
}
