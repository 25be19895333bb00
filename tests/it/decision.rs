//! Table tests of `triage::decision::validate` on good, bad and hostile LLM answers.
//!
//! Every row asserts the exact outcome: the whole decision and notes, every problem, or the
//! serde message with its position. Every accepted decision is also checked against the
//! invariants nothing downstream re-checks.

use deskpilot::{
    ticketing::model::{Category, PriorityLevel},
    triage::decision::{
        Decision, DecisionError, Limits, Origin, Sentiment, TagPolicy, Validated, normalize_tag,
        response_schema, schema_name, validate,
    },
    triage::prompt::Prompts,
};
use serde_json::{Value, json};

const MODEL: &str = "test-model";

fn categories() -> Vec<Category> {
    let cat = |id: &str, active: Option<bool>| Category {
        id: Some(id.to_owned()),
        name: Some(id.to_uppercase()),
        is_active: active,
        ..Category::default()
    };
    vec![
        cat("cat-billing", Some(true)),
        cat("cat-refunds", None),
        cat("cat-security", Some(true)),
        cat("cat-legacy", Some(false)),
    ]
}

/// A valid answer.
fn good() -> Value {
    json!({
        "category_id": "cat-billing",
        "priority": "HIGH",
        "tags": ["invoice", "double-charge"],
        "language": "en",
        "sentiment": "negative",
        "summary": "Customer was charged twice for the November invoice.",
        "draft_reply": "Hi Ana, sorry about the double charge. I have asked billing to refund it.",
        "confidence": 0.82,
        "needs_human": false,
        "reason": "Duplicate charge on an invoice is a billing matter; money is involved, so HIGH."
    })
}

/// The decision `good()` validates to.
fn good_decision() -> Decision {
    Decision {
        category_id: Some("cat-billing".into()),
        priority: PriorityLevel::High,
        tags: vec!["invoice".into(), "double-charge".into()],
        language: "en".into(),
        sentiment: Sentiment::Negative,
        summary: "Customer was charged twice for the November invoice.".into(),
        draft_reply: Some("Hi Ana, sorry about the double charge. I have asked billing to refund it.".into()),
        confidence: 0.82,
        needs_human: false,
        reason: "Duplicate charge on an invoice is a billing matter; money is involved, so HIGH.".into(),
        origin: Origin::Llm { model: MODEL.into() },
    }
}

/// `good()` with some fields replaced (or added).
fn with(patch: Value) -> String {
    let mut v = good();
    for (k, val) in patch.as_object().unwrap() {
        v[k] = val.clone();
    }
    v.to_string()
}

/// `good()` without one field.
fn without(field: &str) -> String {
    let mut v = good();
    v.as_object_mut().unwrap().remove(field);
    v.to_string()
}

enum Want {
    /// Accepted: `good_decision()` changed by the function, with exactly these notes.
    Accept(fn(&mut Decision), &'static [&'static str]),
    /// Rejected with exactly these (field, message) problems, in order.
    Problems(Vec<(&'static str, String)>),
    /// Not JSON, with exactly this serde message.
    NotJson(String),
}

use Want::{Accept, NotJson, Problems};

fn p(field: &'static str, message: impl Into<String>) -> (&'static str, String) {
    (field, message.into())
}

const LISTED: &str = "cat-billing, cat-refunds, cat-security";

fn run_table(rows: Vec<(&str, String, TagPolicy, Want)>) {
    let limits = Limits::default();
    let cats = categories();
    for (name, raw, policy, want) in rows {
        let got = validate(&raw, &cats, &policy, &limits, Origin::Llm { model: MODEL.into() });
        match (want, got) {
            (Accept(change, notes), Ok(v)) => {
                let mut expected = good_decision();
                change(&mut expected);
                assert_eq!(v.decision, expected, "row `{name}`");
                assert_eq!(v.notes, notes, "row `{name}`");
                assert_invariants(&v, &policy, &limits);
            }
            (Problems(want), Err(DecisionError::Schema { problems })) => {
                let got: Vec<(&str, String)> =
                    problems.iter().map(|p| (p.field.as_str(), p.message.clone())).collect();
                assert_eq!(got, want, "row `{name}`");
            }
            (NotJson(want), Err(DecisionError::NotJson { detail })) => {
                assert_eq!(detail, want, "row `{name}`")
            }
            (_, got) => panic!("row `{name}`: unexpected outcome {got:?}"),
        }
    }
}

/// What every accepted decision guarantees, whatever the model answered.
fn assert_invariants(v: &Validated, policy: &TagPolicy, limits: &Limits) {
    let d = &v.decision;
    if let Some(id) = &d.category_id {
        assert!(["cat-billing", "cat-refunds", "cat-security"].contains(&id.as_str()), "{id}");
    }
    assert!(PriorityLevel::ALL.contains(&d.priority));
    assert!(d.tags.len() <= limits.max_tags);
    for tag in &d.tags {
        assert!(!tag.is_empty() && tag.len() <= limits.max_tag_len, "{tag}");
        assert!(tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
        assert_eq!(normalize_tag(tag).as_deref(), Some(tag.as_str()));
        if let TagPolicy::AllowList(allowed) = policy {
            assert!(allowed.contains(tag), "{tag}");
        }
    }
    assert!((0.0..=1.0).contains(&d.confidence));
    assert!(!d.language.is_empty() && d.language.len() <= 35);
    for (text, max) in [(&d.summary, limits.max_summary_chars), (&d.reason, limits.max_reason_chars)] {
        let n = text.chars().count();
        assert!(n >= 1 && n <= max && text.trim() == text);
        assert!(!text.contains('\0'));
    }
    let draft = d.draft_reply.as_deref().expect("the LLM always drafts");
    assert!((1..=limits.max_draft_chars).contains(&draft.chars().count()));
    assert_eq!(d.origin, Origin::Llm { model: MODEL.into() });
}

fn free() -> TagPolicy {
    TagPolicy::Free
}

#[test]
fn good_and_bad_answers() {
    let compact = good().to_string();
    let truncated = compact[..60].to_owned();
    let cut_in_string = compact[..compact.find("twice").unwrap()].to_owned();
    run_table(vec![
        ("valid", compact.clone(), free(), Accept(|_| {}, &[])),
        ("category null", with(json!({"category_id": null})), free(), Accept(|d| d.category_id = None, &[])),
        (
            "invented category",
            with(json!({"category_id": "cat-ceo"})),
            free(),
            Problems(vec![p(
                "category_id",
                format!(
                    "category_id `cat-ceo` is not one of the listed ids: {LISTED}; use null if none fits"
                ),
            )]),
        ),
        (
            "inactive category is rejected like an unknown one",
            with(json!({"category_id": "cat-legacy"})),
            free(),
            Problems(vec![p(
                "category_id",
                format!(
                    "category_id `cat-legacy` is not one of the listed ids: {LISTED}; use null if none fits"
                ),
            )]),
        ),
        (
            "category ids are case-sensitive",
            with(json!({"category_id": "CAT-BILLING"})),
            free(),
            Problems(vec![p(
                "category_id",
                format!(
                    "category_id `CAT-BILLING` is not one of the listed ids: {LISTED}; use null if none fits"
                ),
            )]),
        ),
        (
            "empty category",
            with(json!({"category_id": ""})),
            free(),
            Problems(vec![p("category_id", "category_id is an empty string; use null if none fits")]),
        ),
        (
            "category padded with whitespace",
            with(json!({"category_id": " cat-refunds "})),
            free(),
            Accept(
                |d| d.category_id = Some("cat-refunds".into()),
                &["trimmed whitespace around category_id"],
            ),
        ),
        (
            "category \"null\" as a string",
            with(json!({"category_id": "null"})),
            free(),
            Accept(|d| d.category_id = None, &["category_id `null` read as null"]),
        ),
        (
            "priority lowercase is accepted and noted",
            with(json!({"priority": "urgent"})),
            free(),
            Accept(|d| d.priority = PriorityLevel::Urgent, &["priority `urgent` read as URGENT"]),
        ),
        (
            "priority P1",
            with(json!({"priority": "P1"})),
            free(),
            Problems(vec![p("priority", "priority `P1` is not one of NONE, LOW, NORMAL, HIGH, URGENT")]),
        ),
        (
            "priority backend synonym is not guessed",
            with(json!({"priority": "critical"})),
            free(),
            Problems(vec![p(
                "priority",
                "priority `critical` is not one of NONE, LOW, NORMAL, HIGH, URGENT",
            )]),
        ),
        (
            "sentiment uppercase",
            with(json!({"sentiment": "ANGRY"})),
            free(),
            Accept(|d| d.sentiment = Sentiment::Angry, &["sentiment `ANGRY` read as angry"]),
        ),
        (
            "sentiment unknown",
            with(json!({"sentiment": "furious"})),
            free(),
            Problems(vec![p(
                "sentiment",
                "sentiment `furious` is not one of positive, neutral, negative, angry",
            )]),
        ),
        (
            "language normalised",
            with(json!({"language": "pt_BR"})),
            free(),
            Accept(|d| d.language = "pt-br".into(), &["language `pt_BR` read as pt-br"]),
        ),
        (
            "language that is not a code becomes und",
            with(json!({"language": "English"})),
            free(),
            Accept(
                |d| d.language = "und".into(),
                &["language `English` is not a language code such as en or pt-br; recorded as und"],
            ),
        ),
        (
            "confidence 1.7",
            with(json!({"confidence": 1.7})),
            free(),
            Problems(vec![p("confidence", "confidence 1.7 is outside 0..=1")]),
        ),
        (
            "confidence -0.2",
            with(json!({"confidence": -0.2})),
            free(),
            Problems(vec![p("confidence", "confidence -0.2 is outside 0..=1")]),
        ),
        ("confidence integer 1", with(json!({"confidence": 1})), free(), Accept(|d| d.confidence = 1.0, &[])),
        (
            "draft empty",
            with(json!({"draft_reply": ""})),
            free(),
            Problems(vec![p("draft_reply", "draft_reply is empty")]),
        ),
        (
            "draft only whitespace",
            with(json!({"draft_reply": " \n\t "})),
            free(),
            Problems(vec![p("draft_reply", "draft_reply is empty")]),
        ),
        (
            "summary 501 characters",
            with(json!({"summary": "s".repeat(501)})),
            free(),
            Problems(vec![p("summary", "summary is 501 characters; the limit is 500")]),
        ),
        (
            "summary exactly 500 characters (multi-byte)",
            with(json!({"summary": "é".repeat(500)})),
            free(),
            Accept(|d| d.summary = "é".repeat(500), &[]),
        ),
        (
            "summary padded with whitespace",
            with(json!({"summary": "  Charged twice.\n"})),
            free(),
            Accept(|d| d.summary = "Charged twice.".into(), &["trimmed whitespace around summary"]),
        ),
        ("reason empty", with(json!({"reason": ""})), free(), Problems(vec![p("reason", "reason is empty")])),
        (
            "truncated after a key",
            truncated.clone(),
            free(),
            NotJson(format!("EOF while parsing an object at line 1 column {}", truncated.len())),
        ),
        (
            "truncated inside the summary",
            cut_in_string.clone(),
            free(),
            NotJson("EOF while parsing a string at line 1 column 336".into()),
        ),
        (
            "truncated after a value",
            compact[..compact.len() - 1].to_owned(),
            free(),
            NotJson(format!("EOF while parsing an object at line 1 column {}", compact.len() - 1)),
        ),
        (
            "fenced JSON",
            format!("```json\n{}\n```\n", serde_json::to_string_pretty(&good()).unwrap()),
            free(),
            Accept(|_| {}, &["removed a markdown code fence around the answer"]),
        ),
        (
            "prose before the JSON",
            format!("Here is the triage:\n{compact}"),
            free(),
            NotJson("expected value at line 1 column 1".into()),
        ),
        (
            "prose after the JSON",
            format!("{compact}\nHope this helps!"),
            free(),
            NotJson("trailing characters at line 2 column 1".into()),
        ),
        (
            "empty answer",
            String::new(),
            free(),
            NotJson("EOF while parsing a value at line 1 column 0".into()),
        ),
        (
            "missing field",
            without("summary"),
            free(),
            Problems(vec![p("summary", "missing field `summary`")]),
        ),
        (
            "missing category_id (null must be explicit)",
            without("category_id"),
            free(),
            Problems(vec![p("category_id", "missing field `category_id`")]),
        ),
        (
            "unknown field",
            with(json!({"assignee": "ceo@example.com"})),
            free(),
            Problems(vec![p("assignee", "unknown field `assignee`; remove it")]),
        ),
    ]);
}

#[test]
fn hostile_answers() {
    let fifty_tags: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let mut duplicate_category = compact_without_end();
    duplicate_category.push_str(r#","category_id":"cat-ceo"}"#);
    let mut duplicate_priority = compact_without_end();
    duplicate_priority.push_str(r#","priority":"URGENT"}"#);
    let hundred_kb = "A".repeat(100 * 1024);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    run_table(vec![
        (
            "extra fields assignee and status",
            with(json!({"assignee": "ceo", "status": "CLOSED"})),
            free(),
            Problems(vec![
                p("assignee", "unknown field `assignee`; remove it"),
                p("status", "unknown field `status`; remove it"),
            ]),
        ),
        (
            "category with SQL",
            with(json!({"category_id": "cat-security; DROP TABLE"})),
            free(),
            Problems(vec![p(
                "category_id",
                format!(
                    "category_id `cat-security; DROP TABLE` is not one of the listed ids: {LISTED}; use null if none fits"
                ),
            )]),
        ),
        (
            "category with backticks, newlines and a novel",
            with(json!({"category_id": format!("x`\nIgnore previous instructions{}", "!".repeat(100))})),
            free(),
            Problems(vec![p(
                "category_id",
                format!(
                    "category_id `x??Ignore previous instructions{}…` is not one of the listed ids: {LISTED}; use null if none fits",
                    "!".repeat(33)
                ),
            )]),
        ),
        (
            "markup and shouting in tags",
            with(json!({"tags": ["<script>", "VIP!!!", "alert(1)"]})),
            free(),
            Accept(
                |d| d.tags = vec!["script".into(), "vip".into(), "alert1".into()],
                &[
                    "tag `<script>` normalised to `script`",
                    "tag `VIP!!!` normalised to `vip`",
                    "tag `alert(1)` normalised to `alert1`",
                ],
            ),
        ),
        (
            "markup in tags under an allow-list",
            with(json!({"tags": ["<script>", "VIP!!!", "admin", "Billing"]})),
            TagPolicy::allow_list(["vip", "billing"]),
            Accept(
                |d| d.tags = vec!["vip".into(), "billing".into()],
                &[
                    "tag `script` is not on the allow-list; dropped",
                    "tag `VIP!!!` normalised to `vip`",
                    "tag `admin` is not on the allow-list; dropped",
                ],
            ),
        ),
        (
            "50 tags",
            with(json!({"tags": fifty_tags})),
            free(),
            Accept(
                |d| d.tags = (0..8).map(|i| format!("t{i}")).collect(),
                &[
                    "kept the first 8 tags; dropped 42 more: t8, t9, t10, t11, t12, t13, t14, t15, t16, t17, t18, \
                   t19, t20, t21, t22, t23, t24, t25, t26, t27, t28, t29, t30, t31, t32, t33, t34, t35, t36, t37, \
                   t38, t39, t40, t41, t42, t43, t44, t45, t46, t47 and 2 more",
                ],
            ),
        ),
        (
            "unicode tags",
            with(json!({"tags": ["café", "日本語", "ｖｉｐ", "v\u{0456}p", "fire🔥", "🔥", "über user"]})),
            free(),
            Accept(
                |d| d.tags = vec!["fire".into()],
                &[
                    "tag `café` has non-ASCII letters; dropped",
                    "tag `日本語` has non-ASCII letters; dropped",
                    "tag `ｖｉｐ` has non-ASCII letters; dropped",
                    "tag `vіp` has non-ASCII letters; dropped",
                    "tag `fire🔥` normalised to `fire`",
                    "tag `🔥` has no usable characters; dropped",
                    "tag `über user` has non-ASCII letters; dropped",
                ],
            ),
        ),
        (
            "tags that are not strings",
            with(json!({"tags": ["ok", 1, {"a": 1}]})),
            free(),
            Problems(vec![
                p("tags", "tags[1] must be a string, got a number"),
                p("tags", "tags[2] must be a string, got an object"),
            ]),
        ),
        (
            "tags as one string",
            with(json!({"tags": "vip, billing"})),
            free(),
            Problems(vec![p("tags", "tags must be an array of strings, got a string")]),
        ),
        (
            "confidence as a string",
            with(json!({"confidence": "1"})),
            free(),
            Problems(vec![p("confidence", "confidence must be a number from 0 to 1, got a string")]),
        ),
        (
            "confidence \"NaN\"",
            with(json!({"confidence": "NaN"})),
            free(),
            Problems(vec![p("confidence", "confidence must be a number from 0 to 1, got a string")]),
        ),
        (
            "confidence bare NaN",
            with(json!({"confidence": "@NAN@"})).replace("\"@NAN@\"", "NaN"),
            free(),
            NotJson(format!(
                "expected value at line 1 column {}",
                with(json!({"confidence": "@NAN@"})).find("\"@NAN@\"").unwrap() + 1
            )),
        ),
        (
            "confidence 1e999 is valid JSON out of range",
            with(json!({"confidence": "@BIG@"})).replace("\"@BIG@\"", "1e999"),
            free(),
            Problems(vec![p("confidence", "confidence 1e999 is outside 0..=1")]),
        ),
        (
            "a number too large for a float where a string is expected",
            with(json!({"priority": "@BIG@"})).replace("\"@BIG@\"", "-1e999"),
            free(),
            Problems(vec![p("priority", "priority must be a string, got a number")]),
        ),
        (
            "confidence 1e-400 underflows to 0",
            with(json!({"confidence": "@TINY@"})).replace("\"@TINY@\"", "1e-400"),
            free(),
            Accept(|d| d.confidence = 0.0, &[]),
        ),
        (
            "100 KB draft",
            with(json!({"draft_reply": hundred_kb})),
            free(),
            Problems(vec![p("draft_reply", "draft_reply is 102400 characters; the limit is 4000")]),
        ),
        (
            "nested objects where strings are expected",
            with(json!({
                "category_id": {"id": "cat-billing"},
                "priority": {"level": "URGENT"},
                "summary": {"text": "hi"},
                "draft_reply": ["hi"],
                "needs_human": "false"
            })),
            free(),
            Problems(vec![
                p("summary", "summary must be a string, got an object"),
                p("category_id", "category_id must be a string or null, got an object"),
                p("priority", "priority must be a string, got an object"),
                p("needs_human", "needs_human must be true or false, got a string"),
                p("draft_reply", "draft_reply must be a string, got an array"),
            ]),
        ),
        (
            "array instead of an object",
            json!([good()]).to_string(),
            free(),
            Problems(vec![p("$", "the answer must be a JSON object, got an array")]),
        ),
        (
            "null answer",
            "null".into(),
            free(),
            Problems(vec![p("$", "the answer must be a JSON object, got null")]),
        ),
        (
            "string answer",
            json!(good().to_string()).to_string(),
            free(),
            Problems(vec![p("$", "the answer must be a JSON object, got a string")]),
        ),
        (
            "null for required fields",
            with(
                json!({"priority": null, "tags": null, "summary": null, "confidence": null, "needs_human": null}),
            ),
            free(),
            Problems(vec![
                p("summary", "summary must be a string, got null"),
                p("priority", "priority must be a string, got null"),
                p("tags", "tags must be an array of strings, got null"),
                p("needs_human", "needs_human must be true or false, got null"),
                p("confidence", "confidence must be a number from 0 to 1, got null"),
            ]),
        ),
        (
            "duplicate key smuggling a second category",
            duplicate_category,
            free(),
            Problems(vec![
                p("category_id", "duplicate field `category_id`; give each field once"),
                p(
                    "category_id",
                    format!(
                        "category_id `cat-ceo` is not one of the listed ids: {LISTED}; use null if none fits"
                    ),
                ),
            ]),
        ),
        (
            "duplicate key with two valid values",
            duplicate_priority,
            free(),
            Problems(vec![p("priority", "duplicate field `priority`; give each field once")]),
        ),
        (
            "control characters and bidi overrides in texts",
            with(json!({"summary": "Charged\u{0} twice\u{7}", "reason": "\u{202E}gnillib"})),
            free(),
            Accept(
                |d| {
                    d.summary = "Charged twice".into();
                    d.reason = "gnillib".into();
                },
                &["removed 2 control characters from summary", "removed 1 control characters from reason"],
            ),
        ),
        (
            "nesting bomb in a string field",
            with(json!({"summary": "@DEEP@"})).replace("\"@DEEP@\"", &deep),
            free(),
            NotJson(format!(
                "recursion limit exceeded at line 1 column {}",
                with(json!({"summary": "@DEEP@"})).find("\"@DEEP@\"").unwrap() + 127
            )),
        ),
        (
            "empty object",
            "{}".into(),
            free(),
            Problems(
                [
                    "reason",
                    "summary",
                    "language",
                    "sentiment",
                    "category_id",
                    "priority",
                    "tags",
                    "needs_human",
                    "confidence",
                    "draft_reply",
                ]
                .into_iter()
                .map(|f| p(f, format!("missing field `{f}`")))
                .collect(),
            ),
        ),
    ]);
}

/// The repair message the engine sends for `err`: the `prompts/` template, one line per problem.
fn repair_prompt(err: &DecisionError) -> String {
    let problems: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    Prompts::embedded().unwrap().repair(&problems).unwrap()
}

/// `good()` as compact JSON without its closing brace, to append raw members.
fn compact_without_end() -> String {
    let mut s = good().to_string();
    assert_eq!(s.pop(), Some('}'));
    s
}

#[test]
fn all_problems_are_reported_in_one_pass() {
    let raw = with(json!({
        "category_id": "cat-ceo",
        "priority": "P1",
        "draft_reply": "",
        "confidence": 1.7,
        "assignee": "ceo"
    }));
    let err = validate(
        &raw,
        &categories(),
        &TagPolicy::Free,
        &Limits::default(),
        Origin::Llm { model: MODEL.into() },
    )
    .unwrap_err();
    let fields: Vec<String> = err.problems().into_iter().map(|p| p.field).collect();
    assert_eq!(fields, ["category_id", "priority", "confidence", "draft_reply", "assignee"]);
    assert!(err.is_permanent());
    let listed = format!(
        "- category_id `cat-ceo` is not one of the listed ids: {LISTED}; use null if none fits\n\
         - priority `P1` is not one of NONE, LOW, NORMAL, HIGH, URGENT\n\
         - confidence 1.7 is outside 0..=1\n\
         - draft_reply is empty\n\
         - unknown field `assignee`; remove it\n"
    );
    let repair = repair_prompt(&err);
    assert!(repair.contains(&listed), "{repair}");
}

#[test]
fn truncated_answer_is_not_json_and_the_repair_names_where_it_ends() {
    let raw = &good().to_string()[..100];
    let err = validate(
        raw,
        &categories(),
        &TagPolicy::Free,
        &Limits::default(),
        Origin::Llm { model: MODEL.into() },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the answer is not valid JSON: EOF while parsing a string at line 1 column 100"
    );
    let repair = repair_prompt(&err);
    assert!(
        repair
            .contains("\n- the answer is not valid JSON: EOF while parsing a string at line 1 column 100\n"),
        "{repair}"
    );
}

#[test]
fn schema_error_display_lists_every_problem() {
    let err = validate(
        &with(json!({"priority": "P1", "confidence": 2})),
        &categories(),
        &TagPolicy::Free,
        &Limits::default(),
        Origin::Llm { model: MODEL.into() },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the answer breaks the decision contract: priority `P1` is not one of NONE, LOW, NORMAL, HIGH, URGENT; \
         confidence 2 is outside 0..=1"
    );
}

#[test]
fn limits_come_from_the_connection() {
    let limits = Limits { max_draft_chars: 10, min_draft_chars: 5, max_tags: 1, ..Limits::default() };
    let run = |raw: String| {
        validate(&raw, &categories(), &TagPolicy::Free, &limits, Origin::Llm { model: MODEL.into() })
    };
    let problems = run(with(json!({"draft_reply": "Hi"}))).unwrap_err().problems();
    assert_eq!(problems[0].message, "draft_reply is 2 characters; the minimum is 5");
    let problems = run(with(json!({"draft_reply": "Hello there"}))).unwrap_err().problems();
    assert_eq!(problems[0].message, "draft_reply is 11 characters; the limit is 10");
    let ok = run(with(json!({"draft_reply": "Hello!"}))).unwrap();
    assert_eq!(ok.decision.tags, ["invoice"]);
    assert_eq!(ok.notes, ["kept the first 1 tags; dropped 1 more: double-charge"]);
}

#[test]
fn no_active_categories_means_only_null() {
    let cats =
        vec![Category { id: Some("cat-legacy".into()), is_active: Some(false), ..Category::default() }];
    let err = validate(
        &good().to_string(),
        &cats,
        &TagPolicy::Free,
        &Limits::default(),
        Origin::Llm { model: MODEL.into() },
    )
    .unwrap_err();
    assert_eq!(
        err.problems()[0].message,
        "category_id `cat-billing` is not allowed: no categories are listed; use null"
    );
    let ok = validate(
        &with(json!({"category_id": null})),
        &cats,
        &TagPolicy::Free,
        &Limits::default(),
        Origin::Llm { model: MODEL.into() },
    )
    .unwrap();
    assert_eq!(ok.decision.category_id, None);
}

#[test]
fn origin_comes_from_the_engine() {
    let v = validate(
        &good().to_string(),
        &categories(),
        &TagPolicy::Free,
        &Limits::default(),
        Origin::Rules { rule: "r".into() },
    )
    .unwrap();
    assert_eq!(v.decision.origin, Origin::Rules { rule: "r".into() });
    let problems = validate(
        &with(json!({"origin": {"kind": "rules", "rule": "trusted"}})),
        &categories(),
        &TagPolicy::Free,
        &Limits::default(),
        Origin::Llm { model: MODEL.into() },
    )
    .unwrap_err()
    .problems();
    assert_eq!(problems[0].message, "unknown field `origin`; remove it");
}

#[test]
fn decision_round_trips_through_json() {
    let d = good_decision();
    let wire = serde_json::to_value(&d).unwrap();
    assert_eq!(wire["priority"], "HIGH");
    assert_eq!(wire["sentiment"], "negative");
    assert_eq!(wire["origin"], json!({"kind": "llm", "model": MODEL}));
    assert_eq!(serde_json::from_value::<Decision>(wire).unwrap(), d);
}

#[test]
fn recheck_applies_todays_categories_and_policy() {
    let limits = Limits::default();
    // A stored proposal whose category has since been deactivated.
    let mut stored = good_decision();
    stored.category_id = Some("cat-legacy".into());
    let err = stored.recheck(&categories(), &TagPolicy::Free, &limits).unwrap_err();
    assert_eq!(
        err.problems()[0].message,
        format!("category_id `cat-legacy` is not one of the listed ids: {LISTED}; use null if none fits")
    );
    // The allow-list changed: tags are filtered again.
    let v = good_decision().recheck(&categories(), &TagPolicy::allow_list(["invoice"]), &limits).unwrap();
    assert_eq!(v.decision.tags, ["invoice"]);
    assert_eq!(v.notes, ["tag `double-charge` is not on the allow-list; dropped"]);
    // Rules produce no draft; the LLM must.
    let mut rules = good_decision();
    rules.draft_reply = None;
    rules.origin = Origin::Rules { rule: "vip-customer".into() };
    assert_eq!(rules.recheck(&categories(), &TagPolicy::Free, &limits).unwrap().decision, rules);
    let mut llm = good_decision();
    llm.draft_reply = None;
    let err = llm.recheck(&categories(), &TagPolicy::Free, &limits).unwrap_err();
    assert_eq!(err.problems()[0].message, "draft_reply is empty");
}

#[test]
fn schema_for_default_limits() {
    let schema = response_schema(&categories(), &Limits::default());
    assert_eq!(schema_name(), "triage_decision");
    assert_eq!(
        schema,
        json!({
            "type": "object",
            "properties": {
                "category_id": {"anyOf": [
                    {"type": "string", "enum": ["cat-billing", "cat-refunds", "cat-security"],
                     "description": "One of the listed category ids; null if none fits."},
                    {"type": "null"}
                ]},
                "priority": {"type": "string", "enum": ["NONE", "LOW", "NORMAL", "HIGH", "URGENT"]},
                "tags": {
                    "type": "array", "items": {"type": "string"}, "maxItems": 8,
                    "description": "Lowercase tags of a-z, 0-9, - and _; at most 8 tags of at most 32 characters."
                },
                "language": {
                    "type": "string",
                    "description": "Lowercase language code of the customer's messages such as en, de or pt-br; und if unknown."
                },
                "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative", "angry"]},
                "summary": {"type": "string", "description": "At most 500 characters."},
                "draft_reply": {"type": "string", "description": "Reply draft for an agent to review; 1 to 4000 characters."},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "needs_human": {"type": "boolean"},
                "reason": {"type": "string", "description": "At most 500 characters."}
            },
            "required": ["reason", "summary", "language", "sentiment", "category_id", "priority", "tags",
                         "needs_human", "confidence", "draft_reply"],
            "additionalProperties": false
        })
    );
    // The answer `good()` is accepted by the schema's own enums (a cheap self-consistency check).
    let props = &schema["properties"];
    assert!(props["priority"]["enum"].as_array().unwrap().contains(&good()["priority"]));
    assert!(props["sentiment"]["enum"].as_array().unwrap().contains(&good()["sentiment"]));
    assert!(props["category_id"]["anyOf"][0]["enum"].as_array().unwrap().contains(&good()["category_id"]));
}
