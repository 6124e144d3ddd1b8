//! One context alone in a small kubeconfig of its own (`fleetctx kubeconfig`,
//! `fleetctx shell`): kubectl then parses three entries, not the whole fleet.

use std::path::{Path, PathBuf};

use yaml_serde::Value;

use super::model::{Kind, empty_document, entry_name, key, list};
use crate::error::{Error, Result};

/// Fields of a user entry that hold a secret: such an entry is never copied.
const STATIC_SECRETS: [&str; 4] = ["token", "password", "client-key-data", "auth-provider"];

/// Path fields that kubectl resolves against the directory of the file holding
/// them: made absolute when the entry moves to another file.
const RELATIVE_PATHS: [(&str, &str); 5] = [
    ("cluster", "certificate-authority"),
    ("user", "client-certificate"),
    ("user", "client-key"),
    ("user", "tokenFile"),
    ("user", "exec.command"),
];

/// The kubeconfig holding only `context`, its cluster and its user, taken from
/// `files` (kubectl's list, first file wins) with relative paths made absolute.
pub fn extract(files: &[(PathBuf, Value)], context: &str) -> Result<Value> {
    let find = |kind: Kind, name: &str| {
        files.iter().find_map(|(path, doc)| {
            list(doc, kind)
                .iter()
                .find(|e| entry_name(e) == Some(name))
                .map(|e| (path.as_path(), e.clone()))
        })
    };
    let names: Vec<&str> = files
        .iter()
        .map(|(p, _)| p.to_str().unwrap_or("?"))
        .collect();
    let (_, ctx) = find(Kind::Context, context).ok_or_else(|| {
        Error::new(format!("no context {context} in {}", names.join(", ")))
            .hint("`fleetctx list` or `kubectl config get-contexts` shows the contexts there are")
    })?;
    let field = |name: &str| {
        ctx.get("context")
            .and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut doc = empty_document();
    let map = doc.as_mapping_mut().expect("a mapping");
    for (kind, name) in [
        (Kind::Cluster, field("cluster")),
        (Kind::User, field("user")),
    ] {
        let Some(name) = name else { continue };
        let Some((from, mut entry)) = find(kind, &name) else {
            return Err(Error::new(format!(
                "context {context} names {} {name}, which no file defines",
                kind.label()
            )));
        };
        if kind == Kind::User
            && let Some(secret) = STATIC_SECRETS
                .iter()
                .find(|s| entry.get("user").and_then(|u| u.get(**s)).is_some())
        {
            return Err(Error::new(format!(
                "user {name} of context {context} holds a static credential ({secret}); fleetctx never copies one"
            ))
            .hint(format!("use `kubectl --context {context}` with your kubeconfig")));
        }
        absolutize(&mut entry, kind, from);
        map.insert(key(kind_list(kind)), Value::Sequence(vec![entry]));
    }
    map.insert(key("contexts"), Value::Sequence(vec![ctx]));
    map.insert(key("current-context"), key(context));
    Ok(doc)
}

fn kind_list(kind: Kind) -> &'static str {
    match kind {
        Kind::Cluster => "clusters",
        Kind::User => "users",
        Kind::Context => "contexts",
    }
}

fn absolutize(entry: &mut Value, kind: Kind, from: &Path) {
    let base = from.parent().unwrap_or(Path::new("."));
    for (inner, path) in RELATIVE_PATHS {
        if inner != kind.label() {
            continue;
        }
        let mut slot = entry.get_mut(inner);
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let Some(value) = slot else { break };
            if parts.peek().is_some() {
                slot = value.get_mut(part);
                continue;
            }
            if let Some(Value::String(p)) = value.get_mut(part) {
                // A bare command is looked up on PATH; only paths move.
                let is_path = part != "command" || p.contains('/');
                if is_path && Path::new(p.as_str()).is_relative() {
                    *p = base.join(p.as_str()).display().to_string();
                }
            }
            break;
        }
    }
}

/// Writes `doc` as `<dir>/<context>.yaml` (0600, the directory 0700, replaced
/// atomically) and answers its path.
pub fn write(dir: &Path, context: &str, doc: &Value) -> Result<PathBuf> {
    // Context names may hold `/` and `:` (ARNs): keep the file name plain.
    let stem: String = context
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{stem}-{}.yaml", &super::file::digest(context)[..8]);
    super::file::write_private(dir, &name, &super::yaml::to_string(doc))
}
