//! Amazon EKS: every cluster each AWS profile reaches, in every region of its
//! partition, and bearer tokens signed locally for them.
//!
//! - `token`: the token (SigV4-presigned STS URL) and the credential chain;
//! - `discovery`: a profile proven once, then its regions;
//! - `partition`: regions and STS hosts per AWS partition.

mod discovery;
mod partition;
mod sso;
mod token;

use clap::{ArgMatches, Args, Command, CommandFactory, FromArgMatches, Parser};
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use serde::Deserialize;

pub use partition::{PARTITIONS, Partition, partition_of, sts_host};
pub use token::{EksToken, presigned_url, token_from_url};

use super::{Cloud, Discovered, Scan, ScanContext, Scanning, Section};
use crate::error::{Error, Result};
use crate::token::{CacheArgs, Credential};

pub struct Eks;

// `sync` flags (no doc comment: it would become the help text of `sync`).
#[derive(Debug, Args)]
#[group(skip)]
struct ScanArgs {
    /// An AWS profile to scan (repeatable).
    #[arg(long = "eks-profile", value_name = "NAME")]
    eks_profiles: Vec<String>,
    /// Scan every profile of the AWS config and credentials files (a profile
    /// without usable credentials is skipped with one line).
    #[arg(long)]
    eks_all_profiles: bool,
    /// Scan every ACTIVE account of the organization (organizations:ListAccounts
    /// with the profile's credentials), assuming this role in each.
    #[arg(long, value_name = "ROLE_NAME")]
    eks_org_role: Option<String>,
    /// An IAM Identity Center session to scan: every account and permission set
    /// its login (`aws sso login --sso-session NAME`) reaches (repeatable).
    #[arg(long = "eks-sso-session", value_name = "NAME")]
    eks_sso_sessions: Vec<String>,
    /// Keep only these permission sets of the SSO sessions (repeatable).
    #[arg(long = "eks-sso-role", value_name = "NAME")]
    eks_sso_roles: Vec<String>,
    /// An AWS region to scan (repeatable; default: every region of the profile's partition).
    #[arg(long = "eks-region", value_name = "REGION")]
    eks_regions: Vec<String>,
}

/// The `eks:` section of config.yaml.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Settings {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    profiles: Vec<String>,
    #[serde(default)]
    all_profiles: bool,
    org_role: Option<String>,
    #[serde(default)]
    sso_sessions: Vec<String>,
    #[serde(default)]
    sso_roles: Vec<String>,
    #[serde(default)]
    regions: Vec<String>,
}

fn yes() -> bool {
    true
}

/// An EKS token: a presigned STS GetCallerIdentity URL, signed locally.
///
/// Example: fleetctx token eks --cluster prod --region eu-west-1 --profile prod
#[derive(Debug, Parser)]
#[command(name = "eks")]
struct TokenArgs {
    /// Cluster name (sent as x-k8s-aws-id).
    #[arg(long, value_name = "NAME", add = ArgValueCompleter::new(complete_clusters))]
    cluster: String,
    /// Cluster id, for EKS local clusters on Outposts (sent instead of the name).
    #[arg(long, value_name = "ID")]
    cluster_id: Option<String>,
    /// The cluster's region; picks the STS host and partition of the token.
    #[arg(long, value_name = "REGION")]
    region: String,
    /// AWS profile (default: AWS_DEFAULT_PROFILE, else AWS_PROFILE, else the default chain).
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// Assume this role first and sign with its session (cached too).
    #[arg(long, value_name = "ARN", conflicts_with = "sso_session")]
    role_arn: Option<String>,
    /// Sign with an IAM Identity Center permission set: the session's cached
    /// login (`aws sso login --sso-session NAME`), with --account-id and --role-name.
    #[arg(long, value_name = "NAME", requires_all = ["account_id", "role_name"], conflicts_with = "profile")]
    sso_session: Option<String>,
    /// The account of the SSO permission set.
    #[arg(long, value_name = "ID", requires = "sso_session")]
    account_id: Option<String>,
    /// The SSO permission set (role name).
    #[arg(long, value_name = "NAME", requires = "sso_session")]
    role_name: Option<String>,
    #[command(flatten)]
    cache: CacheArgs,
}

/// What one sync scans on EKS.
struct EksScan {
    /// `None` is the default credential chain.
    profiles: Vec<Option<String>>,
    /// Empty: every region of each profile's partition.
    regions: Vec<String>,
    explicit: bool,
    /// `--eks-all-profiles`: a profile that cannot be used is skipped, not failed.
    every_profile: bool,
    /// `--eks-org-role`: every account of the organization, through this role.
    org_role: Option<String>,
    /// IAM Identity Center sessions, and the permission sets to keep.
    sso_sessions: Vec<String>,
    sso_roles: Vec<String>,
}

impl Cloud for Eks {
    fn name(&self) -> &'static str {
        "eks"
    }

    fn owner_key(&self) -> &'static str {
        "account"
    }

    fn default_template(&self, found: &crate::discovery::Found) -> &'static str {
        // Through Organizations, one profile reaches many accounts: name them.
        if found.labels.iter().any(|(key, _)| *key == "role") {
            "eks_{account}_{role}_{region}_{name}"
        } else {
            "eks_{profile}_{region}_{name}"
        }
    }

    fn cache_kinds(&self) -> &'static [&'static str] {
        &["eks", "aws-role", "aws-sso"]
    }

    fn scan_args(&self, command: Command) -> Command {
        ScanArgs::augment_args(command)
    }

    fn named(&self, flags: &ArgMatches) -> bool {
        ScanArgs::from_arg_matches(flags).is_ok_and(|a| {
            !a.eks_profiles.is_empty() || a.eks_all_profiles || !a.eks_regions.is_empty()
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
                profiles: Vec::new(),
                all_profiles: false,
                org_role: None,
                sso_sessions: Vec::new(),
                sso_roles: Vec::new(),
                regions: Vec::new(),
            },
        };
        if !settings.enabled {
            return Ok(None);
        }
        let org_role = flags.eks_org_role.or(settings.org_role);
        let sso_sessions = if flags.eks_sso_sessions.is_empty() {
            settings.sso_sessions
        } else {
            flags.eks_sso_sessions
        };
        let sso_roles = if flags.eks_sso_roles.is_empty() {
            settings.sso_roles
        } else {
            flags.eks_sso_roles
        };
        let every_profile =
            flags.eks_all_profiles || (flags.eks_profiles.is_empty() && settings.all_profiles);
        let explicit = every_profile
            || org_role.is_some()
            || !sso_sessions.is_empty()
            || !flags.eks_profiles.is_empty()
            || !flags.eks_regions.is_empty()
            || !settings.profiles.is_empty()
            || !settings.regions.is_empty();
        let profiles = if every_profile {
            discovery::every_profile()
        } else if flags.eks_profiles.is_empty() {
            settings.profiles
        } else {
            flags.eks_profiles
        };
        let regions = if flags.eks_regions.is_empty() {
            settings.regions
        } else {
            flags.eks_regions
        };
        Ok(Some(Box::new(EksScan {
            // The profile the aws CLI would use is recorded, so the entries sign
            // as it later, whatever kubectl's environment says. Naming only SSO
            // sessions scans only them.
            profiles: if profiles.is_empty() && !sso_sessions.is_empty() {
                Vec::new()
            } else if profiles.is_empty() {
                vec![token::env_profile()]
            } else {
                profiles.into_iter().map(Some).collect()
            },
            regions,
            explicit,
            every_profile,
            org_role,
            sso_sessions,
            sso_roles,
        })))
    }

    fn token_command(&self) -> Command {
        TokenArgs::command()
    }

    fn credential(&self, args: &ArgMatches) -> Result<Credential> {
        let args = TokenArgs::from_arg_matches(args).map_err(|e| Error::new(e.to_string()))?;
        let source = EksToken {
            cluster: args.cluster,
            cluster_id: args.cluster_id,
            region: args.region,
            profile: args.profile,
            role_arn: args.role_arn,
            sso: args.sso_session.map(|session| token::SsoRole {
                session,
                account_id: args.account_id.unwrap_or_default(),
                role_name: args.role_name.unwrap_or_default(),
            }),
        };
        crate::token::credential(&source, &args.cache.options())
    }
}

impl Scan for EksScan {
    fn explicit(&self) -> bool {
        self.explicit
    }

    fn discover<'a>(&'a self, context: &'a ScanContext<'a>) -> Scanning<'a> {
        Box::pin(async move {
            let per_profile = self.profiles.iter().map(|profile| async move {
                match &self.org_role {
                    Some(role) => {
                        discovery::discover_organization(
                            profile.as_deref(),
                            &self.regions,
                            role,
                            context,
                        )
                        .await
                    }
                    None => {
                        discovery::discover_profile(
                            profile.as_deref(),
                            &self.regions,
                            self.every_profile,
                            context,
                        )
                        .await
                    }
                }
            });
            let per_session = self.sso_sessions.iter().map(|session| {
                discovery::discover_sso(session, &self.sso_roles, &self.regions, context)
            });
            let (profiles, sessions) = futures::future::join(
                futures::future::join_all(per_profile),
                futures::future::join_all(per_session),
            )
            .await;
            let mut all = Discovered {
                scanned: true,
                ..Discovered::default()
            };
            for found in profiles.into_iter().chain(sessions) {
                all.results.extend(found.results);
                all.skipped.extend(found.skipped);
            }
            all
        })
    }
}

/// EKS cluster names fleetctx manages, from the local kubeconfig only (their
/// context markers): no credentials, no network.
fn complete_clusters(current: &std::ffi::OsStr) -> Vec<CompletionCandidate> {
    use crate::kubeconfig::{self, Kind};
    let prefix = current.to_string_lossy();
    let field = |marker: &yaml_serde::Mapping, key: &str| {
        marker.get(key).and_then(|v| v.as_str()).map(str::to_string)
    };
    let mut names: Vec<String> = kubeconfig::load_all(None)
        .unwrap_or_default()
        .iter()
        .flat_map(|(_, doc)| kubeconfig::owned_entries(doc, Kind::Context))
        .filter(|(_, _, marker)| field(marker, "provider").as_deref() == Some(Eks.name()))
        .filter_map(|(_, _, marker)| field(marker, "cluster"))
        .filter(|n| n.starts_with(prefix.as_ref()))
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}
