//! What every scheme shares: digests as vendors encode them, HMAC checks and secret comparison,
//! all in constant time.

use std::borrow::Cow;

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

/// A digest of `len` bytes written as hex (either case) or base64 (standard or URL-safe, padded
/// or not); `None` when it is neither.
pub(super) fn decode_digest(text: &str, len: usize) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() == 2 * len
        && let Ok(bytes) = hex::decode(text)
    {
        return Some(bytes);
    }
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .filter(|bytes| bytes.len() == len)
}

/// Whether `tag` is the HMAC of `parts` (concatenated) under `secret`, compared in constant time.
pub(super) fn hmac_matches<M: Mac + KeyInit>(secret: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret) else { return false };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

/// Whether `given` is the secret, compared in constant time (only the length can show).
pub(super) fn secret_matches(given: &[u8], secret: &[u8]) -> bool {
    !secret.is_empty() && bool::from(given.ct_eq(secret))
}

/// The JSON text with every whitespace outside strings removed: what `JSON.stringify` writes for
/// the same value in the same key order. A body pretty-printed on the way still verifies, and
/// keys are never re-ordered (re-serialising a parsed value would sort them).
pub(super) fn compact_json(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use hmac::Hmac;
    use sha1::Sha1;

    use super::*;

    #[test]
    fn digests_decode_from_hex_and_every_base64() {
        let bytes: Vec<u8> = (0u8..20).collect();
        for text in [
            hex::encode(&bytes),
            hex::encode_upper(&bytes),
            STANDARD.encode(&bytes),
            STANDARD_NO_PAD.encode(&bytes),
            URL_SAFE.encode(&bytes),
        ] {
            assert_eq!(decode_digest(&text, 20).as_deref(), Some(&bytes[..]), "{text}");
        }
        assert_eq!(decode_digest(&STANDARD.encode(&bytes), 32), None, "wrong length");
        assert_eq!(decode_digest("not a digest!", 20), None);
    }

    #[test]
    fn hmac_is_checked_over_the_concatenated_parts() {
        // printf '[{"id":"1"}]abc' | openssl dgst -sha1 -hmac s3cret -binary | base64
        let tag = STANDARD.decode("swLmZjOooaGJ1u7sD363WSpXQFM=").unwrap();
        assert!(hmac_matches::<Hmac<Sha1>>(b"s3cret", &[br#"[{"id":"1"}]"#, b"abc"], &tag));
        assert!(!hmac_matches::<Hmac<Sha1>>(b"s3cret", &[br#"[{"id":"2"}]"#, b"abc"], &tag));
        assert!(!hmac_matches::<Hmac<Sha1>>(b"other", &[br#"[{"id":"1"}]"#, b"abc"], &tag));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(!secret_matches(b"s3cre", b"s3cret"));
        assert!(!secret_matches(b"", b""), "an empty secret never matches");
    }

    #[test]
    fn compact_json_drops_whitespace_outside_strings_only() {
        assert_eq!(compact_json(r#"[{"a":"b c"}]"#), r#"[{"a":"b c"}]"#);
        assert_eq!(
            compact_json("[ {\n  \"z\": \"x \\\" y\",\n  \"a\" : [1, 2]\n} ]"),
            r#"[{"z":"x \" y","a":[1,2]}]"#
        );
    }
}
