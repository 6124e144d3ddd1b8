//! `fleetctx list`: the entries fleetctx manages, read from their ownership
//! markers, as a table or in a stable JSON/YAML shape for scripts.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use yaml_serde::Value;

use crate::cloud::CLOUDS;
use crate::error::{Error, Result};
use crate::kubeconfig::{self, Kind};

/// One managed context. The JSON/YAML shape is documented in the README: keys are
/// always present, `null` when they do not apply. After `provider` comes one key
/// per cloud for the owner it records (`project`, `account`), in registry order.
#[derive(Clone, Debug, PartialEq)]
pub struct Managed {
    pub context: String,
    pub provider: Option<String>,
    /// Each registered cloud's owner key with this entry's value for it.
    pub owners: Vec<(&'static str, Option<String>)>,
    pub profile: Option<String>,
    pub location: Option<String>,
    pub cluster: Option<String>,
    pub server: Option<String>,
    pub last_changed: Option<String>,
    /// The kubeconfig file that holds the entry.
    pub file: String,
}

impl Managed {
    /// The owner, whichever cloud's key holds it.
    pub fn owner(&self) -> Option<&str> {
        self.owners.iter().find_map(|(_, v)| v.as_deref())
    }
}

impl Serialize for Managed {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(8 + self.owners.len()))?;
        map.serialize_entry("context", &self.context)?;
        map.serialize_entry("provider", &self.provider)?;
        for (key, value) in &self.owners {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("profile", &self.profile)?;
        map.serialize_entry("location", &self.location)?;
        map.serialize_entry("cluster", &self.cluster)?;
        map.serialize_entry("server", &self.server)?;
        map.serialize_entry("last_changed", &self.last_changed)?;
        map.serialize_entry("file", &self.file)?;
        map.end()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Every managed context in the files kubectl would read (first file wins, as in kubectl).
pub fn managed(explicit: Option<&Path>) -> Result<Vec<Managed>> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for (path, doc) in kubeconfig::load_all(explicit)? {
        let servers: Vec<(String, String)> = kubeconfig::owned_entries(&doc, Kind::Cluster)
            .into_iter()
            .filter_map(|(name, inner, _)| Some((name, inner.get("server")?.as_str()?.to_string())))
            .collect();
        for (name, inner, marker) in kubeconfig::owned_entries(&doc, Kind::Context) {
            if !seen.insert(name.clone()) {
                continue;
            }
            let field = |key: &str| marker.get(key).and_then(Value::as_str).map(str::to_string);
            let cluster_entry = inner
                .get("cluster")
                .and_then(Value::as_str)
                .unwrap_or_default();
            found.push(Managed {
                server: servers
                    .iter()
                    .find(|(n, _)| n == cluster_entry)
                    .map(|(_, s)| s.clone()),
                context: name,
                provider: field("provider"),
                owners: CLOUDS
                    .iter()
                    .map(|c| (c.owner_key(), field(c.owner_key())))
                    .collect(),
                profile: field("profile"),
                location: field("location"),
                cluster: field("cluster"),
                last_changed: field(kubeconfig::LAST_CHANGED),
                file: path.display().to_string(),
            });
        }
    }
    found.sort_by(|a, b| a.context.cmp(&b.context));
    Ok(found)
}

pub fn render(entries: &[Managed], format: Format) -> Result<String> {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    let owners: Vec<String> = CLOUDS
        .iter()
        .map(|c| c.owner_key().to_uppercase())
        .collect();
    let owners = owners.join("/");
    let header = [
        "CONTEXT",
        "PROVIDER",
        owners.as_str(),
        "PROFILE",
        "LOCATION",
        "CLUSTER",
        "SERVER",
        "LAST CHANGED",
    ];
    render_rows(entries, format, &header, |m| {
        [
            m.context.clone(),
            dash(&m.provider),
            dash(&m.owner().map(str::to_string)),
            dash(&m.profile),
            dash(&m.location),
            dash(&m.cluster),
            dash(&m.server),
            dash(&m.last_changed),
        ]
    })
}

/// Rows as a table (columns from `cells`) or as their serde shape in JSON or YAML.
pub fn render_rows<T: Serialize, const N: usize>(
    rows: &[T],
    format: Format,
    header: &[&str; N],
    cells: impl Fn(&T) -> [String; N],
) -> Result<String> {
    match format {
        Format::Json => serde_json::to_string_pretty(rows)
            .map_err(|e| Error::new("could not encode JSON").cause(e)),
        Format::Yaml => {
            let value = yaml_serde::to_value(rows)
                .map_err(|e| Error::new("could not encode YAML").cause(e))?;
            Ok(crate::kubeconfig::yaml::to_string(&value)
                .trim_end()
                .to_string())
        }
        Format::Table => Ok(table(header, &rows.iter().map(cells).collect::<Vec<_>>())),
    }
}

/// Left-aligned columns separated by two spaces, like kubectl's.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}
