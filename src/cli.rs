//! The command line: clap definitions (their doc comments are the help text) and
//! the small `exec` of each command, which builds plain options and calls the
//! library. Nothing below this module sees clap.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::eks::EksToken;
use crate::error::{Error, Exit, Result, warn};
use crate::exec_credential;
use crate::gke::GkeToken;
use crate::token::{self, TokenOptions, TokenSource};

/// Every GKE and EKS cluster you can reach, in your kubeconfig, with credentials
/// that cost milliseconds.
#[derive(Debug, Parser)]
#[command(name = "fleetctx", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// kubectl exec credential plugin: print an ExecCredential for GKE or EKS.
    ///
    /// Tokens come from an on-disk cache shared by every process; a miss refreshes
    /// once, however many kubectl processes ask at the same moment.
    #[command(subcommand)]
    Token(TokenCommand),
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
    #[arg(long, value_name = "NAME")]
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

/// Writes data to stdout; a closed pipe is a quiet success.
pub fn write_stdout(text: &str) -> Result<Exit> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => Ok(Exit::Success),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        Err(e) => Err(Error::new("could not write to stdout").cause(e)),
    }
}
