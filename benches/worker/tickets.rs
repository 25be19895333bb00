//! Tickets as support teams receive them, created in the sandbox through its Unified API: an
//! email with a signature, the agent's first answer quoting it, and one or two follow-ups.

use anyhow::Context;
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

/// Subject, first message, follow-up.
const TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "Charged twice for the same invoice",
        "Hello,\n\nI was charged {amount} EUR twice for invoice {invoice} on workspace {workspace}. The \
         second charge appeared this morning on my company card. Could you refund the duplicate and confirm \
         by email? I attached the card statement.\n\nThanks,\n{name}\nFinance\nAcme GmbH | +49 30 1234567",
        "Any news on the refund? Our accounting closes the month on Friday.",
    ),
    (
        "API returning 503 for the whole team",
        "Our integration has been getting HTTP 503 Service Unavailable from the API for the last 20 minutes, \
         for every endpoint we call, from two different regions. The dashboard does not load either for \
         anyone on {workspace}. Request ids: req_{invoice}, req_{amount}. Is there an incident?\n\n--\n{name}\nCTO",
        "Still down for us. Status page says all systems operational, which is not what we see.",
    ),
    (
        "Locked out after enabling two-factor authentication",
        "I turned on 2FA yesterday and my phone was replaced this morning, so the authenticator codes are \
         gone. The recovery codes I saved are rejected with 'invalid code'. I am the only admin of \
         {workspace}, so nobody else can reset it. How do I get back in?\n\nRegards,\n{name}",
        "Can you call me instead? I can verify with the last four digits of the card and the invoice number.",
    ),
    (
        "Replacement hardware not delivered",
        "The replacement card reader for RMA {invoice} was supposed to arrive last Thursday. The tracking \
         number has not moved for six days. Our store on {workspace} is running on one reader during the \
         busiest week of the year. Please send another one by express.\n\nThanks\n{name}",
        "Tracking still shows 'label created'. Can you confirm the shipping address on file?",
    ),
];

/// The agent's first answer, with quoted history the cleaner removes.
const AGENT_REPLY: &str = "Hi {name},\n\nThanks for reaching out, I am looking into this now and will get back \
    to you within the day with what I find on {workspace}.\n\nKind regards,\nPriya\nCustomer Support\n\n\
    On Mon, {name} wrote:\n> (original message quoted below)\n> Please help.";

/// Creates `n` tickets with their notes in `connection` of the sandbox at `base`; returns their
/// ids in order.
pub async fn create(base: &str, key: &str, connection: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    stream::iter(0..n).map(|i| create_one(&client, base, key, connection, i)).buffered(16).try_collect().await
}

async fn create_one(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    connection: &str,
    i: usize,
) -> anyhow::Result<String> {
    let (subject, description, follow_up) = TEMPLATES[i % TEMPLATES.len()];
    let customer = format!("c-{:03}", 1 + i % 54);
    let fill = |s: &str| {
        s.replace("{amount}", &format!("{}.00", 19 + i % 480))
            .replace("{workspace}", &format!("acct-{i:05}"))
            .replace("{invoice}", &format!("INV-2026-{i:05}"))
            .replace("{name}", "Alex Morgan")
    };
    let post = |kind: &'static str, body: Value| {
        let request =
            client.post(format!("{base}/ticketing/{connection}/{kind}")).bearer_auth(key).json(&body);
        async move { anyhow::Ok(request.send().await?.error_for_status()?.json::<Value>().await?) }
    };
    let ticket = post(
        "ticket",
        json!({"subject": subject, "description": fill(description), "customer_id": customer,
               "source": "email", "status": "ACTIVE"}),
    )
    .await
    .context("POST ticket")?;
    let id = ticket["id"].as_str().context("the created ticket has no id")?.to_owned();
    post("note", json!({"ticket_id": id, "user_id": "u-01", "description": fill(AGENT_REPLY)})).await?;
    post("note", json!({"ticket_id": id, "customer_id": customer, "description": fill(follow_up)})).await?;
    if i.is_multiple_of(2) {
        let more = "Adding my colleague in copy. Thanks for looking into it so quickly.";
        post("note", json!({"ticket_id": id, "customer_id": customer, "description": more})).await?;
    }
    Ok(id)
}
