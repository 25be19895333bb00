//! Bounded excerpts of text that came from elsewhere (error bodies, model output) for messages.

use std::borrow::Cow;

/// The first `max_chars` characters of `text` (all of it when shorter), cut on a char boundary.
pub fn clip(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// [`clip`], followed by `…` when something was cut.
pub fn clip_with_ellipsis(text: &str, max_chars: usize) -> Cow<'_, str> {
    let kept = clip(text, max_chars);
    if kept.len() == text.len() { Cow::Borrowed(text) } else { Cow::Owned(format!("{kept}…")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_char_boundaries() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("hi", 10), "hi");
        assert_eq!(clip("hi", 0), "");
    }

    #[test]
    fn an_ellipsis_marks_only_a_cut() {
        assert_eq!(clip_with_ellipsis("héllo", 2), "hé…");
        assert_eq!(clip_with_ellipsis("hé", 2), "hé");
    }
}
