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

use super::partition::partition_of;
use super::token::{credentials_provider, home_region};
use crate::cloud::{Discovered, ScanContext};

/// One AWS profile across its regions. Its credentials are resolved in its home
/// region and proven once (`sts:GetCallerIdentity`); when that fails, the profile
/// has failed and none of its entries is pruned.
pub async fn discover_profile(
    profile: Option<&str>,
    scan_regions: &[String],
    every_profile: bool,
    context: &ScanContext<'_>,
) -> Discovered {
    let (limits, progress, explicit) = (context.limits, context.progress, context.explicit);
    let label = profile.unwrap_or("default");
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
    let partition = match partition_of(&anchor) {
        Ok(p) => p,
        Err(e) => {
            return failed(e.hint(format!(
                "the region comes from profile {label}, AWS_REGION or --eks-region"
            )));
        }
    };
    let regions = if scan_regions.is_empty() {
        partition.regions.iter().map(|r| r.to_string()).collect()
    } else {
        scan_regions.to_vec()
    };
    let credential_region = home.unwrap_or_else(|| partition.default_region.to_string());
    let config = match profile_config(profile, &credential_region, limits).await {
        Ok(config) => config,
        Err(e) if !explicit || every_profile => return skipped(e),
        Err(e) => return failed(e),
    };
    let account = match caller_account(&config, profile, limits).await {
        Ok(account) => account,
        // With every profile of the config file, a stale one is a line, not a failure.
        Err(e) if every_profile => return skipped(e),
        Err(e) => return failed(e),
    };
    // A region outside the profile's partition would be asked with the wrong
    // credentials and signed for the wrong STS host: it fails on its own.
    let (regions, strangers): (Vec<String>, Vec<String>) = regions
        .into_iter()
        .partition(|r| partition_of(r).is_ok_and(|p| p.name == partition.name));
    let mut results: Vec<SourceResult> = strangers
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
    progress.expect(regions.len());
    let scans = regions
        .iter()
        .map(|region| progress.track(discover_region(&config, profile, &account, region, limits)));
    results.extend(futures::future::join_all(scans).await);
    Discovered {
        results,
        ..Discovered::default()
    }
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
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .retry_config(
            // Adaptive: the SDK's client-side rate limiter slows down when EKS
            // answers TooManyRequestsException, and retries throttled calls.
            RetryConfig::adaptive()
                .with_max_attempts(5)
                .with_initial_backoff(Duration::from_millis(200)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(limits.timeout)
                .build(),
        );
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
    profile: Option<&str>,
    account: &str,
    region: &str,
    limits: &Limits,
) -> SourceResult {
    let label = profile_label(profile);
    let source = format!("eks/{label}/{region}");
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
                if let Some(found) = out
                    .cluster()
                    .and_then(|c| found(c, profile, account, region, &source))
                {
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
    profile: Option<&str>,
    account: &str,
    region: &str,
    source: &str,
) -> Option<Found> {
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
        .unwrap_or(account)
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
    Some(Found {
        provider: "eks",
        source: source.to_string(),
        name,
        location: region.to_string(),
        owner: account,
        profile: Some(profile_label(profile).to_string()),
        server,
        ca_data: cluster
            .certificate_authority()
            .and_then(|c| c.data())
            .map(str::to_string),
        token_args: args,
        shared_user: None,
        labels: Vec::new(),
    })
}
