//! Entra ID access tokens for AKS (and for ARM, which discovery calls): one
//! token serves every cluster of a tenant. The identity comes from the
//! environment (workload identity, a service principal's secret or
//! certificate), the Azure CLI's login, or the managed identity of the machine,
//! through `azure_identity`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertion, ClientAssertionCredential,
    ClientSecretCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use base64::Engine;

use crate::cache::{CacheKey, KeyBuilder, Secret};
use crate::error::{Error, Result};
use crate::token::{MintContext, Minted, TokenSource, within};

/// The Entra application every AKS cluster with Entra ID accepts tokens for
/// (kubelogin's `--server-id`).
pub const AKS_SERVER_APP: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// Where Entra ID lives unless `AZURE_AUTHORITY_HOST` says otherwise.
const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";

/// How the identity is found: kubelogin's `--login` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Login {
    /// Workload identity, then a service principal, from the environment; else
    /// an App Service managed identity endpoint; else the Azure CLI's login;
    /// else the VM's managed identity (IMDS).
    #[default]
    Auto,
    /// The Azure CLI's logged-in account (`az account get-access-token`).
    Azurecli,
    /// A service principal: AZURE_CLIENT_ID and AZURE_TENANT_ID with
    /// AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH (PEM).
    Spn,
    /// Workload identity: AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID, AZURE_TENANT_ID.
    Workloadidentity,
    /// The managed identity of the VM or App Service.
    Msi,
}

impl Login {
    fn name(self) -> &'static str {
        match self {
            Login::Auto => "auto",
            Login::Azurecli => "azurecli",
            Login::Spn => "spn",
            Login::Workloadidentity => "workloadidentity",
            Login::Msi => "msi",
        }
    }
}

/// `fleetctx token aks`: one identity, one resource (the AKS server application,
/// or ARM for discovery), one tenant.
#[derive(Clone, Debug)]
pub struct AksToken {
    /// The resource asked for (`AKS_SERVER_APP`, or ARM's root).
    pub resource: String,
    /// The tenant to ask in (default: AZURE_TENANT_ID, else the login's own).
    pub tenant: Option<String>,
    pub login: Login,
    /// A user-assigned managed identity, or the service principal (default AZURE_CLIENT_ID).
    pub client_id: Option<String>,
}

impl AksToken {
    pub fn new(resource: impl Into<String>) -> AksToken {
        AksToken {
            resource: resource.into(),
            tenant: None,
            login: Login::Auto,
            client_id: None,
        }
    }

    fn scope(&self) -> String {
        format!("{}/.default", self.resource.trim_end_matches('/'))
    }

    fn tenant(&self) -> Option<String> {
        self.tenant.clone().or_else(|| env("AZURE_TENANT_ID"))
    }

    fn client_id(&self) -> Option<String> {
        self.client_id.clone().or_else(|| env("AZURE_CLIENT_ID"))
    }

    /// Whether an Azure identity is set up here (environment, an App Service
    /// endpoint, the Azure CLI's login), without asking IMDS.
    pub fn set_up(&self) -> bool {
        self.login != Login::Auto || self.resolved() != Login::Msi || app_service()
    }

    /// The way the identity is found, `Auto` resolved from the environment and
    /// the Azure CLI's files (no network).
    fn resolved(&self) -> Login {
        if self.login != Login::Auto {
            return self.login;
        }
        let has = |name| env(name).is_some();
        if has("AZURE_FEDERATED_TOKEN_FILE") && self.client_id().is_some() {
            Login::Workloadidentity
        } else if (has("AZURE_CLIENT_SECRET") || has("AZURE_CLIENT_CERTIFICATE_PATH"))
            && self.client_id().is_some()
        {
            Login::Spn
        } else if app_service() {
            Login::Msi
        } else if azure_cli_logged_in() {
            // Cloud Shell too: its MSI_ENDPOINT is one azure_identity refuses,
            // and its `az` is logged in.
            Login::Azurecli
        } else {
            Login::Msi
        }
    }

    async fn credential(&self, login: Login) -> Result<Arc<dyn TokenCredential>> {
        let built = match login {
            Login::Azurecli => AzureCliCredential::new(Some(AzureCliCredentialOptions {
                tenant_id: self.tenant.clone(),
                ..Default::default()
            }))
            .map(|c| c as Arc<dyn TokenCredential>),
            Login::Workloadidentity => {
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    client_id: self.client_id.clone(),
                    tenant_id: self.tenant.clone(),
                    ..Default::default()
                }))
                .map(|c| c as Arc<dyn TokenCredential>)
            }
            Login::Spn => return self.service_principal(),
            Login::Msi | Login::Auto => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: self.client_id().map(UserAssignedId::ClientId),
                    ..Default::default()
                }))
                .map(|c| c as Arc<dyn TokenCredential>)
            }
        };
        built.map_err(|e| self.refused(login, e))
    }

    /// A service principal from the environment: its secret, else its PEM
    /// certificate (a private key and a certificate in one file).
    fn service_principal(&self) -> Result<Arc<dyn TokenCredential>> {
        let missing = |what: &str| {
            Error::new(format!("--login spn needs {what}"))
                .hint("set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH)")
        };
        let tenant = self.tenant().ok_or_else(|| missing("a tenant"))?;
        let client = self.client_id().ok_or_else(|| missing("a client id"))?;
        if let Some(secret) = env("AZURE_CLIENT_SECRET") {
            return ClientSecretCredential::new(&tenant, client, secret.into(), None)
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| self.refused(Login::Spn, e));
        }
        let path = env("AZURE_CLIENT_CERTIFICATE_PATH")
            .map(PathBuf::from)
            .ok_or_else(|| missing("AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH"))?;
        let assertion = CertificateAssertion::load(&path, &tenant, &client)?;
        ClientAssertionCredential::new(tenant, client, assertion, None)
            .map(|c| c as Arc<dyn TokenCredential>)
            .map_err(|e| self.refused(Login::Spn, e))
    }

    fn refused(&self, login: Login, e: azure_core::Error) -> Error {
        let hint = match login {
            Login::Azurecli if e.to_string().contains("not found on PATH") => {
                "install the Azure CLI (https://learn.microsoft.com/cli/azure/install-azure-cli) and run `az login`, or pick another --login".to_string()
            }
            Login::Azurecli => format!(
                "run `az login`{}; `az account get-access-token --scope {}` shows what the Azure CLI answers",
                self.tenant
                    .as_deref()
                    .map(|t| format!(" --tenant {t}"))
                    .unwrap_or_default(),
                self.scope()
            ),
            Login::Spn => "check AZURE_CLIENT_ID, AZURE_TENANT_ID and the secret or certificate of the service principal (`az ad sp credential list --id CLIENT_ID`)".to_string(),
            Login::Workloadidentity => "check the pod's service account annotation `azure.workload.identity/client-id` and the federated credential of the identity".to_string(),
            Login::Msi | Login::Auto => "no Azure login found: run `az login`, set a service principal (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET), or assign a managed identity to this machine".to_string(),
        };
        Error::new(format!(
            "could not get an Entra ID token for {} ({})",
            self.resource,
            self.identity_for(login)
        ))
        .because(reason(&e.to_string()))
        .hint(hint)
    }

    fn identity_for(&self, login: Login) -> String {
        let mut who = match login {
            Login::Azurecli => "the Azure CLI's login".to_string(),
            Login::Spn => format!(
                "service principal {}",
                self.client_id().unwrap_or_else(|| "?".into())
            ),
            Login::Workloadidentity => format!(
                "workload identity {}",
                self.client_id().unwrap_or_else(|| "?".into())
            ),
            Login::Msi | Login::Auto => match self.client_id().as_deref() {
                Some(id) => format!("managed identity {id}"),
                None => "the managed identity".to_string(),
            },
        };
        // The tenant each asks in: AZURE_TENANT_ID is a service principal's
        // or workload identity's; the Azure CLI takes only --tenant.
        let tenant = match login {
            Login::Spn | Login::Workloadidentity => self.tenant(),
            Login::Azurecli => self.tenant.clone(),
            Login::Msi | Login::Auto => None,
        };
        if let Some(tenant) = tenant {
            who.push_str(&format!(" in tenant {tenant}"));
        }
        who
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The Azure CLI's configuration directory: `AZURE_CONFIG_DIR`, else `~/.azure`.
pub fn azure_config_dir() -> Option<PathBuf> {
    env("AZURE_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().join(".azure")))
}

/// Whether the Azure CLI is logged in: its profile lists an account (`az
/// logout` leaves the file with none). The file starts with a BOM.
fn azure_cli_logged_in() -> bool {
    let Some(text) =
        azure_config_dir().and_then(|d| std::fs::read_to_string(d.join("azureProfile.json")).ok())
    else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(text.trim_start_matches('\u{feff}'))
        .ok()
        .and_then(|p| p["subscriptions"].as_array().map(|s| !s.is_empty()))
        .unwrap_or(false)
}

/// An App Service (or Functions) managed identity endpoint: the one managed
/// identity besides IMDS that `azure_identity` 1.0 serves (it refuses Cloud
/// Shell's and Arc's).
fn app_service() -> bool {
    env("IDENTITY_ENDPOINT").is_some()
        && env("IDENTITY_HEADER").is_some()
        && env("IDENTITY_SERVER_THUMBPRINT").is_none()
}

/// What Entra ID said. `azure_identity` 1.0 reads an error body with borrowed
/// strings, which fail on the `\r\n` every real `error_description` holds
/// ("Trace ID: ..."): the error is then serde's, quoting the description. The
/// description's first line is recovered from it.
fn reason(text: &str) -> String {
    const QUOTED: &str = "invalid type: string \"";
    const END: &str = "\", expected a borrowed string";
    match (text.find(QUOTED), text.find(END)) {
        (Some(start), Some(end)) if start + QUOTED.len() <= end => {
            let quoted = &text[start + QUOTED.len()..end];
            let said = quoted.split("\\r\\n").next().unwrap_or(quoted);
            format!("{}{said}", &text[..start])
        }
        _ => first_lines(text),
    }
}

/// The first three lines of an SDK error (the troubleshooting links after them
/// say nothing the hint does not).
fn first_lines(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("aka.ms/azsdk"))
        .take(3)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A service principal's certificate credential: an RS256 client assertion
/// signed with its private key (PEM: PKCS#8 or PKCS#1, with the certificate),
/// carrying the certificate's SHA-1 thumbprint, as Entra ID expects.
struct CertificateAssertion {
    key: aws_lc_rs::signature::RsaKeyPair,
    thumbprint: String,
    audience: String,
    client_id: String,
}

impl std::fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl CertificateAssertion {
    fn load(path: &Path, tenant: &str, client_id: &str) -> Result<CertificateAssertion> {
        let unusable = |why: &str| {
            Error::new(format!(
                "the service principal certificate {} cannot be used",
                path.display()
            ))
            .because(why.to_string())
            .hint("AZURE_CLIENT_CERTIFICATE_PATH must name a PEM file holding the private key and the certificate (what `az ad sp create-for-rbac --create-cert` writes); convert a PFX with `openssl pkcs12 -in cert.pfx -out cert.pem -nodes`")
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(format!(
                "could not read the service principal certificate {}",
                path.display()
            ))
            .cause(e)
        })?;
        let key = if let Some(der) = pem_block(&text, "PRIVATE KEY") {
            aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&der)
                .map_err(|_| unusable("its private key is not an RSA PKCS#8 key"))?
        } else if let Some(der) = pem_block(&text, "RSA PRIVATE KEY") {
            aws_lc_rs::signature::RsaKeyPair::from_der(&der)
                .map_err(|_| unusable("its private key is not an RSA key"))?
        } else {
            return Err(unusable("it holds no unencrypted private key"));
        };
        let cert =
            pem_block(&text, "CERTIFICATE").ok_or_else(|| unusable("it holds no certificate"))?;
        let thumbprint = {
            use sha1::Digest;
            base64url(&sha1::Sha1::digest(&cert))
        };
        let authority = env("AZURE_AUTHORITY_HOST").unwrap_or_else(|| PUBLIC_AUTHORITY.to_string());
        Ok(CertificateAssertion {
            key,
            thumbprint,
            audience: format!(
                "{}/{tenant}/oauth2/v2.0/token",
                authority.trim_end_matches('/')
            ),
            client_id: client_id.to_string(),
        })
    }

    fn sign(&self) -> std::result::Result<String, String> {
        let now = crate::cache::now();
        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness".to_string())?;
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": self.thumbprint});
        let claims = serde_json::json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": nonce.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "nbf": now,
            "iat": now,
            "exp": now + 600,
        });
        let input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the client assertion failed".to_string())?;
        Ok(format!("{input}.{}", base64url(&signature)))
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(
        &self,
        _: Option<azure_core::http::ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        self.sign().map_err(|why| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, why)
        })
    }
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The DER of the first PEM block labelled `label`.
fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

impl AksToken {
    /// Everything that picks the identity; with `token_cache`, also the Azure
    /// CLI's MSAL token cache, which `az` rewrites when it refreshes a token.
    fn key(&self, token_cache: bool) -> CacheKey {
        let config = azure_config_dir();
        let file = |name: &str| config.as_ref().map(|d| d.join(name));
        let certificate = env("AZURE_CLIENT_CERTIFICATE_PATH").map(PathBuf::from);
        let mut key = KeyBuilder::new("aks")
            .part("resource", Some(&self.resource))
            .part("tenant", self.tenant.as_deref())
            .part("login", Some(self.login.name()))
            .part("client-id", self.client_id.as_deref())
            .env("AZURE_TENANT_ID")
            .env("AZURE_CLIENT_ID")
            .env("AZURE_AUTHORITY_HOST")
            .env("AZURE_FEDERATED_TOKEN_FILE")
            .part(
                "AZURE_CLIENT_SECRET",
                env("AZURE_CLIENT_SECRET").map(|_| "set"),
            )
            .file("AZURE_CLIENT_CERTIFICATE_PATH", certificate.as_deref())
            .env("IDENTITY_ENDPOINT")
            .env("MSI_ENDPOINT")
            // `az login`, `az logout`, `az account set` and `az cloud set`
            // rewrite these.
            .part("azure-config-dir", config.as_deref().and_then(Path::to_str));
        for name in AZ_IDENTITY_FILES {
            key = key.file(name, file(name).as_deref());
        }
        if token_cache {
            for name in AZ_TOKEN_CACHE_FILES {
                key = key.file(name, file(name).as_deref());
            }
        }
        key.finish()
    }
}

/// The Azure CLI's files that say who is logged in, to which cloud and
/// subscription (rewritten by login, logout, `account set`, `cloud set`).
const AZ_IDENTITY_FILES: [&str; 4] = [
    "azureProfile.json",
    "service_principal_entries.json",
    "clouds.config",
    "config",
];

/// The Azure CLI's MSAL token cache (`.bin` where it is encrypted).
const AZ_TOKEN_CACHE_FILES: [&str; 2] = ["msal_token_cache.json", "msal_token_cache.bin"];

impl TokenSource for AksToken {
    fn cache_key(&self) -> CacheKey {
        self.key(true)
    }

    /// `az account get-access-token` rewrites the MSAL token cache when it
    /// fetches a token, so the key read before a mint is stale after it.
    fn identity_key(&self) -> Option<CacheKey> {
        Some(self.key(false))
    }

    fn identity(&self) -> String {
        format!(
            "{} for {}",
            self.identity_for(self.resolved()),
            self.resource
        )
    }

    async fn mint(&self, context: &MintContext<'_>) -> Result<Minted> {
        let login = self.resolved();
        let credential = self.credential(login).await?;
        let scope = self.scope();
        let limit = match login {
            // The Azure CLI starts Python: give it more than one network step.
            Login::Azurecli => context.options.timeout * 2,
            // IMDS as the last guess answers at once on a VM; elsewhere nothing
            // listens, and a laptop without a login should hear so soon.
            Login::Msi if self.login == Login::Auto => {
                context.options.timeout.min(Duration::from_secs(5))
            }
            _ => context.options.timeout,
        };
        let what = format!("getting an Entra ID token ({})", self.identity_for(login));
        let asked = within(limit, &what, async {
            credential
                .get_token(&[scope.as_str()], None)
                .await
                .map_err(|e| self.refused(login, e))
        })
        .await;
        let token = match asked {
            // Nothing answered the last guess: no identity here at all.
            Err(_) if login == Login::Msi && self.login == Login::Auto && !app_service() => {
                return Err(self.refused(
                    Login::Auto,
                    azure_core::Error::with_message(
                        azure_core::error::ErrorKind::Credential,
                        "no managed identity endpoint (IMDS) answered",
                    ),
                ));
            }
            other => other?,
        };
        Ok(Minted {
            token: Secret::new(token.token.secret()),
            expires_at: token.expires_on.unix_timestamp(),
        })
    }
}
