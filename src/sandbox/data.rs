//! The sample helpdesks: where they come from, how new ids are made, and how state is saved.
//!
//! A data file is one connection, named `<connection_id>.json`, in Unified wire shape:
//! `{"categories": [..], "customers": [..], "tickets": [..], "notes": [..]}`. The state file
//! (`--state`) holds every connection: `{"connections": {"<connection_id>": <data file>, ..}}`.

use std::{
    cmp::Ordering,
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize, Serializer};

use super::{
    resource::Resource,
    table::{Table, split_id},
};
use crate::ticketing::{Category, Customer, Note, Ticket};

/// The bundled sample helpdesks: (connection id, file contents), embedded so the binary works
/// from any directory.
const BUNDLED: &[(&str, &str)] = &[
    ("demo", include_str!("../../data/sandbox/demo.json")),
    ("acme-retail", include_str!("../../data/sandbox/acme-retail.json")),
];

/// Every connection's helpdesk, by connection id.
pub type Connections = BTreeMap<String, Helpdesk>;

/// One connection's helpdesk, every table keyed by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Helpdesk {
    /// Categories by id.
    #[serde(serialize_with = "values")]
    pub categories: Table<Category>,
    /// Customers by id.
    #[serde(serialize_with = "values")]
    pub customers: Table<Customer>,
    /// Tickets by id.
    #[serde(serialize_with = "values")]
    pub tickets: Table<Ticket>,
    /// Notes by id.
    #[serde(serialize_with = "values")]
    pub notes: Table<Note>,
    /// Highest sequence number handed out per object kind, so a deleted id is never reused.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) sequences: BTreeMap<String, u64>,
}

/// What a data file (or one connection of the state file) holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HelpdeskFile {
    #[serde(default)]
    categories: Vec<Category>,
    #[serde(default)]
    customers: Vec<Customer>,
    #[serde(default)]
    tickets: Vec<Ticket>,
    #[serde(default)]
    notes: Vec<Note>,
    #[serde(default)]
    sequences: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct StateFileRef<'a> {
    connections: &'a Connections,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    connections: BTreeMap<String, HelpdeskFile>,
}

fn values<S: Serializer, T: Serialize>(map: &Table<T>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(map.values())
}

impl Helpdesk {
    /// Parses one data file; `name` is used in error messages.
    pub fn from_json(name: &str, json: &str) -> anyhow::Result<Self> {
        let file: HelpdeskFile =
            serde_json::from_str(json).map_err(|e| anyhow!("sandbox data file {name}: {e}"))?;
        Self::from_file(name, file)
    }

    fn from_file(name: &str, file: HelpdeskFile) -> anyhow::Result<Self> {
        Ok(Self {
            categories: index(name, file.categories)?,
            customers: index(name, file.customers)?,
            tickets: index(name, file.tickets)?,
            notes: index(name, file.notes)?,
            sequences: file.sequences,
        })
    }

    /// Every agent id the helpdesk mentions (on tickets and notes), sorted.
    pub(crate) fn agents(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tickets
            .values()
            .filter_map(|t| t.user_id.clone())
            .chain(self.notes.values().filter_map(|n| n.user_id.clone()))
            .collect();
        ids.sort_by(|a, b| cmp_ids(a, b));
        ids.dedup();
        ids
    }

    /// A fresh id for a new `R`: the next number after the highest `<prefix><number>` id seen or
    /// handed out, zero-padded like it (`1091` after `1090`, `n-00268` after `n-00267`), else
    /// `<kind>-1`. Tickets get plain numbers when the table has no sequential ids, as helpdesks
    /// number tickets.
    pub(crate) fn next_id<R: Resource>(&mut self) -> String {
        let default_prefix = if R::KIND == "ticket" { String::new() } else { format!("{}-", R::KIND) };
        let (prefix, seen, width) = R::table(self)
            .highest()
            .map_or((default_prefix, 0, 1), |h| (h.prefix.clone(), h.number, h.digits));
        let mut n = seen.max(self.sequences.get(R::KIND).copied().unwrap_or(0));
        let id = loop {
            n += 1;
            let id = format!("{prefix}{n:0width$}");
            if !R::table(self).contains_key(&id) {
                break id;
            }
        };
        self.sequences.insert(R::KIND.to_owned(), n);
        id
    }
}

/// The helpdesk a flavour that serves one helpdesk speaks for: `demo`, else the first one.
pub(crate) fn flavour_desk(desks: &Connections) -> Option<String> {
    const DEMO: &str = "demo";
    if desks.contains_key(DEMO) { Some(DEMO.to_owned()) } else { desks.keys().next().cloned() }
}

/// Keys a table by id; every item needs a unique, non-empty id.
fn index<R: Resource>(name: &str, items: Vec<R>) -> anyhow::Result<Table<R>> {
    let mut table = Table::default();
    for (i, item) in items.into_iter().enumerate() {
        let Some(id) = item.id().filter(|id| !id.is_empty()).map(str::to_owned) else {
            bail!("sandbox data file {name}: {} #{} has no `id`", R::KIND, i + 1);
        };
        if table.insert(id.clone(), item).is_some() {
            bail!("sandbox data file {name}: {} id `{id}` appears twice", R::KIND);
        }
    }
    Ok(table)
}

/// The default list order: ids with the same prefix by number (`2` before `10`), others as text.
/// A total order, because it compares the derived key `(prefix or id, number, id)`.
pub(crate) fn cmp_ids(a: &str, b: &str) -> Ordering {
    fn key(id: &str) -> (&str, u64, &str) {
        split_id(id).map_or((id, 0, id), |(p, n)| (p, n, id))
    }
    key(a).cmp(&key(b))
}

/// Loads the starting state: the state file if it exists, else the data dir, else the bundled data.
pub(crate) fn load(data_dir: Option<&Path>, state: Option<&Path>) -> anyhow::Result<Connections> {
    if let Some(path) = state.filter(|p| p.exists()) {
        return load_state(path);
    }
    let connections = match data_dir {
        Some(dir) => load_dir(dir)?,
        None => BUNDLED
            .iter()
            .map(|(id, json)| Ok(((*id).to_owned(), Helpdesk::from_json(&format!("{id}.json"), json)?)))
            .collect::<anyhow::Result<_>>()?,
    };
    if connections.is_empty() {
        bail!("the sandbox has no data: no <connection_id>.json files found");
    }
    Ok(connections)
}

fn load_dir(dir: &Path) -> anyhow::Result<Connections> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading sandbox data dir {}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut connections = Connections::new();
    for path in files {
        let Some(connection) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        let json = std::fs::read_to_string(&path)
            .with_context(|| format!("reading sandbox data file {}", path.display()))?;
        connections.insert(connection, Helpdesk::from_json(&path.display().to_string(), &json)?);
    }
    if connections.is_empty() {
        bail!("no <connection_id>.json files in sandbox data dir {}", dir.display());
    }
    Ok(connections)
}

fn load_state(path: &Path) -> anyhow::Result<Connections> {
    let name = path.display().to_string();
    let json = std::fs::read_to_string(path).with_context(|| format!("reading sandbox state file {name}"))?;
    let file: StateFile =
        serde_json::from_str(&json).map_err(|e| anyhow!("sandbox state file {name}: {e}"))?;
    file.connections
        .into_iter()
        .map(|(connection, desk)| Ok((connection, Helpdesk::from_file(&name, desk)?)))
        .collect()
}

/// Writes the whole state to `path` atomically (a temp file next to it, then a rename).
pub(crate) async fn save(path: &Path, connections: &Connections) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(&StateFileRef { connections })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    tokio::fs::write(&tmp, json).await.with_context(|| format!("writing {}", tmp.display()))?;
    tokio::fs::rename(&tmp, path)
        .await
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_only_when_the_prefix_has_no_digits() {
        assert_eq!(split_id("1090"), Some(("", 1090)));
        assert_eq!(split_id("n-41"), Some(("n-", 41)));
        assert_eq!(split_id("cat_billing"), None);
        assert_eq!(split_id("0190c3a1-7e2b-7000-8000-000000000123"), None);
    }

    #[test]
    fn id_order_is_natural_and_total() {
        let mut ids = vec!["n-10", "n-9", "n-5x", "10", "2", "abc"];
        ids.sort_by(|a, b| cmp_ids(a, b));
        assert_eq!(ids, vec!["2", "10", "abc", "n-9", "n-10", "n-5x"]);
    }

    #[test]
    fn new_ids_continue_the_sequence_and_are_never_reused() {
        let mut desk = Helpdesk::from_json(
            "t.json",
            r#"{"tickets": [{"id": "1001"}, {"id": "1090"}], "notes": [{"id": "n-0007"}],
                "categories": [{"id": "billing"}]}"#,
        )
        .unwrap();
        assert_eq!(desk.next_id::<Ticket>(), "1091");
        assert_eq!(desk.next_id::<Ticket>(), "1092");
        assert_eq!(desk.next_id::<Note>(), "n-0008");
        assert_eq!(desk.next_id::<Category>(), "category-1");
        assert_eq!(desk.next_id::<Customer>(), "customer-1");
        desk.tickets.remove("1090");
        assert_eq!(desk.next_id::<Ticket>(), "1093");
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let err = Helpdesk::from_json("demo.json", r#"{"tickets": [{"id": 5}]}"#).unwrap_err();
        assert!(err.to_string().starts_with("sandbox data file demo.json: invalid type"), "{err}");
        let err = Helpdesk::from_json("demo.json", r#"{"tickets": [{"id": "1"}, {"id": "1"}]}"#).unwrap_err();
        assert!(err.to_string().contains("ticket id `1` appears twice"), "{err}");
        let err = Helpdesk::from_json("demo.json", r#"{"tickets": [{"subject": "x"}]}"#).unwrap_err();
        assert!(err.to_string().contains("ticket #1 has no `id`"), "{err}");
        let err = Helpdesk::from_json("demo.json", r#"{"ticket": []}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `ticket`"), "{err}");
    }

    #[test]
    fn bundled_data_loads_and_its_references_resolve() {
        let connections = load(None, None).unwrap();
        assert_eq!(connections.keys().collect::<Vec<_>>(), ["acme-retail", "demo"]);
        for (connection, desk) in &connections {
            assert!(!desk.tickets.is_empty(), "{connection} has no tickets");
            for t in desk.tickets.values() {
                let id = t.id.as_deref().unwrap();
                let customer = t.customer_id.as_deref();
                assert!(customer.is_none_or(|c| desk.customers.contains_key(c)), "{connection} ticket {id}");
                let category = t.category_id.as_deref();
                assert!(category.is_none_or(|c| desk.categories.contains_key(c)), "{connection} ticket {id}");
            }
            for n in desk.notes.values() {
                let ticket = n.ticket_id.as_deref().unwrap_or_default();
                assert!(desk.tickets.contains_key(ticket), "{connection} note {:?}", n.id);
            }
            for c in desk.categories.values() {
                let parent = c.parent_id.as_deref();
                assert!(
                    parent.is_none_or(|p| desk.categories.contains_key(p)),
                    "{connection} category {:?}",
                    c.id
                );
            }
        }
    }

    #[tokio::test]
    async fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut desk =
            Helpdesk::from_json("t.json", r#"{"tickets": [{"id": "1", "subject": "hi"}]}"#).unwrap();
        desk.next_id::<Ticket>();
        let connections = Connections::from([("demo".to_owned(), desk)]);
        save(&path, &connections).await.unwrap();
        assert_eq!(load(None, Some(&path)).unwrap(), connections);
    }
}
