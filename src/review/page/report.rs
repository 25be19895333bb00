//! `GET /review/report`: the agreement report as a page, with each category's precision and
//! coverage against the confidence threshold drawn as an inline SVG (no script).

use std::collections::HashMap;

use axum::{
    Extension,
    extract::{Query, State},
    http::StatusCode,
    response::Html,
};
use minijinja::context;
use time::OffsetDateTime;

use super::{PageError, Shared, access::Identity, param, render};
use crate::review::report::{Bar, CategoryReport};

/// The plot's width in SVG units.
const WIDTH: f64 = 320.0;
/// The plot's height in SVG units.
const HEIGHT: f64 = 140.0;
/// The plot's margin in SVG units.
const MARGIN: f64 = 24.0;

/// `x,y` points of `value` against the threshold, for thresholds above 0 with a value.
fn points(c: &CategoryReport, value: impl Fn(usize) -> Option<f64>) -> String {
    let curve: Vec<(f64, f64)> = c
        .thresholds
        .iter()
        .enumerate()
        .filter(|(_, t)| t.threshold > 0.0)
        .filter_map(|(i, t)| value(i).map(|v| (t.threshold, v)))
        .collect();
    curve
        .iter()
        .map(|(t, v)| {
            let x = MARGIN + (t - 0.5) / 0.45 * (WIDTH - 2.0 * MARGIN);
            let y = HEIGHT - MARGIN - v * (HEIGHT - 2.0 * MARGIN);
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

/// An agreement with its interval, or that nothing was scored yet.
fn agreement(a: &crate::review::report::Agreement) -> String {
    match a.accuracy.total {
        0 => "no closed ticket yet".to_owned(),
        n => format!("{} [{}–{}] over {n}", pct(a.accuracy.accuracy), pct(a.low), pct(a.high)),
    }
}

pub(super) async fn report(
    State(state): State<Shared>,
    Extension(who): Extension<Identity>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Html<String>, PageError> {
    let bad = |what: &str| PageError(StatusCode::BAD_REQUEST, what.to_owned());
    let connection = param(&q, "connection");
    let since = match param(&q, "since") {
        Some(s) => crate::ticketing::model::parse_time_or_date(s).map_err(|e| bad(&e))?,
        None => OffsetDateTime::UNIX_EPOCH,
    };
    let mut bar = Bar::default();
    if let Some(n) = param(&q, "min_closed") {
        bar.min_closed = n.parse().map_err(|_| bad("min_closed must be a whole number"))?;
    }
    if let Some(p) = param(&q, "min_precision") {
        bar.min_precision = p
            .parse::<f64>()
            .ok()
            .filter(|x| (0.0..=1.0).contains(x))
            .ok_or_else(|| bad("min_precision must be a number from 0 to 1"))?;
    }
    let report = state.reviews.report(connection, since, bar).await?;
    let categories: Vec<minijinja::Value> = report
        .categories
        .iter()
        .map(|c| {
            let a = &c.category_agreement;
            let p = &c.priority_agreement;
            context! {
                connection => c.connection_id.clone(), category => c.category_id.clone(),
                proposals => c.proposals, observed => c.observed, closed => c.closed,
                agreement => agreement(a),
                priority => agreement(p),
                confusions => c.confusions.iter().map(|(cat, n)| format!("{cat} ×{n}")).collect::<Vec<_>>().join(", "),
                cost => format!("{:.0} tokens · ${:.4}", c.tokens_per_ticket, c.cost_per_ticket_usd),
                ready => c.recommendation.ready, advice => c.recommendation.text.clone(),
                config_line => c.recommendation.config_line.clone(),
                precision_points => points(c, |i| c.thresholds[i].precision),
                coverage_points => points(c, |i| Some(c.thresholds[i].coverage)),
            }
        })
        .collect();
    let a = &report.category_agreement;
    render(
        &state,
        &who,
        "report.html",
        context! {
            categories, proposals => report.proposals, closed => report.closed,
            agreement => agreement(a),
            bar => format!("at least {} closed tickets at {} precision", bar.min_closed, pct(bar.min_precision)),
            connection => connection.unwrap_or_default(), width => WIDTH, height => HEIGHT, margin => MARGIN,
        },
    )
}
