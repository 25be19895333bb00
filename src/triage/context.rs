//! What the model sees of a ticket: gathered through the normalized layer (read only), cleaned,
//! and fitted to a token budget.
//!
//! Budget rules: the subject, the description and the newest customer message are always kept
//! (cut from the middle only when one alone exceeds the budget); older notes are dropped oldest
//! first and replaced by one "[N earlier notes omitted]" line.

use futures::{StreamExt, TryFutureExt, TryStreamExt};
use serde::Serialize;

use super::{clean::clean_message, privacy::Pseudonymiser, tokens::Tokenizer};
use crate::{
    http::clip_with_ellipsis,
    ticketing::{
        AuthorKind, Category, Customer, ListQuery, Note, PriorityLevel, SortField, SortOrder, Ticket,
        TicketReader, TicketingError, all_notes, model::format_timestamp,
    },
};

/// Everything read from the helpdesk for one ticket, before cleaning.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The ticket.
    pub ticket: Ticket,
    /// Its customer, when the ticket names one that still exists.
    pub customer: Option<Customer>,
    /// Every note, oldest first.
    pub notes: Vec<Note>,
    /// The helpdesk's categories (active and inactive).
    pub categories: Vec<Category>,
}

impl Gathered {
    /// Bytes of the texts a prompt is built from: subject, description and notes.
    pub fn text_bytes(&self) -> usize {
        let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        len(&self.ticket.subject)
            + len(&self.ticket.description)
            + self.notes.iter().map(|n| len(&n.description)).sum::<usize>()
    }
}

/// Reads a ticket, its customer, its newest `max_notes` notes (in order of creation) and the
/// categories, concurrently.
pub async fn gather(
    helpdesk: &dyn TicketReader,
    ticket_id: &str,
    max_notes: usize,
) -> Result<Gathered, TicketingError> {
    let ticket = helpdesk.get_ticket(ticket_id).await?;
    let customer = async {
        match ticket.customer_id.as_deref() {
            // A deleted customer should not stop triage: it is data, not a failure.
            Some(id) => match helpdesk.get_customer(id).await {
                Ok(c) => Ok(Some(c)),
                Err(TicketingError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    };
    // Newest first, so a thread of thousands stops after `max_notes` (a page or two).
    let newest = ListQuery {
        sort: Some(SortField::CreatedAt),
        order: Some(SortOrder::Desc),
        ..ListQuery::notes_of(ticket_id)
    };
    let notes = all_notes(helpdesk, newest).take(max_notes).try_collect::<Vec<_>>().map_ok(|mut notes| {
        notes.sort_by_key(|n| n.created_at);
        notes
    });
    let (customer, notes, categories) = tokio::try_join!(customer, notes, helpdesk.list_categories())?;
    Ok(Gathered { ticket, customer, notes, categories })
}

/// One cleaned message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Who wrote it.
    pub author: AuthorKind,
    /// When (RFC 3339), if known.
    pub at: Option<String>,
    /// Cleaned text.
    pub text: String,
    /// Tokens of `text`.
    pub tokens: usize,
    /// Whether the text was cut from the middle to fit.
    pub truncated: bool,
}

/// An item of the conversation as rendered: a message, or the marker for dropped notes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A kept message.
    Message(Message),
    /// `count` older notes were left out to fit the budget.
    Omitted {
        /// How many.
        count: usize,
    },
}

/// The customer as the model sees it: no emails or phone numbers, which triage does not need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerView {
    /// Display name.
    pub name: Option<String>,
    /// Tags such as `vip`.
    pub tags: Vec<String>,
}

/// A category as listed to the model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CategoryView {
    /// Its id (the only value the model may answer with).
    pub id: String,
    /// Name.
    pub name: String,
    /// What belongs in it.
    pub description: String,
}

/// Token counts of the context's parts, for reports and the benchmark. Once the prompt is
/// rendered, `ticket` and `notes_kept` are the tokens that begin inside those texts where they
/// sit in it ([`TicketContext::count_in_prompt`]); before, each text counted on its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenBreakdown {
    /// Subject + description as kept.
    pub ticket: usize,
    /// Kept notes.
    pub notes_kept: usize,
    /// Notes dropped to fit.
    pub notes_dropped: usize,
    /// Tokens the dropped notes would have cost.
    pub dropped_tokens: usize,
    /// Characters removed by cleaning (HTML, quotes, signatures).
    pub chars_removed_by_cleaning: usize,
}

/// A ticket ready for the prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketContext {
    /// Ticket id.
    pub ticket_id: String,
    /// Subject (cleaned).
    pub subject: String,
    /// Description (cleaned, possibly cut from the middle).
    pub description: String,
    /// Current priority on the normalized scale.
    pub priority: PriorityLevel,
    /// Current tags.
    pub tags: Vec<String>,
    /// When the ticket was opened.
    pub created_at: Option<String>,
    /// The channel it came in by.
    pub source: Option<String>,
    /// The customer.
    pub customer: Option<CustomerView>,
    /// The conversation, oldest first.
    pub conversation: Vec<Entry>,
    /// Active categories, in the helpdesk's order.
    pub categories: Vec<CategoryView>,
    /// Token figures.
    #[serde(skip)]
    pub breakdown: TokenBreakdown,
}

/// How to build a context.
#[derive(Debug, Clone, Copy)]
pub struct ContextOptions {
    /// Clean HTML, quoted history and signatures (off only to measure what cleaning saves).
    pub clean: bool,
    /// Tokens available to the conversation (subject, description and notes); `None` keeps all.
    pub budget: Option<usize>,
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self { clean: true, budget: Some(6000) }
    }
}

/// Notes read per ticket unless `[triage] max_notes` says otherwise.
pub const DEFAULT_MAX_NOTES: usize = 200;

/// Token cost of one rendered message beyond its text (author, date, separators).
const MESSAGE_FRAMING_TOKENS: usize = 16;

// Single fields outside the conversation's budget, which a broken or hostile ticket can make
// arbitrarily long: each is cut to a size no real one reaches.
/// Longest subject kept, in characters.
const MAX_SUBJECT_CHARS: usize = 500;
/// Longest customer name kept, in characters.
const MAX_NAME_CHARS: usize = 120;
/// Longest tag kept, in characters.
const MAX_TAG_CHARS: usize = 64;
/// Most tags kept, of the ticket and of the customer.
const MAX_TAGS: usize = 50;

/// At most [`MAX_TAGS`] tags, each cut to [`MAX_TAG_CHARS`].
fn bounded_tags(tags: &[String]) -> Vec<String> {
    tags.iter().take(MAX_TAGS).map(|t| clip_with_ellipsis(t, MAX_TAG_CHARS).into_owned()).collect()
}

/// Builds the context from what was gathered: cleans every text and fits the conversation to
/// `opts.budget` tokens.
pub fn build(g: &Gathered, tok: &Tokenizer, opts: ContextOptions) -> TicketContext {
    fitted(unfitted(g, opts.clean), tok, opts.budget)
}

/// `whole` (from [`unfitted`]) with its messages counted and fitted to `budget` tokens, without
/// cleaning them again.
pub fn fitted(mut whole: TicketContext, tok: &Tokenizer, budget: Option<usize>) -> TicketContext {
    let messages = std::mem::take(&mut whole.conversation)
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::Message(mut m) => {
                m.tokens = tok.count(&m.text);
                Some(m)
            }
            Entry::Omitted { .. } => None,
        })
        .collect();
    // Counts made on the whole prompt, if any, do not carry over.
    whole.breakdown = TokenBreakdown {
        chars_removed_by_cleaning: whole.breakdown.chars_removed_by_cleaning,
        ..TokenBreakdown::default()
    };
    fit(&mut whole, messages, tok, budget);
    whole
}

/// The whole conversation, cleaned but not counted (every token figure is 0): for a prompt that
/// fits as it is, whose texts are then counted where they sit in it
/// ([`TicketContext::count_in_prompt`]).
pub fn unfitted(g: &Gathered, clean: bool) -> TicketContext {
    let (mut ctx, messages) = cleaned(g, clean);
    ctx.conversation = messages.into_iter().map(Entry::Message).collect();
    ctx
}

/// The skeleton with the cleaned subject and description, and the cleaned non-empty messages
/// (uncounted).
fn cleaned(g: &Gathered, clean: bool) -> (TicketContext, Vec<Message>) {
    let mut removed = 0usize;
    let mut clean = |s: &str| -> String {
        if !clean {
            return s.trim().to_owned();
        }
        let c = clean_message(s);
        removed += s.len().saturating_sub(c.text.len());
        c.text
    };
    let subject = clean(g.ticket.subject.as_deref().unwrap_or_default());
    let subject = clip_with_ellipsis(&subject, MAX_SUBJECT_CHARS).into_owned();
    let description = clean(g.ticket.description.as_deref().unwrap_or_default());
    let messages: Vec<Message> = g
        .notes
        .iter()
        .map(|n| Message {
            author: n.author(),
            at: n.created_at.map(format_timestamp),
            text: clean(n.description.as_deref().unwrap_or_default()),
            tokens: 0,
            truncated: false,
        })
        .filter(|m| !m.text.is_empty())
        .collect();
    let mut ctx = skeleton(g);
    ctx.subject = subject;
    ctx.description = description;
    ctx.breakdown.chars_removed_by_cleaning = removed;
    (ctx, messages)
}

/// The ticket's metadata, customer and categories with no text or conversation: what every prompt
/// costs before the ticket's own words (used to work out the conversation's budget).
pub fn skeleton(g: &Gathered) -> TicketContext {
    TicketContext {
        ticket_id: g.ticket.id.clone().unwrap_or_default(),
        subject: String::new(),
        description: String::new(),
        priority: g.ticket.priority_level(),
        tags: bounded_tags(&g.ticket.tags),
        created_at: g.ticket.created_at.map(format_timestamp),
        source: g.ticket.source.as_deref().map(|s| clip_with_ellipsis(s, MAX_TAG_CHARS).into_owned()),
        customer: g.customer.as_ref().map(|c| CustomerView {
            name: c.name.as_deref().map(|n| clip_with_ellipsis(n, MAX_NAME_CHARS).into_owned()),
            tags: bounded_tags(&c.tags),
        }),
        conversation: Vec::new(),
        categories: g
            .categories
            .iter()
            .filter(|c| c.active())
            .filter_map(|c| {
                Some(CategoryView {
                    id: c.id.clone()?,
                    name: c.name.clone().unwrap_or_default(),
                    description: c.description.clone().unwrap_or_default(),
                })
            })
            .collect(),
        breakdown: TokenBreakdown::default(),
    }
}

/// Keeps as many of the newest messages as fit, pinning the newest customer message.
fn fit(ctx: &mut TicketContext, mut messages: Vec<Message>, tok: &Tokenizer, budget: Option<usize>) {
    let pinned = messages.iter().rposition(|m| m.author == AuthorKind::Customer);
    let Some(budget) = budget else {
        ctx.breakdown.ticket = tok.count(&ctx.subject) + tok.count(&ctx.description);
        ctx.breakdown.notes_kept = messages.iter().map(|m| m.tokens).sum();
        ctx.conversation = messages.into_iter().map(Entry::Message).collect();
        return;
    };

    // Pinned parts first: subject, description and the newest customer message share the budget,
    // each cut from the middle only if together they do not fit.
    let subject_tokens = tok.count(&ctx.subject);
    let mut must = subject_tokens + tok.count(&ctx.description) + MESSAGE_FRAMING_TOKENS;
    if let Some(i) = pinned {
        must += messages[i].tokens + MESSAGE_FRAMING_TOKENS;
    }
    if must > budget {
        let room = budget.saturating_sub(subject_tokens + 2 * MESSAGE_FRAMING_TOKENS);
        let share = match pinned {
            Some(_) => room / 2,
            None => room,
        };
        let desc_tokens = tok.count(&ctx.description);
        let pinned_tokens = pinned.map_or(0, |i| messages[i].tokens);
        // Give a short part its full size and the rest to the long one.
        let (desc_max, pin_max) = if desc_tokens <= share {
            (desc_tokens, room - desc_tokens)
        } else if pinned_tokens <= share {
            (room - pinned_tokens, pinned_tokens)
        } else {
            (share, room - share)
        };
        ctx.description = tok.truncate_middle(&ctx.description, desc_max);
        if let Some(i) = pinned {
            let m = &mut messages[i];
            if m.tokens > pin_max {
                m.text = tok.truncate_middle(&m.text, pin_max);
                m.tokens = tok.count(&m.text);
                m.truncated = true;
            }
        }
    }
    ctx.breakdown.ticket = subject_tokens + tok.count(&ctx.description);
    let mut used = ctx.breakdown.ticket + MESSAGE_FRAMING_TOKENS;
    if let Some(i) = pinned {
        used += messages[i].tokens + MESSAGE_FRAMING_TOKENS;
    }

    // Walk from the newest message back; once one does not fit, everything older is dropped too,
    // so the kept conversation is one contiguous recent stretch.
    let mut keep = vec![false; messages.len()];
    if let Some(i) = pinned {
        keep[i] = true;
    }
    let marker_cost = MESSAGE_FRAMING_TOKENS;
    for i in (0..messages.len()).rev() {
        if keep[i] {
            continue;
        }
        let cost = messages[i].tokens + MESSAGE_FRAMING_TOKENS;
        let reserve = if i > 0 { marker_cost } else { 0 };
        if used + cost + reserve <= budget {
            used += cost;
            keep[i] = true;
        } else {
            break;
        }
    }

    let mut conversation = Vec::with_capacity(messages.len() + 1);
    let mut dropped = 0;
    for (m, kept) in messages.into_iter().zip(keep) {
        if kept {
            ctx.breakdown.notes_kept += m.tokens;
            conversation.push(Entry::Message(m));
        } else {
            dropped += 1;
            ctx.breakdown.dropped_tokens += m.tokens;
        }
    }
    if dropped > 0 {
        conversation.insert(0, Entry::Omitted { count: dropped });
    }
    ctx.breakdown.notes_dropped = dropped;
    ctx.conversation = conversation;
}

impl TicketContext {
    /// Replaces personal data in the customer's name, the subject, the description and every
    /// message, in that order (so the customer is `[NAME_1]`); before fitting, so the budget is
    /// spent on the text the model gets. Metadata, tags and categories are left as they are.
    pub fn pseudonymise(&mut self, p: &mut Pseudonymiser<'_>) {
        if !p.is_active() {
            return;
        }
        if let Some(name) = self.customer.as_mut().and_then(|c| c.name.as_mut()) {
            *name = p.name(name);
        }
        p.replace(&mut self.subject);
        p.replace(&mut self.description);
        for entry in &mut self.conversation {
            if let Entry::Message(m) = entry {
                p.replace(&mut m.text);
            }
        }
    }

    /// Drops the oldest droppable message (never the newest customer message); false when none is left.
    pub fn drop_oldest(&mut self) -> bool {
        let pinned = self
            .conversation
            .iter()
            .rposition(|e| matches!(e, Entry::Message(m) if m.author == AuthorKind::Customer));
        let Some(i) = self
            .conversation
            .iter()
            .enumerate()
            .position(|(i, e)| matches!(e, Entry::Message(_)) && Some(i) != pinned)
        else {
            return false;
        };
        if let Entry::Message(m) = self.conversation.remove(i) {
            self.breakdown.notes_kept -= m.tokens;
            self.breakdown.dropped_tokens += m.tokens;
        }
        self.breakdown.notes_dropped += 1;
        match self.conversation.first_mut() {
            Some(Entry::Omitted { count }) => *count += 1,
            _ => self.conversation.insert(0, Entry::Omitted { count: 1 }),
        }
        true
    }

    /// Counts `prompt`, the user message rendered from this context, and fills in the token
    /// figures of the subject, the description and each message from that one encoding: each
    /// text gets the tokens that begin inside it where it sits in the prompt (found in template
    /// order; a text the template changed or left out is counted on its own). Returns the
    /// prompt's tokens.
    pub fn count_in_prompt(&mut self, prompt: &str, tok: &Tokenizer) -> usize {
        let mut cursor = 0;
        let mut locate = |text: &str| -> Option<std::ops::Range<usize>> {
            if text.is_empty() {
                return None;
            }
            let at = cursor + prompt.get(cursor..)?.find(text)?;
            cursor = at + text.len();
            Some(at..cursor)
        };
        let mut spans = Vec::with_capacity(self.conversation.len() + 2);
        let mut found = Vec::with_capacity(self.conversation.len() + 2);
        for text in self.texts() {
            let span = locate(text);
            found.push(span.is_some());
            spans.extend(span);
        }
        let (total, in_spans) = tok.count_spans(prompt, &spans);
        let mut in_spans = in_spans.into_iter();
        let mut counts = found
            .iter()
            .zip(self.texts())
            .map(|(found, text)| match found {
                true => in_spans.next().unwrap_or(0),
                false if text.is_empty() => 0,
                false => tok.count(text),
            })
            .collect::<Vec<_>>()
            .into_iter();
        let subject = counts.next().unwrap_or(0);
        let description = counts.next().unwrap_or(0);
        self.breakdown.ticket = subject + description;
        self.breakdown.notes_kept = 0;
        for entry in &mut self.conversation {
            if let Entry::Message(m) = entry {
                m.tokens = counts.next().unwrap_or(0);
                self.breakdown.notes_kept += m.tokens;
            }
        }
        total
    }

    /// The subject, the description and each kept message's text, in the template's order.
    fn texts(&self) -> impl Iterator<Item = &str> {
        [self.subject.as_str(), self.description.as_str()].into_iter().chain(
            self.conversation.iter().filter_map(|e| match e {
                Entry::Message(m) => Some(m.text.as_str()),
                Entry::Omitted { .. } => None,
            }),
        )
    }

    /// The newest customer message, if any was kept.
    pub fn newest_customer_message(&self) -> Option<&Message> {
        self.conversation.iter().rev().find_map(|e| match e {
            Entry::Message(m) if m.author == AuthorKind::Customer => Some(m),
            _ => None,
        })
    }

    /// Number of messages kept.
    pub fn kept_messages(&self) -> usize {
        self.conversation.iter().filter(|e| matches!(e, Entry::Message(_))).count()
    }
}
