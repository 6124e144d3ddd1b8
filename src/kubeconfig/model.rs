//! The entries of a kubeconfig (clusters, users, contexts) and fleetctx's
//! ownership marker on them.

use yaml_serde::{Mapping, Value};

/// The name of the `extensions` item that marks an entry as fleetctx's.
pub const MARKER: &str = "fleetctx";
/// The marker field recording when fleetctx last changed the entry.
pub const LAST_CHANGED: &str = "last-changed";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Cluster,
    User,
    Context,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Cluster, Kind::User, Kind::Context];

    pub(super) fn list_key(self) -> &'static str {
        match self {
            Kind::Cluster => "clusters",
            Kind::User => "users",
            Kind::Context => "contexts",
        }
    }

    pub(super) fn inner_key(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::User => "user",
            Kind::Context => "context",
        }
    }

    /// The fields of the inner object fleetctx sets; others (a context's
    /// `namespace`, say) belong to the user and are kept.
    pub(super) fn owned_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Cluster => &[
                "server",
                "certificate-authority-data",
                "certificate-authority",
                "tls-server-name",
            ],
            Kind::User => &["exec", "token", "auth-provider"],
            Kind::Context => &["cluster", "user"],
        }
    }

    pub fn label(self) -> &'static str {
        self.inner_key()
    }
}

/// An entry fleetctx wants in the file: the inner object's owned fields and the
/// marker's fields (without `last-changed`, which the merge manages).
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub kind: Kind,
    pub name: String,
    pub fields: Mapping,
    pub marker: Mapping,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Updated(Vec<String>),
    Removed,
    Unchanged,
    /// A same-named entry fleetctx does not own, in the file at this index of
    /// the list (left alone without `--adopt`).
    Conflict(usize),
}

pub(super) fn key(s: &str) -> Value {
    Value::String(s.to_string())
}

pub(super) fn entry_name(entry: &Value) -> Option<&str> {
    entry.get("name").and_then(Value::as_str)
}

/// The marker of an entry, if fleetctx owns it.
pub fn marker_of(kind: Kind, entry: &Value) -> Option<&Mapping> {
    entry
        .get(kind.inner_key())?
        .get("extensions")?
        .as_sequence()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(MARKER))?
        .get("extension")?
        .as_mapping()
}

/// Every entry of a kind fleetctx owns: (name, inner object, marker).
pub fn owned_entries(doc: &Value, kind: Kind) -> Vec<(String, &Value, &Mapping)> {
    list(doc, kind)
        .iter()
        .filter_map(|e| {
            Some((
                entry_name(e)?.to_string(),
                e.get(kind.inner_key())?,
                marker_of(kind, e)?,
            ))
        })
        .collect()
}

/// The names of every entry of a kind, owned or not.
pub fn entry_names(doc: &Value, kind: Kind) -> Vec<String> {
    list(doc, kind)
        .iter()
        .filter_map(entry_name)
        .map(str::to_string)
        .collect()
}

pub(super) fn list(doc: &Value, kind: Kind) -> &[Value] {
    doc.get(kind.list_key())
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The list of a kind when the file has one (pruning never adds an empty list).
pub(super) fn existing_list_mut(doc: &mut Value, kind: Kind) -> Option<&mut Vec<Value>> {
    doc.get_mut(kind.list_key())
        .and_then(Value::as_sequence_mut)
}

pub(super) fn list_mut(doc: &mut Value, kind: Kind) -> &mut Vec<Value> {
    let map = doc.as_mapping_mut().expect("a kubeconfig is a mapping");
    let slot = map
        .entry(key(kind.list_key()))
        .or_insert(Value::Sequence(Vec::new()));
    if !slot.is_sequence() {
        // `clusters: null`, as kubectl itself may write.
        *slot = Value::Sequence(Vec::new());
    }
    slot.as_sequence_mut().expect("just made a sequence")
}

/// A new, empty kubeconfig document.
pub fn empty_document() -> Value {
    let mut map = Mapping::new();
    map.insert(key("apiVersion"), key("v1"));
    map.insert(key("kind"), key("Config"));
    Value::Mapping(map)
}
