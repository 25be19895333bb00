use super::*;
use crate::ticketing::model::{Email, Telephone};

fn customer() -> Customer {
    Customer {
        name: Some("José Núñez".into()),
        emails: vec![Email { email: "Jose.Nunez@example.com".into(), kind: None }],
        telephones: vec![Telephone { telephone: "+34 612 345 678".into(), kind: None }],
        ..Customer::default()
    }
}

fn pseudonymise(text: &str) -> (String, Pseudonyms) {
    let privacy = Privacy::default();
    let mut p = privacy.pseudonymiser(Some(&customer()));
    let out = p.text(text);
    (out, p.finish())
}

fn replaced(text: &str) -> String {
    pseudonymise(text).0
}

#[test]
fn each_kind_gets_a_numbered_placeholder() {
    let cases = [
        ("write to anna.schmidt@example.de please", "write to [EMAIL_1] please"),
        ("call me on +49 30 1234567 today", "call me on [PHONE_1] today"),
        ("mobile 06 12 34 56 78.", "mobile [PHONE_1]."),
        ("ring (555) 123-4567 or 555-987-6543", "ring [PHONE_1] or [PHONE_2]"),
        ("携帯 090-1234-5678 です", "携帯 [PHONE_1] です"),
        ("電話番号は090-1234-5678です。", "電話番号は[PHONE_1]です。"),
        (
            "signed https://cdn.example.com/f.pdf?X-Amz-Signature=abc123&X-Amz-Expires=300 ok",
            "signed [URL_1] ok",
        ),
        ("card 4111 1111 1111 1111 was charged", "card [CARD_1] was charged"),
        ("card 4111-1111-1111-1111, exp 12/27", "card [CARD_1], exp 12/27"),
        ("IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX", "IBAN [IBAN_1] BIC COBADEFFXXX"),
        ("IBAN: FR1420041010050500013M02606.", "IBAN: [IBAN_1]."),
        ("from 203.0.113.45 and 2001:db8::8a2e:370:7334 at once", "from [IP_1] and [IP_2] at once"),
        ("see https://bob:hunter2@files.example.com/x ok", "see [URL_1] ok"),
        ("reset via https://app.example.com/reset?token=abc123&x=1.", "reset via [URL_1]."),
        ("ship to Hauptstraße 12, 10115 Berlin please", "ship to [ADDRESS_1] please"),
        ("livrer au 12 rue de Rivoli, 75001 Paris merci", "livrer au [ADDRESS_1] merci"),
        ("enviar a Calle Mayor 5, 28013 Madrid hoy", "enviar a [ADDRESS_1] hoy"),
        ("entregar na Rua Augusta 100, 01305-000 São Paulo amanhã", "entregar na [ADDRESS_1] amanhã"),
        ("send it to 221B Baker Street, London", "send it to [ADDRESS_1], London"),
    ];
    for (text, want) in cases {
        assert_eq!(replaced(text), want, "{text}");
    }
}

#[test]
fn the_customers_own_values_match_ignoring_case_and_accents() {
    assert_eq!(replaced("Hola, soy JOSE NUNEZ"), "Hola, soy [NAME_1]");
    assert_eq!(replaced("Saludos,\nJosé"), "Saludos,\n[NAME_1]");
    // A part of the name matches only capitalised, as a word.
    assert_eq!(replaced("the josé-cuervo bottle"), "the josé-cuervo bottle");
    assert_eq!(replaced("mail JOSE.NUNEZ@EXAMPLE.COM"), "mail [EMAIL_1]");
    // The record's phone in its national form is the same number.
    let (text, map) = pseudonymise("llamar al 612 345 678 o +34 612-345-678");
    assert_eq!(text, "llamar al [PHONE_1] o [PHONE_1]");
    assert_eq!(map.report().replaced.get("phone"), Some(&1));
}

#[test]
fn the_same_value_keeps_its_placeholder_and_different_values_differ() {
    let privacy = Privacy::default();
    let mut p = privacy.pseudonymiser(None);
    let a = p.text("a@x.com paid with 4111 1111 1111 1111");
    let b = p.text("A@X.COM again, now with 5555555555554444 and 4111111111111111");
    assert_eq!(a, "[EMAIL_1] paid with [CARD_1]");
    assert_eq!(b, "[EMAIL_1] again, now with [CARD_2] and [CARD_1]");
    let map = p.finish();
    let report = map.report();
    assert_eq!(report.replaced.get("email"), Some(&1));
    assert_eq!(report.replaced.get("card"), Some(&2));
    assert_eq!(report.occurrences, 5);
}

#[test]
fn text_that_is_not_personal_data_is_left_alone() {
    for text in [
        "Order total: $1,299.00 (3 items), VAT 19% = 207.41",
        "Since 2024-03-15 the app shows error 503, then 502 Bad Gateway.",
        "Am 05.03.2024 um 14:30 kam der Fehler E-1042 zurück.",
        "Running version 4.12.1 (build 20240315.2) on Windows 10.0.19045",
        "SKU AB-1234-567, qty 12, order #100234567, ticket 88412",
        "Tracking 00340434161234567890 from DHL",
        "Le total est de 1 299,90 € TTC, commande n° 458812.",
        "Error code 0x80070005 at 10:45:12",
        "Invoice INV-2024-000123 for 49.90 EUR",
        "Call the API at https://api.example.com/v1/orders?page=2&limit=50",
        "ISBN 978-3-16-148410-0",
    ] {
        assert_eq!(replaced(text), text, "{text}");
    }
}

#[test]
fn redact_mode_replaces_by_kind_and_restores_nothing() {
    let privacy = Privacy { mode: Mode::Redact, ..Privacy::default() };
    let mut p = privacy.pseudonymiser(None);
    assert_eq!(p.text("a@x.com and b@x.com"), "[EMAIL] and [EMAIL]");
    let map = p.finish();
    assert_eq!(map.report().replaced.get("email"), Some(&2));
    assert_eq!(map.restore("write to [EMAIL]").text, "write to [EMAIL]");
}

#[test]
fn off_changes_nothing_and_kinds_can_be_chosen() {
    let privacy = Privacy::off();
    assert_eq!(privacy.pseudonymiser(Some(&customer())).text("a@x.com"), "a@x.com");
    let only_cards = Privacy { kinds: [Kind::Card].into_iter().collect(), ..Privacy::default() };
    assert_eq!(only_cards.pseudonymiser(None).text("a@x.com 4111111111111111"), "a@x.com [CARD_1]");
}

#[test]
fn a_teams_own_patterns_come_first() {
    let privacy =
        Privacy { patterns: vec![Pattern::new("order", r"\bORD-\d{6,}\b").unwrap()], ..Privacy::default() };
    let mut p = privacy.pseudonymiser(None);
    assert_eq!(p.text("order ORD-0612345678 and ORD-123456"), "order [ORDER_1] and [ORDER_2]");
    assert_eq!(p.finish().report().replaced.get("order"), Some(&2));
    assert!(matches!(Pattern::new("email", "x"), Err(PrivacyError::PatternName { .. })));
    assert!(matches!(Pattern::new("1x", "x"), Err(PrivacyError::PatternName { .. })));
    assert!(matches!(Pattern::new("acct", "("), Err(PrivacyError::PatternRegex { .. })));
}

#[test]
fn the_draft_gets_its_values_back_and_invented_placeholders_stay_visible() {
    let (_, map) = pseudonymise("Email anna@example.org, card 4111 1111 1111 1111, I'm José");
    let r = map.restore("Hi [NAME_1], we wrote to [EMAIL_1] about [CARD_1]; see [EMAIL_2] and [FOO_1].");
    assert_eq!(
        r.text,
        "Hi José, we wrote to anna@example.org about 4111 1111 1111 1111; see [EMAIL_2] and [FOO_1]."
    );
    assert_eq!(r.restored, 3);
    assert_eq!(r.invented, vec!["[EMAIL_2]".to_owned()]);
}

#[test]
fn the_mapping_never_shows_its_values() {
    let (_, map) = pseudonymise("anna@example.org");
    let shown = format!("{map:?}");
    assert!(!shown.contains("anna"), "{shown}");
    assert!(shown.contains("email"), "{shown}");
}

#[test]
fn the_display_name_is_replaced_whole() {
    let privacy = Privacy::default();
    let mut p = privacy.pseudonymiser(Some(&customer()));
    assert_eq!(p.name("José Núñez"), "[NAME_1]");
    assert_eq!(p.text("Soy José Núñez"), "Soy [NAME_1]");
}

#[test]
fn a_name_found_in_a_folded_text_is_replaced_exactly_where_it_was_written() {
    // `Å` and `É` fold to one byte from two, `€` stays three: the folded text's offsets differ
    // from the original's in both directions before each match.
    let (text, _) = pseudonymise("Ça coûte 20 € (Å). Merci, JOSÉ NÚÑEZ — à bientôt, José; ÑÚÑEZ");
    assert_eq!(text, "Ça coûte 20 € (Å). Merci, [NAME_1] — à bientôt, [NAME_2]; [NAME_3]");
}

#[test]
fn an_ascii_name_is_found_in_a_text_with_accents_elsewhere() {
    let c = Customer { name: Some("Tom Harris".into()), ..Customer::default() };
    let privacy = Privacy::default();
    let mut p = privacy.pseudonymiser(Some(&c));
    assert_eq!(p.text("Grüße — TOM HARRIS, café owner; Tom"), "Grüße — [NAME_1], café owner; [NAME_2]");
}

#[test]
fn a_placeholder_the_customer_wrote_stands_for_nothing() {
    let (text, map) = pseudonymise("reply to [EMAIL_1], not anna@example.de; ticket [JIRA_7]");
    assert_eq!(text, "reply to (EMAIL_1), not [EMAIL_1]; ticket [JIRA_7]");
    let restored = map.restore("Sent to [EMAIL_1], as (EMAIL_1) asked");
    assert_eq!(restored.text, "Sent to anna@example.de, as (EMAIL_1) asked");
}

#[test]
fn the_customers_values_are_found_at_either_end_of_a_text_in_any_case_and_only_as_words() {
    let c = Customer {
        name: Some("Olivia Bennett".into()),
        emails: vec![Email { email: "olivia.bennett@mailbox.example".into(), kind: None }],
        ..Customer::default()
    };
    let privacy = Privacy { kinds: [Kind::Name].into_iter().collect(), ..Privacy::default() };
    let mut p = privacy.pseudonymiser(Some(&c));
    assert_eq!(p.text("olivia bennett"), "[NAME_1]", "the whole name in lowercase, the whole text");
    assert_eq!(p.text("Bennett: refund for OLIVIA"), "[NAME_2]: refund for [NAME_3]");
    assert_eq!(p.text("Olivias and Bennetts, bennett"), "Olivias and Bennetts, bennett");
    let privacy = Privacy { kinds: [Kind::Email].into_iter().collect(), ..Privacy::default() };
    let mut p = privacy.pseudonymiser(Some(&c));
    assert_eq!(p.text("Olivia.Bennett@Mailbox.Example"), "[EMAIL_1]");
}

#[test]
fn addresses_are_found_anywhere_in_a_long_text_and_the_numbers_around_them_left_alone() {
    let filler = "Order 4411 shipped on 2024-05-03 for 19.99 EUR, 3 items. ".repeat(40);
    let text = format!(
        "{filler}Bitte an Hauptstraße 12, 10115 Berlin senden. {filler}Or 221B Baker Street, London NW1 6XE; Rua Augusta, nº 274."
    );
    let privacy = Privacy { kinds: [Kind::Address].into_iter().collect(), ..Privacy::default() };
    let out = privacy.pseudonymiser(None).text(&text);
    assert!(out.contains("Bitte an [ADDRESS_1] senden."), "{}", &out[out.len() - 300..]);
    // A British postcode after the town is not part of the pattern.
    assert!(out.ends_with("Or [ADDRESS_2], London NW1 6XE; [ADDRESS_3]."), "{}", &out[out.len() - 200..]);
    assert_eq!(out.matches("Order 4411 shipped on 2024-05-03 for 19.99 EUR, 3 items.").count(), 80);
}
