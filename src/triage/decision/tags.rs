//! Tags: the canonical form of one tag, and which tags of an answer a connection keeps.

use std::collections::BTreeSet;

use super::{
    types::Limits,
    wording::{list_ids, show},
};

/// How many tag notes one answer can produce before the rest are counted.
const MAX_TAG_NOTES: usize = 20;

/// Which tags a connection accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TagPolicy {
    /// Any tag that survives normalisation.
    #[default]
    Free,
    /// Only these (normalised) tags; others are dropped with a note.
    AllowList(BTreeSet<String>),
}

impl TagPolicy {
    /// An allow-list of the given tags, normalised the way answers are (unusable entries skipped).
    pub fn allow_list<I, S>(tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::AllowList(tags.into_iter().filter_map(|t| normalize_tag(t.as_ref())).collect())
    }

    /// Whether `tag` (normalised) may be proposed.
    pub fn allows(&self, tag: &str) -> bool {
        match self {
            Self::Free => true,
            Self::AllowList(set) => set.contains(tag),
        }
    }
}

/// Why a raw tag yields nothing.
enum TagDrop {
    /// Letters outside ASCII: stripping them would change the word, so the tag goes.
    NonAscii,
    /// Nothing left after normalisation.
    Empty,
}

fn normalize(raw: &str) -> Result<String, TagDrop> {
    let raw = raw.trim();
    if raw.chars().any(|c| !c.is_ascii() && c.is_alphanumeric()) {
        return Err(TagDrop::NonAscii);
    }
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_whitespace() { '-' } else { c.to_ascii_lowercase() };
        match c {
            'a'..='z' | '0'..='9' => out.push(c),
            '-' | '_' if !out.ends_with(['-', '_']) => out.push(c),
            _ => {}
        }
    }
    let out = out.trim_matches(['-', '_']);
    if out.is_empty() { Err(TagDrop::Empty) } else { Ok(out.to_owned()) }
}

/// One tag in canonical form: trimmed, ASCII-lowercased, whitespace as `-`, only `[a-z0-9_-]`
/// kept, runs of `-`/`_` collapsed to their first character, `-`/`_` trimmed from the ends.
/// `None` when nothing is left, or when the tag has non-ASCII letters or digits (`café`, `日本語`,
/// look-alike Cyrillic): dropping those characters would change the word rather than tidy it.
/// Idempotent. Length limits are applied by [`normalize_tags`].
pub fn normalize_tag(raw: &str) -> Option<String> {
    normalize(raw).ok()
}

/// Normalises a tag list: [`normalize_tag`] each, drop those longer than `max_tag_len`, dedupe
/// keeping the first, drop what the policy does not allow, keep the first `max_tags`.
/// Returns the tags and one note per adjustment (bounded; the rest are counted).
pub fn normalize_tags(raw: &[String], policy: &TagPolicy, limits: &Limits) -> (Vec<String>, Vec<String>) {
    let mut kept: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    for tag in raw {
        let normal = match normalize(tag) {
            Ok(normal) => normal,
            Err(TagDrop::NonAscii) => {
                notes.push(format!("tag {} has non-ASCII letters; dropped", show(tag)));
                continue;
            }
            Err(TagDrop::Empty) => {
                notes.push(format!("tag {} has no usable characters; dropped", show(tag)));
                continue;
            }
        };
        if normal.len() > limits.max_tag_len {
            notes.push(format!(
                "tag {} is longer than {} characters; dropped",
                show(tag),
                limits.max_tag_len
            ));
        } else if kept.contains(&normal) {
            notes.push(format!("tag {} repeats `{normal}`; dropped", show(tag)));
        } else if !policy.allows(&normal) {
            notes.push(format!("tag `{normal}` is not on the allow-list; dropped"));
        } else {
            let lost_characters = normal.len() < tag.trim().chars().filter(|c| !c.is_whitespace()).count();
            if lost_characters {
                notes.push(format!("tag {} normalised to `{normal}`", show(tag)));
            }
            kept.push(normal);
        }
    }
    if notes.len() > MAX_TAG_NOTES {
        let more = notes.len() - MAX_TAG_NOTES;
        notes.truncate(MAX_TAG_NOTES);
        notes.push(format!("and {more} more tag adjustments"));
    }
    if kept.len() > limits.max_tags {
        let dropped = kept.split_off(limits.max_tags);
        notes.push(format!(
            "kept the first {} tags; dropped {} more: {}",
            limits.max_tags,
            dropped.len(),
            list_ids(&dropped.iter().map(String::as_str).collect::<Vec<_>>())
        ));
    }
    (kept, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_normalisation_rules() {
        for (raw, want) in [
            ("  Billing Issue ", Some("billing-issue")),
            ("VIP!!!", Some("vip")),
            ("<script>", Some("script")),
            ("a--b__c", Some("a-b_c")),
            ("a - _ b", Some("a-b")),
            ("--x--", Some("x")),
            ("refund_request", Some("refund_request")),
            ("cat-security; DROP TABLE", Some("cat-security-drop-table")),
            ("café", None),
            ("日本語", None),
            ("v\u{0456}p", None), // Cyrillic і
            ("!!!", None),
            ("   ", None),
        ] {
            assert_eq!(normalize_tag(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn tag_normalisation_is_idempotent() {
        for raw in ["  Billing Issue ", "VIP!!!", "a--b__c", "x_-_y", "--x--", "Hello\tWorld"] {
            let once = normalize_tag(raw).unwrap();
            assert_eq!(normalize_tag(&once).as_deref(), Some(once.as_str()), "{raw:?}");
        }
    }

    #[test]
    fn tags_dedupe_filter_then_cap() {
        let raw: Vec<String> =
            ["Refund", "refund", "spam", "x".repeat(40).as_str(), "a", "b", "c"].map(str::to_owned).to_vec();
        let policy = TagPolicy::allow_list(["REFUND", "a", "b", "c"]);
        let limits = Limits { max_tags: 3, ..Limits::default() };
        let (tags, notes) = normalize_tags(&raw, &policy, &limits);
        assert_eq!(tags, ["refund", "a", "b"]);
        assert_eq!(
            notes,
            [
                "tag `refund` repeats `refund`; dropped",
                "tag `spam` is not on the allow-list; dropped",
                "tag `xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx` is longer than 32 characters; dropped",
                "kept the first 3 tags; dropped 1 more: c",
            ]
        );
    }
}
