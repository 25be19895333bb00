//! Figment errors in an operator's words: which key, where it was set, what was expected.
//!
//! `worker.concurrency in /etc/deskpilot.toml: invalid type: found string "lots", expected a whole number`
//! `llm.modle from environment variable DESKPILOT__LLM__MODLE: unknown key; [llm] takes base_url, ...`

use figment::{Source, error::Kind};

/// Every error in the chain, one per line.
pub(super) fn describe(err: figment::Error) -> String {
    err.into_iter().map(|e| describe_one(&e)).collect::<Vec<_>>().join("\n")
}

fn describe_one(e: &figment::Error) -> String {
    let source = match &e.metadata {
        Some(md) => match &md.source {
            Some(Source::File(path)) => format!("in {}", path.display()),
            Some(other) => format!("in {other}"),
            None => format!("from {}", md.name),
        },
        None => String::new(),
    };
    let mut key = render_path(&e.path);
    let message = match &e.kind {
        Kind::UnknownField(_, expected) => {
            let section = match e.path.len() {
                0 | 1 => "the top level".to_owned(),
                n => format!("[{}]", render_path(&e.path[..n - 1])),
            };
            if expected.is_empty() {
                format!("unknown key; {section} takes no keys")
            } else {
                format!("unknown key; {section} takes {}", expected.join(", "))
            }
        }
        Kind::InvalidType(actual, expected) => {
            format!("invalid type: found {actual}, expected {}", friendly(expected))
        }
        Kind::MissingField(field) => format!("missing key `{field}`"),
        // A connection's own message starts with its id, which belongs next to the key.
        Kind::Message(m) => match m.strip_prefix("(id = ").and_then(|rest| rest.split_once("): ")) {
            Some((id, rest)) => {
                key.push_str(&format!(" (id = {id})"));
                rest.to_owned()
            }
            None => m.clone(),
        },
        kind => kind.to_string(),
    };
    let env_var = e.metadata.as_ref().and_then(|md| md.name.strip_prefix(super::ENV_SOURCE)).map(str::trim);
    let from_env = env_var.is_some();
    let wants_string = matches!(&e.kind, Kind::InvalidType(_, expected) if expected == "a string");
    let message = match e.path.first() {
        Some(first) if from_env && first == "connections" => {
            format!("{message}; [[connections]] can only be set in a file")
        }
        Some(_) if from_env && wants_string => {
            let var = env_var.unwrap_or("VAR");
            format!("{message}; values are read like TOML, so quote it: {var}='\"...\"'")
        }
        _ => message,
    };
    match (key.is_empty(), source.is_empty()) {
        (true, true) => message,
        (true, false) => format!("{source}: {message}"),
        (false, true) => format!("{key}: {message}"),
        (false, false) => format!("{key} {source}: {message}"),
    }
}

/// `connections.1.id` → `connections[1].id`.
fn render_path(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

fn friendly(expected: &str) -> &str {
    if expected.starts_with("struct ") || expected == "map" {
        return "a table";
    }
    match expected {
        "a sequence" => "an array",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_toml() {
        let p = |s: &[&str]| render_path(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["connections", "1", "id"]), "connections[1].id");
        assert_eq!(p(&["worker", "concurrency"]), "worker.concurrency");
        assert_eq!(p(&[]), "");
    }
}
