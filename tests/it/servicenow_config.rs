//! A ServiceNow connection's keys: what loads, what is refused at start and why, and the client
//! the keys build.

use deskpilot::{
    app::parts::{act_policy, helpdesk_for},
    config::{BackendConfig, Config},
};

use crate::helpers::{load_config, refusal_of};

/// The variable the credential is read from.
const VAR: (&str, &str) = ("SN_PASSWORD", "pa55");
/// The connection every refused configuration starts with.
const HEAD: &str = "[[connections]]\nid = \"sn\"\nbackend = \"servicenow\"\n";

fn load(toml: &str) -> anyhow::Result<Config> {
    load_config(toml, VAR)
}

fn error_of(keys: &str) -> String {
    refusal_of(HEAD, keys, VAR)
}

#[test]
fn a_basic_auth_connection_loads_with_its_defaults_and_builds_a_client() {
    let c = load(
        "[[connections]]\nid = \"sn\"\nbackend = \"servicenow\"\ninstance = \"acme\"\n\
         username = \"deskpilot.integration\"\npassword_env = \"SN_PASSWORD\"\nmode = \"apply\"\n",
    )
    .unwrap();
    let BackendConfig::ServiceNow(s) = &c.connections[0].backend else { panic!("not servicenow") };
    assert_eq!(s.base_url(), "https://acme.service-now.com");
    assert!(!s.uses_oauth());
    assert_eq!(s.category_cache().as_secs(), 300);
    assert_eq!(helpdesk_for(&c, "sn").unwrap().backend(), "servicenow");
    assert!(
        act_policy(&c.connections[0]).notes_internal_verified,
        "drafts are written as work notes, so they need no manual check"
    );
}

#[test]
fn an_oauth_token_and_a_base_url_are_chosen_by_keys() {
    let c = load(
        "[[connections]]\nid = \"sn\"\nbackend = \"servicenow\"\nbase_url = \"http://127.0.0.1:9/servicenow\"\n\
         access_token = \"oauth\"\ncategory_cache_secs = 0\n",
    )
    .unwrap();
    let BackendConfig::ServiceNow(s) = &c.connections[0].backend else { panic!("not servicenow") };
    assert!(s.uses_oauth());
    assert_eq!(c.connections[0].backend.location(), "http://127.0.0.1:9/servicenow");
    assert_eq!(helpdesk_for(&c, "sn").unwrap().backend(), "servicenow");
}

#[test]
fn wrong_keys_are_refused_with_what_to_do() {
    let e = error_of("username = \"u\"\npassword = \"p\"");
    assert!(e.contains("backend `servicenow` needs `instance`"), "{e}");
    let e = error_of("instance = \"acme\"\npassword = \"p\"");
    assert!(e.contains("backend `servicenow` needs `username` with a password"), "{e}");
    let e = error_of("instance = \"acme\"\nusername = \"u\"");
    assert!(e.contains("backend `servicenow` needs `password` or `password_env`"), "{e}");
    let e = error_of("instance = \"acme\"\nusername = \"u\"\npassword = \"p\"\naccess_token = \"o\"");
    assert!(e.contains("set either a user's `password` (with `username`) or an OAuth `access_token`"), "{e}");
    let e = error_of("instance = \"acme\"\naccess_token = \"o\"\nbase_url = \"ftp://x\"");
    assert!(e.contains("base_url = \"ftp://x\" must be an http:// or https:// URL"), "{e}");
    let e = error_of("instance = \"acme\"\naccess_token = \"o\"\ntags = true");
    assert!(e.contains("unknown key `tags` for backend `servicenow`"), "{e}");
}
