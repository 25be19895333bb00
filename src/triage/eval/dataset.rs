//! A labelled evaluation set: one JSON object a line, each a ticket as the customer wrote it and
//! the triage a competent person would choose for it.
//!
//! ```json
//! {"id": "1001", "subject": "Charged twice", "body": "Please refund the extra one.",
//!  "notes": ["Any news?"],
//!  "expected": {"category": "cat-refunds", "priority": "NORMAL", "language": "en", "tags": ["refund"]}}
//! ```
//!
//! `body` (or `description`) is the ticket's description; `notes` (optional) are later messages,
//! oldest first, each a string (the customer's) or `{"author": "customer"|"agent"|"system",
//! "body": ...}`. `expected.category` is a category id of the helpdesk or `null` when none fits
//! (spam); `expected.priority` is one of NONE, LOW, NORMAL, HIGH, URGENT (any case). `language`
//! and `tags` are optional and only scored on the lines that have them. Blank lines are skipped.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ticketing::{AuthorKind, Category, Note, PriorityLevel, Ticket};

/// A dataset could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file is missing or unreadable.
    #[error("could not read the dataset {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a case.
    #[error("{path}, line {line}: {problem}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what a line looks like.
        problem: String,
    },
    /// The file holds no case.
    #[error(
        "the dataset {path} holds no case; write one JSON object a line (see README, \"Offline evaluation\")"
    )]
    Empty {
        /// The file.
        path: String,
    },
    /// An expected category is not an active category of the helpdesk.
    #[error(
        "{path}, line {line}: expected category `{category}` is not an active category of connection \
         `{connection}` (its categories: {known}); fix the line or evaluate against the connection whose helpdesk has it"
    )]
    UnknownCategory {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The category id of the line.
        category: String,
        /// The connection whose helpdesk was asked.
        connection: String,
        /// The helpdesk's active category ids.
        known: String,
    },
}

/// Who wrote a note of a case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteAuthor {
    /// The customer (a bare string note).
    #[default]
    Customer,
    /// An agent.
    Agent,
    /// An automation.
    System,
}

/// A later message of a case.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CaseNote {
    /// The customer's words.
    Text(String),
    /// A message with its author.
    Authored {
        /// Who wrote it.
        #[serde(default)]
        author: NoteAuthor,
        /// What was written.
        body: String,
    },
}

/// What the case should be triaged as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Category id, or `None` when no category fits. Required (`null` must be written).
    #[serde(deserialize_with = "Option::deserialize")]
    pub category: Option<String>,
    /// Priority.
    #[serde(deserialize_with = "priority")]
    pub priority: PriorityLevel,
    /// Language code, when labelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Tags that should be proposed, when labelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// One labelled ticket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Its name in reports (the line number when absent).
    #[serde(default)]
    pub id: Option<String>,
    /// Subject.
    #[serde(default)]
    pub subject: String,
    /// Description.
    #[serde(default, alias = "description")]
    pub body: String,
    /// Later messages, oldest first.
    #[serde(default)]
    pub notes: Vec<CaseNote>,
    /// The labels.
    pub expected: Expected,
    /// 1-based line of the file.
    #[serde(skip)]
    pub line: usize,
}

fn priority<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PriorityLevel, D::Error> {
    let word = String::deserialize(d)?;
    PriorityLevel::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(word.trim())).ok_or_else(|| {
        serde::de::Error::custom(format!("priority `{word}` is not one of NONE, LOW, NORMAL, HIGH, URGENT"))
    })
}

impl Case {
    /// Its name in reports: the id, or `line N`.
    pub fn name(&self) -> String {
        self.id.clone().unwrap_or_else(|| format!("line {}", self.line))
    }

    /// The ticket as the engine reads one from a helpdesk: the case's texts, no customer, and
    /// the helpdesk's `categories`.
    pub fn ticket(&self) -> (Ticket, Vec<Note>) {
        let ticket = Ticket {
            id: Some(self.name()),
            subject: Some(self.subject.clone()),
            description: Some(self.body.clone()),
            ..Ticket::default()
        };
        let notes = self
            .notes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let (author, body) = match n {
                    CaseNote::Text(body) => (NoteAuthor::Customer, body),
                    CaseNote::Authored { author, body } => (*author, body),
                };
                Note {
                    id: Some(format!("{}-{}", self.name(), i + 1)),
                    description: Some(body.clone()),
                    author_kind: Some(match author {
                        NoteAuthor::Customer => AuthorKind::Customer,
                        NoteAuthor::Agent => AuthorKind::Agent,
                        NoteAuthor::System => AuthorKind::System,
                    }),
                    ..Note::default()
                }
            })
            .collect();
        (ticket, notes)
    }
}

/// The cases of a JSONL file.
pub fn load(path: &Path) -> Result<Vec<Case>, DatasetError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| DatasetError::Read { path: path.display().to_string(), source })?;
    parse(&text, &path.display().to_string())
}

/// The cases of JSONL `text`; `path` names it in errors.
pub fn parse(text: &str, path: &str) -> Result<Vec<Case>, DatasetError> {
    let mut cases = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let mut case: Case = serde_json::from_str(raw).map_err(|e| DatasetError::Line {
            path: path.to_owned(),
            line: i + 1,
            // The file's line is named already; serde's "line 1" is the line within the line.
            problem: format!(
                "{}; a line is one JSON object such as {{\"subject\": \"...\", \"body\": \"...\", \
                 \"expected\": {{\"category\": \"cat-billing\", \"priority\": \"NORMAL\"}}}}",
                e.to_string().replace(" at line 1 column ", " at column ")
            ),
        })?;
        case.line = i + 1;
        cases.push(case);
    }
    if cases.is_empty() {
        return Err(DatasetError::Empty { path: path.to_owned() });
    }
    Ok(cases)
}

/// Checks that every expected category is an active category of the helpdesk.
pub fn check_categories(
    cases: &[Case],
    categories: &[Category],
    path: &str,
    connection: &str,
) -> Result<(), DatasetError> {
    let active: Vec<&str> =
        categories.iter().filter(|c| c.active()).filter_map(|c| c.id.as_deref()).collect();
    for case in cases {
        if let Some(category) = &case.expected.category
            && !active.contains(&category.as_str())
        {
            return Err(DatasetError::UnknownCategory {
                path: path.to_owned(),
                line: case.line,
                category: category.clone(),
                connection: connection.to_owned(),
                known: if active.is_empty() { "none".to_owned() } else { active.join(", ") },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str =
        r#"{"subject": "s", "body": "b", "expected": {"category": "cat-a", "priority": "high"}}"#;

    fn category(id: &str, active: bool) -> Category {
        Category { id: Some(id.into()), is_active: Some(active), ..Category::default() }
    }

    #[test]
    fn lines_become_cases_with_their_line_numbers() {
        let text = format!(
            "{LINE}\n\n{}\n",
            r#"{"id": "7", "subject": "x", "description": "d", "notes": ["more", {"author": "agent", "body": "ok"}],
               "expected": {"category": null, "priority": "LOW", "language": "en", "tags": ["t"]}}"#
                .replace('\n', " ")
        );
        let cases = parse(&text, "set.jsonl").unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(
            (cases[0].line, cases[0].name(), cases[0].expected.priority),
            (1, "line 1".into(), PriorityLevel::High)
        );
        let c = &cases[1];
        assert_eq!((c.line, c.name(), c.body.as_str()), (3, "7".into(), "d"));
        assert_eq!(c.expected.category, None);
        assert_eq!(c.expected.tags.as_deref(), Some(&["t".to_owned()][..]));
        let (ticket, notes) = c.ticket();
        assert_eq!(ticket.description.as_deref(), Some("d"));
        let authors: Vec<AuthorKind> = notes.iter().map(Note::author).collect();
        assert_eq!(authors, [AuthorKind::Customer, AuthorKind::Agent]);
    }

    #[test]
    fn a_bad_line_is_named_with_what_is_wrong() {
        let cases = [
            ("{\"subject\": \"s\", \"expected\": {\"priority\": \"LOW\"}}", "missing field `category`"),
            (
                "{\"subject\": \"s\", \"expected\": {\"category\": null, \"priority\": \"P1\"}}",
                "priority `P1`",
            ),
            (
                "{\"subjet\": \"s\", \"expected\": {\"category\": null, \"priority\": \"LOW\"}}",
                "unknown field `subjet`",
            ),
            ("not json", "expected ident at column 2;"),
        ];
        for (line, problem) in cases {
            let err = parse(&format!("{LINE}\n{line}\n"), "set.jsonl").unwrap_err().to_string();
            assert!(err.starts_with("set.jsonl, line 2: "), "{err}");
            assert!(err.contains(problem), "{err}");
        }
        let err = parse("\n\n", "set.jsonl").unwrap_err().to_string();
        assert!(err.contains("holds no case"), "{err}");
    }

    #[test]
    fn an_expected_category_the_helpdesk_lacks_names_the_line() {
        let cases = parse(&format!("{LINE}\n{}\n", LINE.replace("cat-a", "cat-gone")), "set.jsonl").unwrap();
        let helpdesk = [category("cat-a", true), category("cat-gone", false)];
        let err = check_categories(&cases, &helpdesk, "set.jsonl", "demo").unwrap_err().to_string();
        assert!(err.starts_with("set.jsonl, line 2: expected category `cat-gone`"), "{err}");
        assert!(err.contains("connection `demo` (its categories: cat-a)"), "{err}");
        assert!(check_categories(&cases[..1], &helpdesk, "set.jsonl", "demo").is_ok());
    }
}
