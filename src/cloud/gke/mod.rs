//! Google Kubernetes Engine: every cluster of the GCP projects an identity can
//! see, and one cached OAuth token for all of them.
//!
//! - `token`: the identity's access token (key file, ADC by type, metadata
//!   server, gcloud CLI; optional impersonation);
//! - `discovery`: projects (Resource Manager) and their clusters (Container API).

mod discovery;
mod token;

use clap::{ArgMatches, Args, Command, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

pub use discovery::{Endpoint, SHARED_USER, default_project};
pub use token::GkeToken;

use super::{Cloud, Discovered, Scan, ScanContext, Scanning, Section};
use crate::cache::Secret;
use crate::discovery::SourceResult;
use crate::error::{Error, Result};
use crate::token::{CacheArgs, Credential};

pub struct Gke;

// `sync` flags (no doc comment: it would become the help text of `sync`).
#[derive(Debug, Args)]
#[group(skip)]
struct ScanArgs {
    /// A GCP project to scan (repeatable).
    #[arg(long = "gke-project", value_name = "ID")]
    gke_projects: Vec<String>,
    /// Scan every ACTIVE project the identity can see (Resource Manager).
    #[arg(long)]
    gke_all_projects: bool,
    /// Scan the projects Resource Manager's search finds for this query (for
    /// example `labels.env:prod` or `parent:folders/123`).
    #[arg(long, value_name = "QUERY")]
    gke_project_filter: Option<String>,
    /// Leave this project out (repeatable).
    #[arg(long = "gke-exclude-project", value_name = "ID")]
    gke_exclude_projects: Vec<String>,
    /// Which GKE control-plane address to write; dns is used automatically when a
    /// cluster's IP endpoints are off.
    #[arg(long, value_enum, value_name = "KIND")]
    gke_endpoint: Option<Endpoint>,
}

/// The `gke:` section of config.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Settings {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    projects: Vec<String>,
    #[serde(default)]
    all_projects: bool,
    project_filter: Option<String>,
    #[serde(default)]
    exclude_projects: Vec<String>,
    endpoint: Option<Endpoint>,
}

fn yes() -> bool {
    true
}

/// A Google OAuth access token, shared by every GKE cluster of the identity.
///
/// Example: fleetctx token gke --impersonate-service-account deployer@my-project.iam.gserviceaccount.com
#[derive(Debug, Parser)]
#[command(name = "gke")]
struct TokenArgs {
    /// A Google credentials file (default: GOOGLE_APPLICATION_CREDENTIALS, gcloud's
    /// application default credentials, the metadata server, then the gcloud CLI).
    #[arg(long, value_name = "KEYFILE")]
    credentials: Option<std::path::PathBuf>,
    /// Impersonate this service account through IAM Credentials generateAccessToken.
    #[arg(long, value_name = "EMAIL")]
    impersonate_service_account: Option<String>,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Projects {
    Listed(Vec<String>),
    /// Every ACTIVE project the identity can see (Resource Manager), narrowed by
    /// a search query.
    All(Option<String>),
    /// gcloud's default project.
    Default,
}

/// What one sync scans on GKE.
struct GkeScan {
    projects: Projects,
    exclude: Vec<String>,
    endpoint: Endpoint,
    explicit: bool,
    /// The identity's token, from the same cache `token gke` uses (`prepare`).
    token: Option<Secret>,
}

impl Cloud for Gke {
    fn name(&self) -> &'static str {
        "gke"
    }

    fn owner_key(&self) -> &'static str {
        "project"
    }

    fn default_template(&self, _: &crate::discovery::Found) -> &'static str {
        "gke_{project}_{location}_{name}"
    }

    fn cache_kinds(&self) -> &'static [&'static str] {
        &["gke"]
    }

    fn scan_args(&self, command: Command) -> Command {
        ScanArgs::augment_args(command)
    }

    fn named(&self, flags: &ArgMatches) -> bool {
        ScanArgs::from_arg_matches(flags).is_ok_and(|a| {
            !a.gke_projects.is_empty() || a.gke_all_projects || a.gke_project_filter.is_some()
        })
    }

    fn plan(
        &self,
        flags: &ArgMatches,
        section: Option<Section<'_>>,
    ) -> Result<Option<Box<dyn Scan>>> {
        let flags = ScanArgs::from_arg_matches(flags).map_err(|e| Error::new(e.to_string()))?;
        let settings: Settings = match section {
            Some(section) => section.parse(self.name())?,
            None => Settings {
                enabled: true,
                ..Settings::default()
            },
        };
        if !settings.enabled {
            return Ok(None);
        }
        let explicit = !flags.gke_projects.is_empty()
            || flags.gke_all_projects
            || flags.gke_project_filter.is_some()
            || !settings.projects.is_empty()
            || settings.all_projects
            || settings.project_filter.is_some();
        let every_from_flags = flags.gke_all_projects || flags.gke_project_filter.is_some();
        let every_from_settings = settings.all_projects || settings.project_filter.is_some();
        let filter = flags.gke_project_filter.or(settings.project_filter);
        let mut exclude = flags.gke_exclude_projects;
        exclude.extend(settings.exclude_projects);
        let projects = if every_from_flags {
            Projects::All(filter)
        } else if !flags.gke_projects.is_empty() {
            Projects::Listed(flags.gke_projects)
        } else if every_from_settings {
            Projects::All(filter)
        } else if !settings.projects.is_empty() {
            Projects::Listed(settings.projects)
        } else {
            Projects::Default
        };
        Ok(Some(Box::new(GkeScan {
            projects,
            exclude,
            endpoint: flags
                .gke_endpoint
                .or(settings.endpoint)
                .unwrap_or(Endpoint::Public),
            explicit,
            token: None,
        })))
    }

    fn token_command(&self) -> Command {
        TokenArgs::command()
    }

    fn credential(&self, args: &ArgMatches) -> Result<Credential> {
        let args = TokenArgs::from_arg_matches(args).map_err(|e| Error::new(e.to_string()))?;
        let source = GkeToken {
            credentials: args.credentials,
            impersonate: args.impersonate_service_account,
        };
        crate::token::credential(&source, &args.cache.options())
    }
}

impl Scan for GkeScan {
    fn explicit(&self) -> bool {
        self.explicit
    }

    fn prepare(&mut self, context: &ScanContext<'_>) -> Result<(), Discovered> {
        if self.projects == Projects::Default {
            match default_project() {
                Some(p) => self.projects = Projects::Listed(vec![p]),
                None => return Err(Discovered::skipped("GKE skipped: no default project (run `gcloud config set project PROJECT`, or pass --gke-project / --gke-all-projects)".to_string())),
            }
        }
        match crate::token::credential(&GkeToken::default(), context.token) {
            Ok(credential) => {
                self.token = Some(credential.token);
                Ok(())
            }
            Err(e) if !context.explicit => Err(Discovered::skipped(format!(
                "GKE skipped: {} ({})",
                e.message(),
                e.hint_text()
                    .unwrap_or("run `gcloud auth application-default login`")
            ))),
            Err(e) => Err(Discovered::failed("gke".to_string(), e)),
        }
    }

    fn discover<'a>(&'a self, context: &'a ScanContext<'a>) -> Scanning<'a> {
        Box::pin(async move {
            let (limits, progress) = (context.limits, context.progress);
            let Some(token) = &self.token else {
                return Discovered::default();
            };
            let failed = |e: Error| Discovered {
                scanned: true,
                ..Discovered::failed("gke".to_string(), e)
            };
            let client = match discovery::cluster_client(token, limits).await {
                Ok(c) => c,
                Err(e) => return failed(e),
            };
            let client = &client;
            let endpoint = self.endpoint;
            let scan = |project: String| async move {
                progress
                    .track(discovery::discover_project(
                        client, &project, endpoint, limits,
                    ))
                    .await
            };
            let keep = |p: &String| !self.exclude.contains(p);
            // Projects are scanned as they arrive, page by page, so the page chain
            // and the cluster lists overlap; only about twice the bound of scans
            // are alive at once, so a deep backlog costs a name each, not a call's state.
            let (pages, mut arriving) = tokio::sync::mpsc::unbounded_channel::<Vec<String>>();
            let listing = async move {
                match &self.projects {
                    Projects::All(filter) => {
                        let mut send = |page: Vec<String>| {
                            let _ = pages.send(page);
                        };
                        discovery::list_projects(token, filter.as_deref(), limits, &mut send)
                            .await
                            .map(|()| true)
                    }
                    Projects::Listed(projects) => {
                        let _ = pages.send(projects.clone());
                        Ok(false)
                    }
                    Projects::Default => Ok(false),
                }
            };
            let scanning = async {
                let mut running = futures::stream::FuturesUnordered::new();
                let mut waiting = std::collections::VecDeque::new();
                let mut results: Vec<SourceResult> = Vec::new();
                let mut open = true;
                loop {
                    while running.len() < 2 * limits.concurrency() {
                        match waiting.pop_front() {
                            Some(project) => running.push(scan(project)),
                            None => break,
                        }
                    }
                    tokio::select! {
                        page = arriving.recv(), if open => match page {
                            Some(projects) => {
                                let before = waiting.len();
                                waiting.extend(projects.into_iter().filter(keep));
                                progress.expect(waiting.len() - before);
                            }
                            None => open = false,
                        },
                        Some(done) = futures::StreamExt::next(&mut running), if !running.is_empty() => {
                            results.push(done);
                        }
                        else => break,
                    }
                }
                results
            };
            let (listed, mut results) = futures::join!(listing, scanning);
            results.sort_by(|a, b| a.source.cmp(&b.source));
            let (listing_complete, listing_failed) = match listed {
                Ok(complete) => (complete, None),
                Err(e) => (false, Some(e)),
            };
            if let Some(e) = listing_failed {
                results.push(SourceResult::failed("gke".to_string(), e));
            }
            Discovered {
                results,
                scanned: true,
                listing_complete,
                ..Discovered::default()
            }
        })
    }
}
