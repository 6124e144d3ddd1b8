//! Google Kubernetes Engine: OAuth access tokens for an identity (one token serves
//! every cluster it can reach), from gcp_auth's chain or an explicit key file,
//! optionally impersonating a service account through IAM Credentials.

use std::path::{Path, PathBuf};
use std::sync::Arc;
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

impl GkeToken {
    fn source_label(&self) -> String {
        match (&self.credentials, key_file(None)) {
            (Some(path), _) => format!("key file {}", path.display()),
            (None, Some(path)) => format!(
                "key file {} from GOOGLE_APPLICATION_CREDENTIALS",
                path.display()
            ),
            (None, None) => "application default credentials".to_string(),
        }
    }

    async fn source_token(&self, timeout: Duration) -> Result<(Secret, i64)> {
        let provider: Arc<dyn TokenProvider> = match &self.credentials {
            Some(path) => Arc::new(CustomServiceAccount::from_file(path).map_err(|e| {
                Error::new(format!("could not load the service-account key file {}", path.display()))
                    .cause(e)
                    .hint("download a JSON key with `gcloud iam service-accounts keys create`, or drop --credentials to use application default credentials")
            })?),
            None => gcp_auth::provider().await.map_err(|e| match e {
                gcp_auth::Error::NoAuthMethod(..) => Error::new("no Google credentials found")
                    .because("tried GOOGLE_APPLICATION_CREDENTIALS, the application default credentials file, the metadata server and the gcloud CLI")
                    .hint(ADC_HINT),
                other => Error::new(format!("could not load Google credentials ({})", self.source_label()))
                    .cause(other)
                    .hint(ADC_HINT),
            })?,
        };
        let what = format!("for a Google access token ({})", self.source_label());
        let token = within(timeout, &format!("waiting {what}"), async {
            provider.token(&SCOPES).await.map_err(|e| {
                Error::new(format!("could not get a Google access token ({})", self.source_label()))
                    .cause(e)
                    .hint(match &self.credentials {
                        Some(path) => format!("check that the key in {} is still valid (`gcloud iam service-accounts keys list`) and not disabled", path.display()),
                        None => ADC_HINT.to_string(),
                    })
            })
        })
        .await?;
        Ok((Secret::new(token.as_str()), token.expires_at().timestamp()))
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
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::new("could not build an HTTP client").cause(e))?;
    let body = serde_json::json!({ "scope": SCOPES, "lifetime": "3600s" });
    let answer = with_retries(3, || async {
        let response = client
            .post(&url)
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
        let adc = directories::BaseDirs::new().map(|d| {
            d.home_dir()
                .join(".config/gcloud/application_default_credentials.json")
        });
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
