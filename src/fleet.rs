#![warn(missing_docs)]
//! The library for services: every cluster of a set of sources, in memory, each
//! with its connection details, a token source that refreshes itself, and a
//! [`kube::Client`], with no kubeconfig file, no gcloud and no aws CLI.
//!
//! ```no_run
//! # async fn run() -> fleetctx::error::Result<()> {
//! use k8s_openapi::api::core::v1::Namespace;
//! use kube::api::{Api, ListParams};
//!
//! let sources = fleetctx::Sources::from_args(["--gke-all-projects", "--eks-profile", "prod"]);
//! let fleet = fleetctx::discover(&sources).await?;
//! for cluster in &fleet.clusters {
//!     let client = fleetctx::client(cluster)?;
//!     let namespaces = Api::<Namespace>::all(client).list(&ListParams::default()).await;
//!     println!("{}: {:?}", cluster.name, namespaces.map(|l| l.items.len()));
//! }
//! # Ok(()) }
//! ```
//!
//! Nothing here writes a file unless asked: tokens live in memory, and the
//! on-disk token cache `fleetctx token` shares is used only with
//! [`Sources::shared_cache`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::ArgMatches;

use crate::cache::Secret;
use crate::cloud::Cloud;
use crate::discovery::{Answer, Found, Limits};
use crate::error::{Error, Result};
use crate::token::TokenOptions;

/// What to scan, named with the flags of `fleetctx sync` (`--gke-project`,
/// `--gke-all-projects`, `--eks-profile`, `--eks-sso-session`, `--eks-org-role`,
/// `--eks-region`, `--no-eks`, ...), over the settings file, over the defaults
/// (gcloud's project, the default AWS profile in every region).
#[derive(Clone, Debug)]
pub struct Sources {
    args: Vec<String>,
    config: Option<PathBuf>,
    shared_cache: bool,
    concurrency: usize,
    timeout: Duration,
}

impl Sources {
    /// What a bare `fleetctx sync` scans: config.yaml, else the defaults.
    pub fn configured() -> Sources {
        Sources::from_args(Vec::<String>::new())
    }

    /// The sources `fleetctx sync ARGS` would scan.
    pub fn from_args<I, S>(args: I) -> Sources
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Sources {
            args: args.into_iter().map(Into::into).collect(),
            config: None,
            shared_cache: false,
            concurrency: 64,
            timeout: Duration::from_secs(20),
        }
    }

    /// Read this settings file instead of the default config.yaml.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Sources {
        self.config = Some(path.into());
        self
    }

    /// Use the on-disk token cache `fleetctx token` shares (0600 files in the
    /// user's cache directory), for discovery and for every cluster's tokens.
    /// Off by default: then nothing is written.
    pub fn shared_cache(mut self, yes: bool) -> Sources {
        self.shared_cache = yes;
        self
    }

    /// Most API calls in flight at once while discovering (64).
    pub fn concurrency(mut self, calls: usize) -> Sources {
        self.concurrency = calls.max(1);
        self
    }

    /// Limit for each API call (20 s).
    pub fn timeout(mut self, limit: Duration) -> Sources {
        self.timeout = limit;
        self
    }

    fn flags(&self) -> Result<ArgMatches> {
        crate::cloud::scan_flags(clap::Command::new("sources").no_binary_name(true))
            .try_get_matches_from(&self.args)
            .map_err(|e| {
                Error::new(format!("invalid sources: {}", e.kind())).because(e.to_string())
            })
    }
}

/// The clusters of a set of sources, and how each source answered.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// Every cluster found, named as `fleetctx sync` names its context.
    pub clusters: Vec<Cluster>,
    /// Each source scanned (`gke/PROJECT`, `eks/PROFILE/REGION`, ...).
    pub sources: Vec<SourceOutcome>,
    /// Clouds not scanned, and why (no credentials, say).
    pub skipped: Vec<String>,
}

/// How one source answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceOutcome {
    /// `gke/PROJECT`, `eks/PROFILE/REGION`, ...
    pub source: String,
    /// Clusters it listed.
    pub clusters: usize,
    /// Complete, partial, empty or failed.
    pub outcome: Outcome,
}

/// A source's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every cluster of the source was listed.
    Complete,
    /// Some may be missing; the reason.
    Partial(String),
    /// Nothing there (the GKE API not enabled, a region not enabled).
    Empty(String),
    /// The source could not be listed: the error, naming it and the next step.
    Failed(String),
}

/// One cluster: where it is, how to trust it, and how to authenticate to it.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The context name `fleetctx sync` gives it (`gke_{project}_{location}_{name}`, ...).
    pub name: String,
    /// `gke`, `eks`.
    pub provider: &'static str,
    /// The source that listed it (for a kubeconfig's context: the file holding it).
    pub source: String,
    /// The cluster's own name.
    pub cluster: String,
    /// Zone or region.
    pub location: String,
    /// GCP project or AWS account.
    pub owner: String,
    /// The API server's URL.
    pub server: String,
    /// Base64 of the PEM CA bundle; `None` for a publicly trusted endpoint.
    pub ca_data: Option<String>,
    /// Bearer tokens for this cluster, refreshed before they expire.
    pub tokens: TokenSource,
}

/// Discovers every cluster of `sources`, concurrently, under one bound; writes
/// nothing (see [`Sources::shared_cache`]). A source that fails is in
/// `Fleet::sources` with its error; the others are still listed.
pub async fn discover(sources: &Sources) -> Result<Fleet> {
    let sources = sources.clone();
    tokio::task::spawn_blocking(move || discover_blocking(&sources))
        .await
        .map_err(|e| Error::new("discovery stopped").cause(e))?
}

fn discover_blocking(sources: &Sources) -> Result<Fleet> {
    let flags = sources.flags()?;
    let settings = crate::settings::Settings::load(sources.config.as_deref())?;
    let mut scans = crate::cloud::plans(&flags, &settings)?;
    let token = TokenOptions {
        use_cache: sources.shared_cache,
        min_ttl: Duration::from_secs(300),
        lock_timeout: Duration::from_secs(30),
        timeout: sources.timeout,
    };
    let limits = Limits::new(sources.concurrency, sources.timeout, false);
    let discovery = crate::sync::discover(&mut scans, &limits, true, &token)?;
    let mut tokens = Tokens::new(sources.shared_cache);
    let mut clusters = Vec::new();
    let template = settings.name_template.as_deref();
    for (found, name) in crate::sync::names(template, discovery.results()) {
        clusters.push(Cluster::found(found, name, tokens.get(&found.token_args)?)?);
    }
    let sources = discovery
        .results()
        .map(|r| SourceOutcome {
            source: r.source.clone(),
            clusters: r.clusters.len(),
            outcome: match &r.answer {
                Answer::Complete => Outcome::Complete,
                Answer::Partial(why) => Outcome::Partial(why.clone()),
                Answer::Empty(why) => Outcome::Empty(why.to_string()),
                Answer::Failed(e) => Outcome::Failed(e.to_string()),
            },
        })
        .collect();
    Ok(Fleet {
        clusters,
        sources,
        skipped: discovery.skipped,
    })
}

/// One token source per identity: every cluster whose user runs the same
/// `fleetctx token` arguments (all of one GKE identity's) shares it.
struct Tokens {
    shared_cache: bool,
    by_args: std::collections::HashMap<Vec<String>, TokenSource>,
}

impl Tokens {
    fn new(shared_cache: bool) -> Tokens {
        Tokens {
            shared_cache,
            by_args: Default::default(),
        }
    }

    fn get(&mut self, args: &[String]) -> Result<TokenSource> {
        if let Some(source) = self.by_args.get(args) {
            return Ok(source.clone());
        }
        let source = TokenSource::from_exec_args(args, self.shared_cache)?;
        self.by_args.insert(args.to_vec(), source.clone());
        Ok(source)
    }
}

impl Cluster {
    fn found(found: &Found, name: String, tokens: TokenSource) -> Result<Cluster> {
        Ok(Cluster {
            name,
            provider: found.provider,
            source: found.source.clone(),
            cluster: found.name.clone(),
            location: found.location.clone(),
            owner: found.owner.clone(),
            server: found.server.clone(),
            ca_data: found.ca_data.clone(),
            tokens,
        })
    }
}

/// The contexts fleetctx manages in a kubeconfig (`None`: config.yaml's
/// `kubeconfig`, else the files kubectl reads), each as a cluster, or the reason
/// it cannot be one (its user no longer runs `fleetctx token`, say), by context
/// name. Their tokens come from the user entries' `fleetctx token` arguments.
pub fn managed(
    kubeconfig: Option<&Path>,
    shared_cache: bool,
) -> Result<Vec<(String, Result<Cluster>)>> {
    let fleet = crate::settings::fleet_kubeconfig(kubeconfig)?;
    let files = crate::kubeconfig::load_all(fleet.as_deref())?;
    let mut tokens = Tokens::new(shared_cache);
    Ok(crate::list::managed(fleet.as_deref())?
        .into_iter()
        .map(|managed| {
            let context = managed.context.clone();
            (context, from_context(&files, managed, &mut tokens))
        })
        .collect())
}

fn from_context(
    files: &[(PathBuf, yaml_serde::Value)],
    managed: crate::list::Managed,
    tokens: &mut Tokens,
) -> Result<Cluster> {
    let alone = crate::kubeconfig::single::extract(files, &managed.context)?;
    let field = |list: &str, path: &[&str]| {
        let mut value = alone.get(list)?.as_sequence()?.first()?;
        for key in path {
            value = value.get(*key)?;
        }
        Some(value.clone())
    };
    let text =
        |list: &str, path: &[&str]| field(list, path).and_then(|v| v.as_str().map(str::to_string));
    let args: Vec<String> = field("users", &["user", "exec", "args"])
        .and_then(|v| yaml_serde::from_value(v).ok())
        .unwrap_or_default();
    let server = text("clusters", &["cluster", "server"]).ok_or_else(|| {
        Error::new(format!("context {} has no server", managed.context))
            .hint("run `fleetctx sync` again")
    })?;
    let provider = crate::cloud::CLOUDS
        .iter()
        .map(|c| c.name())
        .find(|p| managed.provider.as_deref() == Some(*p))
        .unwrap_or("unknown");
    Ok(Cluster {
        provider,
        source: managed.file.clone(),
        cluster: managed.cluster.clone().unwrap_or_default(),
        location: managed.location.clone().unwrap_or_default(),
        owner: managed.owner().unwrap_or_default().to_string(),
        ca_data: text("clusters", &["cluster", "certificate-authority-data"]),
        server,
        tokens: tokens.get(&args).map_err(|e| {
            Error::new(format!(
                "context {}: its user does not run `fleetctx token`",
                managed.context
            ))
            .because(e.message().to_string())
            .hint("run `fleetctx sync` again")
        })?,
        name: managed.context,
    })
}

/// Bearer tokens for one identity (every cluster whose user runs the same
/// `fleetctx token` arguments). Cheap to clone and safe to share across tasks:
/// every clone holds the same token, refreshed once, by whichever caller needs
/// it first, when a fifth of its life (at least 10 s, at most five minutes) is
/// left; the others wait for that refresh. It mints the way `fleetctx token` does, in
/// memory unless [`Sources::shared_cache`] was set.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<TokenInner>,
}

struct TokenInner {
    cloud: &'static dyn Cloud,
    /// The cloud's `token` arguments (`--cluster prod --region eu-west-1`).
    args: Vec<String>,
    shared_cache: bool,
    held: Arc<tokio::sync::Mutex<Held>>,
    refreshes: AtomicU64,
}

#[derive(Default)]
struct Held {
    token: Option<Secret>,
    expires_at: i64,
    /// Unix seconds: when to refresh.
    refresh_at: i64,
    /// The last refresh failed, then: callers within `FAILURE_MEMO` get its
    /// error rather than each trying again in turn.
    failed: Option<(std::time::Instant, String)>,
}

/// How long a failed refresh answers for itself.
const FAILURE_MEMO: Duration = Duration::from_secs(2);
/// A token is never handed out with less than this left.
const LAST_SECONDS: i64 = 10;

impl Held {
    /// The held token, while it has more than its last seconds left.
    fn serve(&self, now: i64) -> Option<Secret> {
        self.token
            .clone()
            .filter(|_| self.expires_at - now > LAST_SECONDS)
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("cloud", &self.inner.cloud.name())
            .field("args", &self.inner.args)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// From the arguments a kubeconfig's exec entry passes to `fleetctx`
    /// (`token eks --cluster prod --region eu-west-1 ...`).
    pub fn from_exec_args(args: &[String], shared_cache: bool) -> Result<TokenSource> {
        let (cloud, rest) = match args {
            [token, cloud, rest @ ..] if token == "token" => (cloud, rest),
            _ => {
                return Err(Error::new(format!(
                    "not `fleetctx token` arguments: {args:?}"
                )));
            }
        };
        let cloud = crate::cloud::by_name(cloud)
            .ok_or_else(|| Error::new(format!("no cloud called {cloud}")))?;
        let source = TokenSource {
            inner: Arc::new(TokenInner {
                cloud,
                args: rest.to_vec(),
                shared_cache,
                held: Arc::new(tokio::sync::Mutex::new(Held::default())),
                refreshes: AtomicU64::new(0),
            }),
        };
        source.matches()?;
        Ok(source)
    }

    fn matches(&self) -> Result<ArgMatches> {
        let inner = &self.inner;
        let mut argv = vec![inner.cloud.name().to_string()];
        argv.extend(inner.args.iter().cloned());
        if inner.shared_cache {
            // The margin is ours, whatever FLEETCTX_MIN_TTL says.
            argv.extend(["--min-ttl".to_string(), "300".to_string()]);
        } else {
            argv.push("--no-cache".to_string());
        }
        inner
            .cloud
            .token_command()
            .try_get_matches_from(argv)
            .map_err(|e| Error::new("invalid token arguments").because(e.to_string()))
    }

    /// A token valid for a while yet: the one held, or a new one. When a
    /// refresh fails while the held token still has time left, that one is
    /// served and the next call tries again.
    pub async fn token(&self) -> Result<Secret> {
        let mut held = self.inner.held.clone().lock_owned().await;
        let now = crate::cache::now();
        if let Some(token) = held.token.as_ref().filter(|_| now < held.refresh_at) {
            return Ok(token.clone());
        }
        if let Some((at, why)) = &held.failed
            && at.elapsed() < FAILURE_MEMO
        {
            return held.serve(now).ok_or_else(|| Error::new(why.clone()));
        }
        // The refresh runs in a task of its own that holds the lock and stores
        // its result, so a caller that gives up never costs a second refresh.
        let source = self.clone();
        let refresh = tokio::spawn(async move {
            let minting = source.clone();
            let minted = tokio::task::spawn_blocking(move || {
                minting.inner.cloud.credential(&minting.matches()?)
            })
            .await
            .map_err(|e| Error::new("the token refresh stopped").cause(e))
            .and_then(|r| r);
            let now = crate::cache::now();
            match minted {
                Ok(credential) if credential.expires_at - now > LAST_SECONDS => {
                    source.inner.refreshes.fetch_add(1, Ordering::Relaxed);
                    let life = credential.expires_at - now;
                    let margin = (life / 5).clamp(LAST_SECONDS, 300).min(life);
                    *held = Held {
                        token: Some(credential.token.clone()),
                        expires_at: credential.expires_at,
                        refresh_at: now + life - margin,
                        failed: None,
                    };
                    Ok(credential.token)
                }
                failed => {
                    let error = match failed {
                        Ok(_) => Error::new(format!(
                            "the {} credential came back already expired",
                            source.inner.cloud.name()
                        ))
                        .hint("check the machine's clock, then log in again"),
                        Err(e) => e,
                    };
                    held.failed = Some((std::time::Instant::now(), error.to_string()));
                    held.serve(now).ok_or(error)
                }
            }
        });
        refresh
            .await
            .map_err(|e| Error::new("the token refresh stopped").cause(e))?
    }

    /// Unix seconds when the token held now expires, if one is held.
    pub async fn expires_at(&self) -> Option<i64> {
        let held = self.inner.held.lock().await;
        held.token.as_ref().map(|_| held.expires_at)
    }

    /// How many tokens this source (and its clones) has fetched.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }
}

/// A `kube::Client` for `cluster`: its server, trusting its CA alone, every
/// request carrying a token from `cluster.tokens` (set by a tower layer, in
/// process). Call it within a Tokio runtime.
pub fn client(cluster: &Cluster) -> Result<kube::Client> {
    use tower::ServiceBuilder;
    use tower::buffer::BufferLayer;
    use tower::filter::AsyncFilterLayer;

    let server: http::Uri = cluster.server.parse().map_err(|e| {
        Error::new(format!(
            "cluster {}: invalid server {}",
            cluster.name, cluster.server
        ))
        .cause(e)
    })?;
    let mut config = kube::Config::new(server);
    if let Some(ca) = &cluster.ca_data {
        config.root_cert = Some(ca_certificates(ca).map_err(|why| {
            Error::new(format!("cluster {}: invalid CA data", cluster.name)).because(why)
        })?);
    }
    config.connect_timeout = Some(Duration::from_secs(10));
    let tokens = cluster.tokens.clone();
    let authorize = AsyncFilterLayer::new(move |mut request: http::Request<kube::client::Body>| {
        let tokens = tokens.clone();
        async move {
            let token = tokens.token().await?;
            let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))?;
            value.set_sensitive(true);
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
            Ok::<_, tower::BoxError>(request)
        }
    });
    // kube's stack is not `Clone`, which the async filter needs: a buffer makes it so.
    let stack = ServiceBuilder::new()
        .layer(authorize)
        .layer(BufferLayer::<http::Request<kube::client::Body>>::new(1024));
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| {
        Error::new(format!(
            "cluster {}: could not build a client",
            cluster.name
        ))
        .cause(e)
    })?;
    Ok(builder.with_layer(&stack).build())
}

/// The DER certificates of a base64 PEM bundle.
fn ca_certificates(ca: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    use base64::Engine;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca.trim())
        .map_err(|e| e.to_string())?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certificates.is_empty() {
        return Err("no certificate in it".to_string());
    }
    Ok(certificates)
}
