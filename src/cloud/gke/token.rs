//! GKE access tokens: one OAuth token serves every cluster an identity can reach.
//! The identity comes from `--credentials`, the application default credentials
//! file (by its type), the metadata server or the gcloud CLI, optionally
//! impersonating a service account through IAM Credentials.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gcp_auth::{CustomServiceAccount, TokenProvider};
use serde::Deserialize;

use crate::cache::{CacheKey, KeyBuilder, Secret};
use crate::error::{Error, Result};
use crate::token::{MintContext, Minted, TokenSource, with_retries, within};

/// What GKE's own plugin asks for.
pub const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
];

const ADC_HINT: &str = "run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or pass --credentials KEYFILE";

/// `fleetctx token gke`: one identity, every cluster.
#[derive(Clone, Debug, Default)]
pub struct GkeToken {
    pub credentials: Option<PathBuf>,
    pub impersonate: Option<String>,
}

/// gcloud's configuration directory: `CLOUDSDK_CONFIG`, else `~/.config/gcloud`.
pub fn gcloud_config_dir() -> Option<PathBuf> {
    std::env::var_os("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            directories::BaseDirs::new().map(|d| d.home_dir().join(".config").join("gcloud"))
        })
}

/// The active gcloud configuration's name, resolved the way gcloud does.
pub fn gcloud_active_config(config_dir: Option<&Path>) -> String {
    std::env::var("CLOUDSDK_ACTIVE_CONFIG_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            let dir = config_dir?;
            let name = std::fs::read_to_string(dir.join("active_config")).ok()?;
            Some(name.trim().to_string()).filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| "default".to_string())
}

/// The application default credentials file, found by gcloud's rule:
/// `GOOGLE_APPLICATION_CREDENTIALS`, else `application_default_credentials.json`
/// in gcloud's configuration directory (`CLOUDSDK_CONFIG` first).
pub fn adc_file() -> Option<PathBuf> {
    std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| gcloud_config_dir().map(|d| d.join("application_default_credentials.json")))
}

/// The service-account key file that will be used, if any: the flag, else
/// `GOOGLE_APPLICATION_CREDENTIALS`.
fn key_file(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from))
}

#[derive(Deserialize)]
struct KeyFileSummary {
    client_email: Option<String>,
}

/// What a credentials file holds, by its `type`.
#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type", default)]
    kind: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    token_uri: Option<String>,
    service_account_impersonation_url: Option<String>,
    #[serde(default)]
    delegates: Vec<String>,
    source_credentials: Option<serde_json::Value>,
}

const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::new("could not build an HTTP client").cause(e))
}

#[derive(Deserialize)]
struct OAuthToken {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// One credentials document (a file, or an impersonated file's source) to an
/// access token. `label` names where it came from, for errors.
async fn file_token(json: &str, label: &str, timeout: Duration) -> Result<(Secret, i64)> {
    let file: CredentialsFile = serde_json::from_str(json).map_err(|e| {
        Error::new(format!("{label} is not a Google credentials file"))
            .cause(e)
            .hint(ADC_HINT)
    })?;
    match file.kind.as_str() {
        "service_account" => {
            let account = CustomServiceAccount::from_json(json).map_err(|e| {
                Error::new(format!("could not load the service-account key in {label}"))
                    .cause(e)
                    .hint("download a JSON key with `gcloud iam service-accounts keys create`")
            })?;
            let what = format!("for a Google access token ({label})");
            let token = within(timeout, &format!("waiting {what}"), async {
                account.token(&SCOPES).await.map_err(|e| {
                    Error::new(format!("could not get a Google access token ({label})"))
                        .cause(e)
                        .hint(format!("check that the key in {label} is still valid (`gcloud iam service-accounts keys list`) and not disabled"))
                })
            })
            .await?;
            Ok((Secret::new(token.as_str()), token.expires_at().timestamp()))
        }
        "authorized_user" => {
            let (Some(id), Some(secret), Some(refresh)) =
                (&file.client_id, &file.client_secret, &file.refresh_token)
            else {
                return Err(Error::new(format!(
                    "{label} is an authorized_user file without client_id, client_secret and refresh_token"
                ))
                .hint("run `gcloud auth application-default login` again"));
            };
            let uri = file.token_uri.as_deref().unwrap_or(GOOGLE_TOKEN_URI);
            let form = [
                ("grant_type", "refresh_token"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
                ("refresh_token", refresh.as_str()),
            ];
            let client = http_client(timeout)?;
            let answer = with_retries(3, || async {
                let response = client.post(uri).form(&form).send().await.map_err(|e| {
                    (Error::new(format!("could not reach {uri} to refresh {label}")).cause(e.without_url()), true)
                })?;
                let status = response.status();
                if status.is_success() {
                    return response.json::<OAuthToken>().await.map_err(|e| {
                        (Error::new(format!("{uri} answered with an unexpected body")).cause(e.without_url()), false)
                    });
                }
                let body = response.text().await.unwrap_or_default();
                let why = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error_description"].as_str().or(v["error"].as_str()).map(str::to_string))
                    .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
                Err((
                    Error::new(format!("Google refused to refresh the login in {label}"))
                        .because(why)
                        .hint("the login expired or was revoked: run `gcloud auth application-default login`"),
                    status.is_server_error() || status.as_u16() == 429,
                ))
            })
            .await?;
            let expires_at = crate::cache::now() + answer.expires_in.unwrap_or(3600);
            Ok((Secret::new(answer.access_token), expires_at))
        }
        "impersonated_service_account" => {
            let url = file.service_account_impersonation_url.as_deref().ok_or_else(|| {
                Error::new(format!("{label} has no service_account_impersonation_url"))
                    .hint("run `gcloud auth application-default login --impersonate-service-account EMAIL` again")
            })?;
            let source = file.source_credentials.as_ref().ok_or_else(|| {
                Error::new(format!("{label} has no source_credentials"))
                    .hint("run `gcloud auth application-default login --impersonate-service-account EMAIL` again")
            })?;
            let source_label = format!("the source credentials of {label}");
            let (token, _) =
                Box::pin(file_token(&source.to_string(), &source_label, timeout)).await?;
            generate_access_token(url, &file.delegates, &token, timeout).await
        }
        "external_account" | "external_account_authorized_user" => Err(Error::new(format!(
            "{label} holds {} credentials (workload or workforce identity federation), which fleetctx does not support",
            file.kind
        ))
        .hint("use a service-account key (--credentials KEYFILE), or `gcloud auth application-default login` as a user")),
        other => Err(Error::new(format!(
            "{label} holds credentials of type {other:?}, which fleetctx does not know"
        ))
        .hint(ADC_HINT)),
    }
}

/// The metadata server's token for the instance's service account
/// (`GCE_METADATA_HOST` overrides the host, as in Google's client libraries).
async fn metadata_token(timeout: Duration) -> Result<(Secret, i64)> {
    let host = std::env::var("GCE_METADATA_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "metadata.google.internal".to_string());
    let url = format!(
        "http://{host}/computeMetadata/v1/instance/service-accounts/default/token?scopes={}",
        SCOPES.join(",")
    );
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| Error::new("could not build an HTTP client").cause(e))?;
    let response = client
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|e| Error::new(format!("no metadata server at {host}")).cause(e.without_url()))?;
    if !response.status().is_success() {
        return Err(Error::new(format!(
            "the metadata server at {host} answered HTTP {}",
            response.status().as_u16()
        )));
    }
    let token: OAuthToken = response.json().await.map_err(|e| {
        Error::new(format!(
            "the metadata server at {host} answered an unexpected body"
        ))
        .cause(e.without_url())
    })?;
    let expires_at = crate::cache::now() + token.expires_in.unwrap_or(3600);
    Ok((Secret::new(token.access_token), expires_at))
}

/// The gcloud CLI's logged-in user: `gcloud config config-helper --format=json`
/// gives the token and its real expiry (a token gcloud cached may have minutes
/// left, not an hour).
fn gcloud_token(timeout: Duration) -> Result<(Secret, i64)> {
    #[derive(Deserialize)]
    struct Helper {
        credential: HelperCredential,
    }
    #[derive(Deserialize)]
    struct HelperCredential {
        access_token: String,
        token_expiry: Option<String>,
    }
    let mut child = std::process::Command::new("gcloud")
        .args(["config", "config-helper", "--format=json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::new("could not run gcloud").cause(e))?;
    let started = std::time::Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new(format!(
                "timed out after {}s waiting for `gcloud config config-helper`",
                timeout.as_secs()
            ))
            .hint("run `gcloud auth login`; set FLEETCTX_TIMEOUT (seconds) to wait longer"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Error::new("could not run gcloud").cause(e))?;
    if !output.status.success() {
        return Err(Error::new("`gcloud config config-helper` failed")
            .because(String::from_utf8_lossy(&output.stderr).trim().to_string())
            .hint("run `gcloud auth login`"));
    }
    let helper: Helper = serde_json::from_slice(&output.stdout).map_err(|e| {
        Error::new("`gcloud config config-helper --format=json` printed something unexpected")
            .cause(e)
    })?;
    let expires_at = helper
        .credential
        .token_expiry
        .as_deref()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| t.unix_timestamp())
        .ok_or_else(|| {
            Error::new("`gcloud config config-helper` gave no readable token_expiry")
                .hint("update the gcloud CLI (`gcloud components update`)")
        })?;
    Ok((Secret::new(helper.credential.access_token), expires_at))
}

impl GkeToken {
    fn source_label(&self) -> String {
        match (&self.credentials, adc_file()) {
            (Some(path), _) => format!("key file {}", path.display()),
            (None, Some(path)) if path.exists() => {
                format!("application default credentials {}", path.display())
            }
            (None, _) => "the metadata server or the gcloud CLI".to_string(),
        }
    }

    /// The identity's own token: `--credentials`, else the ADC file (by type),
    /// else the metadata server, else the gcloud CLI. A file that exists but
    /// cannot be used is an error naming it: never a silent fall-through to
    /// another identity.
    async fn source_token(&self, timeout: Duration) -> Result<(Secret, i64)> {
        let file = match &self.credentials {
            Some(path) => Some(path.clone()),
            None => adc_file().filter(|p| {
                p.exists() || std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some()
            }),
        };
        if let Some(path) = file {
            let json = std::fs::read_to_string(&path).map_err(|e| {
                Error::new(format!(
                    "could not read the Google credentials file {}",
                    path.display()
                ))
                .cause(e)
                .hint(ADC_HINT)
            })?;
            return file_token(&json, &path.display().to_string(), timeout).await;
        }
        let metadata = match metadata_token(timeout).await {
            Ok(token) => return Ok(token),
            Err(e) => e,
        };
        gcloud_token(timeout).map_err(|gcloud| {
            Error::new("no Google credentials found")
                .because(format!(
                    "no application default credentials file; {}; {}",
                    metadata.message(),
                    gcloud.message()
                ))
                .hint(ADC_HINT)
        })
    }
}

/// The IAM Credentials API root: gcloud's override variable, else Google's.
fn iamcredentials_root() -> String {
    std::env::var("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "https://iamcredentials.googleapis.com/".to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeneratedToken {
    access_token: String,
    expire_time: String,
}

/// `generateAccessToken` for `email`, authorised by `source`.
async fn impersonate(email: &str, source: &Secret, timeout: Duration) -> Result<(Secret, i64)> {
    let url = format!(
        "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
        iamcredentials_root().trim_end_matches('/')
    );
    generate_access_token(&url, &[], source, timeout).await
}

/// IAM Credentials `generateAccessToken` at `url` (which names the target
/// account), through the `delegates` chain, authorised by `source`.
async fn generate_access_token(
    url: &str,
    delegates: &[String],
    source: &Secret,
    timeout: Duration,
) -> Result<(Secret, i64)> {
    let email = url
        .rsplit_once("serviceAccounts/")
        .map(|(_, rest)| rest.trim_end_matches(":generateAccessToken"))
        .unwrap_or(url);
    let client = http_client(timeout)?;
    let mut body = serde_json::json!({ "scope": SCOPES, "lifetime": "3600s" });
    if !delegates.is_empty() {
        body["delegates"] = serde_json::json!(delegates);
    }
    let answer = with_retries(3, || async {
        let response = client
            .post(url)
            .bearer_auth(source.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let failed = Error::new(format!("could not reach {url} to impersonate {email}")).cause(e.without_url());
                (failed, true)
            })?;
        let status = response.status();
        if status.is_success() {
            return response.json::<GeneratedToken>().await.map_err(|e| {
                (Error::new(format!("{url} answered with an unexpected body")).cause(e.without_url()), false)
            });
        }
        let text = response.text().await.unwrap_or_default();
        let message = google_error_message(&text).unwrap_or(text);
        let transient = status.as_u16() == 429 || status.is_server_error();
        let failed = Error::new(format!(
            "IAM Credentials refused to impersonate {email} (HTTP {})",
            status.as_u16()
        ))
        .because(message)
        .hint(format!(
            "the caller needs roles/iam.serviceAccountTokenCreator on {email}: `gcloud iam service-accounts add-iam-policy-binding {email} --member=user:YOU --role=roles/iam.serviceAccountTokenCreator`"
        ));
        Err((failed, transient))
    })
    .await?;
    let expires_at = time::OffsetDateTime::parse(
        &answer.expire_time,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| Error::new(format!("{url} answered an unreadable expireTime")).cause(e))?
    .unix_timestamp();
    Ok((Secret::new(answer.access_token), expires_at))
}

/// The `error.message` of a google.rpc error body.
pub fn google_error_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value["error"]["message"].as_str().map(str::to_string)
}

impl TokenSource for GkeToken {
    fn cache_key(&self) -> CacheKey {
        let gcloud = gcloud_config_dir();
        let active = gcloud_active_config(gcloud.as_deref());
        let adc = gcloud
            .as_ref()
            .map(|d| d.join("application_default_credentials.json"));
        let gac = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from);
        KeyBuilder::new("gke")
            .file("credentials-flag", self.credentials.as_deref())
            .part("impersonate", self.impersonate.as_deref())
            .file("GOOGLE_APPLICATION_CREDENTIALS", gac.as_deref())
            .file("adc", adc.as_deref())
            .part(
                "gcloud-config-dir",
                gcloud.as_deref().and_then(Path::to_str),
            )
            .part("gcloud-active-config", Some(&active))
            .file(
                "gcloud-config",
                gcloud
                    .map(|d| d.join("configurations").join(format!("config_{active}")))
                    .as_deref(),
            )
            .env("CLOUDSDK_CORE_ACCOUNT")
            .env("GCE_METADATA_HOST")
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS")
            .finish()
    }

    fn identity(&self) -> String {
        let email = key_file(self.credentials.as_deref())
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| serde_json::from_str::<KeyFileSummary>(&s).ok())
            .and_then(|k| k.client_email);
        let mut who = match email {
            Some(email) => format!("{email} ({})", self.source_label()),
            None => self.source_label(),
        };
        if let Some(target) = &self.impersonate {
            who.push_str(&format!(" impersonating {target}"));
        }
        who
    }

    async fn mint(&self, context: &MintContext<'_>) -> Result<Minted> {
        let timeout = context.options.timeout;
        let (token, expires_at) = self.source_token(timeout).await?;
        let (token, expires_at) = match &self.impersonate {
            Some(email) => impersonate(email, &token, timeout).await?,
            None => (token, expires_at),
        };
        Ok(Minted { token, expires_at })
    }
}
