//! Amazon EKS: bearer tokens minted locally (a SigV4-presigned STS
//! `GetCallerIdentity` URL), from the standard AWS credential chain, optionally
//! through an assumed role whose session is cached too.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_config::SdkConfig;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eks::types::ClusterStatus;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_types::region::Region;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::cache::{self, CacheKey, Entry, KeyBuilder, Secret};
use crate::discovery::{Answer, Found, Limits, SourceResult};
use crate::error::{Error, Result};
use crate::token::{MintContext, Minted, TokenSource, within};

/// What both reference clients report: the server accepts a token for 15 minutes.
pub const TOKEN_LIFETIME_SECS: i64 = 14 * 60;
/// Assumed-role sessions are reused only while they outlive a whole token.
const ROLE_SESSION_MIN_LEFT_SECS: i64 = 15 * 60;

/// `fleetctx token eks`: one cluster, reached as one identity.
#[derive(Clone, Debug)]
pub struct EksToken {
    pub cluster: String,
    /// Outposts local clusters are identified by their id, not their name.
    pub cluster_id: Option<String>,
    pub region: String,
    pub profile: Option<String>,
    pub role_arn: Option<String>,
}

/// An AWS partition: which regions belong to it, the domain of their STS hosts,
/// and the region the aws CLI falls back to when a profile names none.
#[derive(Debug, PartialEq, Eq)]
pub struct Partition {
    pub name: &'static str,
    /// Region names are `{head}-{word}-{digits}` for one of these heads.
    heads: &'static [&'static str],
    pub domain: &'static str,
    pub default_region: &'static str,
    pub regions: &'static [&'static str],
}

/// Every partition fleetctx knows (botocore's `endpoints.json` region patterns).
pub const PARTITIONS: [Partition; 8] = [
    Partition {
        name: "aws",
        heads: &["us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx"],
        domain: "amazonaws.com",
        default_region: "us-east-1",
        regions: &COMMERCIAL_REGIONS,
    },
    Partition {
        name: "aws-cn",
        heads: &["cn"],
        domain: "amazonaws.com.cn",
        default_region: "cn-north-1",
        regions: &["cn-north-1", "cn-northwest-1"],
    },
    Partition {
        name: "aws-us-gov",
        heads: &["us-gov"],
        domain: "amazonaws.com",
        default_region: "us-gov-west-1",
        regions: &["us-gov-east-1", "us-gov-west-1"],
    },
    Partition {
        name: "aws-iso",
        heads: &["us-iso"],
        domain: "c2s.ic.gov",
        default_region: "us-iso-east-1",
        regions: &["us-iso-east-1", "us-iso-west-1"],
    },
    Partition {
        name: "aws-iso-b",
        heads: &["us-isob"],
        domain: "sc2s.sgov.gov",
        default_region: "us-isob-east-1",
        regions: &["us-isob-east-1"],
    },
    Partition {
        name: "aws-iso-e",
        heads: &["eu-isoe"],
        domain: "cloud.adc-e.uk",
        default_region: "eu-isoe-west-1",
        regions: &["eu-isoe-west-1"],
    },
    Partition {
        name: "aws-iso-f",
        heads: &["us-isof"],
        domain: "csp.hci.ic.gov",
        default_region: "us-isof-south-1",
        regions: &["us-isof-east-1", "us-isof-south-1"],
    },
    Partition {
        name: "aws-eusc",
        heads: &["eusc-de"],
        domain: "amazonaws.eu",
        default_region: "eusc-de-east-1",
        regions: &["eusc-de-east-1"],
    },
];

/// The partition a region belongs to. An unknown shape is refused: falling back
/// to the commercial partition would sign for, and scan, the wrong cloud.
pub fn partition_of(region: &str) -> Result<&'static Partition> {
    let shaped = |head: &str| {
        region
            .strip_prefix(head)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(word, number)| {
                !word.is_empty()
                    && word.chars().all(|c| c.is_ascii_alphanumeric())
                    && !number.is_empty()
                    && number.chars().all(|c| c.is_ascii_digit())
            })
    };
    PARTITIONS
        .iter()
        .find(|p| p.heads.iter().any(|h| shaped(h)))
        .ok_or_else(|| {
            let names: Vec<&str> = PARTITIONS.iter().map(|p| p.name).collect();
            Error::new(format!(
                "region {region:?} belongs to no AWS partition fleetctx knows"
            ))
            .hint(format!(
                "check the region name (`aws ec2 describe-regions`); fleetctx knows {}",
                names.join(", ")
            ))
        })
}

/// The STS host that EKS accepts in a token for `region` (never an endpoint
/// override: the token's host is checked by the cluster, not by us).
pub fn sts_host(region: &str) -> Result<String> {
    Ok(format!("sts.{region}.{}", partition_of(region)?.domain))
}

/// The presigned `GetCallerIdentity` URL that is the token's payload.
pub fn presigned_url(
    credentials: &Credentials,
    cluster_id: &str,
    region: &str,
    at: SystemTime,
) -> Result<String> {
    let url = format!(
        "https://{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_host(region)?
    );
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| Error::new("could not set up SigV4 signing").cause(e))?
        .into();
    let signing_failed = |e: aws_sigv4::http_request::SigningError| {
        Error::new(format!(
            "could not sign the EKS token for cluster {cluster_id}"
        ))
        .cause(e)
    };
    let request = SignableRequest::new(
        "GET",
        &url,
        [("x-k8s-aws-id", cluster_id)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(signing_failed)?;
    let (instructions, _signature) = sign(request, &params).map_err(signing_failed)?.into_parts();
    let mut http_request = http::Request::builder()
        .uri(&url)
        .body(())
        .map_err(|e| Error::new("could not build the STS URL").cause(e))?;
    instructions.apply_to_request_http1x(&mut http_request);
    Ok(http_request.uri().to_string())
}

/// The standard AWS credential chain for `profile`, resolving role, SSO and
/// web-identity profiles in `region`. A named profile wins over environment keys,
/// as `--profile` does for the aws CLI; without one, the default chain runs with
/// the profile botocore would pick (`env_profile`). Shared by `token eks` and EKS
/// discovery, so both pick the same identity.
pub async fn credentials_provider(
    profile: Option<&str>,
    region: &str,
) -> SharedCredentialsProvider {
    let region = Region::new(region.to_string());
    match profile {
        Some(profile) => SharedCredentialsProvider::new(
            ProfileFileCredentialsProvider::builder()
                .configure(&ProviderConfig::default().with_region(Some(region)))
                .profile_name(profile)
                .build(),
        ),
        None => {
            let mut chain = DefaultCredentialsChain::builder().region(region);
            if let Some(profile) = env_profile() {
                chain = chain.profile_name(&profile);
            }
            SharedCredentialsProvider::new(chain.build().await)
        }
    }
}

/// Where a profile's credentials are resolved (AssumeRole, SSO, web identity):
/// the profile's own region, else the default region of `partition`. Never an
/// arbitrary scan region: an opt-in region rejects what other regions accept.
pub async fn credential_region(profile: Option<&str>, partition: &Partition) -> String {
    home_region(profile)
        .await
        .unwrap_or_else(|| partition.default_region.to_string())
}

/// `k8s-aws-v1.` + base64url (no padding) of the presigned URL.
pub fn token_from_url(url: &str) -> String {
    format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    )
}

impl EksToken {
    /// The profile the aws CLI would use: `--profile`, else botocore's environment choice.
    fn effective_profile(&self) -> Option<String> {
        self.profile.clone().or_else(env_profile)
    }

    fn profile_label(&self) -> String {
        self.effective_profile()
            .unwrap_or_else(|| "default".to_string())
    }

    /// The parts of a key that pick the base AWS identity.
    fn identity_key(&self, kind: &'static str) -> KeyBuilder {
        let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
        let aws_file = |var: &str, name: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
        };
        let mut key = KeyBuilder::new(kind)
            .part("explicit-profile", self.profile.as_deref())
            .part("profile", self.effective_profile().as_deref())
            .file(
                "config-file",
                aws_file("AWS_CONFIG_FILE", "config").as_deref(),
            )
            .file(
                "credentials-file",
                aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials").as_deref(),
            );
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_STS",
        ] {
            key = key.env(var);
        }
        key
    }

    fn role_key(&self, role_arn: &str) -> CacheKey {
        self.identity_key("aws-role")
            .part("role-arn", Some(role_arn))
            .finish()
    }

    fn no_credentials(&self, cause: impl std::error::Error) -> Error {
        let profile = self.profile_label();
        Error::new(format!(
            "could not load AWS credentials (profile {profile}) for EKS cluster {} in {}",
            self.cluster, self.region
        ))
        .cause(cause)
        .hint(format!(
            "run `aws sso login --profile {profile}` if the profile uses SSO, or `aws configure --profile {profile}`; `aws sts get-caller-identity --profile {profile}` shows what the AWS CLI sees"
        ))
    }

    async fn base_provider(&self) -> Result<SharedCredentialsProvider> {
        let partition = partition_of(&self.region)?;
        let region = credential_region(self.effective_profile().as_deref(), partition).await;
        Ok(credentials_provider(self.profile.as_deref(), &region).await)
    }

    async fn assume_role(
        &self,
        base: SharedCredentialsProvider,
        role_arn: &str,
        timeout: Duration,
    ) -> Result<Credentials> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(base)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(timeout)
                    .build(),
            );
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        let sts = aws_sdk_sts::Client::new(&config);
        let answer = sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(format!("fleetctx-{}", cache::now()))
            .send()
            .await
            .map_err(|e| {
                let profile = self.profile_label();
                Error::new(format!(
                    "could not assume role {role_arn} (profile {profile}) for EKS cluster {}",
                    self.cluster
                ))
                .cause(e)
                .hint(format!(
                    "check that the role's trust policy lets this identity assume it; `aws sts assume-role --role-arn {role_arn} --role-session-name test --profile {profile}` reproduces the call"
                ))
            })?;
        let session = answer.credentials().ok_or_else(|| {
            Error::new(format!(
                "STS answered AssumeRole for {role_arn} without credentials"
            ))
        })?;
        let expiry = SystemTime::try_from(*session.expiration()).ok();
        Ok(Credentials::new(
            session.access_key_id(),
            session.secret_access_key(),
            Some(session.session_token().to_string()),
            expiry,
            "fleetctx-assume-role",
        ))
    }

    /// Role credentials, from the cache when a session still outlives a token.
    async fn role_credentials(
        &self,
        role_arn: &str,
        context: &MintContext<'_>,
    ) -> Result<Credentials> {
        let key = self.role_key(role_arn);
        let cache = context.cache;
        let cached = || {
            let usable_until = cache::now() + ROLE_SESSION_MIN_LEFT_SECS;
            cache
                .and_then(|c| c.get(&key, usable_until))
                .and_then(|hit| RoleSession::decode(&hit))
        };
        if let Some(credentials) = cached() {
            return Ok(credentials);
        }
        let _lock = cache.and_then(|c| {
            c.lock_or_warn(
                &key,
                context.options.lock_timeout,
                &format!("the session for role {role_arn}"),
            )
        });
        if let Some(credentials) = cached() {
            return Ok(credentials);
        }
        let timeout = context.options.timeout;
        let base = self.base_provider().await?;
        let credentials = self.assume_role(base, role_arn, timeout).await?;
        if let Some(cache) = cache {
            let expires_at = expiry_secs(&credentials).unwrap_or(cache::now() + 900);
            let identity = format!("role {role_arn} via profile {}", self.profile_label());
            let entry = Entry::new(
                &key,
                identity,
                expires_at,
                RoleSession::encode(&credentials),
            );
            cache::put_or_warn(cache, &key, &entry);
        }
        Ok(credentials)
    }
}

/// An assumed-role session as stored in the cache (the whole JSON is the secret).
#[derive(Serialize, Deserialize)]
struct RoleSession {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
}

impl RoleSession {
    fn encode(credentials: &Credentials) -> Secret {
        let session = RoleSession {
            access_key_id: credentials.access_key_id().to_string(),
            secret_access_key: credentials.secret_access_key().to_string(),
            session_token: credentials.session_token().unwrap_or_default().to_string(),
        };
        Secret::new(serde_json::to_string(&session).unwrap_or_default())
    }

    fn decode(entry: &Entry) -> Option<Credentials> {
        let session: RoleSession = serde_json::from_str(entry.secret.expose()).ok()?;
        let expiry = UNIX_EPOCH + Duration::from_secs(entry.expires_at.max(0) as u64);
        Some(Credentials::new(
            session.access_key_id,
            session.secret_access_key,
            Some(session.session_token),
            Some(expiry),
            "fleetctx-cache",
        ))
    }
}

fn expiry_secs(credentials: &Credentials) -> Option<i64> {
    credentials
        .expiry()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
}

impl TokenSource for EksToken {
    fn cache_key(&self) -> CacheKey {
        self.identity_key("eks")
            .part("cluster", Some(&self.cluster))
            .part("cluster-id", self.cluster_id.as_deref())
            .part("region", Some(&self.region))
            .part("role-arn", self.role_arn.as_deref())
            .finish()
    }

    fn identity(&self) -> String {
        let mut who = format!(
            "cluster {} in {} via profile {}",
            self.cluster,
            self.region,
            self.profile_label()
        );
        if let Some(role) = &self.role_arn {
            who.push_str(&format!(" as {role}"));
        }
        who
    }

    async fn mint(&self, context: &MintContext<'_>) -> Result<Minted> {
        let timeout = context.options.timeout;
        let credentials = match &self.role_arn {
            Some(role_arn) => {
                within(
                    timeout * 2,
                    &format!("assuming role {role_arn}"),
                    self.role_credentials(role_arn, context),
                )
                .await?
            }
            None => {
                let what = format!("loading AWS credentials (profile {})", self.profile_label());
                within(timeout, &what, async {
                    self.base_provider()
                        .await?
                        .provide_credentials()
                        .await
                        .map_err(|e| self.no_credentials(e))
                })
                .await?
            }
        };
        let signed_at = SystemTime::now();
        let cluster_id = self.cluster_id.as_deref().unwrap_or(&self.cluster);
        let url = presigned_url(&credentials, cluster_id, &self.region, signed_at)?;
        let signed_secs = signed_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut expires_at = signed_secs + TOKEN_LIFETIME_SECS;
        if let Some(creds_expiry) = expiry_secs(&credentials) {
            expires_at = expires_at.min(creds_expiry);
        }
        Ok(Minted {
            token: Secret::new(token_from_url(&url)),
            expires_at,
        })
    }
}

// ---------------------------------------------------------------------------
// Discovery: ListClusters (all pages) and DescribeCluster, per profile and region.

/// Every commercial region (EKS runs in all of them); opt-in regions an account
/// has not enabled answer "not enabled", which is an empty region.
pub const COMMERCIAL_REGIONS: [&str; 34] = [
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];
/// The region a profile's own calls go to, as the aws CLI picks it:
/// `AWS_REGION`, `AWS_DEFAULT_REGION`, else the profile's `region` setting.
pub async fn home_region(profile: Option<&str>) -> Option<String> {
    let env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|r| !r.is_empty());
    if env.is_some() {
        return env;
    }
    let mut builder = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(profile) = profile {
        builder = builder.profile_name(profile);
    }
    use aws_config::meta::region::ProvideRegion;
    builder.build().region().await.map(|r| r.to_string())
}

/// The profile the aws CLI uses when none is named: botocore reads
/// `AWS_DEFAULT_PROFILE` first, then `AWS_PROFILE`.
pub fn env_profile() -> Option<String> {
    ["AWS_DEFAULT_PROFILE", "AWS_PROFILE"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|p| !p.is_empty())
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
            RetryConfig::standard()
                .with_max_attempts(3)
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN_URL: &str = "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAR2TG44V6AS3ZZE7C%2F20230428%2Fus-west-2%2Fsts%2Faws4_request&X-Amz-Date=20230428T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=e211dba77aba9dc44b0b6be38b8eaad092599c5157f6314444c5b9d85747f5ce";

    fn golden_credentials(session: Option<&str>) -> Credentials {
        Credentials::new(
            "ASIAR2TG44V6AS3ZZE7C",
            "4KD5cntGcVmLWRdF5wvNRuzNL5Qxmp6OKVY6Fz/Q",
            session.map(str::to_string),
            None,
            "test",
        )
    }

    fn golden_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1682640000)
    }

    fn params(url: &str) -> Vec<(String, String)> {
        let mut p: Vec<_> = url
            .split_once('?')
            .unwrap()
            .1
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        p.sort();
        p
    }

    #[test]
    fn golden_vector_without_session_token() {
        let url = presigned_url(
            &golden_credentials(None),
            "test-cluster",
            "us-west-2",
            golden_time(),
        )
        .unwrap();
        assert!(url.starts_with("https://sts.us-west-2.amazonaws.com/?"));
        assert_eq!(params(&url), params(GOLDEN_URL));
    }

    #[test]
    fn golden_vector_with_session_token() {
        let url = presigned_url(
            &golden_credentials(Some("SESSIONTOKEN/+=")),
            "test-cluster",
            "us-west-2",
            golden_time(),
        )
        .unwrap();
        let p = params(&url);
        let signature = p.iter().find(|(k, _)| k == "X-Amz-Signature").unwrap();
        assert_eq!(
            signature.1,
            "b4b5f7e7f688de16238ef6cbfc463a4f4040eb27826d49292eeb219bd6d49d3e"
        );
        assert!(
            p.iter()
                .any(|(k, v)| k == "X-Amz-Security-Token" && v == "SESSIONTOKEN%2F%2B%3D")
        );
    }

    #[test]
    fn partitions_pick_their_sts_host() {
        for (region, host) in [
            ("eu-west-1", "sts.eu-west-1.amazonaws.com"),
            ("ap-southeast-7", "sts.ap-southeast-7.amazonaws.com"),
            ("cn-north-1", "sts.cn-north-1.amazonaws.com.cn"),
            ("us-gov-west-1", "sts.us-gov-west-1.amazonaws.com"),
            ("us-iso-east-1", "sts.us-iso-east-1.c2s.ic.gov"),
            ("us-isob-east-1", "sts.us-isob-east-1.sc2s.sgov.gov"),
            ("us-isof-south-1", "sts.us-isof-south-1.csp.hci.ic.gov"),
            ("eu-isoe-west-1", "sts.eu-isoe-west-1.cloud.adc-e.uk"),
        ] {
            assert_eq!(sts_host(region).unwrap(), host, "{region}");
        }
        for region in ["xx-west-1", "us-east", "mars-north-1", "us-gov-west", ""] {
            assert!(sts_host(region).is_err(), "{region} has no partition");
        }
    }

    #[test]
    fn every_partition_lists_only_its_own_regions() {
        for partition in &PARTITIONS {
            assert!(partition.regions.contains(&partition.default_region));
            for region in partition.regions {
                assert_eq!(partition_of(region).unwrap().name, partition.name);
            }
        }
    }

    #[test]
    fn token_is_unpadded_base64url() {
        let token = token_from_url(GOLDEN_URL);
        assert!(token.starts_with("k8s-aws-v1."));
        assert!(!token.contains('=') && !token.contains('+') && !token.contains('/'));
    }
}
