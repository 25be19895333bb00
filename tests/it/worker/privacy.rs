//! Personal data through the whole pipeline: the multilingual tickets of the acme-retail helpdesk
//! (English, German, French, Spanish, Portuguese, Italian; every kind of personal data) reach the
//! LLM double as placeholders only, and the internal note posted in apply mode carries the values
//! wherever the draft used their placeholders.

use regex::Regex;

use super::*;

const ACME: &str = "acme-retail";

/// Each corpus ticket and the values its note must carry: the first spelling of each value
/// (a later spelling of the same card or phone number shares its placeholder).
const CORPUS: [(&str, &[&str]); 6] = [
    (
        "5018",
        &[
            "Olivia Bennett",
            "olivia.bennett@mailbox.example",
            "4539 1488 0343 6467",
            "5425-2334-3010-9903",
            "+44 20 7946 0958",
            "(555) 201-7788",
            "221B Baker Street",
            "203.0.113.77",
            "https://acme-outdoor.example.com/account/reset?token=f9a8c7e6d5b4",
        ],
    ),
    (
        "5019",
        &[
            "Jürgen Weiß",
            "Hauptstraße 12, 10115 Berlin",
            "DE89 3704 0044 0532 0130 00",
            "0171 2345678",
            "juergen.weiss@posteo.example",
        ],
    ),
    (
        "5020",
        &[
            "Amélie Durand",
            "12 rue de Rivoli, 75001 Paris",
            "06 12 34 56 78",
            "4012 8888 8888 1881",
            "FR14 2004 1010 0505 0001 3M02 606",
        ],
    ),
    (
        "5021",
        &[
            "José Núñez",
            "Calle Mayor 5, 28013 Madrid",
            "612 345 678",
            "2001:db8::8a2e:370:7334",
            "https://jose:Secreto2026@files.acme-outdoor.example/fotos",
            "jose.nunez@correo.example",
        ],
    ),
    (
        "5022",
        &[
            "João Conceição",
            "Rua Augusta 100, 01305-000 São Paulo",
            "(11) 91234-5678",
            "5555 5555 5555 4444",
            "jc.alt@provedor.example",
        ],
    ),
    (
        "5023",
        &[
            "Giulia Esposito",
            "Via Roma 10, 00184 Roma",
            "+39 347 123 4567",
            "IT60 X054 2811 1010 0000 0123 456",
            "10.0.0.12",
            "giulia.esposito@libero.example",
        ],
    ),
];

/// Every spelling of personal data in the corpus tickets, labelled by hand.
fn labelled_values() -> Vec<String> {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/privacy/labelled.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    fixture["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.get("text").is_none())
        .flat_map(|s| s["spans"].as_array().unwrap().iter().map(|span| span[1].as_str().unwrap().to_owned()))
        .collect()
}

/// The LLM double: a valid acme decision whose draft names every placeholder the ticket has.
struct EchoPlaceholders;

impl Respond for EchoPlaceholders {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = request.body_json().unwrap();
        let user = messages(&body).into_iter().find(|(role, _)| role == "user").unwrap().1;
        // The ticket only: the instructions above it show placeholders as examples.
        let user = &user[user.find("<ticket_data>").unwrap()..];
        let placeholder = Regex::new(r"\[[A-Z]+_\d+\]").unwrap();
        let mut seen: Vec<&str> = placeholder.find_iter(user).map(|m| m.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        let mut d = valid_decision(Some("acme-orders"));
        d["draft_reply"] = json!(format!("Values: {}", seen.join(" | ")));
        d["summary"] = json!(format!("About {}", seen.first().unwrap_or(&"nothing")));
        d["tags"] = json!(["orders"]);
        ok(&d.to_string())
    }
}

pub(super) async fn personal_data_reaches_the_llm_as_placeholders_and_the_note_as_values(mut p: Pipeline) {
    Mock::given(method("POST"))
        .and(path(COMPLETIONS))
        .respond_with(EchoPlaceholders)
        .with_priority(1)
        .mount(&p._llm)
        .await;
    let connection =
        ConnectionConfig { id: ACME.into(), ..demo_connection(&p.sandbox.base_url, &apply(true)) };
    p.start_worker_on(connection).await;
    let tickets: Vec<String> = CORPUS.iter().map(|(t, _)| (*t).to_owned()).collect();
    for t in &tickets {
        let event = TicketEvent::new(EventKind::TicketCreated, ACME, t, EventSource::Manual);
        p.publisher.publish(&event).await.unwrap();
    }
    let keys: Vec<LedgerKey> =
        tickets.iter().map(|t| LedgerKey::new(ACME, t, EventKind::TicketCreated)).collect();
    let mut entries = Vec::new();
    wait_until("every corpus ticket is done", WAIT, || {
        let store = p.store.clone();
        let keys = keys.clone();
        async move {
            for k in &keys {
                if store.entry(k).await.unwrap().is_none_or(|e| e.step != Step::Done) {
                    return false;
                }
            }
            true
        }
    })
    .await;
    for k in &keys {
        entries.push(p.store.entry(k).await.unwrap().unwrap());
    }
    p.stop_workers().await;

    let requests = chat_requests(&p._llm).await;
    assert_eq!(requests.len(), CORPUS.len(), "one request per ticket");
    let values = labelled_values();
    for body in &requests {
        let sent = body.to_string();
        for v in &values {
            assert!(!sent.contains(v.as_str()), "`{v}` reached the LLM");
        }
    }
    let system: Vec<&str> = requests.iter().map(|b| b["messages"][0]["content"].as_str().unwrap()).collect();
    assert!(system.windows(2).all(|w| w[0] == w[1]), "one cacheable system message for every ticket");

    let after = p.sandbox.snapshot(ACME).await.unwrap();
    let placeholder = Regex::new(r"\[[A-Z]+_\d+\]").unwrap();
    for ((ticket, expected), entry) in CORPUS.iter().zip(&entries) {
        let marker = act::note_marker(&entry.key);
        let note = after
            .notes
            .values()
            .find(|n| n.description.as_deref().is_some_and(|d| d.contains(&marker)))
            .unwrap_or_else(|| {
                panic!(
                    "ticket {ticket}: the draft is posted; outcome {:?} {}",
                    entry.outcome,
                    entry.decision.as_ref().unwrap().report["privacy"]
                )
            });
        let text = note.description.as_deref().unwrap();
        for v in *expected {
            assert!(text.contains(v), "ticket {ticket}: the note carries `{v}`: {text}");
        }
        assert!(!placeholder.is_match(text), "ticket {ticket}: {text}");
        let record = entry.decision.as_ref().unwrap();
        let replaced = &record.report["privacy"]["replaced"];
        assert!(replaced["name"].as_u64() >= Some(1), "ticket {ticket}: {replaced}");
        let report = record.report.to_string();
        for v in &values {
            assert!(!report.contains(v.as_str()), "ticket {ticket}: the stored report names `{v}`");
        }
        let decision = decided(entry).unwrap();
        assert!(decision.summary.starts_with("About ["), "the summary keeps its placeholder");
    }
}
