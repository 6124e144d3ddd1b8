//! The command line: clap definitions (their doc comments are the help text) and
//! the small `exec` of each command, which builds plain options and calls the
//! library. Nothing below this module sees clap.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};

use crate::cache::TokenCache;
use crate::eks::EksToken;
use crate::error::{Error, Exit, Result, warn};
use crate::exec_credential;
use crate::gke::{Endpoint, GkeToken};
use crate::kubeconfig::{self, Kind};
use crate::list::{self, Format};
use crate::settings::{EksSettings, GkeSettings, Settings};
use crate::sync::{self, EksScan, GkeProjects, GkeScan, SyncOptions};
use crate::token::{self, TokenOptions, TokenSource};

/// Every GKE and EKS cluster you can reach, in your kubeconfig, with credentials
/// that cost milliseconds.
#[derive(Debug, Parser)]
#[command(name = "fleetctx", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print a debug line for every API call (method, host, outcome, duration; never a secret).
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// kubectl exec credential plugin: print an ExecCredential for GKE or EKS.
    ///
    /// Tokens come from an on-disk cache shared by every process; a miss refreshes
    /// once, however many kubectl processes ask at the same moment.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Discover every GKE and EKS cluster you can reach and merge them into kubeconfig.
    ///
    /// Writes a cluster, a user (which runs `fleetctx token`) and a context per
    /// cluster; keeps every entry it does not own; prunes entries of clusters that
    /// are gone, for sources that answered completely. Sources come from the flags,
    /// else from config.yaml, else gcloud's default project and the default AWS
    /// profile across every region.
    ///
    /// Example: fleetctx sync --gke-all-projects --eks-profile dev --eks-profile prod
    Sync(SyncArgs),
    /// List the clusters fleetctx manages in your kubeconfig (foreign entries are not shown).
    ///
    /// Example: fleetctx list -o json | jq -r '.[] | select(.provider == "eks") | .context'
    List(ListArgs),
    /// Show or clear the token cache (identities and expiry; never a token).
    ///
    /// Example: fleetctx cache clear --provider eks
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    ///
    /// Example: fleetctx completions bash > ~/.local/share/bash-completion/completions/fleetctx
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format; json and yaml are stable shapes for scripts.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Read this kubeconfig (default: the files kubectl reads).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Show only these contexts.
    #[arg(value_name = "CONTEXT", add = ArgValueCompleter::new(complete_contexts))]
    pub contexts: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// What is cached: key, provider, identity, expiry.
    ///
    /// Example: fleetctx cache list -o json
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove cached tokens (and assumed-role sessions), all or one provider's.
    ///
    /// Example: fleetctx cache clear --provider gke
    Clear {
        /// Only this provider's entries (eks includes assumed-role sessions).
        #[arg(long, value_enum)]
        provider: Option<Provider>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    Gke,
    Eks,
}

impl Provider {
    fn owns(self, kind: &str) -> bool {
        match self {
            Provider::Gke => kind == "gke",
            Provider::Eks => kind == "eks" || kind == "aws-role",
        }
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print a script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// A GCP project to scan (repeatable).
    #[arg(long = "gke-project", value_name = "ID")]
    pub gke_projects: Vec<String>,
    /// Scan every ACTIVE project the identity can see (Resource Manager).
    #[arg(long)]
    pub gke_all_projects: bool,
    /// An AWS profile to scan (repeatable).
    #[arg(long = "eks-profile", value_name = "NAME")]
    pub eks_profiles: Vec<String>,
    /// An AWS region to scan (repeatable; default: every region of the profile's partition).
    #[arg(long = "eks-region", value_name = "REGION")]
    pub eks_regions: Vec<String>,
    /// Do not scan GKE.
    #[arg(long)]
    pub no_gke: bool,
    /// Do not scan EKS.
    #[arg(long)]
    pub no_eks: bool,
    /// Settings file (default: config.yaml in the user's config directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The kubeconfig to write (default: kubectl's rule: KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Which GKE control-plane address to write; dns is used automatically when a
    /// cluster's IP endpoints are off.
    #[arg(long, value_enum, value_name = "KIND")]
    pub gke_endpoint: Option<Endpoint>,
    /// Entry names, from {provider} {project} {account} {profile} {location} {region} {name}
    /// [default: gke_{project}_{location}_{name} and eks_{profile}_{region}_{name}].
    #[arg(long, value_name = "TEMPLATE")]
    pub name_template: Option<String>,
    /// The command users run for credentials (default: this fleetctx's absolute path).
    #[arg(long, value_name = "COMMAND")]
    pub exec_command: Option<String>,
    /// Most API calls in flight at once.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Keep entries of clusters that no longer exist.
    #[arg(long)]
    pub no_prune: bool,
    /// Take over same-named entries fleetctx did not write.
    #[arg(long)]
    pub adopt: bool,
    /// Print what would be added, changed and removed; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Limit for each API call.
    #[arg(
        long,
        env = "FLEETCTX_TIMEOUT",
        default_value_t = 20,
        value_name = "SECONDS"
    )]
    pub timeout: u64,
    /// How long to wait for kubectl's `<kubeconfig>.lock`.
    #[arg(
        long,
        env = "FLEETCTX_LOCK_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub lock_timeout: u64,
}

impl SyncArgs {
    /// Flags over settings over defaults.
    fn options(self, settings: Settings, verbose: bool, quiet: bool) -> Result<SyncOptions> {
        let gke_settings = settings.gke.unwrap_or_else(|| GkeSettings {
            enabled: true,
            ..GkeSettings::default()
        });
        let eks_settings = settings.eks.unwrap_or_else(|| EksSettings {
            enabled: true,
            ..EksSettings::default()
        });
        let explicit = !self.gke_projects.is_empty()
            || self.gke_all_projects
            || !self.eks_profiles.is_empty()
            || !self.eks_regions.is_empty()
            || !gke_settings.projects.is_empty()
            || gke_settings.all_projects
            || !eks_settings.profiles.is_empty()
            || !eks_settings.regions.is_empty();
        let named_gke = !self.gke_projects.is_empty() || self.gke_all_projects;
        let gke_projects = if self.gke_all_projects {
            GkeProjects::All
        } else if !self.gke_projects.is_empty() {
            GkeProjects::Listed(self.gke_projects)
        } else if gke_settings.all_projects {
            GkeProjects::All
        } else if !gke_settings.projects.is_empty() {
            GkeProjects::Listed(gke_settings.projects)
        } else {
            GkeProjects::Default
        };
        // Naming sources of one cloud on the command line scans only that cloud.
        let named_eks = !self.eks_profiles.is_empty() || !self.eks_regions.is_empty();
        let gke =
            (!self.no_gke && gke_settings.enabled && (named_gke || !named_eks)).then(|| GkeScan {
                projects: gke_projects,
                endpoint: self
                    .gke_endpoint
                    .or(gke_settings.endpoint)
                    .unwrap_or(Endpoint::Public),
            });
        let profiles = if !self.eks_profiles.is_empty() {
            self.eks_profiles
        } else {
            eks_settings.profiles
        };
        let regions = if !self.eks_regions.is_empty() {
            self.eks_regions
        } else {
            eks_settings.regions
        };
        let eks =
            (!self.no_eks && eks_settings.enabled && (named_eks || !named_gke)).then(|| EksScan {
                // The profile the aws CLI would use is recorded, so the entries
                // sign as it later, whatever kubectl's environment says.
                profiles: if profiles.is_empty() {
                    vec![crate::eks::env_profile()]
                } else {
                    profiles.into_iter().map(Some).collect()
                },
                regions,
            });
        let exec_command = match self.exec_command.or(settings.exec_command) {
            Some(command) => command,
            None => exec_path()?.display().to_string(),
        };
        let timeout = Duration::from_secs(self.timeout.max(1));
        let lock_timeout = Duration::from_secs(self.lock_timeout);
        Ok(SyncOptions {
            gke,
            eks,
            explicit,
            kubeconfig: self.kubeconfig.or(settings.kubeconfig),
            name_template: self.name_template.or(settings.name_template),
            exec_command,
            concurrency: self
                .concurrency
                .or(settings.concurrency)
                .unwrap_or(32)
                .max(1),
            timeout,
            lock_timeout,
            prune: !self.no_prune,
            adopt: self.adopt,
            dry_run: self.dry_run,
            verbose,
            quiet,
            token: TokenOptions {
                use_cache: true,
                min_ttl: Duration::from_secs(300),
                lock_timeout,
                timeout,
            },
        })
    }
}

/// The path entries should run: the one this fleetctx was started through, when
/// it leads to this very binary. A package manager's `bin/fleetctx` symlink
/// (Homebrew, nix, asdf) then survives upgrades, where the versioned target
/// `current_exe` resolves to would vanish with the old version.
fn exec_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| {
        Error::new("could not find the path of this fleetctx")
            .cause(e)
            .hint("pass --exec-command")
    })?;
    let started_as = std::env::args_os().next().map(PathBuf::from);
    let candidate = started_as.and_then(|arg0| {
        if arg0.components().count() > 1 {
            std::path::absolute(&arg0).ok()
        } else {
            let paths = std::env::var_os("PATH")?;
            std::env::split_paths(&paths)
                .filter(|dir| dir.is_absolute())
                .map(|dir| dir.join(&arg0))
                .find(|p| p.is_file())
        }
    });
    let same_binary =
        |p: &PathBuf| std::fs::canonicalize(p).ok() == std::fs::canonicalize(&exe).ok();
    Ok(candidate.filter(same_binary).unwrap_or(exe))
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// An EKS token: a presigned STS GetCallerIdentity URL, signed locally.
    ///
    /// Example: fleetctx token eks --cluster prod --region eu-west-1 --profile prod
    Eks(EksArgs),
    /// A Google OAuth access token, shared by every GKE cluster of the identity.
    ///
    /// Example: fleetctx token gke --impersonate-service-account deployer@my-project.iam.gserviceaccount.com
    Gke(GkeArgs),
}

#[derive(Debug, Args)]
pub struct EksArgs {
    /// Cluster name (sent as x-k8s-aws-id).
    #[arg(long, value_name = "NAME", add = ArgValueCompleter::new(complete_eks_clusters))]
    pub cluster: String,
    /// Cluster id, for EKS local clusters on Outposts (sent instead of the name).
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// The cluster's region; picks the STS host and partition of the token.
    #[arg(long, value_name = "REGION")]
    pub region: String,
    /// AWS profile (default: AWS_PROFILE, else the default chain).
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Assume this role first and sign with its session (cached too).
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Debug, Args)]
pub struct GkeArgs {
    /// A service-account key file (default: gcp_auth's chain: GOOGLE_APPLICATION_CREDENTIALS,
    /// application default credentials, the metadata server, then the gcloud CLI).
    #[arg(long, value_name = "KEYFILE")]
    pub credentials: Option<PathBuf>,
    /// Impersonate this service account through IAM Credentials generateAccessToken.
    #[arg(long, value_name = "EMAIL")]
    pub impersonate_service_account: Option<String>,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Bypass the token cache: always mint, store nothing.
    #[arg(long)]
    pub no_cache: bool,
    /// Never serve a cached token with less than this many seconds left.
    #[arg(
        long,
        env = "FLEETCTX_MIN_TTL",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub min_ttl: u64,
    /// How long to wait for another fleetctx that is refreshing the same token.
    #[arg(
        long,
        env = "FLEETCTX_LOCK_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub lock_timeout: u64,
    /// Limit for each network call.
    #[arg(
        long,
        env = "FLEETCTX_TIMEOUT",
        default_value_t = 20,
        value_name = "SECONDS"
    )]
    pub timeout: u64,
}

impl CacheArgs {
    fn options(&self) -> TokenOptions {
        TokenOptions {
            use_cache: !self.no_cache,
            min_ttl: Duration::from_secs(self.min_ttl),
            lock_timeout: Duration::from_secs(self.lock_timeout),
            timeout: Duration::from_secs(self.timeout.max(1)),
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<Exit> {
    match cli.command {
        Command::Token(TokenCommand::Eks(args)) => {
            let source = EksToken {
                cluster: args.cluster,
                cluster_id: args.cluster_id,
                region: args.region,
                profile: args.profile,
                role_arn: args.role_arn,
            };
            print_credential(&source, &args.cache.options())
        }
        Command::Sync(args) => {
            let settings = Settings::load(args.config.as_deref())?;
            let options = args.options(settings, cli.verbose, cli.quiet)?;
            sync::run(&options)
        }
        Command::List(args) => {
            let mut entries = list::managed(args.kubeconfig.as_deref())?;
            if !args.contexts.is_empty() {
                entries.retain(|m| args.contexts.contains(&m.context));
            }
            write_stdout(&list::render(&entries, args.output)?)
        }
        Command::Cache(CacheCommand::List { output }) => write_stdout(&cache_listing(output)?),
        Command::Cache(CacheCommand::Clear { provider }) => clear_cache(provider, cli.quiet),
        Command::Completions(args) => write_stdout(completion_script(args.shell)?.trim_end()),
        Command::Token(TokenCommand::Gke(args)) => {
            let source = GkeToken {
                credentials: args.credentials,
                impersonate: args.impersonate_service_account,
            };
            print_credential(&source, &args.cache.options())
        }
    }
}

fn print_credential<S: TokenSource>(source: &S, options: &TokenOptions) -> Result<Exit> {
    let exec_info = std::env::var("KUBERNETES_EXEC_INFO").ok();
    let (api_version, warning) = exec_credential::requested_api_version(exec_info.as_deref());
    if let Some(warning) = warning {
        warn(warning);
    }
    let credential = token::credential(source, options)?;
    let json = exec_credential::render(
        api_version,
        credential.token.expose(),
        &credential.expiration,
    );
    write_stdout(&json)
}

/// The environment variable through which shells ask fleetctx for completions.
pub const COMPLETE_VAR: &str = "FLEETCTX_COMPLETE";

/// Answers a shell's completion request and exits, when the shell is asking.
/// Costs one environment lookup otherwise.
pub fn complete_if_asked() {
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(COMPLETE_VAR)
        .bin("fleetctx")
        .completer("fleetctx")
        .complete();
}

/// The registration script for a shell: it calls `fleetctx` back for candidates,
/// so completions follow the same clap definitions as the help text.
pub fn completion_script(shell: Shell) -> Result<String> {
    let name = shell
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let shells = clap_complete::env::Shells::builtins();
    let completer = shells
        .completer(&name)
        .ok_or_else(|| Error::new(format!("no completion support for {name}")))?;
    let mut script = Vec::new();
    completer
        .write_registration(
            COMPLETE_VAR,
            "fleetctx",
            "fleetctx",
            "fleetctx",
            &mut script,
        )
        .map_err(|e| Error::new("could not write the completion script").cause(e))?;
    Ok(String::from_utf8_lossy(&script).into_owned())
}

/// Context names from the local kubeconfig only: no credentials, no network.
fn complete_contexts(current: &std::ffi::OsStr) -> Vec<CompletionCandidate> {
    let prefix = current.to_string_lossy();
    let mut names: Vec<String> = kubeconfig::load_all(None)
        .unwrap_or_default()
        .iter()
        .flat_map(|(_, doc)| kubeconfig::entry_names(doc, Kind::Context))
        .filter(|n| n.starts_with(prefix.as_ref()))
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// EKS cluster names fleetctx manages, from the local kubeconfig.
fn complete_eks_clusters(current: &std::ffi::OsStr) -> Vec<CompletionCandidate> {
    let prefix = current.to_string_lossy();
    let mut names: Vec<String> = list::managed(None)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.provider.as_deref() == Some("eks"))
        .filter_map(|m| m.cluster)
        .filter(|n| n.starts_with(prefix.as_ref()))
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

fn cache_listing(output: Format) -> Result<String> {
    #[derive(serde::Serialize)]
    struct Row {
        key: String,
        provider: String,
        identity: String,
        expires: String,
        expired: bool,
    }
    let Some(cache) = TokenCache::locate() else {
        return Err(Error::new("cannot find the cache directory").hint("set XDG_CACHE_HOME"));
    };
    let now = crate::cache::now();
    let rows: Vec<Row> = cache
        .entries()
        .into_iter()
        .map(|(path, entry)| Row {
            key: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            provider: entry.kind,
            identity: entry.identity,
            expires: entry.expiration,
            expired: entry.expires_at <= now,
        })
        .collect();
    list::render_rows(
        &rows,
        output,
        &["KEY", "PROVIDER", "IDENTITY", "EXPIRES"],
        |r| {
            let expires = if r.expired {
                format!("{} (expired)", r.expires)
            } else {
                r.expires.clone()
            };
            [
                r.key.clone(),
                r.provider.clone(),
                r.identity.clone(),
                expires,
            ]
        },
    )
}

fn clear_cache(provider: Option<Provider>, quiet: bool) -> Result<Exit> {
    let Some(cache) = TokenCache::locate() else {
        return Ok(Exit::Success);
    };
    let mut removed = 0;
    for (path, kind) in cache.files() {
        if provider.is_none_or(|p| p.owns(&kind)) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += usize::from(path.extension().is_some_and(|x| x == "json")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::new(format!("could not remove {}", path.display()))
                        .cause(e)
                        .hint(format!(
                            "remove it by hand, or the whole directory {}",
                            cache.dir().display()
                        )));
                }
            }
        }
    }
    if !quiet {
        eprintln!(
            "fleetctx: removed {removed} cache entries from {}",
            cache.dir().display()
        );
    }
    Ok(Exit::Success)
}

/// Writes data to stdout; a closed pipe is a quiet success.
pub fn write_stdout(text: &str) -> Result<Exit> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => Ok(Exit::Success),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        Err(e) => Err(Error::new("could not write to stdout").cause(e)),
    }
}
