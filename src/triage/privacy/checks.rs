//! Checksums that tell a payment card or an IBAN from any other run of digits.
//!
//! Written here rather than taken from a crate: each is a few lines over ASCII digits, and the
//! crates that offer them (`luhn`, `iban_validate`) would add build time for no more accuracy.

/// Whether `digits` (ASCII digits only) passes the Luhn check used by payment cards.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `digits` looks like a card number: a known issuer prefix for its length, not one digit
/// repeated, and the Luhn check.
pub fn is_card(digits: &[u8]) -> bool {
    // Visa, Mastercard (51-55, 2221-2720), Amex, Diners, JCB, Discover/UnionPay/Maestro (6).
    let issuer_fits = matches!(
        (digits.first(), digits.get(1), digits.len()),
        (Some(b'4'), _, 16 | 19)
            | (Some(b'5'), Some(b'1'..=b'5'), 16)
            | (Some(b'2'), Some(b'2'..=b'7'), 16)
            | (Some(b'3'), Some(b'4' | b'7'), 15)
            | (Some(b'3'), Some(b'0' | b'6' | b'8'), 14 | 16)
            | (Some(b'3'), Some(b'5'), 16)
            | (Some(b'6'), _, 16 | 19)
    );
    issuer_fits && digits.iter().any(|d| *d != digits[0]) && luhn(digits)
}

/// The length of an IBAN of this country, for the countries whose banks customers name most.
pub fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "NL" | "FO" | "GL" => 18,
        "SI" => 19,
        "AT" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" => 22,
        "AE" | "IL" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        _ => return None,
    })
}

/// Whether `iban` (compact: uppercase letters and digits, no spaces) passes the ISO 13616
/// mod-97 check.
pub fn iban_checksum(iban: &[u8]) -> bool {
    if iban.len() < 15 || iban.len() > 34 || !iban.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.iter().chain(head) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_a_changed_digit() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"5555555555554444"));
        assert!(luhn(b"378282246310005"));
        assert!(!luhn(b"4111111111111112"));
        assert!(is_card(b"4111111111111111"));
        assert!(is_card(b"378282246310005"));
        assert!(!is_card(b"0000000000000000"), "no issuer starts with 0");
        assert!(!is_card(b"1234567812345670"), "Luhn-valid, but no issuer starts with 1");
    }

    #[test]
    fn iban_checksum_accepts_real_examples_and_rejects_a_typo() {
        for iban in [
            "DE89370400440532013000",
            "GB29NWBK60161331926819",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
            "ES9121000418450200051332",
            "BR1800360305000010009795493C1",
        ] {
            assert!(iban_checksum(iban.as_bytes()), "{iban}");
            assert_eq!(iban_length(&iban[..2]), Some(iban.len()), "{iban}");
        }
        assert!(!iban_checksum(b"DE89370400440532013001"));
        assert!(!iban_checksum(b"DE89"));
    }
}
