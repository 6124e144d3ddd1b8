//! Azure Kubernetes Service: every AKS cluster with Entra ID in the
//! subscriptions an identity can see, and one cached Entra ID token per tenant
//! for all of them.
//!
//! - `token`: the identity's token (workload identity, service principal, the
//!   Azure CLI, managed identity) through `azure_identity`;
//! - `discovery`: subscriptions and their clusters over the ARM REST API.

mod discovery;
mod token;

use clap::{ArgMatches, Args, Command, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

pub use discovery::{Endpoint, arm_root};
pub use token::{AKS_SERVER_APP, AksToken, Login};

use super::{Cloud, Discovered, Scan, ScanContext, Scanning, Section};
use crate::cache::Secret;
use crate::discovery::SourceResult;
use crate::error::{Error, Result};
use crate::token::{CacheArgs, Credential};

/// The user entry the AKS clusters of one tenant share (`_TENANT` is appended).
pub const SHARED_USER: &str = "fleetctx_aks";

pub struct Aks;

// `sync` flags (no doc comment: it would become the help text of `sync`).
#[derive(Debug, Args)]
#[group(skip)]
struct ScanArgs {
    /// An Azure subscription to scan (repeatable; default: every subscription
    /// the identity can see).
    #[arg(long = "aks-subscription", value_name = "ID")]
    aks_subscriptions: Vec<String>,
    /// Which AKS API server address to write.
    #[arg(long, value_enum, value_name = "KIND")]
    aks_endpoint: Option<Endpoint>,
}

/// The `aks:` section of config.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Settings {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    subscriptions: Vec<String>,
    endpoint: Option<Endpoint>,
}

fn yes() -> bool {
    true
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex.
fn is_guid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// An Entra ID token for AKS, shared by every cluster of the tenant.
///
/// Example: fleetctx token aks --tenant 72f988bf-86f1-41af-91ab-2d7cd011db47
#[derive(Debug, Parser)]
#[command(name = "aks")]
struct TokenArgs {
    /// The tenant to get the token in (default: AZURE_TENANT_ID for a service
    /// principal or workload identity, else the login's own).
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
    /// How to find the identity (kubelogin's names).
    #[arg(long, value_enum, default_value_t = Login::Auto, value_name = "MODE")]
    login: Login,
    /// The client id of a user-assigned managed identity or service principal
    /// (default: AZURE_CLIENT_ID).
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// The Entra application of the API server (clusters with legacy Entra
    /// integration have their own).
    #[arg(long, value_name = "ID", default_value = AKS_SERVER_APP)]
    server_id: String,
    #[command(flatten)]
    cache: CacheArgs,
}

/// What one sync scans on AKS.
struct AksScan {
    /// Empty: every subscription the identity can see.
    subscriptions: Vec<String>,
    endpoint: Endpoint,
    explicit: bool,
    /// The identity's ARM token, from the same cache `token aks` uses (`prepare`).
    token: Option<Secret>,
}

impl Cloud for Aks {
    fn name(&self) -> &'static str {
        "aks"
    }

    fn owner_key(&self) -> &'static str {
        "subscription"
    }

    fn default_template(&self, _: &crate::discovery::Found) -> &'static str {
        "aks_{subscription}_{resource_group}_{name}"
    }

    fn cache_kinds(&self) -> &'static [&'static str] {
        &["aks"]
    }

    fn scan_args(&self, command: Command) -> Command {
        ScanArgs::augment_args(command)
    }

    fn named(&self, flags: &ArgMatches) -> bool {
        ScanArgs::from_arg_matches(flags).is_ok_and(|a| !a.aks_subscriptions.is_empty())
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
                ..Settings::default()
            },
        };
        if !settings.enabled {
            return Ok(None);
        }
        let explicit = !flags.aks_subscriptions.is_empty() || !settings.subscriptions.is_empty();
        let named = if flags.aks_subscriptions.is_empty() {
            settings.subscriptions
        } else {
            flags.aks_subscriptions
        };
        let mut subscriptions: Vec<String> = Vec::new();
        for id in named {
            let id = id.trim().to_ascii_lowercase();
            if !is_guid(&id) {
                return Err(
                    Error::new(format!("{id:?} is not an Azure subscription id")).hint(
                        "name subscriptions by id (a GUID): `az account list -o table` lists them",
                    ),
                );
            }
            if !subscriptions.contains(&id) {
                subscriptions.push(id);
            }
        }
        Ok(Some(Box::new(AksScan {
            subscriptions,
            endpoint: flags
                .aks_endpoint
                .or(settings.endpoint)
                .unwrap_or(Endpoint::Public),
            explicit,
            token: None,
        })))
    }

    fn token_command(&self) -> Command {
        TokenArgs::command()
    }

    fn credential(&self, args: &ArgMatches) -> Result<Credential> {
        let args = TokenArgs::from_arg_matches(args).map_err(|e| Error::new(e.to_string()))?;
        let source = AksToken {
            resource: args.server_id,
            tenant: args.tenant,
            login: args.login,
            client_id: args.client_id,
        };
        crate::token::credential(&source, &args.cache.options())
    }
}

impl Scan for AksScan {
    fn explicit(&self) -> bool {
        self.explicit
    }

    fn prepare(&mut self, context: &ScanContext<'_>) -> Result<(), Discovered> {
        let source = AksToken::new(arm_root());
        // Asking IMDS on a machine without Azure costs seconds: only a scan
        // that names subscriptions (not another cloud's sources) tries the
        // managed identity unasked.
        if !self.explicit && !source.set_up() {
            return Err(Discovered::skipped("AKS skipped: no Azure login found (run `az login`, set a service principal in AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET, or pass --aks-subscription to use this machine's managed identity)".to_string()));
        }
        // Set up but refused is a failure, never an empty fleet.
        match crate::token::credential(&source, context.token) {
            Ok(credential) => {
                self.token = Some(credential.token);
                Ok(())
            }
            Err(e) => Err(Discovered::failed("aks".to_string(), e)),
        }
    }

    fn discover<'a>(&'a self, context: &'a ScanContext<'a>) -> Scanning<'a> {
        Box::pin(async move {
            let (limits, progress) = (context.limits, context.progress);
            let Some(token) = &self.token else {
                return Discovered::default();
            };
            let failed = |e: Error| Discovered {
                scanned: true,
                ..Discovered::failed("aks".to_string(), e)
            };
            // An ARM token is one tenant's: every tenant of the identity is
            // listed with its own, and the listing is complete only when all
            // answered (else an `az account set` into another tenant would
            // prune the home tenant's clusters).
            let home = match discovery::Arm::new(token.clone(), limits) {
                Ok(arm) => arm,
                Err(e) => return failed(e),
            };
            let tenants = match home.tenants(limits).await {
                Ok(tenants) => tenants,
                Err(e) => return failed(e),
            };
            // The token in hand is its own tenant's (its `tid`); the others
            // get their own.
            let home_tenant = token_tenant(token);
            let mut home = Some(home);
            let arms = futures::future::join_all(tenants.iter().map(|tenant| {
                let mine = (Some(tenant) == home_tenant.as_ref())
                    .then(|| home.take())
                    .flatten();
                async move {
                    match mine {
                        Some(arm) => Ok(arm),
                        None => tenant_arm(tenant, context).await,
                    }
                }
            }))
            .await;
            let mut listing_complete = true;
            let mut subscriptions: Vec<(String, &discovery::Arm)> = Vec::new();
            for (tenant, arm) in tenants.iter().zip(&arms) {
                let listed = match arm {
                    Ok(arm) => arm.subscriptions(limits).await.map(|all| (arm, all)),
                    Err(e) => Err(Error::new(e.message())),
                };
                match listed {
                    // A disabled subscription is read-only and lists nothing.
                    Ok((arm, all)) => subscriptions.extend(
                        all.into_iter()
                            .filter(|s| !matches!(s.state.as_str(), "Disabled" | "Deleted"))
                            .map(|s| (s.subscription_id.to_ascii_lowercase(), arm)),
                    ),
                    Err(e) => {
                        listing_complete = false;
                        crate::error::warn(format!(
                            "AKS: the subscriptions of tenant {tenant} could not be listed, so no subscription is pruned: {}",
                            e.message()
                        ));
                    }
                }
            }
            let mut results: Vec<SourceResult> = Vec::new();
            if !self.subscriptions.is_empty() {
                listing_complete = false;
                subscriptions.retain(|(s, _)| self.subscriptions.contains(s));
                for named in &self.subscriptions {
                    if !subscriptions.iter().any(|(s, _)| s == named) {
                        results.push(SourceResult::failed(
                            format!("aks/{named}"),
                            Error::new(format!(
                                "subscription {named} is not among the enabled subscriptions of the Azure identity's tenants ({})",
                                tenants.join(", ")
                            ))
                            .hint("`az account list --all -o table` shows what the identity sees; check the id and the login"),
                        ));
                    }
                }
            }
            progress.expect(subscriptions.len());
            let scans = subscriptions.iter().map(|(subscription, arm)| {
                progress.track(arm.discover_subscription(subscription, self.endpoint, limits))
            });
            results.extend(futures::future::join_all(scans).await);
            results.sort_by(|a, b| a.source.cmp(&b.source));
            Discovered {
                results,
                scanned: true,
                listing_complete,
                ..Discovered::default()
            }
        })
    }
}

/// The tenant (`tid`) of an Entra ID access token; nothing is trusted from it
/// but which token to use for which tenant.
fn token_tenant(token: &Secret) -> Option<String> {
    use base64::Engine;
    let payload = token.expose().split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    claims["tid"].as_str().map(str::to_ascii_lowercase)
}

/// ARM with the identity's token for one tenant, from the cache `token aks`
/// uses (minting runs its own runtime, so on a blocking thread).
async fn tenant_arm(tenant: &str, context: &ScanContext<'_>) -> Result<discovery::Arm> {
    let source = AksToken {
        tenant: Some(tenant.to_string()),
        ..AksToken::new(arm_root())
    };
    let options = context.token.clone();
    let credential =
        tokio::task::spawn_blocking(move || crate::token::credential(&source, &options))
            .await
            .map_err(|e| Error::new("the token task failed").cause(e))??;
    discovery::Arm::new(credential.token, context.limits)
}
