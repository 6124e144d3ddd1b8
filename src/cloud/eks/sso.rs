//! IAM Identity Center (AWS SSO): the login `aws sso login --sso-session NAME`
//! cached, the accounts and permission sets it reaches, and their role
//! credentials. aws-config reads and refreshes the cached token exactly as the aws
//! CLI does (`~/.aws/sso/cache`, SSO-OIDC with the refresh token).

use std::path::PathBuf;

use aws_config::BehaviorVersion;
use aws_config::SdkConfig;
use aws_config::provider_config::ProviderConfig;
use aws_config::sso::{SsoCredentialsProvider, SsoTokenProvider};
use aws_credential_types::provider::token::ProvideToken;
use aws_sdk_sso::error::ProvideErrorMetadata;
use aws_types::region::Region;

use crate::discovery::Limits;
use crate::error::{Error, Result};

/// A `[sso-session NAME]` of the AWS config file.
#[derive(Clone, Debug)]
pub struct Session {
    pub name: String,
    pub start_url: String,
    pub region: String,
}

/// One permission set in one account.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub account_id: String,
    pub account_name: String,
    pub role: String,
}

fn config_file() -> Option<PathBuf> {
    std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().join(".aws").join("config")))
}

fn login_hint(name: &str) -> String {
    format!("run `aws sso login --sso-session {name}`")
}

/// The `[sso-session NAME]` section: its start URL and region.
pub fn session(name: &str) -> Result<Session> {
    let path = config_file();
    let text = path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mut inside = false;
    let (mut start_url, mut region) = (None, None);
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.split_whitespace().collect::<Vec<_>>() == ["sso-session", name];
        } else if inside && let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "sso_start_url" => start_url = Some(value.trim().to_string()),
                "sso_region" => region = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let file = path.map(|p| p.display().to_string()).unwrap_or_default();
    match (start_url, region) {
        (Some(start_url), Some(region)) => Ok(Session {
            name: name.to_string(),
            start_url,
            region,
        }),
        _ => Err(Error::new(format!(
            "no sso-session {name} with sso_start_url and sso_region in {file}"
        ))
        .hint(format!(
            "run `aws configure sso-session` to create it, then {}",
            login_hint(name)
        ))),
    }
}

/// The file the aws CLI caches the session's login in (part of cache keys: a
/// new login is a new identity).
pub fn token_file(name: &str) -> Option<PathBuf> {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    directories::BaseDirs::new().map(|d| {
        d.home_dir()
            .join(".aws")
            .join("sso")
            .join("cache")
            .join(format!("{hex}.json"))
    })
}

/// What SSO clients share: the session's region, endpoint overrides from the
/// environment (`AWS_ENDPOINT_URL_SSO`, `AWS_ENDPOINT_URL_SSO_OIDC`), no
/// credentials (the portal takes the bearer token).
pub async fn client_config(session: &Session) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(session.region.clone()))
        .no_credentials()
        .load()
        .await
}

/// The session's access token, refreshed with its refresh token when it expired.
pub async fn access_token(session: &Session, config: &SdkConfig) -> Result<String> {
    let provider = SsoTokenProvider::builder()
        .configure(config)
        .session_name(&session.name)
        .start_url(&session.start_url)
        .region(Region::new(session.region.clone()))
        .build()
        .await;
    let token = provider.provide_token().await.map_err(|e| {
        Error::new(format!(
            "the SSO login of session {} has expired or is missing",
            session.name
        ))
        .cause(e)
        .hint(login_hint(&session.name))
    })?;
    Ok(token.token().to_string())
}

fn portal_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    session: &str,
    what: String,
    e: aws_sdk_sso::error::SdkError<E, R>,
) -> Error {
    let detail = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => aws_sdk_sso::error::DisplayErrorContext(&e).to_string(),
    };
    let hint = match e.code() {
        Some("UnauthorizedException") => login_hint(session),
        _ => "this may be transient: run the sync again; -v logs every API call".to_string(),
    };
    Error::new(what).because(detail).hint(hint)
}

/// Every account and permission set the login reaches (`sso:ListAccounts`,
/// `ListAccountRoles`, all pages), keeping only `roles` when some are named.
pub async fn assignments(
    session: &Session,
    token: &str,
    config: &SdkConfig,
    roles: &[String],
    limits: &Limits,
) -> Result<Vec<Assignment>> {
    let client = aws_sdk_sso::Client::new(config);
    let name = &session.name;
    let mut accounts = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = limits
            .lead(&format!("sso ListAccounts (session {name})"), async {
                Ok(client
                    .list_accounts()
                    .access_token(token)
                    .set_next_token(next.clone())
                    .send()
                    .await)
            })
            .await?
            .map_err(|e| {
                portal_error(
                    name,
                    format!("could not list the accounts of SSO session {name}"),
                    e,
                )
            })?;
        accounts.extend(page.account_list().iter().map(|a| {
            (
                a.account_id().unwrap_or_default().to_string(),
                a.account_name().unwrap_or_default().to_string(),
            )
        }));
        next = page.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    let per_account = accounts.iter().map(|(id, account_name)| {
        let client = &client;
        async move {
            let mut found = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let what = format!("sso ListAccountRoles {id} (session {name})");
                let page = limits
                    .call(&what, async {
                        Ok(client
                            .list_account_roles()
                            .access_token(token)
                            .account_id(id)
                            .set_next_token(next.clone())
                            .send()
                            .await)
                    })
                    .await?
                    .map_err(|e| {
                        portal_error(
                            name,
                            format!(
                                "could not list the roles of account {id} (SSO session {name})"
                            ),
                            e,
                        )
                    })?;
                found.extend(
                    page.role_list()
                        .iter()
                        .filter_map(|r| r.role_name())
                        .filter(|r| roles.is_empty() || roles.iter().any(|want| want == r))
                        .map(|role| Assignment {
                            account_id: id.clone(),
                            account_name: account_name.clone(),
                            role: role.to_string(),
                        }),
                );
                next = page.next_token().map(str::to_string);
                if next.is_none() {
                    return Ok::<_, Error>(found);
                }
            }
        }
    });
    let mut all = Vec::new();
    for found in futures::future::join_all(per_account).await {
        all.extend(found?);
    }
    Ok(all)
}

/// `sso:GetRoleCredentials` for one account and permission set, with the
/// session's cached login (as a profile with `sso_session` would).
pub fn role_provider(session: &Session, account: &str, role: &str) -> SsoCredentialsProvider {
    SsoCredentialsProvider::builder()
        .configure(
            &ProviderConfig::default().with_region(Some(Region::new(session.region.clone()))),
        )
        .session_name(&session.name)
        .start_url(&session.start_url)
        .region(Region::new(session.region.clone()))
        .account_id(account)
        .role_name(role)
        .build()
}
