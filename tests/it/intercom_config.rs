//! An Intercom connection's keys: what loads, what is refused at start and why, and the client
//! the keys build.

use deskpilot::{
    app::parts::{act_policy, helpdesk_for},
    config::{BackendConfig, Config},
    ticketing::TicketField,
};

use crate::helpers::{load_config, refusal_of};

/// The variable the credential is read from.
const VAR: (&str, &str) = ("IC_TOKEN", "t0k");
/// The connection every refused configuration starts with.
const HEAD: &str = "[[connections]]\nid = \"ic\"\nbackend = \"intercom\"\n";

fn load(toml: &str) -> anyhow::Result<Config> {
    load_config(toml, VAR)
}

fn error_of(keys: &str) -> String {
    refusal_of(HEAD, keys, VAR)
}

#[test]
fn a_token_connection_loads_with_its_defaults_and_builds_a_client() {
    let c = load("[[connections]]\nid = \"ic\"\nbackend = \"intercom\"\naccess_token_env = \"IC_TOKEN\"\n")
        .unwrap();
    let BackendConfig::Intercom(i) = &c.connections[0].backend else { panic!("not intercom") };
    assert_eq!(i.base_url(), "https://api.intercom.io");
    assert_eq!(i.category_cache().as_secs(), 300);
    let client = helpdesk_for(&c, "ic").unwrap();
    assert_eq!(client.backend(), "intercom");
    assert!(!client.capabilities().supports(TicketField::Priority), "Intercom tickets have no priority");
    assert!(
        act_policy(&c.connections[0]).notes_internal_verified,
        "Intercom drafts are written as `note` replies, so they need no manual check"
    );
}

#[test]
fn the_region_or_a_base_url_chooses_the_host() {
    let eu =
        load("[[connections]]\nid = \"ic\"\nbackend = \"intercom\"\naccess_token = \"t\"\nregion = \"eu\"\n")
            .unwrap();
    assert_eq!(eu.connections[0].backend.location(), "https://api.eu.intercom.io");
    let au =
        load("[[connections]]\nid = \"ic\"\nbackend = \"intercom\"\naccess_token = \"t\"\nregion = \"au\"\n")
            .unwrap();
    assert_eq!(au.connections[0].backend.location(), "https://api.au.intercom.io");
    let proxy = load(
        "[[connections]]\nid = \"ic\"\nbackend = \"intercom\"\naccess_token = \"t\"\n\
         base_url = \"http://127.0.0.1:9/intercom\"\nadmin_id = \"991267\"\n",
    )
    .unwrap();
    assert_eq!(proxy.connections[0].backend.location(), "http://127.0.0.1:9/intercom");
}

#[test]
fn wrong_keys_are_refused_with_what_to_do() {
    let e = error_of("");
    assert!(e.contains("backend `intercom` needs `access_token` or `access_token_env`"), "{e}");
    let e = error_of("access_token = \"t\"\nregion = \"eu\"\nbase_url = \"https://api.eu.intercom.io\"");
    assert!(e.contains("set either `base_url` or `region`, not both"), "{e}");
    let e = error_of("access_token = \"t\"\nregion = \"mars\"");
    assert!(e.contains("unknown value `mars`") && e.contains("us, eu, au"), "{e}");
    let e = error_of("access_token = \"t\"\nbase_url = \"ftp://x\"");
    assert!(e.contains("base_url = \"ftp://x\" must be an http:// or https:// URL"), "{e}");
    let e = error_of("access_token = \"t\"\nadmin_id = \" \"");
    assert!(e.contains("admin_id must not be empty"), "{e}");
    let e = error_of("access_token = \"t\"\nsubdomain = \"acme\"");
    assert!(e.contains("unknown key `subdomain` for backend `intercom`"), "{e}");
}
