//! AKS discovery over the ARM REST API: subscriptions, their managed clusters,
//! and each cluster's server and CA from `listClusterUserCredential`. Static
//! credentials that a cluster without Entra ID hands out are never kept.

use base64::Engine;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::cache::Secret;
use crate::discovery::{Answer, Found, Limits, SourceResult};
use crate::error::{Error, Result, warn};
use crate::token::{Retry, with_retries};

/// The ARM root: `FLEETCTX_ARM_ENDPOINT` (a sovereign cloud, or a test's
/// loopback fake), else Azure's public cloud. Its tokens are asked for this
/// same resource.
pub fn arm_root() -> String {
    std::env::var("FLEETCTX_ARM_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| format!("{}/", v.trim_end_matches('/')))
        .unwrap_or_else(|| "https://management.azure.com/".to_string())
}

const SUBSCRIPTIONS_API: &str = "2022-12-01";
const AKS_API: &str = "2025-10-01";

/// Which API server address goes into the kubeconfig.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// The public FQDN (`fqdn`; what `az aks get-credentials` writes).
    Public,
    /// The private FQDN of a private cluster (`privateFQDN`).
    Private,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Public => "public",
            Endpoint::Private => "private",
        }
    }
}

/// A subscription the identity can see.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub subscription_id: String,
    #[serde(default)]
    pub state: String,
}

/// One ARM page: `value` and the absolute `nextLink` of the next.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(default)]
    next_link: Option<String>,
}

/// Talks to ARM with one identity's token.
pub struct Arm {
    client: reqwest::Client,
    root: String,
    token: Secret,
}

impl Arm {
    pub fn new(token: Secret, limits: &Limits) -> Result<Arm> {
        let client = reqwest::Client::builder()
            .timeout(limits.timeout)
            .build()
            .map_err(|e| Error::new("could not build an HTTP client").cause(e))?;
        Ok(Arm {
            client,
            root: arm_root(),
            token,
        })
    }

    /// One ARM call, retried when throttled (honouring `Retry-After`) or when
    /// ARM fails on its side. Each attempt holds a place in the concurrency
    /// bound (`lead`: outside it, for a listing's next page) and its own
    /// timeout; the waits between attempts hold nothing. `what` names the call
    /// in errors; `hint` says what to do when ARM refuses.
    async fn call<T: DeserializeOwned>(
        &self,
        request: Request<'_>,
        hint: &(dyn Fn(u16) -> String + Sync),
        limits: &Limits,
    ) -> Result<T> {
        let Request {
            post,
            lead,
            url,
            what,
        } = request;
        // A nextLink is followed only on ARM itself: the token goes nowhere else.
        if !same_origin(url, &self.root) {
            return Err(Error::new(format!(
                "ARM answered a link outside {} while {what}",
                self.root
            )));
        }
        let logged = format!("{} {url}", if post { "POST" } else { "GET" });
        with_retries(5, || async {
            let attempt = async { Ok(self.attempt::<T>(post, url, what, hint, limits).await) };
            let answered = if lead {
                limits.lead(&logged, attempt).await
            } else {
                limits.call(&logged, attempt).await
            };
            answered.unwrap_or_else(|timed_out| Err((timed_out, Retry::Yes)))
        })
        .await
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        post: bool,
        url: &str,
        what: &str,
        hint: &(dyn Fn(u16) -> String + Sync),
        limits: &Limits,
    ) -> std::result::Result<T, (Error, Retry)> {
        let request = if post {
            self.client
                .post(url)
                .header(http::header::CONTENT_LENGTH, 0)
        } else {
            self.client.get(url)
        };
        let response = request
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| {
                let failed =
                    Error::new(format!("could not reach ARM while {what}")).cause(e.without_url());
                (failed, Retry::Yes)
            })?;
        let status = response.status();
        if status.is_success() {
            return response.json::<T>().await.map_err(|e| {
                let failed = Error::new(format!("ARM answered an unexpected body while {what}"))
                    .cause(e.without_url());
                (failed, Retry::No)
            });
        }
        let retry = crate::discovery::retry_of(status, response.headers(), limits);
        let body = response.text().await.unwrap_or_default();
        let failed = Error::new(format!("ARM refused {what} (HTTP {})", status.as_u16()))
            .because(arm_error(&body).unwrap_or_else(|| format!("HTTP {status}")))
            .hint(hint(status.as_u16()));
        Err((failed, retry))
    }

    /// The tenants the identity belongs to.
    pub async fn tenants(&self, limits: &Limits) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Tenant {
            tenant_id: String,
        }
        let hint = |_: u16| "run `az login` (or check the service principal)".to_string();
        let url = format!("{}tenants?api-version={SUBSCRIPTIONS_API}", self.root);
        let what = "listing tenants";
        let page: Page<Tenant> = self
            .call(Request::get(&url, what).lead(), &hint, limits)
            .await?;
        let mut tenants: Vec<String> = page
            .value
            .into_iter()
            .map(|t| t.tenant_id.to_ascii_lowercase())
            .collect();
        tenants.dedup();
        Ok(tenants)
    }

    /// Every subscription the identity can see, all pages.
    pub async fn subscriptions(&self, limits: &Limits) -> Result<Vec<Subscription>> {
        let mut url = format!("{}subscriptions?api-version={SUBSCRIPTIONS_API}", self.root);
        let mut all = Vec::new();
        let hint = |status: u16| match status {
            401 => "the Azure login was refused: run `az login` (or check the service principal)"
                .to_string(),
            _ => "name the subscriptions with --aks-subscription".to_string(),
        };
        loop {
            let what = "listing subscriptions";
            let page: Page<Subscription> = self
                .call(Request::get(&url, what).lead(), &hint, limits)
                .await?;
            all.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = next,
                None => return Ok(all),
            }
        }
    }

    /// Every AKS cluster of one subscription, each with the server and CA of
    /// its entry.
    pub async fn discover_subscription(
        &self,
        subscription: &str,
        endpoint: Endpoint,
        limits: &Limits,
    ) -> SourceResult {
        let source = format!("aks/{subscription}");
        let clusters = match self.managed_clusters(subscription, limits).await {
            Ok(clusters) => clusters,
            // A subscription that never used AKS has no clusters: not an error.
            Err(e) if e.to_string().contains("MissingSubscriptionRegistration") => {
                return SourceResult {
                    source,
                    answer: Answer::Empty("the AKS resource provider is not registered"),
                    clusters: Vec::new(),
                };
            }
            Err(e) => return SourceResult::failed(source, e),
        };
        let source = &source;
        let fetches = clusters
            .iter()
            .filter_map(|c| self.usable(c, subscription, endpoint))
            .map(|cluster| async move {
                let found = self
                    .found(cluster, subscription, source, endpoint, limits)
                    .await;
                (cluster, found)
            });
        let mut found = Vec::new();
        let mut failed = Vec::new();
        for (cluster, result) in futures::future::join_all(fetches).await {
            match result {
                Ok(Some(f)) => found.push(f),
                Ok(None) => {}
                Err(e) => {
                    warn(e.to_string());
                    failed.push(cluster.name.clone());
                }
            }
        }
        let answer = if failed.is_empty() {
            Answer::Complete
        } else {
            Answer::Partial(format!(
                "AKS subscription {subscription}: the credentials of {} could not be read, so its entries were not pruned",
                failed.join(", ")
            ))
        };
        SourceResult {
            source: source.clone(),
            answer,
            clusters: found,
        }
    }

    async fn managed_clusters(
        &self,
        subscription: &str,
        limits: &Limits,
    ) -> Result<Vec<ManagedCluster>> {
        let mut url = format!(
            "{}subscriptions/{subscription}/providers/Microsoft.ContainerService/managedClusters?api-version={AKS_API}",
            self.root
        );
        let hint = |status: u16| match status {
            401 => "the Azure login was refused: run `az login`".to_string(),
            403 => format!(
                "the identity needs Microsoft.ContainerService/managedClusters/read on subscription {subscription} (the Reader or Azure Kubernetes Service Cluster User role), or drop it from the scan"
            ),
            404 => format!(
                "check that subscription {subscription} exists and is in the login's tenant (`az account list`)"
            ),
            _ => "this may be transient: run the sync again; -v logs every API call".to_string(),
        };
        let what = format!("listing the AKS clusters of subscription {subscription}");
        let mut all = Vec::new();
        loop {
            let page: Page<ManagedCluster> =
                self.call(Request::get(&url, &what), &hint, limits).await?;
            all.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = next,
                None => return Ok(all),
            }
        }
    }

    /// Whether a cluster can have an entry: Entra ID on, and the address asked
    /// for. Says why not on stderr.
    fn usable<'c>(
        &self,
        cluster: &'c ManagedCluster,
        subscription: &str,
        endpoint: Endpoint,
    ) -> Option<&'c ManagedCluster> {
        let p = &cluster.properties;
        let label = format!(
            "AKS cluster {} (subscription {subscription}, resource group {})",
            cluster.name,
            cluster.resource_group().unwrap_or("?")
        );
        if p.provisioning_state.eq_ignore_ascii_case("Deleting") {
            return None;
        }
        if p.aad_profile.is_none() {
            warn(format!(
                "{label} uses local accounts only (no Entra ID); skipped: its credentials are static and fleetctx never writes them (enable Entra ID: `az aks update --enable-aad`)"
            ));
            return None;
        }
        let has = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
        let (present, other) = match endpoint {
            Endpoint::Public => (has(&p.fqdn), "private"),
            Endpoint::Private => (has(&p.private_fqdn), "public"),
        };
        if !present {
            warn(format!(
                "{label} has no {} FQDN; skipped (try --aks-endpoint {other})",
                endpoint.name()
            ));
            return None;
        }
        Some(cluster)
    }

    /// The entry of a cluster with Entra ID: server and CA from the kubeconfig
    /// `listClusterUserCredential` returns, nothing else of it.
    async fn found(
        &self,
        cluster: &ManagedCluster,
        subscription: &str,
        source: &str,
        endpoint: Endpoint,
        limits: &Limits,
    ) -> Result<Option<Found>> {
        let resource_group = cluster.resource_group().ok_or_else(|| {
            Error::new(format!(
                "ARM gave AKS cluster {} an id without a resource group: {}",
                cluster.name, cluster.id
            ))
        })?;
        let url = format!(
            "{}{}/listClusterUserCredential?api-version={AKS_API}&format=exec{}",
            self.root,
            cluster.id.trim_start_matches('/'),
            // What `az aks get-credentials --public-fqdn` sends; a private
            // cluster's kubeconfig holds its private FQDN by default.
            match endpoint {
                Endpoint::Public => "&server-fqdn=public",
                Endpoint::Private => "",
            }
        );
        let what = format!(
            "reading the user kubeconfig of AKS cluster {} (subscription {subscription}, resource group {resource_group})",
            cluster.name
        );
        let name = cluster.name.clone();
        let hint = move |status: u16| match status {
            403 => format!(
                "the identity needs Microsoft.ContainerService/managedClusters/listClusterUserCredential/action on {name} (the Azure Kubernetes Service Cluster User role)"
            ),
            _ => "this may be transient: run the sync again; -v logs every API call".to_string(),
        };
        let answer: Credentials = self.call(Request::post(&url, &what), &hint, limits).await?;
        let Some((server, ca_data)) = entry_of(&answer, &what)? else {
            warn(format!(
                "AKS cluster {} (subscription {subscription}, resource group {resource_group}) handed out static credentials (local accounts); skipped: fleetctx never writes them",
                cluster.name
            ));
            return Ok(None);
        };
        let tenant = cluster
            .properties
            .aad_profile
            .as_ref()
            .and_then(|a| a.tenant_id.clone())
            .filter(|t| !t.is_empty());
        let mut token_args = vec!["token".to_string(), "aks".to_string()];
        let mut shared_user = super::SHARED_USER.to_string();
        if let Some(tenant) = &tenant {
            token_args.extend(["--tenant".to_string(), tenant.clone()]);
            shared_user = format!("{shared_user}_{tenant}");
        }
        // Legacy Entra integration: the cluster's own server application.
        if let Some(server) = cluster.server_app()
            && !server.eq_ignore_ascii_case(super::AKS_SERVER_APP)
        {
            token_args.extend(["--server-id".to_string(), server.to_string()]);
            shared_user = format!("{shared_user}_{server}");
        }
        Ok(Some(Found {
            provider: "aks",
            source: source.to_string(),
            name: cluster.name.clone(),
            location: cluster.location.clone(),
            owner: subscription.to_string(),
            profile: None,
            server,
            ca_data,
            token_args,
            shared_user: Some(shared_user),
            labels: vec![("resource_group", resource_group.to_string())],
        }))
    }
}

/// One ARM request: its method, URL, what it is (for errors), and whether it
/// is a listing's next page, which runs outside the concurrency bound.
struct Request<'a> {
    post: bool,
    lead: bool,
    url: &'a str,
    what: &'a str,
}

impl<'a> Request<'a> {
    fn get(url: &'a str, what: &'a str) -> Self {
        Request {
            post: false,
            lead: false,
            url,
            what,
        }
    }

    fn post(url: &'a str, what: &'a str) -> Self {
        Request {
            post: true,
            ..Request::get(url, what)
        }
    }

    fn lead(self) -> Self {
        Request { lead: true, ..self }
    }
}

/// Whether `url` is on the same scheme, host and port as `root` (ARM's
/// `nextLink`s may spell the port or the host's case differently).
fn same_origin(url: &str, root: &str) -> bool {
    match (reqwest::Url::parse(url), reqwest::Url::parse(root)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

/// `error.code: error.message` of an ARM error body.
fn arm_error(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = &value["error"];
    let message = error["message"].as_str()?;
    Some(match error["code"].as_str() {
        Some(code) => format!("{code}: {message}"),
        None => message.to_string(),
    })
}

/// A managed cluster as ARM lists it (only what an entry needs).
#[derive(Debug, Deserialize)]
struct ManagedCluster {
    id: String,
    name: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    properties: Properties,
}

impl ManagedCluster {
    /// The server application of a cluster with legacy Entra integration.
    fn server_app(&self) -> Option<&str> {
        let aad = self.properties.aad_profile.as_ref()?;
        (aad.managed == Some(false))
            .then_some(aad.server_app_id.as_deref())
            .flatten()
            .filter(|id| !id.is_empty())
    }

    /// The resource group from the id (`.../resourceGroups/RG/...`, any case).
    fn resource_group(&self) -> Option<&str> {
        let mut parts = self.id.split('/');
        parts.find(|p| p.eq_ignore_ascii_case("resourceGroups"))?;
        parts.next().filter(|rg| !rg.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Properties {
    #[serde(default)]
    provisioning_state: String,
    fqdn: Option<String>,
    #[serde(rename = "privateFQDN")]
    private_fqdn: Option<String>,
    aad_profile: Option<AadProfile>,
}

#[derive(Debug, Deserialize)]
struct AadProfile {
    #[serde(rename = "tenantID")]
    tenant_id: Option<String>,
    /// `false`: legacy Entra integration, with its own server application.
    #[serde(default)]
    managed: Option<bool>,
    #[serde(rename = "serverAppID")]
    server_app_id: Option<String>,
}

#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    kubeconfigs: Vec<NamedKubeconfig>,
}

#[derive(Deserialize)]
struct NamedKubeconfig {
    value: String,
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<KubeconfigCluster>,
    #[serde(default)]
    users: Vec<KubeconfigUser>,
}

#[derive(Deserialize)]
struct KubeconfigCluster {
    cluster: ClusterFields,
}

#[derive(Deserialize)]
struct ClusterFields {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
}

#[derive(Deserialize)]
struct KubeconfigUser {
    #[serde(default)]
    user: yaml_serde::Mapping,
}

/// What a user entry holds that is a secret of its own, not a way to get one.
const STATIC_FIELDS: [&str; 6] = [
    "token",
    "tokenFile",
    "client-certificate-data",
    "client-key-data",
    "password",
    "auth-provider",
];

/// Server and CA of the returned kubeconfig; `None` when its user holds static
/// credentials (a cluster with local accounts). The kubeconfig itself is
/// dropped here, and nothing of it but those two values is kept or shown.
fn entry_of(answer: &Credentials, what: &str) -> Result<Option<(String, Option<String>)>> {
    let unreadable = |why: &str| {
        Error::new(format!(
            "ARM answered an unreadable kubeconfig while {what}"
        ))
        .because(why.to_string())
    };
    let encoded = answer
        .kubeconfigs
        .first()
        .ok_or_else(|| unreadable("it holds no kubeconfig"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.value.trim())
        .map_err(|_| unreadable("it is not base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| unreadable("it is not UTF-8"))?;
    let config: Kubeconfig =
        yaml_serde::from_str(&text).map_err(|_| unreadable("it is not a kubeconfig"))?;
    let holds_static = config.users.iter().any(|u| {
        STATIC_FIELDS.iter().any(|f| {
            u.user
                .contains_key(yaml_serde::Value::String(f.to_string()))
        })
    });
    if holds_static {
        return Ok(None);
    }
    let cluster = config
        .clusters
        .into_iter()
        .next()
        .ok_or_else(|| unreadable("it has no cluster"))?;
    Ok(Some((cluster.cluster.server, cluster.cluster.ca_data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(kubeconfig: &str) -> Credentials {
        Credentials {
            kubeconfigs: vec![NamedKubeconfig {
                value: base64::engine::general_purpose::STANDARD.encode(kubeconfig),
            }],
        }
    }

    #[test]
    fn a_kubeconfig_with_static_credentials_gives_no_entry() {
        let local = "clusters:\n- name: c\n  cluster:\n    server: https://c.hcp.westeurope.azmk8s.io:443\n    certificate-authority-data: Q0E=\nusers:\n- name: clusterUser_rg_c\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n    token: abc\n";
        assert!(entry_of(&answer(local), "test").unwrap().is_none());
        let entra = "clusters:\n- name: c\n  cluster:\n    server: https://c.hcp.westeurope.azmk8s.io:443\n    certificate-authority-data: Q0E=\nusers:\n- name: clusterUser_rg_c\n  user:\n    exec:\n      command: kubelogin\n";
        let (server, ca) = entry_of(&answer(entra), "test").unwrap().unwrap();
        assert_eq!(server, "https://c.hcp.westeurope.azmk8s.io:443");
        assert_eq!(ca.as_deref(), Some("Q0E="));
    }

    #[test]
    fn a_next_link_is_followed_only_on_arm_whatever_its_spelling() {
        let root = "https://management.azure.com/";
        assert!(same_origin(
            "https://management.azure.com:443/subscriptions?x=1",
            root
        ));
        assert!(same_origin(
            "https://MANAGEMENT.azure.com/subscriptions",
            root
        ));
        assert!(!same_origin(
            "https://management.azure.com.evil.example/subscriptions",
            root
        ));
        assert!(!same_origin(
            "http://management.azure.com/subscriptions",
            root
        ));
        assert!(!same_origin("https://management.azure.com:8443/x", root));
        assert!(!same_origin("not a url", root));
    }

    #[test]
    fn the_resource_group_comes_from_the_id_in_any_case() {
        let cluster = |id: &str| ManagedCluster {
            id: id.to_string(),
            name: "c".into(),
            location: String::new(),
            properties: Properties::default(),
        };
        let lower = cluster(
            "/subscriptions/s/resourcegroups/My.RG(1)/providers/Microsoft.ContainerService/managedClusters/c",
        );
        assert_eq!(lower.resource_group(), Some("My.RG(1)"));
        let upper = cluster("/subscriptions/s/resourceGroups/rg/providers/x/c");
        assert_eq!(upper.resource_group(), Some("rg"));
        assert_eq!(cluster("/subscriptions/s").resource_group(), None);
    }
}
