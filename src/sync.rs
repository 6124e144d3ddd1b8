//! `fleetctx sync`: discover every cluster in parallel, turn each into a cluster,
//! user and context entry, and merge them into one kubeconfig under kubectl's
//! lock. Sources that fail are reported and skipped; the rest is still written.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use yaml_serde::{Mapping, Value};

use crate::cache;
use crate::cloud::{CLOUDS, Discovered, Scan, ScanContext};
use crate::discovery::{Answer, Found, Limits, Progress, SourceResult};
use crate::error::{Error, Exit, Result, warn};
use crate::kubeconfig::yaml;
use crate::kubeconfig::{self, Change, Desired, FileLock, Kind, MergeRules};
use crate::token::TokenOptions;

/// Plain values for one sync, merged from flags and `config.yaml`.
pub struct SyncOptions {
    /// What each cloud scans (`cloud::Cloud::plan`), by cloud name.
    pub scans: Vec<(&'static str, Box<dyn Scan>)>,
    pub kubeconfig: Option<PathBuf>,
    pub name_template: Option<String>,
    pub exec_command: String,
    pub concurrency: usize,
    pub timeout: Duration,
    pub lock_timeout: Duration,
    pub prune: bool,
    pub adopt: bool,
    pub dry_run: bool,
    /// `-o json`: a machine-readable report on stdout (messages stay on stderr).
    pub json: bool,
    pub verbose: bool,
    pub quiet: bool,
    pub token: TokenOptions,
}

/// What discovery produced, before anything is written: each cloud's answer.
pub(crate) struct Discovery {
    pub clouds: Vec<(&'static str, Discovered)>,
    pub skipped: Vec<String>,
}

impl Discovery {
    pub fn results(&self) -> impl Iterator<Item = &SourceResult> {
        self.clouds.iter().flat_map(|(_, found)| &found.results)
    }
}

pub fn run(mut options: SyncOptions) -> Result<Exit> {
    let explicit = options.kubeconfig.as_deref();
    let paths = kubeconfig::listed_paths(explicit)?;
    let target_path = kubeconfig::target_path(explicit)?;
    let target = paths.iter().position(|p| *p == target_path).unwrap_or(0);
    // Refuse an unparseable file before any network call.
    for path in &paths {
        kubeconfig::load(path)?;
    }

    let started = std::time::Instant::now();
    let discovery = discover(
        &mut options.scans,
        &Limits::new(options.concurrency, options.timeout, options.verbose),
        options.quiet,
        &options.token,
    )?;
    let discovered = started.elapsed();
    let options = &options;
    let named = names(options.name_template.as_deref(), discovery.results());

    let complete: BTreeSet<String> = discovery
        .results()
        .filter(|r| r.is_complete())
        .map(|r| r.source.clone())
        .collect();
    let scanned: BTreeSet<String> = discovery.results().map(|r| r.source.clone()).collect();
    let prunable = |source: &str| {
        complete.contains(source)
            || discovery.clouds.iter().any(|(name, found)| {
                // An entry of the cloud as a whole (a shared user) goes only when
                // every source of the cloud answered completely.
                (source == *name && found.scanned && found.results.iter().all(SourceResult::is_complete))
                    // A complete listing of sources: one not listed is gone.
                    || (found.listing_complete
                        && source.strip_prefix(name).is_some_and(|r| r.starts_with('/'))
                        && !scanned.contains(source))
            })
    };
    let rules = MergeRules {
        prunable: &prunable,
        prune: options.prune,
        adopt: options.adopt,
        now: cache::rfc3339(cache::now()),
    };

    // Merge without locks to learn which files change, then lock exactly those
    // (kubectl's `<file>.lock`, in list order), re-read and merge again; if that
    // touches another file, widen the set and go round once more.
    let mut locked: Vec<usize> = Vec::new();
    let mut _locks: Vec<FileLock> = Vec::new();
    let merging = std::time::Instant::now();
    let (outcome, docs, dirty) = loop {
        let mut docs = Vec::with_capacity(paths.len());
        for path in &paths {
            docs.push(kubeconfig::load(path)?);
        }
        if docs[target].as_mapping().is_some_and(Mapping::is_empty) {
            docs[target] = kubeconfig::empty_document();
        }
        // The entries are built per round and moved into the documents, so the
        // fleet is held once, not twice.
        let groups = named
            .iter()
            .map(|(found, name)| entries(options, found, name))
            .collect();
        let outcome = kubeconfig::merge(&mut docs, target, groups, &rules);
        let dirty = outcome.changed_files();
        if options.dry_run || dirty.iter().all(|i| locked.contains(i)) {
            break (outcome, docs, dirty);
        }
        _locks.clear();
        locked.extend(dirty);
        locked.sort_unstable();
        locked.dedup();
        for &i in &locked {
            _locks.push(FileLock::acquire(&paths[i], options.lock_timeout)?);
        }
    };
    let written: Vec<&std::path::Path> = dirty.iter().map(|&i| paths[i].as_path()).collect();
    if options.dry_run && !options.json {
        let mut lines = kubeconfig::describe(&outcome);
        if lines.is_empty() {
            lines.push("no changes".to_string());
        }
        crate::error::write_stdout(&lines.join("\n"))?;
    } else if !options.dry_run {
        let names_index = crate::cache::TokenCache::locate().map(|c| c.dir().join("names"));
        for &i in &dirty {
            kubeconfig::write_atomic(&paths[i], &yaml::to_string(&docs[i]))?;
            if let Some(dir) = &names_index {
                kubeconfig::names::remember(dir, &paths[i], &docs[i]);
            }
        }
    }
    drop(docs);
    let timings = Timings {
        discover_ms: discovered.as_millis(),
        merge_write_ms: merging.elapsed().as_millis(),
    };
    if options.verbose {
        eprintln!(
            "fleetctx: discovery took {} ms; reading, merging and writing {} files took {} ms",
            timings.discover_ms,
            paths.len(),
            timings.merge_write_ms
        );
    }
    report(options, &discovery, &outcome, &paths, target, &written);

    let failed = discovery
        .results()
        .any(|r| matches!(r.answer, Answer::Failed(_)));
    let exit = if failed { Exit::Partial } else { Exit::Success };
    if options.json {
        let mut report = json_report(options, &discovery, &outcome, &paths, &dirty, exit);
        report["timings"] = serde_json::json!({
            "discover_ms": timings.discover_ms,
            "merge_write_ms": timings.merge_write_ms,
        });
        crate::error::write_stdout(&report.to_string())?;
    }
    Ok(exit)
}

/// Every cloud's sources, concurrently, under one bound. Blocking: it runs its
/// own runtime.
pub(crate) fn discover(
    scans: &mut [(&'static str, Box<dyn Scan>)],
    limits: &Limits,
    quiet: bool,
    token: &TokenOptions,
) -> Result<Discovery> {
    let progress = Progress::new(quiet);
    let explicit = scans.iter().any(|(_, s)| s.explicit());
    let context = ScanContext {
        limits,
        progress: &progress,
        explicit,
        token,
    };
    let mut clouds: Vec<(&'static str, Discovered)> = Vec::new();
    let mut ready = Vec::new();
    for (name, scan) in scans.iter_mut() {
        match scan.prepare(&context) {
            Ok(()) => ready.push((*name, &**scan)),
            Err(done) => clouds.push((name, done)),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::new("could not start the async runtime").cause(e))?;
    let found = runtime.block_on(futures::future::join_all(
        ready.iter().map(|(_, scan)| scan.discover(&context)),
    ));
    clouds.extend(ready.iter().map(|(name, _)| *name).zip(found));
    progress.clear();
    // Registry order, whatever order they finished in.
    clouds.sort_by_key(|(name, _)| CLOUDS.iter().position(|c| c.name() == *name));
    let mut skipped = Vec::new();
    for (_, found) in &mut clouds {
        for result in &mut found.results {
            result.drop_invalid();
        }
        skipped.append(&mut found.skipped);
    }
    Ok(Discovery { clouds, skipped })
}

/// `{provider} {project} {account} {profile} {location} {region} {name}` in a name template.
pub fn render(template: &str, found: &Found) -> String {
    let profile = found.profile.as_deref().unwrap_or("");
    let mut name = template.replace("{provider}", found.provider);
    for cloud in CLOUDS {
        name = name.replace(&format!("{{{}}}", cloud.owner_key()), &found.owner);
    }
    for (key, value) in &found.labels {
        name = name.replace(&format!("{{{key}}}"), value);
    }
    name.replace("{profile}", profile)
        .replace("{location}", &found.location)
        .replace("{region}", &found.location)
        .replace("{name}", &found.name)
}

fn string(s: &str) -> Value {
    Value::String(s.to_string())
}

fn mapping(pairs: &[(&str, Value)]) -> Mapping {
    let mut map = Mapping::new();
    for (k, v) in pairs {
        map.insert(string(k), v.clone());
    }
    map
}

/// Every found cluster with the name of its entries. Two clusters rendering to
/// the same name: the first wins.
pub(crate) fn names<'a>(
    template: Option<&str>,
    results: impl Iterator<Item = &'a SourceResult>,
) -> Vec<(&'a Found, String)> {
    let mut taken = BTreeSet::new();
    let mut named = Vec::new();
    for found in results.flat_map(|r| &r.clusters) {
        let template = template.unwrap_or_else(|| {
            crate::cloud::by_name(found.provider).map_or("{provider}_{location}_{name}", |c| {
                c.default_template(found)
            })
        });
        let name = render(template, found);
        if !taken.insert(name.clone()) {
            warn(format!(
                "{} cluster {} renders to the name {name}, which another cluster already has; skipped (change --name-template)",
                found.provider, found.name
            ));
            continue;
        }
        named.push((found, name));
    }
    named
}

/// The three entries of a found cluster, grouped so a conflict on one keeps the
/// group out.
fn entries(options: &SyncOptions, found: &Found, name: &str) -> Vec<Desired> {
    let owner_key = crate::cloud::by_name(found.provider).map_or("owner", |c| c.owner_key());
    let mut marker = mapping(&[
        ("source", string(&found.source)),
        ("provider", string(found.provider)),
        (owner_key, string(&found.owner)),
        ("location", string(&found.location)),
        ("cluster", string(&found.name)),
    ]);
    if let Some(profile) = &found.profile {
        marker.insert(string("profile"), string(profile));
    }
    for (key, value) in &found.labels {
        marker.insert(string(key), string(value));
    }
    let mut cluster = mapping(&[("server", string(&found.server))]);
    if let Some(ca) = &found.ca_data {
        cluster.insert(string("certificate-authority-data"), string(ca));
    }
    let user_name = found
        .shared_user
        .clone()
        .unwrap_or_else(|| name.to_string());
    let exec = mapping(&[
        ("apiVersion", string("client.authentication.k8s.io/v1")),
        ("command", string(&options.exec_command)),
        (
            "args",
            Value::Sequence(found.token_args.iter().map(|a| string(a)).collect()),
        ),
        ("interactiveMode", string("Never")),
        ("installHint", string(INSTALL_HINT)),
    ]);
    let user_marker = match &found.shared_user {
        Some(_) => mapping(&[
            ("source", string(found.provider)),
            ("provider", string(found.provider)),
        ]),
        None => marker.clone(),
    };
    vec![
        Desired {
            kind: Kind::Cluster,
            name: name.to_string(),
            fields: cluster,
            marker: marker.clone(),
        },
        Desired {
            kind: Kind::User,
            name: user_name.clone(),
            fields: mapping(&[("exec", Value::Mapping(exec))]),
            marker: user_marker,
        },
        Desired {
            kind: Kind::Context,
            name: name.to_string(),
            fields: mapping(&[("cluster", string(name)), ("user", string(&user_name))]),
            marker,
        },
    ]
}

pub const INSTALL_HINT: &str = "fleetctx writes this entry and serves its credentials. Install it (cargo install --locked --path <fleetctx checkout>) and run `fleetctx sync` again.";

/// Where a sync's time went: the calls, and reading, merging and writing files.
struct Timings {
    discover_ms: u128,
    merge_write_ms: u128,
}

/// `sync -o json`: each source's outcome, the skipped clouds, the counts and
/// changes per file, and the exit code. Stable keys, for cron and CI.
fn json_report(
    options: &SyncOptions,
    discovery: &Discovery,
    outcome: &kubeconfig::MergeOutcome,
    paths: &[PathBuf],
    dirty: &[usize],
    exit: Exit,
) -> serde_json::Value {
    use serde_json::json;
    let sources: Vec<serde_json::Value> = discovery
        .results()
        .map(|r| {
            let (outcome, reason) = match &r.answer {
                Answer::Complete => ("complete", None),
                Answer::Empty(why) => ("empty", Some(why.to_string())),
                Answer::Partial(why) => ("partial", Some(why.clone())),
                Answer::Failed(error) => ("failed", Some(error.message().to_string())),
            };
            json!({
                "source": r.source,
                "provider": r.source.split('/').next(),
                "outcome": outcome,
                "clusters": r.clusters.len(),
                "reason": reason,
            })
        })
        .collect();
    let label = |c: &Change| match c {
        Change::Added => "added",
        Change::Updated(_) => "updated",
        Change::Removed => "removed",
        Change::Unchanged => "unchanged",
        Change::Conflict(_) => "conflict",
    };
    let files: Vec<serde_json::Value> = paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let count = |name: &str| {
                outcome
                    .changes
                    .iter()
                    .filter(|c| c.file == i && label(&c.change) == name)
                    .count()
            };
            json!({
                "file": path.display().to_string(),
                "written": dirty.contains(&i) && !options.dry_run,
                "added": count("added"),
                "updated": count("updated"),
                "removed": count("removed"),
                "unchanged": count("unchanged"),
                "conflicts": count("conflict"),
            })
        })
        .collect();
    let changes: Vec<serde_json::Value> = outcome
        .changes
        .iter()
        .filter(|c| c.change != Change::Unchanged)
        .map(|c| {
            let fields = match &c.change {
                Change::Updated(fields) => fields.clone(),
                _ => Vec::new(),
            };
            json!({
                "kind": c.kind.label(),
                "name": c.name,
                "change": label(&c.change),
                "fields": fields,
                "file": paths[c.file].display().to_string(),
            })
        })
        .collect();
    json!({
        "dry_run": options.dry_run,
        "exit_code": exit as i32,
        "sources": sources,
        "skipped": discovery.skipped,
        "files": files,
        "changes": changes,
        "current_context_cleared": outcome.current_context_cleared,
    })
}

fn report(
    options: &SyncOptions,
    discovery: &Discovery,
    outcome: &kubeconfig::MergeOutcome,
    paths: &[PathBuf],
    target: usize,
    written: &[&std::path::Path],
) {
    for line in &discovery.skipped {
        eprintln!("fleetctx: {line}");
    }
    let (mut complete, mut partial, mut failed, mut found) = (0, 0, 0, 0);
    // The same failure from many sources is one message: the first in full, then
    // how many more and which (all of them with -v).
    let mut families: Vec<(String, String, Vec<&str>)> = Vec::new();
    for result in discovery.results() {
        found += result.clusters.len();
        let text = match &result.answer {
            Answer::Complete | Answer::Empty(_) => {
                complete += 1;
                None
            }
            Answer::Partial(why) => {
                partial += 1;
                Some(format!("warning: {why}"))
            }
            Answer::Failed(error) => {
                failed += 1;
                Some(error.to_string())
            }
        };
        if let Some(text) = text {
            let id = result.source.rsplit('/').next().unwrap_or_default();
            let key = if id.is_empty() {
                text.clone()
            } else {
                text.replace(id, "\u{0}")
            };
            match families.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, _, sources)) => sources.push(&result.source),
                None => families.push((key, text, vec![&result.source])),
            }
        }
        if let (true, Answer::Empty(why)) = (options.verbose, &result.answer) {
            eprintln!("fleetctx: {}: no clusters ({why})", result.source);
        }
    }
    for (_, text, sources) in &families {
        eprintln!("{text}");
        let more = &sources[1..];
        if more.is_empty() {
            continue;
        }
        const SHOWN: usize = 5;
        let shown = if options.verbose {
            more.len()
        } else {
            SHOWN.min(more.len())
        };
        let mut list = more[..shown].join(", ");
        if more.len() > shown {
            list.push_str(&format!(
                " and {} more (-v lists them all)",
                more.len() - shown
            ));
        }
        eprintln!("  the same for {} more sources: {list}", more.len());
    }
    for kubeconfig::Changed {
        kind, name, change, ..
    } in &outcome.changes
    {
        if let Change::Conflict(file) = change {
            warn(format!(
                "{} {name} in {} exists and is not managed by fleetctx; left alone (--adopt takes it over)",
                kind.label(),
                paths[*file].display()
            ));
        }
    }
    if let Some(current) = &outcome.current_context_cleared {
        warn(format!(
            "current-context {current} was pruned; current-context is now unset"
        ));
    }
    if options.quiet {
        return;
    }
    if discovery.results().next().is_none() && !discovery.skipped.is_empty() {
        eprintln!(
            "fleetctx: nothing was scanned: set up the credentials named above, or name sources (`fleetctx sync --help`)"
        );
    }
    eprintln!(
        "fleetctx: {} sources scanned ({complete} complete, {partial} partial, {failed} failed), {found} clusters found",
        discovery.results().count()
    );
    let count = |pred: fn(&Change) -> bool| outcome.count(pred);
    let (what, files) = if written.is_empty() {
        ("left unchanged", paths[target].display().to_string())
    } else {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        let what = if options.dry_run {
            "would change"
        } else {
            "wrote"
        };
        (what, files.join(", "))
    };
    eprintln!(
        "fleetctx: {what} {files}: {} added, {} updated, {} removed, {} unchanged",
        count(|c| *c == Change::Added),
        count(|c| matches!(c, Change::Updated(_))),
        count(|c| *c == Change::Removed),
        count(|c| *c == Change::Unchanged),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_every_clouds_owner_key_and_a_clusters_labels() {
        let found = Found {
            provider: "x",
            source: "x/s".into(),
            name: "n".into(),
            location: "l".into(),
            owner: "o".into(),
            profile: Some("p".into()),
            server: "https://h".into(),
            ca_data: None,
            token_args: Vec::new(),
            shared_user: None,
            labels: vec![("resource_group", "rg".into())],
        };
        assert_eq!(
            render(
                "{provider}_{project}_{account}_{profile}_{region}_{resource_group}_{name}",
                &found
            ),
            "x_o_o_p_l_rg_n"
        );
    }
}
