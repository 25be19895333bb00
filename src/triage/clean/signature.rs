//! Signatures, mobile taglines and legal footers at the end of a message.
//!
//! A cut point is only looked for in the tail: the last 40 % of the lines or the last 15 lines,
//! whichever is more. Cutting repeats (a footer under a signature under a valediction), and a
//! cut that would leave no text is not made: a message that is only "Thanks!" or "Sent from my
//! iPhone" stays as it is, because an empty message would tell the model less than that line.

use std::sync::LazyLock;

use regex::Regex;

/// Lines always in the cut window, however long the message.
const TAIL_LINES: usize = 15;
/// Non-blank lines allowed under a valediction (name, title, company, phone…).
const MAX_SIGNATURE_LINES: usize = 6;
/// Longest line still taken for part of a signature block.
const MAX_SIGNATURE_LINE: usize = 80;
/// Cascaded cuts allowed per call (real messages need at most 3 or 4).
const MAX_PASSES: usize = 10;

// Word boundaries are ASCII (`(?-u:\b)`) where they sit next to ASCII words: a Unicode boundary
// makes the regex engine give up its DFA on any non-ASCII text and fall back to a backtracker,
// which made these the costliest step of cleaning a message.
static MOBILE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:sent from my \S.{0,40}|sent (?:from|via|with) (?:outlook|yahoo mail|mail for|gmail|the samsung|blackberry|proton mail)(?-u:\b).{0,40}|get outlook for (?:ios|android)|enviado desde mi \S.{0,30}|von meinem \S.{0,30} gesendet|envoyé (?:de|depuis) mon \S.{0,30}|verzonden (?:vanaf|met) mijn \S.{0,30}|enviado do meu \S.{0,30}|inviato da(?:l mio)? \S.{0,30})$",
    )
    .unwrap()
});

/// A closing formula on its own line, optionally followed by a first name ("Thanks, Jane").
/// The name part is case-sensitive (capitalised words), so "Thanks, that fixed it" is no match.
static VALEDICTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^¡?(?i:best regards|kind regards|warm regards|warmest regards|regards|best wishes|all the best|many thanks|thanks(?: (?:a lot|again|so much|in advance))?|thank you(?: (?:very much|so much|in advance))?|cheers|best|sincerely|yours sincerely|yours truly|(?:mit )?(?:freundlichen|freundliche|viele|beste|liebe|herzliche|danke und) gr(?:ü|ue)(?:ß|ss)en?|gr(?:ü|ue)(?:ß|ss)e|gruß|vielen dank|danke|danke schön|dankeschön|cordialement|bien cordialement|bien à vous|salutations|amicalement|merci|merci d'avance|merci beaucoup|saludos|saludos cordiales|un saludo|atentamente|gracias|met vriendelijke groet|met vriendelijke groeten|vriendelijke groet|groeten|groet|groetjes|hartelijke groet|atenciosamente|obrigad[oa]|cumprimentos|cordiali saluti|distinti saluti|grazie)[\s,.!]*(?:\p{Lu}[\p{L}.'-]*(?:\s+\p{Lu}[\p{L}.'-]*){0,2}[.!]?)?$",
    )
    .unwrap()
});

/// First line of a legal footer paragraph.
static LEGAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:\**\s*)(?:confidentiality notice|disclaimer|aviso legal|rechtlicher hinweis|avis de confidentialité|this e-?mail \(and any attachments\)|this e-?mail and any (?:files|attachments)|this message and any attachments (?:are|is) confidential|the information contained in this|diese e-?mail enthält vertrauliche|ce message et (?:toutes )?les pièces jointes|este mensaje (?:y sus anexos )?(?:es|contiene) (?:confidencial|información confidencial))",
    )
    .unwrap()
});

/// A footer in a language without a known opening: the paragraph speaks of confidentiality *and*
/// of the recipient or a mistaken delivery (a customer's own "this is confidential" does not).
static CONFIDENTIAL_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)confidential|privileged|vertraulich|konfidensiell|fortrolig|konfidentiell|confidencial|confidentiel|riservat|vertrouwelijk|poufn").unwrap()
});
static RECIPIENT_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)recipient|addressee|destinatari|destinataire|empfänger|adressat|geadresseerde|in error|by mistake|por error|par erreur|irrtümlich|ved en feil|per errore|por engano").unwrap()
});
/// Company imprint lines (registry, directors, tax ids); three different ones make a footer, so a
/// customer giving their VAT id or register number in the message is not cut.
static IMPRINT_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)geschäftsführ|amtsgericht|registergericht|handelsregister|(?-u:\b)hr[ab]\s*\d|ust-?id|sitz der gesellschaft|vorstand|aufsichtsrat|registered in|registered office|company (?:no|number|registration)|(?-u:\b)kvk(?-u:\b)|(?-u:\b)siret(?-u:\b)|(?-u:\b)rcs(?-u:\b)|capital social|org\.?\s?nr|(?-u:\b)cif(?-u:\b)|(?-u:\b)nif(?-u:\b)").unwrap()
});
/// Longest paragraph read for the keyword test (footers are a few hundred characters).
const MAX_FOOTER_SCAN: usize = 4_000;

/// Removes a trailing signature or footer. Returns the text and whether anything was removed.
pub fn strip_signature(text: &str) -> (String, bool) {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    let mut removed = false;
    for _ in 0..MAX_PASSES {
        while end > 0 && lines[end - 1].trim().is_empty() {
            end -= 1;
        }
        match find_cut(&lines[..end]) {
            Some(cut) => {
                end = cut;
                removed = true;
            }
            None => break,
        }
    }
    if !removed {
        return (text.to_owned(), false);
    }
    (lines[..end].join("\n"), true)
}

/// The earliest signature marker in the tail that leaves some text above it.
fn find_cut(lines: &[&str]) -> Option<usize> {
    let n = lines.len();
    let first_text = lines.iter().position(|l| !l.trim().is_empty())?;
    let window = (n * 3 / 5).min(n.saturating_sub(TAIL_LINES)).max(first_text + 1);
    (window..n).find(|&i| {
        let line = lines[i].trim();
        line == "--"
            || (is_rule_line(line) && is_signature_block(&lines[i + 1..]))
            || MOBILE.is_match(line)
            || (lines[i - 1].trim().is_empty() && is_legal_footer(line, &lines[i..]))
            || (VALEDICTION.is_match(line) && is_signature_block(&lines[i + 1..]))
    })
}

/// The paragraph starting at `rest[0]` is a legal footer: a known opening, both confidentiality
/// keyword kinds, or a company imprint.
fn is_legal_footer(first: &str, rest: &[&str]) -> bool {
    if LEGAL.is_match(first) {
        return true;
    }
    let mut paragraph = String::new();
    for line in rest.iter().take_while(|l| !l.trim().is_empty()) {
        if paragraph.len() > MAX_FOOTER_SCAN {
            break;
        }
        paragraph.push_str(line);
        paragraph.push(' ');
    }
    if CONFIDENTIAL_WORD.is_match(&paragraph) && RECIPIENT_WORD.is_match(&paragraph) {
        return true;
    }
    let mut imprint: Vec<String> = Vec::new();
    for m in IMPRINT_WORD.find_iter(&paragraph) {
        // "HRB 723456" and "HRB 1" are the same kind of line.
        let word: String =
            m.as_str().to_lowercase().chars().take_while(|c| c.is_alphabetic() || *c == '-').collect();
        if !imprint.contains(&word) {
            imprint.push(word);
        }
    }
    imprint.len() >= 3
}

/// A line of box-drawing characters, the signature separator of many CJK mail clients.
fn is_rule_line(line: &str) -> bool {
    line.chars().count() >= 8 && line.chars().all(|c| matches!(c, '─' | '━' | '═' | '―'))
}

/// A few short lines (name, title, company, phone) and nothing else.
fn is_signature_block(rest: &[&str]) -> bool {
    let mut count = 0;
    for line in rest.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        count += 1;
        let lower = line.to_lowercase();
        if count > MAX_SIGNATURE_LINES
            || line.chars().count() > MAX_SIGNATURE_LINE
            || lower.starts_with("p.s")
            || lower.starts_with("ps:")
            || line.ends_with('?')
        {
            return false;
        }
    }
    true
}
