//! Context building on the sandbox's tickets: cleaning, the token budget and exact counts.

use deskpilot::{
    http::HttpSettings,
    sandbox::{self, RunningSandbox, SandboxOptions},
    ticketing::{AuthorKind, NewNote, Ticketing, unified::UnifiedClient},
    triage::{
        clean::clean_message,
        context::{self, ContextOptions, Entry, Gathered},
        tokens::Tokenizer,
    },
};

async fn start() -> (RunningSandbox, UnifiedClient) {
    let sb =
        sandbox::spawn(SandboxOptions { api_key: "k".into(), ..SandboxOptions::default() }).await.unwrap();
    let client = UnifiedClient::new(&sb.base_url, "demo", "k".into(), &HttpSettings::default()).unwrap();
    (sb, client)
}

fn o200k(text: &str) -> usize {
    tiktoken_rs::o200k_base_singleton().encode_ordinary(text).len()
}

fn messages(ctx: &context::TicketContext) -> Vec<&context::Message> {
    ctx.conversation
        .iter()
        .filter_map(|e| match e {
            Entry::Message(m) => Some(m),
            Entry::Omitted { .. } => None,
        })
        .collect()
}

#[tokio::test]
async fn quoted_history_and_signatures_are_removed_from_long_threads() {
    let (_sb, c) = start().await;
    let tok = Tokenizer::for_model("gpt-4o-mini");
    for id in ["1006", "1015", "1016", "1020", "1021", "1025"] {
        let g = context::gather(&c, id, context::DEFAULT_MAX_NOTES).await.unwrap();
        assert!(g.notes.len() >= 10, "ticket {id} is one of the long threads");
        let ctx = context::build(&g, &tok, ContextOptions { clean: true, budget: None });
        let raw: usize = g.notes.iter().map(|n| n.description.as_deref().unwrap_or("").len()).sum();
        let kept: usize = messages(&ctx).iter().map(|m| m.text.len()).sum();
        assert!(kept < raw, "ticket {id}: cleaning removed nothing");
        for m in messages(&ctx).into_iter().chain([]) {
            for marker in [
                "wrote:",
                "-----Original Message-----",
                "CONFIDENTIALITY NOTICE",
                "Sent from my iPhone",
                "<div",
            ] {
                assert!(!m.text.contains(marker), "ticket {id}: `{marker}` left in:\n{}", m.text);
            }
            assert!(
                !m.text.lines().any(|l| l.starts_with('>')),
                "ticket {id}: quoted line left in:\n{}",
                m.text
            );
        }
        assert!(ctx.breakdown.chars_removed_by_cleaning > 0);
    }
}

#[tokio::test]
async fn forty_message_thread_fits_with_the_newest_customer_message_whole() {
    let (_sb, c) = start().await;
    let ticket = "1030";
    let paragraph = "We still cannot export the quarterly report: the job runs for ten minutes and then fails \
                     with error E-4471. Our finance team needs it before the board meeting. ";
    for i in 0..40 {
        let from_customer = i % 2 == 0;
        let body = if from_customer {
            format!(
                "{} (message {i})\n\nOn Mon, Nov 2, 2026 at 9:{i:02} AM Support <help@northwind.example> wrote:\n> {}\n> earlier text\n\n-- \nAna Ruiz\nFinance | Ruiz SL",
                paragraph.repeat(3),
                paragraph
            )
        } else {
            format!("Thanks Ana, we are looking into it (reply {i}). {}", paragraph)
        };
        let note = NewNote {
            ticket_id: ticket.into(),
            description: body,
            user_id: (!from_customer).then(|| "u-02".into()),
            raw: None,
        };
        c.create_note(&note).await.unwrap();
    }
    // The sandbox records the author of a note by user_id only; the customer's notes carry none.
    let mut g: Gathered = context::gather(&c, ticket, context::DEFAULT_MAX_NOTES).await.unwrap();
    for n in &mut g.notes {
        if n.user_id.is_none() {
            n.customer_id = g.ticket.customer_id.clone();
        }
    }
    assert!(g.notes.len() >= 40);
    let newest_customer = g.notes.iter().rev().find(|n| n.author() == AuthorKind::Customer).unwrap();
    let expected = clean_message(newest_customer.description.as_deref().unwrap()).text;

    let tok = Tokenizer::for_model("gpt-4o-mini");
    let budget = 1500;
    let ctx = context::build(&g, &tok, ContextOptions { clean: true, budget: Some(budget) });
    let kept = messages(&ctx);
    assert_eq!(ctx.newest_customer_message().unwrap().text, expected, "kept whole, not truncated");
    assert!(
        matches!(ctx.conversation.first(), Some(Entry::Omitted { count }) if *count == ctx.breakdown.notes_dropped)
    );
    assert!(ctx.breakdown.notes_dropped > 20, "dropped {}", ctx.breakdown.notes_dropped);
    assert_eq!(kept.len() + ctx.breakdown.notes_dropped, g.notes.len());
    // The kept ones are the newest, in order.
    let newest: Vec<_> = g.notes.iter().rev().take(kept.len()).map(|n| n.created_at).collect();
    assert_eq!(
        kept.iter().rev().map(|m| m.at.clone()).collect::<Vec<_>>(),
        newest.iter().map(|t| t.map(deskpilot::ticketing::model::format_timestamp)).collect::<Vec<_>>()
    );

    // Counts are tiktoken's own.
    for m in &kept {
        assert_eq!(m.tokens, o200k(&m.text));
    }
    assert_eq!(ctx.breakdown.notes_kept, kept.iter().map(|m| o200k(&m.text)).sum::<usize>());
    assert_eq!(ctx.breakdown.ticket, o200k(&ctx.subject) + o200k(&ctx.description));
    let estimate = ctx.breakdown.ticket + ctx.breakdown.notes_kept;
    assert!(estimate <= budget, "{estimate} > {budget}");
}

#[tokio::test]
async fn a_single_huge_message_is_cut_from_the_middle() {
    let (_sb, c) = start().await;
    let mut g = context::gather(&c, "1082", context::DEFAULT_MAX_NOTES).await.unwrap();
    let log: String = (0..4000)
        .map(|i| format!("2026-11-20T10:{:02}:{:02}Z ERROR worker-{i} timeout\n", i % 60, i % 60))
        .collect();
    g.ticket.description = Some(format!("Our sync fails. Log below.\n{log}The end."));
    let tok = Tokenizer::for_model("gpt-4o-mini");
    let ctx = context::build(&g, &tok, ContextOptions { clean: true, budget: Some(800) });
    assert!(ctx.description.starts_with("Our sync fails"));
    assert!(ctx.description.ends_with("The end."));
    assert!(ctx.description.contains("tokens omitted"));
    assert!(ctx.breakdown.ticket <= 800);
}

#[tokio::test]
async fn without_cleaning_or_budget_everything_is_kept() {
    let (_sb, c) = start().await;
    let g = context::gather(&c, "1015", context::DEFAULT_MAX_NOTES).await.unwrap();
    let tok = Tokenizer::for_model("gpt-4o-mini");
    let raw = context::build(&g, &tok, ContextOptions { clean: false, budget: None });
    let clean = context::build(&g, &tok, ContextOptions::default());
    assert_eq!(raw.breakdown.notes_dropped, 0);
    assert_eq!(messages(&raw).len(), g.notes.len());
    assert!(
        raw.breakdown.notes_kept > clean.breakdown.notes_kept,
        "cleaning saves tokens on a quoted thread"
    );
}
