//! `fleetctx sync`: discover every cluster in parallel, turn each into a cluster,
//! user and context entry, and merge them into one kubeconfig under kubectl's
//! lock. Sources that fail are reported and skipped; the rest is still written.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use yaml_serde::{Mapping, Value};

use crate::discovery::{Answer, Found, Limits, SourceResult};
use crate::error::{Error, Exit, Result, warn};
use crate::gke::{self, Endpoint, GkeToken};
use crate::kubeconfig::yaml;
use crate::kubeconfig::{self, Change, Desired, FileLock, Kind, MergeRules};
use crate::token::{self, TokenOptions};
use crate::{cache, eks};

pub const GKE_TEMPLATE: &str = "gke_{project}_{location}_{name}";
pub const EKS_TEMPLATE: &str = "eks_{profile}_{region}_{name}";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GkeProjects {
    Listed(Vec<String>),
    /// Every ACTIVE project the identity can see (Resource Manager).
    All,
    /// gcloud's default project.
    Default,
}

#[derive(Clone, Debug)]
pub struct GkeScan {
    pub projects: GkeProjects,
    pub endpoint: Endpoint,
}

#[derive(Clone, Debug)]
pub struct EksScan {
    /// `None` is the default credential chain.
    pub profiles: Vec<Option<String>>,
    /// Empty: every region of each profile's partition.
    pub regions: Vec<String>,
}

/// Plain values for one sync, merged from flags and `config.yaml`.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub gke: Option<GkeScan>,
    pub eks: Option<EksScan>,
    /// Sources chosen by the user (flags or settings): missing credentials are a
    /// failure. Defaults are skipped with a line instead.
    pub explicit: bool,
    pub kubeconfig: Option<PathBuf>,
    pub name_template: Option<String>,
    pub exec_command: String,
    pub concurrency: usize,
    pub timeout: Duration,
    pub lock_timeout: Duration,
    pub prune: bool,
    pub adopt: bool,
    pub dry_run: bool,
    pub verbose: bool,
    pub quiet: bool,
    pub token: TokenOptions,
}

/// What discovery produced, before anything is written.
struct Discovery {
    results: Vec<SourceResult>,
    /// Lines for providers skipped because nothing is set up.
    skipped: Vec<String>,
    /// `gke/*` sources a complete project listing did not contain: gone projects.
    gke_listing_complete: bool,
    gke_scanned: bool,
}

pub fn run(options: &SyncOptions) -> Result<Exit> {
    let explicit = options.kubeconfig.as_deref();
    let paths = kubeconfig::listed_paths(explicit)?;
    let target_path = kubeconfig::target_path(explicit)?;
    let target = paths.iter().position(|p| *p == target_path).unwrap_or(0);
    // Refuse an unparseable file before any network call.
    for path in &paths {
        kubeconfig::load(path)?;
    }

    let discovery = discover(options)?;
    let groups = desired(options, &discovery.results);

    let complete: BTreeSet<String> = discovery
        .results
        .iter()
        .filter(|r| r.is_complete())
        .map(|r| r.source.clone())
        .collect();
    let scanned: BTreeSet<String> = discovery.results.iter().map(|r| r.source.clone()).collect();
    let gke_all_complete = discovery.gke_scanned
        && discovery
            .results
            .iter()
            .filter(|r| r.source.starts_with("gke/"))
            .all(|r| r.is_complete());
    let prunable = |source: &str| {
        complete.contains(source)
            || (source == "gke" && gke_all_complete)
            || (discovery.gke_listing_complete
                && source.starts_with("gke/")
                && !scanned.contains(source))
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
    let (outcome, docs, dirty) = loop {
        let mut docs = Vec::with_capacity(paths.len());
        for path in &paths {
            docs.push(kubeconfig::load(path)?);
        }
        if docs[target].as_mapping().is_some_and(Mapping::is_empty) {
            docs[target] = kubeconfig::empty_document();
        }
        let prepared = docs.clone();
        let outcome = kubeconfig::merge(&mut docs, target, &groups, &rules);
        let dirty: Vec<usize> = (0..docs.len())
            .filter(|&i| docs[i] != prepared[i])
            .collect();
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
    if options.dry_run {
        let mut lines = kubeconfig::describe(&outcome);
        if lines.is_empty() {
            lines.push("no changes".to_string());
        }
        crate::cli::write_stdout(&lines.join("\n"))?;
    } else {
        for &i in &dirty {
            kubeconfig::write_atomic(&paths[i], &yaml::to_string(&docs[i]))?;
        }
    }
    report(options, &discovery, &outcome, &paths, target, &written);

    let failed = discovery
        .results
        .iter()
        .any(|r| matches!(r.answer, Answer::Failed(_)));
    Ok(if failed { Exit::Partial } else { Exit::Success })
}

/// Live progress on stderr when it is a terminal: sources done of those known,
/// clusters found. Nothing of the kind when stderr is a pipe or a file.
struct Progress {
    enabled: bool,
    total: AtomicUsize,
    done: AtomicUsize,
    clusters: AtomicUsize,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            clusters: AtomicUsize::new(0),
        }
    }

    fn expect(&self, sources: usize) {
        self.total.fetch_add(sources, Ordering::Relaxed);
        self.draw();
    }

    async fn track(&self, scan: impl Future<Output = SourceResult>) -> SourceResult {
        let result = scan.await;
        self.clusters
            .fetch_add(result.clusters.len(), Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Relaxed);
        self.draw();
        result
    }

    fn draw(&self) {
        if self.enabled {
            eprint!(
                "\r\x1b[2Kfleetctx: scanning: {}/{} sources done, {} clusters found",
                self.done.load(Ordering::Relaxed),
                self.total.load(Ordering::Relaxed),
                self.clusters.load(Ordering::Relaxed)
            );
        }
    }

    fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Every source, concurrently, under one bound.
fn discover(options: &SyncOptions) -> Result<Discovery> {
    let mut skipped = Vec::new();
    let mut results = Vec::new();
    let limits = Limits::new(options.concurrency, options.timeout, options.verbose);
    let progress = Progress::new(options.quiet);

    // The GKE token comes from the same cache `token gke` uses (often a hit).
    let mut gke_plan = None;
    if let Some(scan) = &options.gke {
        let projects = match &scan.projects {
            GkeProjects::Default => match gke::default_project() {
                Some(p) => Some(GkeProjects::Listed(vec![p])),
                None => {
                    skipped.push("GKE skipped: no default project (run `gcloud config set project PROJECT`, or pass --gke-project / --gke-all-projects)".to_string());
                    None
                }
            },
            other => Some(other.clone()),
        };
        if let Some(projects) = projects {
            match token::credential(&GkeToken::default(), &options.token) {
                Ok(credential) => gke_plan = Some((projects, scan.endpoint, credential.token)),
                Err(e) if !options.explicit => skipped.push(format!(
                    "GKE skipped: {} ({})",
                    e.message(),
                    e.hint_text()
                        .unwrap_or("run `gcloud auth application-default login`")
                )),
                Err(e) => results.push(SourceResult::failed("gke".to_string(), e)),
            }
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::new("could not start the async runtime").cause(e))?;
    let mut gke_listing_complete = false;
    let gke_scanned = gke_plan.is_some();
    runtime.block_on(async {
        let gke = async {
            let Some((projects, endpoint, token)) = &gke_plan else {
                return (Vec::new(), false);
            };
            let (projects, listing_complete) = match projects {
                GkeProjects::All => match gke::list_projects(token, &limits).await {
                    Ok(p) => (p, true),
                    Err(e) => return (vec![SourceResult::failed("gke".to_string(), e)], false),
                },
                GkeProjects::Listed(p) => (p.clone(), false),
                GkeProjects::Default => (Vec::new(), false),
            };
            let client = match gke::cluster_client(token, &limits).await {
                Ok(c) => c,
                Err(e) => return (vec![SourceResult::failed("gke".to_string(), e)], false),
            };
            progress.expect(projects.len());
            let scans = projects
                .iter()
                .map(|p| progress.track(gke::discover_project(&client, p, *endpoint, &limits)));
            (futures::future::join_all(scans).await, listing_complete)
        };
        let eks = async {
            let Some(scan) = &options.eks else {
                return (Vec::new(), Vec::new());
            };
            let per_profile = scan.profiles.iter().map(|profile| {
                discover_profile(
                    profile.as_deref(),
                    scan,
                    options.explicit,
                    &limits,
                    &progress,
                )
            });
            let mut results = Vec::new();
            let mut skipped = Vec::new();
            for (r, s) in futures::future::join_all(per_profile).await {
                results.extend(r);
                skipped.extend(s);
            }
            (results, skipped)
        };
        let ((gke_results, listing_complete), (eks_results, eks_skipped)) = tokio::join!(gke, eks);
        gke_listing_complete = listing_complete;
        results.extend(gke_results);
        results.extend(eks_results);
        skipped.extend(eks_skipped);
    });
    progress.clear();
    for result in &mut results {
        result.drop_invalid();
    }
    Ok(Discovery {
        results,
        skipped,
        gke_listing_complete,
        gke_scanned,
    })
}

/// One AWS profile across its regions. Its credentials are resolved in its home
/// region and proven once (`sts:GetCallerIdentity`); when that fails, the profile
/// has failed and none of its entries is pruned.
async fn discover_profile(
    profile: Option<&str>,
    scan: &EksScan,
    explicit: bool,
    limits: &Limits,
    progress: &Progress,
) -> (Vec<SourceResult>, Vec<String>) {
    let label = profile.unwrap_or("default");
    let failed = |e: Error| {
        (
            vec![SourceResult::failed(format!("eks/{label}"), e)],
            Vec::new(),
        )
    };
    let home = eks::home_region(profile).await;
    let anchor = home
        .clone()
        .or_else(|| scan.regions.first().cloned())
        .unwrap_or_else(|| "us-east-1".to_string());
    let partition = match eks::partition_of(&anchor) {
        Ok(p) => p,
        Err(e) => {
            return failed(e.hint(format!(
                "the region comes from profile {label}, AWS_REGION or --eks-region"
            )));
        }
    };
    let regions = if scan.regions.is_empty() {
        partition.regions.iter().map(|r| r.to_string()).collect()
    } else {
        scan.regions.clone()
    };
    let credential_region = home.unwrap_or_else(|| partition.default_region.to_string());
    let config = match eks::profile_config(profile, &credential_region, limits).await {
        Ok(config) => config,
        Err(e) if !explicit => {
            let line = format!(
                "EKS skipped: {} ({})",
                e.message(),
                e.hint_text().unwrap_or_default()
            );
            return (Vec::new(), vec![line]);
        }
        Err(e) => return failed(e),
    };
    let account = match eks::caller_account(&config, profile, limits).await {
        Ok(account) => account,
        Err(e) => return failed(e),
    };
    // A region outside the profile's partition would be asked with the wrong
    // credentials and signed for the wrong STS host: it fails on its own.
    let (regions, strangers): (Vec<String>, Vec<String>) = regions
        .into_iter()
        .partition(|r| eks::partition_of(r).is_ok_and(|p| p.name == partition.name));
    let mut results: Vec<SourceResult> = strangers
        .iter()
        .map(|region| {
            let error = match eks::partition_of(region) {
                Err(e) => e,
                Ok(other) => Error::new(format!(
                    "region {region} is in partition {}, but profile {label} is in {}",
                    other.name, partition.name
                ))
                .hint("scan each partition with a profile of its own"),
            };
            SourceResult::failed(format!("eks/{label}/{region}"), error)
        })
        .collect();
    progress.expect(regions.len());
    let scans = regions.iter().map(|region| {
        progress.track(eks::discover_region(
            &config, profile, &account, region, limits,
        ))
    });
    results.extend(futures::future::join_all(scans).await);
    (results, Vec::new())
}

/// `{provider} {project} {account} {profile} {location} {region} {name}` in a name template.
pub fn render(template: &str, found: &Found) -> String {
    let profile = found.profile.as_deref().unwrap_or("");
    template
        .replace("{provider}", found.provider)
        .replace("{project}", &found.owner)
        .replace("{account}", &found.owner)
        .replace("{profile}", profile)
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

/// The three entries of every found cluster, grouped so a conflict on one keeps
/// the group out. Two clusters rendering to the same name: the first wins.
fn desired(options: &SyncOptions, results: &[SourceResult]) -> Vec<Vec<Desired>> {
    let mut taken = BTreeSet::new();
    let mut groups = Vec::new();
    for found in results.iter().flat_map(|r| &r.clusters) {
        let template = options
            .name_template
            .as_deref()
            .unwrap_or(match found.provider {
                "gke" => GKE_TEMPLATE,
                _ => EKS_TEMPLATE,
            });
        let name = render(template, found);
        if !taken.insert(name.clone()) {
            warn(format!(
                "{} cluster {} renders to the name {name}, which another cluster already has; skipped (change --name-template)",
                found.provider, found.name
            ));
            continue;
        }
        groups.push(entries(options, found, &name));
    }
    groups
}

fn entries(options: &SyncOptions, found: &Found, name: &str) -> Vec<Desired> {
    let owner_key = if found.provider == "gke" {
        "project"
    } else {
        "account"
    };
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
    for result in &discovery.results {
        found += result.clusters.len();
        match &result.answer {
            Answer::Complete | Answer::Empty(_) => complete += 1,
            Answer::Partial(why) => {
                partial += 1;
                warn(why);
            }
            Answer::Failed(error) => {
                failed += 1;
                eprintln!("{error}");
            }
        }
        if let (true, Answer::Empty(why)) = (options.verbose, &result.answer) {
            eprintln!("fleetctx: {}: no clusters ({why})", result.source);
        }
    }
    for (kind, name, change) in &outcome.changes {
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
    if discovery.results.is_empty() && !discovery.skipped.is_empty() {
        eprintln!(
            "fleetctx: nothing was scanned: set up the credentials named above, or name sources (`fleetctx sync --help`)"
        );
    }
    eprintln!(
        "fleetctx: {} sources scanned ({complete} complete, {partial} partial, {failed} failed), {found} clusters found",
        discovery.results.len()
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
