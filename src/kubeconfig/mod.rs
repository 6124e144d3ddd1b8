//! kubeconfig files, as kubectl reads and writes them.
//!
//! - this module: which files (`KUBECONFIG`, kubectl's rules) and reading them;
//! - `model`: entries, kinds and fleetctx's ownership marker;
//! - `merge`: the plan that puts desired entries into the files;
//! - `yaml`: YAML 1.1 reading and writing, as kubectl does;
//! - `file`: kubectl's `<file>.lock` and the safe write;
//! - `single`: one context alone in a file of its own.
//!
//! A document is kept as a YAML value tree, so every entry, field, extension and
//! `preferences` fleetctx does not own survives, in its order. fleetctx owns an
//! entry only when the entry carries its marker: an `extensions` item named
//! `fleetctx`, which kubectl preserves when it rewrites the file.

mod file;
mod merge;
mod model;
pub mod names;
pub mod single;
pub mod yaml;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use yaml_serde::{Mapping, Value};

use crate::error::{Error, Result};

pub use file::{FileLock, write_atomic};
pub use merge::{Changed, MergeOutcome, MergeRules, describe, merge};
pub use model::{
    Change, Desired, Kind, LAST_CHANGED, MARKER, empty_document, entry_names, marker_of,
    owned_entries,
};

/// The files `KUBECONFIG` lists, empty entries dropped.
fn kubeconfig_env() -> Vec<PathBuf> {
    std::env::var_os("KUBECONFIG")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// kubectl's rule for where new entries go: `--kubeconfig`, else the only
/// `KUBECONFIG` entry, else the first `KUBECONFIG` file that exists, else the last
/// listed, else `~/.kube/config`.
pub fn target_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let listed = kubeconfig_env();
    if let Some(existing) = listed.iter().find(|p| p.exists()) {
        return Ok(existing.clone());
    }
    if let Some(last) = listed.last() {
        return Ok(last.clone());
    }
    directories::BaseDirs::new()
        .map(|d| d.home_dir().join(".kube").join("config"))
        .ok_or_else(|| {
            Error::new("cannot find the home directory for ~/.kube/config")
                .hint("pass --kubeconfig FILE")
        })
}

/// The files kubectl reads, in order, missing ones included: `--kubeconfig`
/// alone, else `KUBECONFIG` (de-duplicated), else `~/.kube/config`.
pub fn listed_paths(explicit: Option<&Path>) -> Result<Vec<PathBuf>> {
    if let Some(path) = explicit {
        return Ok(vec![path.to_path_buf()]);
    }
    let listed = kubeconfig_env();
    if listed.is_empty() {
        return Ok(vec![target_path(None)?]);
    }
    let mut seen = BTreeSet::new();
    Ok(listed
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .collect())
}

/// Reads and parses a kubeconfig; a missing or empty file is an empty config.
pub fn load(path: &Path) -> Result<Value> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(
                Error::new(format!("could not read kubeconfig {}", path.display())).cause(e),
            );
        }
    };
    parse(&text).map_err(|e| {
        Error::new(format!("kubeconfig {} does not parse; it was left untouched", path.display()))
            .because(e.message().to_string())
            .hint(format!(
                "fix or move {} (fleetctx never writes a file it cannot parse); `kubectl config view --kubeconfig {}` shows what kubectl makes of it",
                path.display(),
                path.display()
            ))
    })
}

/// The files kubectl reads, parsed: `--kubeconfig`, else every existing
/// `KUBECONFIG` entry, else `~/.kube/config` if it exists.
pub fn load_all(explicit: Option<&Path>) -> Result<Vec<(PathBuf, Value)>> {
    listed_paths(explicit)?
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| load(&p).map(|doc| (p, doc)))
        .collect()
}

pub fn parse(text: &str) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Mapping(Mapping::new()));
    }
    let value = yaml::parse(text).map_err(Error::new)?;
    match value {
        Value::Mapping(_) => Ok(value),
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        _ => Err(Error::new("the top level is not a mapping")),
    }
}
