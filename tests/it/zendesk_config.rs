//! A Zendesk connection's keys: what loads, what is refused at start and why, and the client the
//! keys build.

use deskpilot::{
    app::parts::{act_policy, helpdesk_for},
    config::{BackendConfig, Config, ZendeskCategorySource, ZendeskTicketExport},
};

use crate::helpers::{load_config, refusal_of};

/// The variable the credential is read from.
const VAR: (&str, &str) = ("ZD_TOKEN", "t0k");
/// The connection every refused configuration starts with.
const HEAD: &str = "[[connections]]\nid = \"zd\"\nbackend = \"zendesk\"\nsubdomain = \"acme\"\n";

fn load(toml: &str) -> anyhow::Result<Config> {
    load_config(toml, VAR)
}

fn error_of(keys: &str) -> String {
    refusal_of(HEAD, keys, VAR)
}

#[test]
fn an_api_token_connection_loads_with_its_defaults_and_builds_a_client() {
    let c = load(
        "[[connections]]\nid = \"zd\"\nbackend = \"zendesk\"\nsubdomain = \"acme\"\n\
         email = \"agent@acme.com\"\napi_token_env = \"ZD_TOKEN\"\nmode = \"apply\"\n",
    )
    .unwrap();
    let BackendConfig::Zendesk(z) = &c.connections[0].backend else { panic!("not zendesk") };
    assert_eq!(z.base_url(), "https://acme.zendesk.com");
    assert_eq!(z.ticket_export, ZendeskTicketExport::Search);
    assert_eq!(z.category_source(), ZendeskCategorySource::Groups);
    assert_eq!(helpdesk_for(&c, "zd").unwrap().backend(), "zendesk");
    assert!(
        act_policy(&c.connections[0]).notes_internal_verified,
        "Zendesk notes are written with public=false, so drafts need no manual check"
    );
}

#[test]
fn oauth_field_categories_and_the_incremental_export_are_chosen_by_keys() {
    let c = load(
        "[[connections]]\nid = \"zd\"\nbackend = \"zendesk\"\nsubdomain = \"acme\"\n\
         base_url = \"http://127.0.0.1:9/zendesk\"\naccess_token = \"oauth\"\n\
         ticket_export = \"incremental\"\ncategory_field_id = 360001234567\n",
    )
    .unwrap();
    let BackendConfig::Zendesk(z) = &c.connections[0].backend else { panic!("not zendesk") };
    assert!(z.uses_oauth());
    assert_eq!(z.category_source(), ZendeskCategorySource::Field);
    assert_eq!(z.ticket_export, ZendeskTicketExport::Incremental);
    assert_eq!(c.connections[0].backend.location(), "http://127.0.0.1:9/zendesk");
}

#[test]
fn wrong_keys_are_refused_with_what_to_do() {
    let e = error_of("api_token = \"t\"");
    assert!(e.contains("backend `zendesk` needs `email` with an API token"), "{e}");
    let e = error_of("email = \"a@acme.com\"");
    assert!(e.contains("backend `zendesk` needs `api_token` or `api_token_env`"), "{e}");
    let e = error_of("email = \"a@acme.com\"\napi_token = \"t\"\naccess_token = \"o\"");
    assert!(e.contains("set either an API token (`api_token`, `email`) or an OAuth `access_token`"), "{e}");
    let e = error_of("access_token = \"o\"\ncategory_source = \"field\"");
    assert!(e.contains("category_source = \"field\" needs `category_field_id`"), "{e}");
    let e = error_of("access_token = \"o\"\ncategory_source = \"forms\"\ncategory_field_id = 1");
    assert!(e.contains("category_field_id is only read with category_source = \"field\""), "{e}");
    let e = error_of("access_token = \"o\"\nticket_export = \"full\"");
    assert!(e.contains("`ticket_export`: unknown value `full`; expected one of search, incremental"), "{e}");
    let e = error_of("access_token = \"o\"\nbase_url = \"ftp://x\"");
    assert!(e.contains("base_url = \"ftp://x\" must be an http:// or https:// URL"), "{e}");
}
