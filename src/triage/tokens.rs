//! Exact token counting for prompt budgets, with tiktoken's encodings.
//!
//! A `CoreBPE` costs ~200 ms and ~46 MB to build (o200k), so each encoding is built once per
//! process (tiktoken-rs singletons) and shared; [`Tokenizer::warm`] builds it before traffic.

use std::fmt;

use tiktoken_rs::{CoreBPE, tokenizer::Tokenizer as Encoding};

/// Tokens a chat message costs beyond its content (role and separators), per OpenAI's cookbook.
pub const TOKENS_PER_MESSAGE: usize = 3;
/// Tokens that prime the assistant's reply.
pub const TOKENS_REPLY_PRIMING: usize = 3;

/// The encoding prompts are counted with, when the model name does not say (a local model):
/// the one closest to the model's own tokenizer. `[llm] tokenizer` in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerChoice {
    /// `o200k_base` (GPT-4o and later; the default for unknown names).
    O200k,
    /// `cl100k_base` (GPT-4, GPT-3.5; closer for many older open models).
    Cl100k,
    /// The server's own tokenizer, asked through its `/tokenize` endpoint (llama.cpp, vLLM)
    /// before each call; prompts are fitted with `o200k_base` first.
    Server,
}

impl TokenizerChoice {
    /// The tokenizer prompts are fitted with locally.
    pub fn tokenizer(self) -> Tokenizer {
        match self {
            Self::O200k | Self::Server => Tokenizer::with_encoding(Encoding::O200kBase),
            Self::Cl100k => Tokenizer::with_encoding(Encoding::Cl100kBase),
        }
    }
}

/// A token counter bound to one encoding.
#[derive(Clone, Copy)]
pub struct Tokenizer {
    encoding: Encoding,
    bpe: &'static CoreBPE,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokenizer({})", self.name())
    }
}

impl Tokenizer {
    /// The encoding for `model` (OpenAI model names map exactly); unknown names (local models
    /// served by vLLM, Ollama, ...) use `o200k_base`, whose counts are then an approximation.
    pub fn for_model(model: &str) -> Self {
        let encoding = match tiktoken_rs::tokenizer::get_tokenizer(model) {
            Some(e @ (Encoding::O200kBase | Encoding::O200kHarmony | Encoding::Cl100kBase)) => e,
            _ => Encoding::O200kBase,
        };
        Self::with_encoding(encoding)
    }

    /// A tokenizer for an explicit encoding.
    pub fn with_encoding(encoding: Encoding) -> Self {
        let bpe = match encoding {
            Encoding::O200kHarmony => tiktoken_rs::o200k_harmony_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            _ => tiktoken_rs::o200k_base_singleton(),
        };
        let encoding = match encoding {
            Encoding::O200kHarmony | Encoding::Cl100kBase => encoding,
            _ => Encoding::O200kBase,
        };
        Self { encoding, bpe }
    }

    /// The encoding's name.
    pub fn name(&self) -> &'static str {
        match self.encoding {
            Encoding::O200kHarmony => "o200k_harmony",
            Encoding::Cl100kBase => "cl100k_base",
            _ => "o200k_base",
        }
    }

    /// Forces the encoding's tables to load now rather than on the first ticket.
    pub fn warm(&self) {
        let _ = self.count("warm up");
    }

    /// Exact token count of `text`. Special-token lookalikes in customer text (`<|endoftext|>`)
    /// are counted as ordinary text, which is how they reach the model.
    pub fn count(&self, text: &str) -> usize {
        self.bpe.encode_ordinary(text).len()
    }

    /// Tokens of `text`, and how many of them begin inside each of `spans` (byte ranges of `text`,
    /// in order and not overlapping): one encoding for a whole prompt and its parts.
    pub fn count_spans(&self, text: &str, spans: &[std::ops::Range<usize>]) -> (usize, Vec<usize>) {
        let tokens = self.bpe.encode_ordinary(text);
        let total = tokens.len();
        let mut counts = vec![0; spans.len()];
        let (mut at, mut i) = (0, 0);
        for bytes in self.bpe._decode_native_and_split(tokens) {
            while i < spans.len() && at >= spans[i].end {
                i += 1;
            }
            if i < spans.len() && at >= spans[i].start {
                counts[i] += 1;
            }
            at += bytes.len();
        }
        (total, counts)
    }

    /// Tokens of a chat conversation: every content plus per-message framing and reply priming.
    pub fn count_chat<'a>(&self, contents: impl IntoIterator<Item = &'a str>) -> usize {
        contents.into_iter().map(|c| self.count(c) + TOKENS_PER_MESSAGE).sum::<usize>() + TOKENS_REPLY_PRIMING
    }

    /// Shortens `text` to at most `max_tokens` by cutting its middle, keeping the start (the
    /// question) and the end (the latest detail), with a marker saying how much was cut.
    pub fn truncate_middle(&self, text: &str, max_tokens: usize) -> String {
        let tokens = self.bpe.encode_ordinary(text);
        if tokens.len() <= max_tokens {
            return text.to_owned();
        }
        let marker_for = |n: usize| format!("\n[… {n} tokens omitted …]\n");
        let marker_cost = self.count(&marker_for(tokens.len()));
        let keep = max_tokens.saturating_sub(marker_cost);
        let head = keep / 2;
        let tail = keep - head;
        let omitted = tokens.len() - head - tail;
        let decode = |slice: &[u32]| lossy(self.bpe, slice);
        let mut out = decode(&tokens[..head]);
        out.push_str(&marker_for(omitted));
        out.push_str(&decode(&tokens[tokens.len() - tail..]));
        // Re-tokenising at the seams can shift a count by a token or two; trim until it fits.
        let mut result = out;
        while self.count(&result) > max_tokens && !result.is_empty() {
            let cut = result.char_indices().nth_back(0).map_or(0, |(i, _)| i);
            result.truncate(cut);
        }
        result
    }
}

/// Decodes a token slice that may split a multi-byte character, replacing the broken bytes.
fn lossy(bpe: &CoreBPE, tokens: &[u32]) -> String {
    let bytes = bpe.decode_bytes(tokens).unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_matches('\u{FFFD}').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_choose_the_encoding() {
        assert_eq!(Tokenizer::for_model("gpt-4o-mini").name(), "o200k_base");
        assert_eq!(Tokenizer::for_model("gpt-4").name(), "cl100k_base");
        assert_eq!(Tokenizer::for_model("llama3.1:8b").name(), "o200k_base");
    }

    #[test]
    fn counts_match_tiktoken() {
        let t = Tokenizer::for_model("gpt-4o");
        let text = "Hello, my invoice INV-2026-0042 was charged twice!";
        assert_eq!(t.count(text), tiktoken_rs::o200k_base_singleton().encode_ordinary(text).len());
        assert_eq!(t.count("<|endoftext|> hello"), 8, "special tokens in customer text are plain text");
        assert_eq!(t.count_chat(["a", "b"]), t.count("a") + t.count("b") + 2 * TOKENS_PER_MESSAGE + 3);
    }

    #[test]
    fn spans_count_the_tokens_that_begin_inside_them() {
        let t = Tokenizer::for_model("gpt-4o");
        let (a, b) = ("Charged twice for the Team plan", "Please refund the extra one");
        let text = format!("Subject: x\n{a}\n--- customer ---\n{b}\n");
        let at = |piece: &str| {
            let start = text.find(piece).unwrap();
            start..start + piece.len()
        };
        let (total, counts) = t.count_spans(&text, &[at(a), at(b)]);
        assert_eq!(total, t.count(&text));
        // Each piece starts a line and ends before one: it encodes as it would alone.
        assert_eq!(counts, vec![t.count(a), t.count(b)]);
        assert_eq!(t.count_spans(&text, &[]), (total, vec![]));
    }

    #[test]
    fn truncate_middle_keeps_both_ends_within_budget() {
        let t = Tokenizer::for_model("gpt-4o");
        let text = format!("START {} END", "lorem ipsum dolor sit amet ".repeat(500));
        let cut = t.truncate_middle(&text, 100);
        assert!(t.count(&cut) <= 100, "{}", t.count(&cut));
        assert!(cut.starts_with("START") && cut.ends_with("END"));
        assert!(cut.contains("tokens omitted"));
        assert_eq!(t.truncate_middle("short", 100), "short");
    }

    #[test]
    fn truncate_middle_survives_multibyte_text() {
        let t = Tokenizer::for_model("gpt-4o");
        let text = "請求書が二重に請求されました。🙏 ".repeat(300);
        let cut = t.truncate_middle(&text, 50);
        assert!(t.count(&cut) <= 50);
    }
}
