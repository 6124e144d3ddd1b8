//! The merge plan: desired entries into the files kubectl reads, by kubectl's
//! rules, pruning only what fleetctx owns and may prune.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use yaml_serde::{Mapping, Value};

use super::model::{
    Change, Desired, Kind, LAST_CHANGED, MARKER, entry_name, entry_names, existing_list_mut, key,
    list, list_mut, marker_of,
};

/// One entry's fate, in the file (index into the list of files) it concerns.
#[derive(Clone, Debug, PartialEq)]
pub struct Changed {
    pub kind: Kind,
    pub name: String,
    pub change: Change,
    pub file: usize,
}

#[derive(Clone, Debug, Default)]
pub struct MergeOutcome {
    pub changes: Vec<Changed>,
    pub current_context_cleared: Option<String>,
    /// The files whose `current-context` was unset.
    pub cleared_in: Vec<usize>,
}

impl MergeOutcome {
    pub fn count(&self, pred: impl Fn(&Change) -> bool) -> usize {
        self.changes.iter().filter(|c| pred(&c.change)).count()
    }

    /// The files the merge changed (to be written), in list order.
    pub fn changed_files(&self) -> Vec<usize> {
        let mut files: Vec<usize> = self
            .changes
            .iter()
            .filter(|c| {
                matches!(
                    c.change,
                    Change::Added | Change::Updated(_) | Change::Removed
                )
            })
            .map(|c| c.file)
            .chain(self.cleared_in.iter().copied())
            .collect();
        files.sort_unstable();
        files.dedup();
        files
    }

    fn push(&mut self, kind: Kind, name: &str, change: Change, file: usize) {
        self.changes.push(Changed {
            kind,
            name: name.to_string(),
            change,
            file,
        });
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
    mut desired: Desired,
    now: &str,
) -> (Value, Vec<String>) {
    let mut inner = existing
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let mut changed = Vec::new();
    for field in kind.owned_fields() {
        let want = desired.fields.remove(*field);
        if inner.get(*field).map(normalized) != want.as_ref().map(normalized) {
            changed.push(field.to_string());
            match want {
                Some(v) => {
                    inner.insert(key(field), v);
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
    let same_marker = old_marker.as_ref().is_some_and(|old| {
        let mut old = old.clone();
        old.remove(LAST_CHANGED);
        old == desired.marker
    });
    if !same_marker {
        changed.push("marker".to_string());
    }
    let mut marker = desired.marker;
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

/// Where each entry lives across the files kubectl reads, by kind and name, in
/// list order: (file index, entry index, owned by fleetctx). Built once, so a
/// merge costs the same per entry at ten entries or ten thousand.
type Index = HashMap<(Kind, String), Vec<(usize, usize, bool)>>;

fn index(docs: &[Value]) -> Index {
    let mut index = Index::new();
    for (f, doc) in docs.iter().enumerate() {
        for kind in Kind::ALL {
            for (i, e) in list(doc, kind).iter().enumerate() {
                if let Some(name) = entry_name(e) {
                    index.entry((kind, name.to_string())).or_default().push((
                        f,
                        i,
                        marker_of(kind, e).is_some(),
                    ));
                }
            }
        }
    }
    index
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
    groups: Vec<Vec<Desired>>,
    rules: &MergeRules<'_>,
) -> MergeOutcome {
    let mut outcome = MergeOutcome::default();
    let mut wanted: BTreeSet<(Kind, String)> = BTreeSet::new();
    let mut done: BTreeSet<(Kind, String)> = BTreeSet::new();
    let index = index(docs);
    let occurrences = |kind: Kind, name: &str| {
        index
            .get(&(kind, name.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    };
    // Shadowed copies are removed after the loop, so the index stays true.
    let mut shadowed: Vec<(usize, Kind, usize)> = Vec::new();

    for group in groups {
        let conflicts: Vec<(&Desired, usize)> = group
            .iter()
            .filter_map(|d| {
                occurrences(d.kind, &d.name)
                    .iter()
                    .find(|(_, _, owned)| !owned)
                    .map(|(f, _, _)| (d, *f))
            })
            .collect();
        for d in &group {
            wanted.insert((d.kind, d.name.clone()));
        }
        if !conflicts.is_empty() && !rules.adopt {
            for (d, file) in conflicts {
                if done.insert((d.kind, d.name.clone())) {
                    outcome.push(d.kind, &d.name, Change::Conflict(file), file);
                }
            }
            continue;
        }
        for d in group {
            if !done.insert((d.kind, d.name.clone())) {
                continue; // a shared user, already written for an earlier group
            }
            let found = occurrences(d.kind, &d.name);
            let (file, index) = match found.first() {
                Some((f, i, _)) => (*f, Some(*i)),
                None => (target, None),
            };
            // Copies of our own entry in later files are shadowed: drop them.
            for (f, i, owned) in found.iter().skip(1) {
                if *owned {
                    shadowed.push((*f, d.kind, *i));
                    outcome.push(d.kind, &d.name, Change::Removed, *f);
                }
            }
            let entries = list_mut(&mut docs[file], d.kind);
            let existing_inner = index
                .and_then(|i| entries[i].get(d.kind.inner_key()))
                .cloned();
            let (kind, name) = (d.kind, d.name.clone());
            let (inner, changed) = merged_inner(kind, existing_inner.as_ref(), d, &rules.now);
            let change = match index {
                None => Change::Added,
                Some(_) if changed.is_empty() => Change::Unchanged,
                Some(_) => Change::Updated(changed),
            };
            match index {
                Some(i) if change != Change::Unchanged => {
                    if let Some(map) = entries[i].as_mapping_mut() {
                        map.insert(key(kind.inner_key()), inner);
                    }
                }
                Some(_) => {}
                None => {
                    let mut entry = Mapping::new();
                    entry.insert(key("name"), key(&name));
                    entry.insert(key(kind.inner_key()), inner);
                    entries.push(Value::Mapping(entry));
                }
            }
            outcome.push(kind, &name, change, file);
        }
    }
    shadowed.sort_unstable();
    for (f, kind, i) in shadowed.into_iter().rev() {
        list_mut(&mut docs[f], kind).remove(i);
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
    for (file, doc) in docs.iter_mut().enumerate() {
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
                    outcome.push(kind, name, Change::Removed, file);
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
    for (file, entries) in docs
        .iter_mut()
        .enumerate()
        .filter_map(|(f, d)| Some((f, existing_list_mut(d, Kind::User)?)))
    {
        entries.retain(|e| {
            let Some(name) = entry_name(e) else {
                return true;
            };
            let gone = source_of(Kind::User, e).is_some_and(|s| (rules.prunable)(&s))
                && !wanted.contains(&(Kind::User, name.to_string()))
                && !in_use.contains(name);
            if gone {
                outcome.push(Kind::User, name, Change::Removed, file);
            }
            !gone
        });
    }
    let remaining: BTreeSet<String> = docs
        .iter()
        .flat_map(|doc| entry_names(doc, Kind::Context))
        .collect();
    for (file, doc) in docs.iter_mut().enumerate() {
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
            outcome.cleared_in.push(file);
        }
    }
}

/// Human-readable field differences for `--dry-run`.
pub fn describe(outcome: &MergeOutcome) -> Vec<String> {
    let mut lines = Vec::new();
    let mut by_change: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    for Changed {
        kind, name, change, ..
    } in &outcome.changes
    {
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
