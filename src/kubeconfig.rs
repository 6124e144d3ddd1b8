//! kubeconfig files: which file to write, kubectl's lock, parsing without loss,
//! the ownership marker, the merge plan, and the atomic write.
//!
//! The document is kept as a YAML value tree, so every entry, field, extension
//! and `preferences` fleetctx does not own survives, in its order. fleetctx owns
//! an entry only when the entry carries its marker: an `extensions` item named
//! `fleetctx`, which kubectl preserves when it rewrites the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use yaml_serde::{Mapping, Value};

use crate::error::{Error, Result};

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

    fn list_key(self) -> &'static str {
        match self {
            Kind::Cluster => "clusters",
            Kind::User => "users",
            Kind::Context => "contexts",
        }
    }

    fn inner_key(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::User => "user",
            Kind::Context => "context",
        }
    }

    /// The fields of the inner object fleetctx sets; others (a context's
    /// `namespace`, say) belong to the user and are kept.
    fn owned_fields(self) -> &'static [&'static str] {
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

/// kubectl's rule for where new entries go: `--kubeconfig`, else the only
/// `KUBECONFIG` entry, else the first `KUBECONFIG` file that exists, else the last
/// listed, else `~/.kube/config`.
pub fn target_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let listed: Vec<PathBuf> = std::env::var_os("KUBECONFIG")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
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
    let listed: Vec<PathBuf> = std::env::var_os("KUBECONFIG")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
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
    let paths: Vec<PathBuf> = match explicit {
        Some(path) => vec![path.to_path_buf()],
        None => match std::env::var_os("KUBECONFIG") {
            Some(v) => std::env::split_paths(&v).filter(|p| p.is_file()).collect(),
            None => target_path(None)
                .into_iter()
                .filter(|p| p.is_file())
                .collect(),
        },
    };
    let mut seen = BTreeSet::new();
    paths
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .map(|p| load(&p).map(|doc| (p, doc)))
        .collect()
}

pub fn parse(text: &str) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Mapping(Mapping::new()));
    }
    let value = crate::yaml::parse(text).map_err(Error::new)?;
    match value {
        Value::Mapping(_) => Ok(value),
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        _ => Err(Error::new("the top level is not a mapping")),
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

#[derive(Clone, Debug, Default)]
pub struct MergeOutcome {
    pub changes: Vec<(Kind, String, Change)>,
    pub current_context_cleared: Option<String>,
}

impl MergeOutcome {
    pub fn count(&self, pred: impl Fn(&Change) -> bool) -> usize {
        self.changes.iter().filter(|(_, _, c)| pred(c)).count()
    }
}

pub struct MergeRules<'a> {
    /// May an owned entry from this source (its marker's `source`) be removed
    /// when it is not desired? True only for sources that answered completely.
    pub prunable: &'a dyn Fn(&str) -> bool,
    pub prune: bool,
    pub adopt: bool,
    /// The RFC 3339 instant recorded in the marker of entries that change.
    pub now: String,
}

fn key(s: &str) -> Value {
    Value::String(s.to_string())
}

fn entry_name(entry: &Value) -> Option<&str> {
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

fn list(doc: &Value, kind: Kind) -> &[Value] {
    doc.get(kind.list_key())
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The list of a kind when the file has one (pruning never adds an empty list).
fn existing_list_mut(doc: &mut Value, kind: Kind) -> Option<&mut Vec<Value>> {
    doc.get_mut(kind.list_key())
        .and_then(Value::as_sequence_mut)
}

fn list_mut(doc: &mut Value, kind: Kind) -> &mut Vec<Value> {
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

/// A value with what kubectl fills in when it rewrites a file (`env: null`,
/// `provideClusterInfo: false`) taken out, so its rewrite is not a change.
fn normalized(value: &Value) -> Value {
    match value {
        Value::Mapping(map) => Value::Mapping(
            map.iter()
                .filter(|(k, v)| {
                    let default_flag =
                        k.as_str() == Some("provideClusterInfo") && v.as_bool() == Some(false);
                    !(v.is_null() || default_flag)
                })
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        Value::Sequence(items) => Value::Sequence(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// The inner object as it should be: the existing one with owned fields replaced
/// and the marker item replaced; `last-changed` kept when nothing else changed.
fn merged_inner(
    kind: Kind,
    existing: Option<&Value>,
    desired: &Desired,
    now: &str,
) -> (Value, Vec<String>) {
    let mut inner = existing
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let mut changed = Vec::new();
    for field in kind.owned_fields() {
        let want = desired.fields.get(*field);
        if inner.get(*field).map(normalized) != want.map(normalized) {
            changed.push(field.to_string());
            match want {
                Some(v) => {
                    inner.insert(key(field), v.clone());
                }
                None => {
                    inner.remove(*field);
                }
            }
        }
    }
    let old_marker = existing.and_then(|_| {
        inner
            .get("extensions")
            .and_then(Value::as_sequence)
            .and_then(|s| {
                s.iter()
                    .find(|e| e.get("name").and_then(Value::as_str) == Some(MARKER))
            })
            .and_then(|e| e.get("extension"))
            .and_then(Value::as_mapping)
            .cloned()
    });
    let mut marker = desired.marker.clone();
    let same_marker = old_marker.as_ref().is_some_and(|old| {
        let mut old = old.clone();
        old.remove(LAST_CHANGED);
        old == desired.marker
    });
    if !same_marker {
        changed.push("marker".to_string());
    }
    let last_changed = match (&old_marker, changed.is_empty()) {
        (Some(old), true) => old.get(LAST_CHANGED).cloned().unwrap_or_else(|| key(now)),
        _ => key(now),
    };
    marker.insert(key(LAST_CHANGED), last_changed);
    let mut item = Mapping::new();
    item.insert(key("name"), key(MARKER));
    item.insert(key("extension"), Value::Mapping(marker));
    let extensions = inner
        .entry(key("extensions"))
        .or_insert(Value::Sequence(Vec::new()));
    if !extensions.is_sequence() {
        *extensions = Value::Sequence(Vec::new());
    }
    let extensions = extensions.as_sequence_mut().expect("a sequence");
    match extensions
        .iter_mut()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(MARKER))
    {
        Some(slot) => *slot = Value::Mapping(item),
        None => extensions.push(Value::Mapping(item)),
    }
    (Value::Mapping(inner), changed)
}

/// Where each entry of a name lives across the files kubectl reads, in list
/// order: (file index, entry index, owned by fleetctx).
fn occurrences(docs: &[Value], kind: Kind, name: &str) -> Vec<(usize, usize, bool)> {
    docs.iter()
        .enumerate()
        .flat_map(|(f, doc)| {
            list(doc, kind)
                .iter()
                .enumerate()
                .filter(|(_, e)| entry_name(e) == Some(name))
                .map(move |(i, e)| (f, i, marker_of(kind, e).is_some()))
        })
        .collect()
}

/// Merges `desired` into the files kubectl reads (`docs`, in `KUBECONFIG` order),
/// by kubectl's rules: an entry is updated in the file that defines it first, a
/// new one goes to `docs[target]`, and a same-named entry fleetctx does not own,
/// in any file, is a conflict (a later file's would be shadowed). Entries are
/// grouped by the context that uses them: a conflict on any entry of a group
/// leaves the whole group alone.
pub fn merge(
    docs: &mut [Value],
    target: usize,
    groups: &[Vec<Desired>],
    rules: &MergeRules<'_>,
) -> MergeOutcome {
    let mut outcome = MergeOutcome::default();
    let mut wanted: BTreeSet<(Kind, String)> = BTreeSet::new();
    let mut done: BTreeSet<(Kind, String)> = BTreeSet::new();

    for group in groups {
        let conflicts: Vec<(&Desired, usize)> = group
            .iter()
            .filter_map(|d| {
                occurrences(docs, d.kind, &d.name)
                    .into_iter()
                    .find(|(_, _, owned)| !owned)
                    .map(|(f, _, _)| (d, f))
            })
            .collect();
        for d in group {
            wanted.insert((d.kind, d.name.clone()));
        }
        if !conflicts.is_empty() && !rules.adopt {
            for (d, file) in conflicts {
                if done.insert((d.kind, d.name.clone())) {
                    outcome
                        .changes
                        .push((d.kind, d.name.clone(), Change::Conflict(file)));
                }
            }
            continue;
        }
        for d in group {
            if !done.insert((d.kind, d.name.clone())) {
                continue; // a shared user, already written for an earlier group
            }
            let found = occurrences(docs, d.kind, &d.name);
            let (file, index) = match found.first() {
                Some((f, i, _)) => (*f, Some(*i)),
                None => (target, None),
            };
            // Copies of our own entry in later files are shadowed: drop them.
            for (f, i, owned) in found.iter().skip(1).rev() {
                if *owned {
                    list_mut(&mut docs[*f], d.kind).remove(*i);
                    outcome
                        .changes
                        .push((d.kind, d.name.clone(), Change::Removed));
                }
            }
            let entries = list_mut(&mut docs[file], d.kind);
            let existing_inner = index
                .and_then(|i| entries[i].get(d.kind.inner_key()))
                .cloned();
            let (inner, changed) = merged_inner(d.kind, existing_inner.as_ref(), d, &rules.now);
            let change = match index {
                None => Change::Added,
                Some(_) if changed.is_empty() => Change::Unchanged,
                Some(_) => Change::Updated(changed),
            };
            match index {
                Some(i) if change != Change::Unchanged => {
                    if let Some(map) = entries[i].as_mapping_mut() {
                        map.insert(key(d.kind.inner_key()), inner);
                    }
                }
                Some(_) => {}
                None => {
                    let mut entry = Mapping::new();
                    entry.insert(key("name"), key(&d.name));
                    entry.insert(key(d.kind.inner_key()), inner);
                    entries.push(Value::Mapping(entry));
                }
            }
            outcome.changes.push((d.kind, d.name.clone(), change));
        }
    }

    if rules.prune {
        prune(docs, &wanted, rules, &mut outcome);
    }
    outcome
}

fn prune(
    docs: &mut [Value],
    wanted: &BTreeSet<(Kind, String)>,
    rules: &MergeRules<'_>,
    outcome: &mut MergeOutcome,
) {
    let source_of = |kind: Kind, e: &Value| {
        marker_of(kind, e)
            .and_then(|m| m.get("source"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut removed_contexts = BTreeSet::new();
    for doc in docs.iter_mut() {
        for kind in [Kind::Context, Kind::Cluster] {
            let Some(entries) = existing_list_mut(doc, kind) else {
                continue;
            };
            entries.retain(|e| {
                let Some(name) = entry_name(e) else {
                    return true;
                };
                let gone = source_of(kind, e).is_some_and(|s| (rules.prunable)(&s))
                    && !wanted.contains(&(kind, name.to_string()));
                if gone {
                    outcome
                        .changes
                        .push((kind, name.to_string(), Change::Removed));
                    if kind == Kind::Context {
                        removed_contexts.insert(name.to_string());
                    }
                }
                !gone
            });
        }
    }
    // Users go when no remaining context, in any file, uses them (GKE users are shared).
    let in_use: BTreeSet<String> = docs
        .iter()
        .flat_map(|doc| list(doc, Kind::Context))
        .filter_map(|e| e.get("context")?.get("user")?.as_str().map(str::to_string))
        .collect();
    for entries in docs
        .iter_mut()
        .filter_map(|d| existing_list_mut(d, Kind::User))
    {
        entries.retain(|e| {
            let Some(name) = entry_name(e) else {
                return true;
            };
            let gone = source_of(Kind::User, e).is_some_and(|s| (rules.prunable)(&s))
                && !wanted.contains(&(Kind::User, name.to_string()))
                && !in_use.contains(name);
            if gone {
                outcome
                    .changes
                    .push((Kind::User, name.to_string(), Change::Removed));
            }
            !gone
        });
    }
    let remaining: BTreeSet<String> = docs
        .iter()
        .flat_map(|doc| entry_names(doc, Kind::Context))
        .collect();
    for doc in docs.iter_mut() {
        let current = doc
            .get("current-context")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(current) =
            current.filter(|c| removed_contexts.contains(c) && !remaining.contains(c))
        {
            if let Some(map) = doc.as_mapping_mut() {
                map.insert(key("current-context"), key(""));
            }
            outcome.current_context_cleared = Some(current);
        }
    }
}

/// A new, empty kubeconfig document.
pub fn empty_document() -> Value {
    let mut map = Mapping::new();
    map.insert(key("apiVersion"), key("v1"));
    map.insert(key("kind"), key("Config"));
    Value::Mapping(map)
}

/// kubectl's `<file>.lock`, created exclusively and removed when dropped.
pub struct FileLock {
    path: PathBuf,
}

impl FileLock {
    pub fn acquire(target: &Path, timeout: Duration) -> Result<FileLock> {
        let mut name = target.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| {
                Error::new(format!("could not create directory {}", dir.display())).cause(e)
            })?;
        }
        let started = Instant::now();
        let mut said = false;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(FileLock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::new(format!(
                        "could not create lock file {}",
                        path.display()
                    ))
                    .cause(e));
                }
            }
            if !said {
                eprintln!(
                    "fleetctx: waiting for {} (kubectl or another fleetctx is writing {})",
                    path.display(),
                    target.display()
                );
                said = true;
            }
            if started.elapsed() >= timeout {
                return Err(Error::new(format!(
                    "timed out after {}s waiting for the lock {}",
                    timeout.as_secs(),
                    path.display()
                ))
                .hint(format!(
                    "if no kubectl or fleetctx is running, the lock is stale: remove {}",
                    path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Where writes to `path` land: symlinks followed, dangling ones included (the
/// link stays a link; its target is created).
fn write_destination(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&current).map_err(|e| {
                    Error::new(format!("could not read the symlink {}", current.display())).cause(e)
                })?;
                current = match current.parent() {
                    Some(dir) => dir.join(link),
                    None => link,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(Error::new(format!(
        "kubeconfig {} is a loop of symlinks",
        path.display()
    )))
}

/// A temp file next to `dest`, created exclusively (`O_EXCL`: a planted file or
/// symlink is never followed) under a name nobody can predict.
fn create_temp(dest: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    use std::hash::{BuildHasher, Hasher};
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for _ in 0..16 {
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let tmp = dir.join(format!(".{name}.fleetctx-{:016x}.tmp", hasher.finish()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temp file name was free")))
}

/// Replaces the kubeconfig `target` with `text` (called under kubectl's lock).
///
/// Atomically when it can: a temp file in the same directory with the original's
/// mode, owner and group, synced, then renamed over it; a symlinked kubeconfig is
/// written through and stays a link. A read-only file is refused. A file that
/// cannot be renamed over (a single-file bind mount: EBUSY, EXDEV) is rewritten in
/// place, with a warning, once the temp file proved the data fits. On any failure
/// the original is left as it was and no temp file remains.
pub fn write_atomic(target: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dest = write_destination(target)?;
    let failed = || Error::new(format!("could not write kubeconfig {}", target.display()));
    let existing = match fs::metadata(&dest) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(failed().cause(e)),
    };
    if let Some(m) = &existing
        && m.permissions().mode() & 0o222 == 0
    {
        return Err(Error::new(format!(
            "kubeconfig {} is read-only (mode {:o}); it was left untouched",
            target.display(),
            m.permissions().mode() & 0o7777
        ))
        .hint(format!(
            "make it writable (`chmod u+w {}`), or pass --kubeconfig FILE to write another file",
            dest.display()
        )));
    }
    let mode = existing
        .as_ref()
        .map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let (tmp, mut file) = create_temp(&dest).map_err(|e| failed().cause(e))?;
    let cleanup = |e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        failed().cause(e)
    };
    file.write_all(text.as_bytes()).map_err(cleanup)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(cleanup)?;
    let mut in_place = None;
    if let Some(m) = &existing
        && let Err(e) = std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()))
    {
        // Not ours to give away (not root): a rename would change the owner.
        in_place = Some(format!("its owner could not be kept ({e})"));
    }
    file.sync_all().map_err(cleanup)?;
    drop(file);
    if in_place.is_none() {
        match fs::rename(&tmp, &dest) {
            Ok(()) => {
                if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty())
                    && let Ok(d) = fs::File::open(dir)
                {
                    let _ = d.sync_all();
                }
                return Ok(());
            }
            Err(e) if matches!(e.raw_os_error(), Some(EBUSY | EXDEV)) => {
                in_place = Some(format!("it cannot be renamed over ({e}; a bind mount?)"));
            }
            Err(e) => return Err(cleanup(e)),
        }
    }
    let _ = fs::remove_file(&tmp);
    crate::error::warn(format!(
        "rewriting {} in place: {}",
        target.display(),
        in_place.unwrap_or_default()
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&dest)
        .map_err(|e| failed().cause(e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| failed().cause(e))?;
    file.sync_all().map_err(|e| failed().cause(e))
}

/// `rename(2)` onto a mount point, and across file systems.
const EBUSY: i32 = 16;
const EXDEV: i32 = 18;

/// Human-readable field differences for `--dry-run`.
pub fn describe(outcome: &MergeOutcome) -> Vec<String> {
    let mut lines = Vec::new();
    let mut by_change: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    for (kind, name, change) in &outcome.changes {
        let (order, line) = match change {
            Change::Added => (0, format!("+ {} {}", kind.label(), name)),
            Change::Updated(fields) => (
                1,
                format!("~ {} {} ({})", kind.label(), name, fields.join(", ")),
            ),
            Change::Removed => (2, format!("- {} {}", kind.label(), name)),
            Change::Conflict(_) => (
                3,
                format!(
                    "! {} {} exists and is not managed by fleetctx; left alone",
                    kind.label(),
                    name
                ),
            ),
            Change::Unchanged => continue,
        };
        by_change.entry(order).or_default().push(line);
    }
    for group in by_change.into_values() {
        lines.extend(group);
    }
    if let Some(current) = &outcome.current_context_cleared {
        lines.push(format!("~ current-context {current} (pruned) -> unset"));
    }
    lines
}
