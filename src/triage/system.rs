//! The system message of each category list, rendered and counted once.
//!
//! It depends only on the connection's active categories (and on engine-wide settings), so every
//! ticket of a connection gets the same text; rendering 4–5 kB of template and tokenizing it
//! again for each ticket would be the largest fixed cost of building a prompt.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
};

use serde_json::Value;

use super::{
    context::CategoryView,
    prompt::{PromptError, PromptLimits, Prompts},
    tokens::Tokenizer,
};

/// Most category lists remembered; past it the cache starts over (a category list changes
/// rarely, so this only bounds memory against a helpdesk whose categories churn).
const MAX_ENTRIES: usize = 256;

/// A rendered system message and its token count.
#[derive(Debug, Clone)]
pub struct SystemMessage {
    /// The text.
    pub text: Arc<str>,
    /// Its tokens (content only, without the message framing).
    pub tokens: usize,
}

/// Entries by the hash of their category list (a bucket holds the lists that share a hash).
type Entries = HashMap<u64, Vec<(Vec<CategoryView>, SystemMessage)>>;

/// Rendered system messages by category list.
#[derive(Debug, Default)]
pub struct SystemMessages {
    entries: Mutex<Entries>,
}

impl SystemMessages {
    /// The system message for `categories`, rendered and counted on first use.
    pub fn get(
        &self,
        prompts: &Prompts,
        tokenizer: &Tokenizer,
        categories: &[CategoryView],
        limits: PromptLimits,
        schema: Option<&Value>,
    ) -> Result<SystemMessage, PromptError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        categories.hash(&mut h);
        let key = h.finish();
        let found = |entries: &Entries| {
            entries.get(&key)?.iter().find(|(c, _)| c == categories).map(|(_, m)| m.clone())
        };
        if let Some(m) = found(&self.lock()) {
            return Ok(m);
        }
        // Rendered outside the lock; two tickets racing on a new list both render, one is kept.
        let text = prompts.system(categories, limits, schema)?;
        let message = SystemMessage { tokens: tokenizer.count(&text), text: text.into() };
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let bucket = entries.entry(key).or_default();
        if !bucket.iter().any(|(c, _)| c == categories) {
            bucket.push((categories.to_vec(), message.clone()));
        }
        Ok(message)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The map holds only finished entries, so one left by a panicking thread is still valid.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn category(id: &str) -> CategoryView {
        CategoryView { id: id.into(), name: format!("Name of {id}"), description: "What goes here.".into() }
    }

    #[test]
    fn rendered_once_per_category_list() {
        let prompts = Prompts::embedded().unwrap();
        let tok = Tokenizer::for_model("gpt-4o-mini");
        let limits = PromptLimits { max_tags: 8, max_draft_chars: 4000 };
        let cache = SystemMessages::default();
        let a = [category("cat-a"), category("cat-b")];
        let first = cache.get(&prompts, &tok, &a, limits, None).unwrap();
        let again = cache.get(&prompts, &tok, &a.clone(), limits, None).unwrap();
        assert!(Arc::ptr_eq(&first.text, &again.text), "the second ticket reuses the rendered text");
        assert_eq!(first.tokens, tok.count(&first.text));
        assert_eq!(*first.text, prompts.system(&a, limits, None).unwrap());

        let b = [category("cat-a")];
        let other = cache.get(&prompts, &tok, &b, limits, None).unwrap();
        assert!(other.text.contains("cat-a") && !other.text.contains("cat-b"));
        assert!(other.tokens < first.tokens);
    }
}
