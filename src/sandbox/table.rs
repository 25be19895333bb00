//! One kind of object by id, with an index per list filter.
//!
//! A worker lists each ticket's notes (`note?ticket_id=…`). Scanning the whole notes table for
//! that made every call cost the size of the helpdesk: with a few thousand tickets the sandbox
//! spent more CPU per ticket than the worker it serves. The index makes a filtered list cost what
//! it returns.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::Deref,
};

use super::resource::Resource;

/// The objects of one kind by id, and for each of the kind's filters the ids per value.
///
/// Reads go through `Deref` to the map; there is no `DerefMut`, so every write passes through
/// the methods that keep the index in step.
#[derive(Debug, Clone)]
pub struct Table<R> {
    items: BTreeMap<String, R>,
    /// (filter, value) → the ids of the objects whose filter field has that value.
    by_filter: HashMap<(&'static str, String), BTreeSet<String>>,
    /// The highest `<prefix><number>` id ever stored, so a new id needs no scan of the table.
    highest: Option<Sequential>,
}

/// A sequential id taken apart: `n-0041` is prefix `n-`, number 41, 4 digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sequential {
    pub(crate) prefix: String,
    pub(crate) number: u64,
    pub(crate) digits: usize,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Self { items: BTreeMap::new(), by_filter: HashMap::new(), highest: None }
    }
}

impl<R: PartialEq> PartialEq for Table<R> {
    /// The index follows from the items.
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
    }
}

impl<R> Deref for Table<R> {
    type Target = BTreeMap<String, R>;

    fn deref(&self) -> &Self::Target {
        &self.items
    }
}

impl<'a, R> IntoIterator for &'a Table<R> {
    type Item = (&'a String, &'a R);
    type IntoIter = std::collections::btree_map::Iter<'a, String, R>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<R: Resource> FromIterator<(String, R)> for Table<R> {
    fn from_iter<I: IntoIterator<Item = (String, R)>>(iter: I) -> Self {
        let mut table = Self::default();
        for (id, item) in iter {
            table.insert(id, item);
        }
        table
    }
}

// Writing is the sandbox's own business: outside the crate a table is only read.
#[expect(private_bounds, reason = "the writers are crate-private, like the trait they need")]
impl<R: Resource> Table<R> {
    /// Stores `item` under `id`, returning what was there.
    pub(crate) fn insert(&mut self, id: String, item: R) -> Option<R> {
        let before = self.remove(&id);
        for key in R::FILTERS {
            if let Some(value) = item.filter_value(key) {
                self.by_filter.entry((key, value.to_owned())).or_default().insert(id.clone());
            }
        }
        if let Some((prefix, number)) = split_id(&id) {
            let higher =
                self.highest.as_ref().is_none_or(|h| (number, prefix) > (h.number, h.prefix.as_str()));
            if higher {
                self.highest =
                    Some(Sequential { prefix: prefix.to_owned(), number, digits: id.len() - prefix.len() });
            }
        }
        self.items.insert(id, item);
        before
    }

    /// The highest sequential id stored so far, also when it has since been removed.
    pub(crate) fn highest(&self) -> Option<&Sequential> {
        self.highest.as_ref()
    }

    /// Removes the object `id`, returning it.
    pub(crate) fn remove(&mut self, id: &str) -> Option<R> {
        let item = self.items.remove(id)?;
        for key in R::FILTERS {
            if let Some(value) = item.filter_value(key) {
                let slot = (*key, value.to_owned());
                if let Some(ids) = self.by_filter.get_mut(&slot) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.by_filter.remove(&slot);
                    }
                }
            }
        }
        Some(item)
    }

    /// Changes the object `id` in place (re-indexed afterwards); `None` when there is none.
    pub(crate) fn modify<T>(&mut self, id: &str, change: impl FnOnce(&mut R) -> T) -> Option<T> {
        let mut item = self.remove(id)?;
        let result = change(&mut item);
        self.insert(id.to_owned(), item);
        Some(result)
    }

    /// Removes every object for which `keep` is false.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&R) -> bool) {
        let gone: Vec<String> =
            self.items.iter().filter(|(_, item)| !keep(item)).map(|(id, _)| id.clone()).collect();
        for id in gone {
            self.remove(&id);
        }
    }

    /// The objects whose `filter` field (one of `R::FILTERS`) is `value`, in no particular order.
    pub(crate) fn with(&self, filter: &str, value: &str) -> impl Iterator<Item = &R> {
        // Keyed by `&'static str`, so look the static name up first; an unknown filter matches
        // nothing, as no object has a value for it.
        let ids = R::FILTERS
            .iter()
            .find(|k| **k == filter)
            .and_then(|key| self.by_filter.get(&(*key, value.to_owned())));
        ids.into_iter().flatten().filter_map(|id| self.items.get(id))
    }
}

/// Splits a sequential id into its digit-free prefix and trailing number (`n-41` → `("n-", 41)`).
pub(super) fn split_id(id: &str) -> Option<(&str, u64)> {
    let digits = id.len() - id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, number) = id.split_at(id.len() - digits);
    if number.is_empty() || prefix.contains(|c: char| c.is_ascii_digit()) {
        return None;
    }
    number.parse().ok().map(|n| (prefix, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticketing::Note;

    fn note(id: &str, ticket: &str) -> (String, Note) {
        (id.to_owned(), Note { id: Some(id.into()), ticket_id: Some(ticket.into()), ..Note::default() })
    }

    fn ids<'a>(notes: impl Iterator<Item = &'a Note>) -> Vec<&'a str> {
        let mut ids: Vec<&str> = notes.filter_map(|n| n.id.as_deref()).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn the_index_follows_every_write() {
        let mut notes: Table<Note> =
            [note("n-1", "7"), note("n-2", "7"), note("n-3", "8")].into_iter().collect();
        assert_eq!(ids(notes.with("ticket_id", "7")), ["n-1", "n-2"]);
        assert_eq!(ids(notes.with("ticket_id", "8")), ["n-3"]);

        // Moving a note to another ticket moves it in the index too.
        let (id, moved) = note("n-2", "8");
        assert!(notes.insert(id, moved).is_some());
        assert_eq!(ids(notes.with("ticket_id", "7")), ["n-1"]);
        assert_eq!(ids(notes.with("ticket_id", "8")), ["n-2", "n-3"]);

        notes.modify("n-1", |n| n.ticket_id = Some("9".into())).unwrap();
        assert!(notes.with("ticket_id", "7").next().is_none());
        assert_eq!(ids(notes.with("ticket_id", "9")), ["n-1"]);
        assert!(notes.modify("n-404", |_| ()).is_none());

        notes.retain(|n| n.ticket_id.as_deref() != Some("8"));
        assert!(notes.with("ticket_id", "8").next().is_none());
        assert_eq!(notes.remove("n-1").and_then(|n| n.id), Some("n-1".to_owned()));
        assert!(notes.is_empty());
        assert!(notes.by_filter.is_empty(), "emptied slots are dropped: {:?}", notes.by_filter);
        let highest = notes.highest().unwrap();
        assert_eq!(
            (highest.prefix.as_str(), highest.number, highest.digits),
            ("n-", 3, 1),
            "removing keeps it"
        );
    }

    #[test]
    fn a_field_that_is_not_a_filter_matches_nothing() {
        let notes: Table<Note> = [note("n-1", "7")].into_iter().collect();
        assert!(notes.with("description", "7").next().is_none());
        assert!(notes.with("ticket_id", "8").next().is_none());
    }
}
