//! EKS discovery: each profile proven once, then `ListClusters` (all pages) and
//! `DescribeCluster` in every region of its partition.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eks::types::ClusterStatus;
use aws_types::region::Region;

use crate::discovery::{Answer, Found, Limits, SourceResult};
use crate::error::{Error, Result};

use super::partition::{Partition, partition_of};
use super::token::{credentials_provider, home_region};
use crate::cloud::{Discovered, ScanContext};

/// How a region is reached: the profile whose credentials sign, the account,
/// and the role assumed in it (Organizations), which also name the source.
#[derive(Clone, Debug)]
pub struct Reach<'a> {
    pub profile: Option<&'a str>,
    pub account: String,
    pub via: Via,
}

/// Which credentials sign in the account.
#[derive(Clone, Debug)]
pub enum Via {
    /// The profile's own.
    Profile,
    /// A role assumed with the profile's credentials (Organizations): ARN, name.
    Role(String, String),
    /// An SSO session's permission set in the account.
    Sso {
        session: String,
        role: String,
        account_name: String,
    },
}

impl Reach<'_> {
    fn label(&self) -> &str {
        profile_label(self.profile)
    }

    /// `eks/PROFILE`, `eks/PROFILE/org/ACCOUNT/ROLE` for an assumed role, or
    /// `eks/sso/SESSION/ACCOUNT/ROLE`.
    fn source(&self) -> String {
        match &self.via {
            Via::Profile => format!("eks/{}", self.label()),
            Via::Role(_, name) => format!("eks/{}/org/{}/{name}", self.label(), self.account),
            Via::Sso { session, role, .. } => format!("eks/sso/{session}/{}/{role}", self.account),
        }
    }

    /// Names the identity in messages.
    fn who(&self) -> String {
        match &self.via {
            Via::Profile => format!("profile {}", self.label()),
            Via::Role(arn, _) => format!("profile {} as {arn}", self.label()),
            Via::Sso { session, role, .. } => {
                format!("SSO session {session} as {role} in {}", self.account)
            }
        }
    }
}

/// A profile ready to scan: its credentials resolved in its home region and
/// proven, its account, and the regions to ask.
struct Ready {
    config: SdkConfig,
    account: String,
    partition: &'static Partition,
    regions: Vec<String>,
    /// Named regions outside the profile's partition: failed on their own.
    strangers: Vec<SourceResult>,
}

/// Resolves and proves a profile's credentials. `Err` is the whole answer: the
/// profile was skipped (nothing set up, or every profile was asked for) or failed.
async fn ready(
    profile: Option<&str>,
    scan_regions: &[String],
    every_profile: bool,
    context: &ScanContext<'_>,
) -> std::result::Result<Ready, Discovered> {
    let (limits, explicit) = (context.limits, context.explicit);
    let label = profile_label(profile);
    let failed = |e: Error| Discovered::failed(format!("eks/{label}"), e);
    let skipped = |e: Error| {
        Discovered::skipped(format!(
            "EKS skipped: {} ({})",
            e.message(),
            e.hint_text().unwrap_or_default()
        ))
    };
    let home = home_region(profile).await;
    let anchor = home
        .clone()
        .or_else(|| scan_regions.first().cloned())
        .unwrap_or_else(|| "us-east-1".to_string());
    let partition = partition_of(&anchor).map_err(|e| {
        failed(e.hint(format!(
            "the region comes from profile {label}, AWS_REGION or --eks-region"
        )))
    })?;
    let regions = if scan_regions.is_empty() {
        partition.regions.iter().map(|r| r.to_string()).collect()
    } else {
        scan_regions.to_vec()
    };
    let credential_region = home.unwrap_or_else(|| partition.default_region.to_string());
    let config = match profile_config(profile, &credential_region, limits).await {
        Ok(config) => config,
        Err(e) if !explicit || every_profile => return Err(skipped(e)),
        Err(e) => return Err(failed(e)),
    };
    let account = match caller_account(&config, profile, limits).await {
        Ok(account) => account,
        // With every profile of the config file, a stale one is a line, not a failure.
        Err(e) if every_profile => return Err(skipped(e)),
        Err(e) => return Err(failed(e)),
    };
    // A region outside the profile's partition would be asked with the wrong
    // credentials and signed for the wrong STS host: it fails on its own.
    let (regions, strangers): (Vec<String>, Vec<String>) = regions
        .into_iter()
        .partition(|r| partition_of(r).is_ok_and(|p| p.name == partition.name));
    let strangers = strangers
        .iter()
        .map(|region| {
            let error = match partition_of(region) {
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
    Ok(Ready {
        config,
        account,
        partition,
        regions,
        strangers,
    })
}

/// Every region of one reach, concurrently.
async fn scan_every_region(
    config: &SdkConfig,
    reach: &Reach<'_>,
    regions: &[String],
    context: &ScanContext<'_>,
) -> Vec<SourceResult> {
    context.progress.expect(regions.len());
    let scans = regions.iter().map(|region| {
        context
            .progress
            .track(discover_region(config, reach, region, context.limits))
    });
    futures::future::join_all(scans).await
}

/// One AWS profile across its regions. Its credentials are resolved in its home
/// region and proven once (`sts:GetCallerIdentity`); when that fails, the profile
/// has failed and none of its entries is pruned.
pub async fn discover_profile(
    profile: Option<&str>,
    scan_regions: &[String],
    every_profile: bool,
    context: &ScanContext<'_>,
) -> Discovered {
    let ready = match ready(profile, scan_regions, every_profile, context).await {
        Ok(ready) => ready,
        Err(done) => return done,
    };
    let reach = Reach {
        profile,
        account: ready.account.clone(),
        via: Via::Profile,
    };
    let mut results = ready.strangers;
    results.extend(scan_every_region(&ready.config, &reach, &ready.regions, context).await);
    Discovered {
        results,
        ..Discovered::default()
    }
}

/// Every ACTIVE account of the organization the profile can list
/// (`organizations:ListAccounts`), each reached by assuming `role_name` in it and
/// scanned across the regions. An account where the role cannot be assumed is
/// reported and skipped; nothing of it is pruned.
pub async fn discover_organization(
    profile: Option<&str>,
    scan_regions: &[String],
    role_name: &str,
    context: &ScanContext<'_>,
) -> Discovered {
    let ready = match ready(profile, scan_regions, false, context).await {
        Ok(ready) => ready,
        Err(done) => return done,
    };
    let label = profile_label(profile);
    let accounts = match list_accounts(&ready.config, ready.partition, label, context.limits).await
    {
        Ok(accounts) => accounts,
        Err(e) => return Discovered::failed(format!("eks/{label}/org"), e),
    };
    let per_account = accounts.iter().map(|account| {
        let ready = &ready;
        async move {
            let arn = format!(
                "arn:{}:iam::{account}:role/{role_name}",
                ready.partition.name
            );
            let reach = Reach {
                profile,
                account: account.clone(),
                via: Via::Role(arn.clone(), role_name.to_string()),
            };
            match assume(&ready.config, &arn, label, context.limits).await {
                Ok(config) => scan_every_region(&config, &reach, &ready.regions, context).await,
                Err(e) => vec![SourceResult::failed(reach.source(), e)],
            }
        }
    });
    let scanned = futures::future::join_all(per_account).await;
    let mut results = ready.strangers;
    for found in scanned {
        results.extend(found);
    }
    Discovered {
        results,
        ..Discovered::default()
    }
}

/// Every account and permission set an SSO session reaches, each scanned with
/// its role credentials across the regions (those of the session's partition
/// unless named). An expired login fails the session; nothing of it is pruned.
pub async fn discover_sso(
    session_name: &str,
    roles: &[String],
    scan_regions: &[String],
    context: &ScanContext<'_>,
) -> Discovered {
    let failed = |e: Error| Discovered::failed(format!("eks/sso/{session_name}"), e);
    let session = match super::sso::session(session_name) {
        Ok(session) => session,
        Err(e) => return failed(e),
    };
    let partition = match partition_of(&session.region) {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let regions: Vec<String> = if scan_regions.is_empty() {
        partition.regions.iter().map(|r| r.to_string()).collect()
    } else {
        scan_regions.to_vec()
    };
    let client = super::sso::client_config(&session).await;
    let token = match super::sso::access_token(&session, &client).await {
        Ok(token) => token,
        Err(e) => return failed(e),
    };
    let assignments =
        match super::sso::assignments(&session, &token, &client, roles, context.limits).await {
            Ok(found) => found,
            Err(e) => return failed(e),
        };
    let scanning = scanning_loader(&session.region, context.limits)
        .no_credentials()
        .load()
        .await;
    let per_role =
        assignments.iter().map(|a| {
            let (session, regions, scanning) = (&session, &regions, &scanning);
            async move {
                let reach = Reach {
                    profile: None,
                    account: a.account_id.clone(),
                    via: Via::Sso {
                        session: session.name.clone(),
                        role: a.role.clone(),
                        account_name: a.account_name.clone(),
                    },
                };
                let provider = super::sso::role_provider(session, &a.account_id, &a.role);
                let what = format!("sso GetRoleCredentials {} {}", a.account_id, a.role);
                let credentials =
                    context
                        .limits
                        .call(&what, async {
                            provider.provide_credentials().await.map_err(|e| {
                                Error::new(format!(
                            "could not get credentials for {} in account {} (SSO session {})",
                            a.role, a.account_id, session.name
                        ))
                        .cause(e)
                        .hint(format!("run `aws sso login --sso-session {}`", session.name))
                            })
                        })
                        .await;
                match credentials {
                    Ok(credentials) => {
                        // One HTTP client (one load of TLS roots) for every role.
                        let config = scanning
                            .to_builder()
                            .credentials_provider(SharedCredentialsProvider::new(credentials))
                            .build();
                        scan_every_region(&config, &reach, regions, context).await
                    }
                    Err(e) => vec![SourceResult::failed(reach.source(), e)],
                }
            }
        });
    let mut results = Vec::new();
    for found in futures::future::join_all(per_role).await {
        results.extend(found);
    }
    Discovered {
        results,
        ..Discovered::default()
    }
}

/// The organization's ACTIVE accounts, all pages.
async fn list_accounts(
    config: &SdkConfig,
    partition: &Partition,
    label: &str,
    limits: &Limits,
) -> Result<Vec<String>> {
    let client = aws_sdk_organizations::Client::from_conf(
        aws_sdk_organizations::config::Builder::from(config)
            .region(Region::new(partition.default_region.to_string()))
            .build(),
    );
    let mut accounts = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let what = format!("organizations ListAccounts (profile {label})");
        let page = limits
            .lead(&what, async {
                Ok(client.list_accounts().set_next_token(next.clone()).send().await)
            })
            .await?
            .map_err(|e| {
                let detail = match (e.code(), e.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    _ => aws_sdk_organizations::error::DisplayErrorContext(&e).to_string(),
                };
                Error::new(format!(
                    "could not list the organization's accounts (profile {label})"
                ))
                .because(detail)
                .hint(format!(
                    "profile {label} needs organizations:ListAccounts in the management or a delegated administrator account"
                ))
            })?;
        accounts.extend(
            page.accounts()
                .iter()
                .filter(|a| {
                    a.status() == Some(&aws_sdk_organizations::types::AccountStatus::Active)
                        || a.state() == Some(&aws_sdk_organizations::types::AccountState::Active)
                })
                .filter_map(|a| a.id().map(str::to_string)),
        );
        next = page.next_token().map(str::to_string);
        if next.is_none() {
            return Ok(accounts);
        }
    }
}

/// Assumes `role_arn` with the profile's credentials: an `SdkConfig` signing as
/// the role, for every region of the account.
async fn assume(
    config: &SdkConfig,
    role_arn: &str,
    label: &str,
    limits: &Limits,
) -> Result<SdkConfig> {
    let sts = aws_sdk_sts::Client::new(config);
    let what = format!("STS AssumeRole {role_arn} (profile {label})");
    let answer = limits
        .call(&what, async {
            Ok(sts
                .assume_role()
                .role_arn(role_arn)
                .role_session_name("fleetctx-sync")
                .send()
                .await)
        })
        .await?
        .map_err(|e| {
            let detail = match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                _ => aws_sdk_sts::error::DisplayErrorContext(&e).to_string(),
            };
            Error::new(format!("could not assume {role_arn} (profile {label})"))
                .because(detail)
                .hint("the role must exist in the account and trust the calling identity; the account was skipped and nothing of it pruned")
        })?;
    let session = answer.credentials().ok_or_else(|| {
        Error::new(format!(
            "STS answered AssumeRole for {role_arn} without credentials"
        ))
    })?;
    let credentials = aws_credential_types::Credentials::new(
        session.access_key_id(),
        session.secret_access_key(),
        Some(session.session_token().to_string()),
        std::time::SystemTime::try_from(*session.expiration()).ok(),
        "fleetctx-organizations",
    );
    Ok(config
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build())
}

/// Every profile the aws CLI knows (`aws configure list-profiles`): the
/// `[profile NAME]` and `[default]` sections of the config file and the sections
/// of the credentials file, in file order, once each.
pub fn every_profile() -> Vec<String> {
    let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
    let file = |var: &str, name: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let mut profiles: Vec<String> = Vec::new();
    let sections = |path: Option<std::path::PathBuf>, config: bool| -> Vec<String> {
        let text = path
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']').map(str::trim))
            .filter_map(|section| match section.split_once(char::is_whitespace) {
                Some(("profile", name)) if config => Some(name.trim().to_string()),
                Some(_) => None, // sso-session, services, ...
                None if section == "default" || !config => Some(section.to_string()),
                None => None,
            })
            .collect()
    };
    for name in sections(file("AWS_CONFIG_FILE", "config"), true)
        .into_iter()
        .chain(sections(
            file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            false,
        ))
    {
        if !profiles.contains(&name) {
            profiles.push(name);
        }
    }
    profiles
}

fn profile_label(profile: Option<&str>) -> &str {
    profile.unwrap_or("default")
}

/// How every EKS scan talks to AWS: adaptive retries (the SDK's client-side rate
/// limiter slows down when EKS answers TooManyRequestsException) and the sync's
/// per-call timeout.
fn scanning_loader(region: &str, limits: &Limits) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(
            RetryConfig::adaptive()
                .with_max_attempts(5)
                .with_initial_backoff(Duration::from_millis(200)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(limits.timeout)
                .build(),
        )
}

/// Loads the profile's credentials once; every region then shares them.
pub async fn profile_config(
    profile: Option<&str>,
    region: &str,
    limits: &Limits,
) -> Result<SdkConfig> {
    let provider = credentials_provider(profile, region).await;
    let label = profile_label(profile);
    // Resolved once (one AssumeRole or SSO call per profile), shared by every region.
    let credentials = limits
        .call(&format!("loading AWS credentials (profile {label})"), async {
            provider.provide_credentials().await.map_err(|e| {
                Error::new(format!("could not load AWS credentials for profile {label}"))
                    .cause(e)
                    .hint(format!("run `aws sso login --profile {label}` if the profile uses SSO, or `aws configure --profile {label}`"))
            })
        })
        .await?;
    let mut loader = scanning_loader(region, limits)
        .credentials_provider(SharedCredentialsProvider::new(credentials));
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    Ok(loader.load().await)
}

/// Proves a profile's credentials with `sts:GetCallerIdentity` in its home region
/// (`config`'s region) and answers its account id. Rejected credentials (a
/// revoked or rotated key) fail here, once, instead of reading as 34 regions that
/// are "not enabled".
pub async fn caller_account(
    config: &SdkConfig,
    profile: Option<&str>,
    limits: &Limits,
) -> Result<String> {
    let label = profile_label(profile);
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    let sts = aws_sdk_sts::Client::new(config);
    let what = format!("GET sts.{region} GetCallerIdentity (profile {label})");
    let answer = limits
        .call(&what, async { Ok(sts.get_caller_identity().send().await) })
        .await?;
    match answer {
        Ok(identity) => Ok(identity.account().unwrap_or_default().to_string()),
        Err(e) => {
            let (cause, hint) = match (e.code(), e.message()) {
                (Some(code), message) => (
                    format!("{code}: {}", message.unwrap_or("no message")),
                    format!(
                        "AWS rejected the credentials of profile {label} (revoked, rotated or expired): run `aws configure --profile {label}`, or `aws sso login --profile {label}` for SSO; `aws sts get-caller-identity --profile {label}` shows what the aws CLI sees"
                    ),
                ),
                (None, _) => (
                    aws_sdk_sts::error::DisplayErrorContext(&e).to_string(),
                    format!(
                        "could not reach STS in {region}: check your network or proxy, then run the sync again"
                    ),
                ),
            };
            Err(Error::new(format!(
                "could not verify the AWS credentials of profile {label} (sts:GetCallerIdentity in {region}); nothing of the profile was changed"
            ))
            .because(cause)
            .hint(hint))
        }
    }
}

/// A region the account has not enabled answers with an invalid-token error.
fn region_not_enabled<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.code(),
        Some("UnrecognizedClientException" | "InvalidClientTokenId")
    )
}

fn eks_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: String,
    profile: &str,
    e: SdkError<E, R>,
) -> Error {
    let hint = match e.code() {
        Some("AccessDeniedException") => format!(
            "the identity of profile {profile} needs eks:ListClusters and eks:DescribeCluster"
        ),
        _ => "this may be transient: run the sync again; -v logs every API call".to_string(),
    };
    let detail = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => aws_sdk_eks::error::DisplayErrorContext(&e).to_string(),
    };
    Error::new(what).because(detail).hint(hint)
}

/// Every ACTIVE or UPDATING cluster of one profile in one region. The profile's
/// credentials were proven by `caller_account`, so a region that rejects them is
/// one the account has not enabled: empty.
pub async fn discover_region(
    config: &SdkConfig,
    reach: &Reach<'_>,
    region: &str,
    limits: &Limits,
) -> SourceResult {
    let label = reach.who();
    let label = label.as_str();
    let source = format!("{}/{region}", reach.source());
    let client = aws_sdk_eks::Client::from_conf(
        aws_sdk_eks::config::Builder::from(config)
            .region(Region::new(region.to_string()))
            .build(),
    );
    let mut names = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let what = format!("GET eks.{region} ListClusters (profile {label})");
        let page = limits
            .call(&what, async {
                Ok(client
                    .list_clusters()
                    .max_results(100)
                    .set_next_token(next.clone())
                    .send()
                    .await)
            })
            .await;
        match page {
            Ok(Ok(page)) => {
                names.extend(page.clusters().iter().cloned());
                next = page.next_token().map(str::to_string);
                if next.is_none() {
                    break;
                }
            }
            Ok(Err(e)) if region_not_enabled(&e) => {
                return SourceResult {
                    source,
                    answer: Answer::Empty("region not enabled"),
                    clusters: Vec::new(),
                };
            }
            Ok(Err(e)) => {
                let error = eks_error(
                    format!("could not list EKS clusters in {region} (profile {label})"),
                    label,
                    e,
                );
                return SourceResult::failed(source, error);
            }
            Err(timed_out) => return SourceResult::failed(source, timed_out),
        }
    }

    let described = futures::future::join_all(names.iter().map(|name| {
        let what = format!("GET eks.{region} DescribeCluster {name} (profile {label})");
        let client = &client;
        async move {
            (
                name,
                limits
                    .call(&what, async {
                        Ok(client.describe_cluster().name(name).send().await)
                    })
                    .await,
            )
        }
    }))
    .await;
    let mut clusters = Vec::new();
    let mut failure = None;
    for (name, answer) in described {
        match answer {
            Ok(Ok(out)) => {
                if let Some(found) = out.cluster().and_then(|c| found(c, reach, region, &source)) {
                    clusters.push(found);
                }
            }
            // Deleted between the list and the describe: it is gone.
            Ok(Err(e)) if e.code() == Some("ResourceNotFoundException") => {}
            Ok(Err(e)) => {
                failure = Some(eks_error(
                    format!("could not describe EKS cluster {name} in {region} (profile {label})"),
                    label,
                    e,
                ))
            }
            Err(timed_out) => failure = Some(timed_out),
        }
    }
    let answer = match failure {
        Some(error) => Answer::Failed(error),
        None => Answer::Complete,
    };
    SourceResult {
        source,
        answer,
        clusters,
    }
}

fn found(
    cluster: &aws_sdk_eks::types::Cluster,
    reach: &Reach<'_>,
    region: &str,
    source: &str,
) -> Option<Found> {
    let profile = reach.profile;
    if !matches!(
        cluster.status(),
        Some(ClusterStatus::Active | ClusterStatus::Updating)
    ) {
        return None;
    }
    let name = cluster.name()?.to_string();
    let server = cluster.endpoint().filter(|e| !e.is_empty())?.to_string();
    let account = cluster
        .arn()
        .and_then(|arn| arn.split(':').nth(4))
        .filter(|a| !a.is_empty())
        .unwrap_or(&reach.account)
        .to_string();
    let mut args: Vec<String> = ["token", "eks", "--cluster", &name, "--region", region]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let (Some(_), Some(id)) = (cluster.outpost_config(), cluster.id()) {
        args.extend(["--cluster-id".to_string(), id.to_string()]);
    }
    if let Some(profile) = profile {
        args.extend(["--profile".to_string(), profile.to_string()]);
    }
    let mut labels = Vec::new();
    match &reach.via {
        Via::Profile => {}
        Via::Role(arn, name) => {
            args.extend(["--role-arn".to_string(), arn.clone()]);
            labels.push(("role", name.clone()));
        }
        Via::Sso {
            session,
            role,
            account_name,
        } => {
            args.extend([
                "--sso-session".to_string(),
                session.clone(),
                "--account-id".to_string(),
                reach.account.clone(),
                "--role-name".to_string(),
                role.clone(),
            ]);
            labels.push(("role", role.clone()));
            labels.push(("account_name", account_name.clone()));
        }
    }
    Some(Found {
        provider: "eks",
        source: source.to_string(),
        name,
        location: region.to_string(),
        owner: account,
        profile: match reach.via {
            Via::Sso { .. } => None,
            _ => Some(profile_label(profile).to_string()),
        },
        server,
        ca_data: cluster
            .certificate_authority()
            .and_then(|c| c.data())
            .map(str::to_string),
        token_args: args,
        shared_user: None,
        labels,
    })
}
