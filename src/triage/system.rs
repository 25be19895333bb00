//! The system message and the answer's JSON schema of each category list, built once.
//!
//! Both depend only on the connection's active categories and whether its tickets are
//! pseudonymised (and on engine-wide settings), so every ticket of a connection gets the same
//! ones; rendering 4–5 kB of template, tokenizing it and building the schema again for each
//! ticket would be the largest fixed cost of a prompt.

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

/// A rendered system message and its token count, and the answer's schema.
#[derive(Debug, Clone)]
pub struct SystemMessage {
    /// The text.
    pub text: Arc<str>,
    /// Its tokens (content only, without the message framing).
    pub tokens: usize,
    /// The JSON schema the answer must match (the same category list).
    pub schema: Arc<Value>,
}

/// Entries by the hash of their category list and privacy (a bucket holds the keys that share a
/// hash).
type Entries = HashMap<u64, Vec<((Vec<CategoryView>, bool), SystemMessage)>>;

/// Rendered system messages by category list and privacy.
#[derive(Debug, Default)]
pub struct SystemMessages {
    entries: Mutex<Entries>,
}

impl SystemMessages {
    /// The system message and schema for `categories`, with the rule for placeholders when the
    /// connection's tickets are `pseudonymised`, built on first use: `schema()` builds the
    /// schema, and in `json_object` mode (`schema_in_prompt`) the message describes it too.
    pub fn get(
        &self,
        prompts: &Prompts,
        tokenizer: &Tokenizer,
        (categories, pseudonymised): (&[CategoryView], bool),
        limits: PromptLimits,
        (schema, schema_in_prompt): (impl FnOnce() -> Value, bool),
    ) -> Result<SystemMessage, PromptError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (categories, pseudonymised).hash(&mut h);
        let key = h.finish();
        let same = |(c, p): &(Vec<CategoryView>, bool)| *p == pseudonymised && c == categories;
        let found =
            |entries: &Entries| entries.get(&key)?.iter().find(|(k, _)| same(k)).map(|(_, m)| m.clone());
        if let Some(m) = found(&self.lock()) {
            return Ok(m);
        }
        // Built outside the lock; two tickets racing on a new list both build, one is kept.
        let schema = Arc::new(schema());
        let text = prompts.system(categories, limits, schema_in_prompt.then_some(&*schema), pseudonymised)?;
        let message = SystemMessage { tokens: tokenizer.count(&text), text: text.into(), schema };
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let bucket = entries.entry(key).or_default();
        if !bucket.iter().any(|(k, _)| same(k)) {
            bucket.push(((categories.to_vec(), pseudonymised), message.clone()));
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

    /// Templates, tokenizer, limits and an empty cache.
    fn setup() -> (Prompts, Tokenizer, PromptLimits, SystemMessages) {
        let limits = PromptLimits { max_tags: 8, max_draft_chars: 4000 };
        (Prompts::embedded().unwrap(), Tokenizer::for_model("gpt-4o-mini"), limits, SystemMessages::default())
    }

    #[test]
    fn rendered_once_per_category_list() {
        let (prompts, tok, limits, cache) = setup();
        let a = [category("cat-a"), category("cat-b")];
        let schema = || serde_json::json!({"type": "object"});
        let first = cache.get(&prompts, &tok, (&a, false), limits, (schema, false)).unwrap();
        let again = cache
            .get(&prompts, &tok, (&a.clone(), false), limits, (|| unreachable!("cached"), false))
            .unwrap();
        assert!(Arc::ptr_eq(&first.text, &again.text), "the second ticket reuses the rendered text");
        assert!(Arc::ptr_eq(&first.schema, &again.schema), "and the schema");
        assert_eq!(first.tokens, tok.count(&first.text));
        assert_eq!(*first.text, prompts.system(&a, limits, None, false).unwrap());

        let b = [category("cat-a")];
        let other = cache.get(&prompts, &tok, (&b, false), limits, (schema, true)).unwrap();
        assert!(other.text.contains("cat-a") && !other.text.contains("cat-b"));
        assert!(other.text.contains("must match this JSON schema"), "json_object mode describes it");
    }

    #[test]
    fn the_rule_for_placeholders_is_part_of_a_pseudonymised_connections_system_message() {
        let (prompts, tok, limits, cache) = setup();
        let a = [category("cat-a")];
        let schema = || serde_json::json!({"type": "object"});
        let plain = cache.get(&prompts, &tok, (&a, false), limits, (schema, false)).unwrap();
        let private = cache.get(&prompts, &tok, (&a, true), limits, (schema, false)).unwrap();
        let rule = "write a placeholder exactly as it appears where its value belongs, and never make one up";
        assert!(!plain.text.contains(rule), "{}", plain.text);
        assert!(private.text.contains(rule), "{}", private.text);
        assert!(private.tokens > plain.tokens);
        let again =
            cache.get(&prompts, &tok, (&a, true), limits, (|| unreachable!("cached"), false)).unwrap();
        assert!(Arc::ptr_eq(&private.text, &again.text), "each is built once");
    }
}
