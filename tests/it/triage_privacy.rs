//! Personal data kept from the LLM: what the fake OpenAI server (wiremock) receives for sandbox
//! tickets, what comes back in the draft, and what the report says.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Range,
    path::Path,
    sync::Arc,
};

use crate::helpers::*;
use deskpilot::{
    ticketing::Customer,
    triage::{
        Policy,
        privacy::{Mode, Privacy},
    },
};
use regex::Regex;
use serde_json::{Value, json};

/// Ticket 1001 of the demo helpdesk: Tom Harris (c-011) writes from tom@harrisplumbing.example.
const TICKET: &str = "1001";

fn answer_with_draft(draft: &str) -> String {
    let mut d = valid_decision(Some("cat-billing"));
    d["draft_reply"] = json!(draft);
    d["summary"] = json!("[NAME_1] was charged twice.");
    d.to_string()
}

#[tokio::test]
async fn the_llm_gets_placeholders_and_the_draft_gets_the_values_back() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let draft = "Hi [NAME_2], we will write to [EMAIL_1] about it.";
    let llm = mock_llm(ok(&answer_with_draft(draft)), Some(1)).await;
    let engine = engine(&llm);

    let triage = engine.triage(&hd, TICKET, &Policy::new("demo")).await.unwrap();

    let requests = chat_requests(&llm).await;
    let sent = requests[0].to_string();
    for value in ["tom@harrisplumbing.example", "Tom Harris", "Tom"] {
        assert!(!sent.contains(value), "`{value}` reached the LLM");
    }
    let user = &messages(&requests[0])[1].1;
    assert!(user.contains("Customer: [NAME_1]"), "{user}");
    assert!(user.contains("[EMAIL_1]"), "{user}");
    let d = &triage.decision;
    assert_eq!(
        d.draft_reply.as_deref(),
        Some("Hi Tom, we will write to tom@harrisplumbing.example about it.")
    );
    assert_eq!(d.summary, "[NAME_1] was charged twice.", "the summary keeps its placeholders");
    assert!(!d.needs_human);
    let p = &triage.report.privacy;
    assert_eq!(p.mode, Mode::Pseudonymise);
    assert_eq!(p.replaced.get("email"), Some(&1));
    assert_eq!(p.replaced.get("name"), Some(&2), "the whole name and the first name");
    assert_eq!(p.restored, 2);
    assert!(p.invented.is_empty());
    let report = serde_json::to_string(&triage.report).unwrap();
    assert!(!report.contains("harrisplumbing"), "the report names kinds, not values: {report}");
}

#[tokio::test]
async fn an_invented_placeholder_stays_visible_and_asks_for_a_person() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&answer_with_draft("Hi [NAME_2], call us from [PHONE_3].")), Some(1)).await;

    let triage = engine(&llm).triage(&hd, TICKET, &Policy::new("demo")).await.unwrap();

    assert_eq!(triage.decision.draft_reply.as_deref(), Some("Hi Tom, call us from [PHONE_3]."));
    assert!(triage.decision.needs_human);
    assert_eq!(triage.report.privacy.invented, vec!["[PHONE_3]".to_owned()]);
    assert!(triage.notes.iter().any(|n| n.contains("[PHONE_3]")), "{:?}", triage.notes);
}

#[tokio::test]
async fn the_system_message_is_the_same_for_every_ticket_and_only_adds_the_rule_for_placeholders() {
    let sb = start_sandbox().await;
    let hd = helpdesk(&sb, "demo");
    let llm = mock_llm(ok(&valid_answer(Some("cat-billing"))), Some(3)).await;
    let engine = engine(&llm);
    let off = Policy { privacy: Arc::new(Privacy::off()), ..Policy::new("demo") };

    let on = engine.triage(&hd, TICKET, &Policy::new("demo")).await.unwrap();
    engine.triage(&hd, "1002", &Policy::new("demo")).await.unwrap();
    let plain = engine.triage(&hd, TICKET, &off).await.unwrap();

    let requests = chat_requests(&llm).await;
    let (a, other, b) = (messages(&requests[0]), messages(&requests[1]), messages(&requests[2]));
    assert_ne!(a[1].1, other[1].1, "two tickets");
    assert_eq!(a[0].1.as_bytes(), other[0].1.as_bytes(), "the cacheable prefix is the same for both");
    let rule = a[0].1.lines().find(|l| l.contains("placeholders such as [NAME_1]")).expect("the rule");
    assert_eq!(a[0].1.replace(&format!("{rule}\n"), ""), b[0].1, "the rule is all that privacy adds to it");
    assert!(!a[1].1.contains("placeholder"), "each ticket's message is its data alone");
    assert!(b[1].1.contains("tom@harrisplumbing.example"), "privacy off sends the ticket as it is");
    assert!(!a[1].1.contains("tom@harrisplumbing.example"));
    assert_eq!(plain.report.privacy.mode, Mode::Off);
    assert!(plain.report.privacy.replaced.is_empty());
    assert!(!on.report.privacy.replaced.is_empty());
}

// ---------------------------------------------------------------------------------------------
// The detectors measured: a labelled sample, and the bundled helpdesks' numbers that are not
// personal data.

/// A bundled helpdesk's data file.
fn bundled(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("data/sandbox/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn customer_of(data: &Value, id: Option<&str>) -> Option<Customer> {
    let c = data["customers"].as_array()?.iter().find(|c| c["id"].as_str() == id)?;
    Some(serde_json::from_value(c.clone()).unwrap())
}

/// Every text of a bundled helpdesk (subjects, descriptions, notes) with its ticket's customer.
fn bundled_texts(data: &Value) -> Vec<(String, Option<Customer>)> {
    let tickets = data["tickets"].as_array().unwrap();
    let customer_of_ticket = |id: &str| {
        let t = tickets.iter().find(|t| t["id"].as_str() == Some(id))?;
        customer_of(data, t["customer_id"].as_str())
    };
    let mut texts = Vec::new();
    for t in tickets {
        let customer = customer_of(data, t["customer_id"].as_str());
        for field in ["subject", "description"] {
            texts.push((t[field].as_str().unwrap_or_default().to_owned(), customer.clone()));
        }
    }
    for n in data["notes"].as_array().unwrap() {
        let customer = customer_of_ticket(n["ticket_id"].as_str().unwrap());
        texts.push((n["description"].as_str().unwrap_or_default().to_owned(), customer));
    }
    texts
}

#[derive(Default)]
struct Tally {
    found: usize,
    right: usize,
    labelled: usize,
    caught: usize,
}

#[test]
fn precision_and_recall_on_the_labelled_sample() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/privacy/labelled.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let acme = bundled("acme-retail");
    let privacy = Privacy::default();
    let mut by_kind: BTreeMap<String, Tally> = BTreeMap::new();
    let mut wrong = Vec::new();
    for sample in fixture["samples"].as_array().unwrap() {
        let (text, customer) = if let Some(id) = sample["ticket"].as_str() {
            let t = acme["tickets"].as_array().unwrap().iter().find(|t| t["id"] == id).unwrap();
            (t["description"].as_str().unwrap().to_owned(), customer_of(&acme, t["customer_id"].as_str()))
        } else if let Some(id) = sample["note"].as_str() {
            let n = acme["notes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap();
            (n["description"].as_str().unwrap().to_owned(), customer_of(&acme, n["customer_id"].as_str()))
        } else {
            (sample["text"].as_str().unwrap().to_owned(), None)
        };
        // Every place a labelled value is written in its sample.
        let labels: Vec<(String, Vec<Range<usize>>)> = sample["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let (kind, value) = (s[0].as_str().unwrap(), s[1].as_str().unwrap());
                let at: Vec<_> = text.match_indices(value).map(|(i, v)| i..i + v.len()).collect();
                assert!(!at.is_empty(), "`{value}` is in its sample");
                (kind.to_owned(), at)
            })
            .collect();
        let found = privacy.pseudonymiser(customer.as_ref()).find(&text);
        let overlaps =
            |a: &[Range<usize>], b: &Range<usize>| a.iter().any(|a| a.start < b.end && b.start < a.end);
        for (kind, range) in &found {
            let t = by_kind.entry(kind.clone()).or_default();
            t.found += 1;
            if labels.iter().any(|(k, r)| k == kind && overlaps(r, range)) {
                t.right += 1;
            } else {
                wrong.push(format!("found {kind} `{}`", &text[range.clone()]));
            }
        }
        for (kind, range) in &labels {
            let t = by_kind.entry(kind.clone()).or_default();
            t.labelled += 1;
            if found.iter().any(|(k, r)| k == kind && overlaps(range, r)) {
                t.caught += 1;
            } else {
                wrong.push(format!("missed {kind} `{}`", &text[range[0].clone()]));
            }
        }
    }
    let total = by_kind.values().fold(Tally::default(), |a, t| Tally {
        found: a.found + t.found,
        right: a.right + t.right,
        labelled: a.labelled + t.labelled,
        caught: a.caught + t.caught,
    });
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    println!(
        "privacy detectors on the labelled sample ({} samples):",
        fixture["samples"].as_array().unwrap().len()
    );
    for (kind, t) in by_kind.iter().chain([(&"all".to_owned(), &total)]) {
        println!(
            "  {kind:<8} precision {:.3} ({}/{})  recall {:.3} ({}/{})",
            ratio(t.right, t.found),
            t.right,
            t.found,
            ratio(t.caught, t.labelled),
            t.caught,
            t.labelled
        );
    }
    for w in &wrong {
        println!("  {w}");
    }
    // Floors under today's figures (printed above with --nocapture): a change that loses
    // precision or recall fails here.
    assert!(ratio(total.right, total.found) >= 0.98, "precision fell: {wrong:#?}");
    assert!(ratio(total.caught, total.labelled) >= 0.95, "recall fell: {wrong:#?}");
}

/// Money, dates, times, versions, HTTP status codes and order or SKU codes in the bundled
/// helpdesks' texts are all still there after pseudonymisation, unless they are part of a value
/// found; and what is found besides names and emails is exactly the reviewed list.
#[test]
fn numbers_that_are_not_personal_data_are_left_alone_on_the_bundled_helpdesks() {
    let shapes = Regex::new(
        r"(?x)
          [$€£]\s?\d[\d.,]*\d | \d[\d.,]*\d\s?(?:€|EUR|USD) # money
        | \b\d{4}-\d{2}-\d{2}\b | \b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b # dates
        | \b\d{1,2}:\d{2}(?::\d{2})?\b # times
        | \bv?\d+\.\d+\.\d+\b # versions
        | \b[1-5]\d\d\b # status codes and small numbers
        | \b[A-Z]{2,}(?:-[A-Z0-9]+)*-\d[A-Z0-9-]*\b # order numbers, SKUs, error codes
        ",
    )
    .unwrap();
    let reviewed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/privacy/bundled-finds.json");
    let reviewed: Value = serde_json::from_str(&std::fs::read_to_string(reviewed).unwrap()).unwrap();
    let reviewed: BTreeSet<String> =
        reviewed["finds"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()).collect();
    let privacy = Privacy::default();
    let (mut left_alone, mut inside, mut changed) = (0, 0, Vec::new());
    let (mut counts, mut finds) = (BTreeMap::<String, usize>::new(), BTreeSet::new());
    for name in ["demo", "acme-retail"] {
        for (text, customer) in bundled_texts(&bundled(name)) {
            let mut p = privacy.pseudonymiser(customer.as_ref());
            let found = p.find(&text);
            for (kind, r) in &found {
                *counts.entry(kind.clone()).or_default() += 1;
                if kind != "name" && kind != "email" {
                    finds.insert(format!("{kind} {}", &text[r.clone()]));
                }
            }
            let out = p.text(&text);
            for token in shapes.find_iter(&text) {
                if found.iter().any(|(_, r)| r.start < token.end() && token.start() < r.end) {
                    inside += 1;
                } else if out.contains(token.as_str()) {
                    left_alone += 1;
                } else {
                    changed.push(format!("{name}: `{}`", token.as_str()));
                }
            }
        }
    }
    println!(
        "bundled helpdesks: {left_alone} numbers and codes left alone ({inside} more inside personal data); found {counts:?}"
    );
    assert!(changed.is_empty(), "numbers that are not personal data were replaced: {changed:#?}");
    assert!(left_alone > 1000, "the shapes find the helpdesks' numbers ({left_alone})");
    let new: Vec<_> = finds.difference(&reviewed).collect();
    let gone: Vec<_> = reviewed.difference(&finds).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "found beyond the reviewed list: {new:#?}\nno longer found: {gone:#?}"
    );
}
