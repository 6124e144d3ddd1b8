//! GKE discovery: projects (Resource Manager v3) and their clusters (Container
//! API v1).

use std::time::Duration;

use google_cloud_auth::credentials::{CacheableResource, CredentialsProvider, EntityTag};
use google_cloud_auth::errors::CredentialsError;
use google_cloud_container_v1::client::ClusterManager;
use google_cloud_container_v1::model::Cluster;
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::StatusDetails;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use serde::Deserialize;

use crate::cache::Secret;
use crate::discovery::{Answer, Found, Limits, SourceResult};
use crate::error::{Error, Result};
use crate::token::{Retry, with_retries};

use super::token::{gcloud_active_config, gcloud_config_dir, google_error_message};

/// The user entry every GKE cluster of the default identity shares.
pub const SHARED_USER: &str = "fleetctx_gke";

/// Which control-plane address goes into the kubeconfig.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// The public IP endpoint (gcloud's default).
    Public,
    /// The private IP endpoint (gcloud's `--internal-ip`).
    Private,
    /// The DNS endpoint, with its publicly trusted certificate (no CA data).
    Dns,
}

/// The default project the way gcloud resolves it: `CLOUDSDK_CORE_PROJECT`, the
/// active configuration's `[core] project`, then `GOOGLE_CLOUD_PROJECT`.
pub fn default_project() -> Option<String> {
    let non_empty = |v: String| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    if let Some(p) = std::env::var("CLOUDSDK_CORE_PROJECT")
        .ok()
        .and_then(non_empty)
    {
        return Some(p);
    }
    let dir = gcloud_config_dir();
    let active = gcloud_active_config(dir.as_deref());
    let from_config = dir
        .and_then(|d| {
            std::fs::read_to_string(d.join("configurations").join(format!("config_{active}"))).ok()
        })
        .and_then(|text| ini_value(&text, "core", "project"));
    from_config.or_else(|| {
        std::env::var("GOOGLE_CLOUD_PROJECT")
            .ok()
            .and_then(non_empty)
    })
}

/// `key` in `[section]` of an INI file (gcloud's configuration format).
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == section;
        } else if let Some((_, v)) = line
            .split_once('=')
            .filter(|(k, _)| in_section && k.trim() == key)
        {
            return Some(v.trim().to_string()).filter(|v| !v.is_empty());
        }
    }
    None
}

/// An API root, overridable the gcloud way (`CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>`).
fn api_root(api: &str, default: &str) -> String {
    std::env::var(format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"))
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Sends `Authorization: Bearer` with a token fleetctx already holds.
#[derive(Debug)]
struct Bearer {
    value: http::HeaderValue,
    tag: EntityTag,
}

impl CredentialsProvider for Bearer {
    async fn headers(
        &self,
        extensions: http::Extensions,
    ) -> Result<CacheableResource<http::HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut data = http::HeaderMap::new();
        data.insert(http::header::AUTHORIZATION, self.value.clone());
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// Lists every ACTIVE project the identity can see, all pages.
/// Every ACTIVE project the identity can see that matches `filter` (Resource
/// Manager's query syntax, ANDed with `state:ACTIVE`), all pages, each page
/// handed to `on_page` as it arrives (its clusters can be listed at once).
pub async fn list_projects(
    token: &Secret,
    filter: Option<&str>,
    limits: &Limits,
    on_page: &mut (dyn FnMut(Vec<String>) + Send),
) -> Result<()> {
    let query = match filter {
        Some(filter) => format!("state:ACTIVE {filter}"),
        None => "state:ACTIVE".to_string(),
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        #[serde(default)]
        projects: Vec<Project>,
        #[serde(default)]
        next_page_token: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Project {
        project_id: String,
        #[serde(default)]
        state: String,
    }
    let root = api_root(
        "CLOUDRESOURCEMANAGER",
        "https://cloudresourcemanager.googleapis.com/",
    );
    let url = format!("{}/v3/projects:search", root.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(limits.timeout)
        .build()
        .map_err(|e| Error::new("could not build an HTTP client").cause(e))?;
    let mut page_token = String::new();
    loop {
        let what = format!("GET {url} (projects.search)");
        let page: Page = limits
            .lead(&what, with_retries(5, || async {
                let response = client
                    .get(&url)
                    .query(&[("query", query.as_str()), ("pageToken", page_token.as_str())])
                    .bearer_auth(token.expose())
                    .send()
                    .await
                    .map_err(|e| (Error::new(format!("could not reach {url}")).cause(e.without_url()), Retry::Yes))?;
                let status = response.status();
                if status.is_success() {
                    return response
                        .json::<Page>()
                        .await
                        .map_err(|e| (Error::new(format!("{url} answered an unexpected body")).cause(e.without_url()), Retry::No));
                }
                let retry = crate::discovery::retry_of(status, response.headers(), limits);
                let body = response.text().await.unwrap_or_default();
                Err((
                    Error::new(format!("could not list projects (HTTP {})", status.as_u16()))
                        .because(google_error_message(&body).unwrap_or(body))
                        .hint("the identity needs resourcemanager.projects.get on the projects, or list them with --gke-project"),
                    retry,
                ))
            }))
            .await?;
        on_page(
            page.projects
                .into_iter()
                .filter(|p| p.state.is_empty() || p.state == "ACTIVE")
                .map(|p| p.project_id)
                .collect(),
        );
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

/// How often a throttled Container API call is tried before its project fails.
const THROTTLED_TRIES: u32 = 6;

/// A 429 or `RESOURCE_EXHAUSTED`: the API asks us to slow down.
fn throttled(error: &GaxError) -> bool {
    use google_cloud_gax::error::rpc::Code;
    error.http_status_code() == Some(429)
        || error
            .status()
            .is_some_and(|s| s.code == Code::ResourceExhausted)
}

/// Google's AIP-194 retries (UNAVAILABLE) inside the client. A throttled answer
/// halves the sync's concurrency and goes back to the caller, which waits
/// outside the bound before trying again.
#[derive(Debug)]
struct RetryThrottled {
    limits: Limits,
}

impl google_cloud_gax::retry_policy::RetryPolicy for RetryThrottled {
    fn on_error(
        &self,
        state: &google_cloud_gax::retry_state::RetryState,
        error: GaxError,
    ) -> google_cloud_gax::retry_result::RetryResult {
        if throttled(&error) {
            self.limits.throttled();
            return google_cloud_gax::retry_result::RetryResult::Permanent(error);
        }
        Aip194Strict.on_error(state, error)
    }
}

/// A Container API client for the identity's token, with bounded retries.
pub async fn cluster_client(token: &Secret, limits: &Limits) -> Result<ClusterManager> {
    let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| Error::new("the Google access token is not a valid header value"))?;
    value.set_sensitive(true);
    let backoff = ExponentialBackoffBuilder::new()
        .with_initial_delay(Duration::from_millis(200))
        .with_maximum_delay(Duration::from_secs(2))
        .build()
        .map_err(|e| Error::new("invalid backoff").cause(e))?;
    ClusterManager::builder()
        .with_endpoint(api_root("CONTAINER", "https://container.googleapis.com/"))
        .with_credentials(Bearer {
            value,
            tag: EntityTag::new(),
        })
        .with_retry_policy(
            RetryThrottled {
                limits: limits.clone(),
            }
            .with_attempt_limit(5)
            .with_time_limit(limits.timeout),
        )
        .with_backoff_policy(backoff)
        .with_attempt_timeout(limits.timeout)
        .build()
        .await
        .map_err(|e| Error::new("could not build the GKE (Container API) client").cause(e))
}

/// Every cluster of one project (`projects/P/locations/-`).
pub async fn discover_project(
    client: &ClusterManager,
    project: &str,
    endpoint: Endpoint,
    limits: &Limits,
) -> SourceResult {
    let source = format!("gke/{project}");
    let root = api_root("CONTAINER", "https://container.googleapis.com/");
    let what = format!(
        "GET {}/v1/projects/{project}/locations/-/clusters",
        root.trim_end_matches('/')
    );
    // A throttled call waits outside the concurrency bound, so the others go on.
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0;
    let listed = loop {
        attempts += 1;
        let listed = limits
            .call(&what, async {
                Ok(client
                    .list_clusters()
                    .set_parent(format!("projects/{project}/locations/-"))
                    .send()
                    .await)
            })
            .await;
        match &listed {
            Ok(Err(e)) if throttled(innermost(e)) && attempts < THROTTLED_TRIES => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            _ => break listed,
        }
    };
    let response = match listed {
        Ok(Ok(response)) => response,
        Ok(Err(e)) if service_disabled(&e) => {
            return SourceResult {
                source,
                answer: Answer::Empty("the GKE API is not enabled"),
                clusters: Vec::new(),
            };
        }
        Ok(Err(e)) => return SourceResult::failed(source, project_error(project, &e)),
        Err(timed_out) => return SourceResult::failed(source, timed_out),
    };
    let clusters: Vec<Found> = response
        .clusters
        .iter()
        .filter_map(|c| found(c, project, &source, endpoint))
        .collect();
    let answer = if response.missing_zones.is_empty() {
        Answer::Complete
    } else {
        Answer::Partial(format!(
            "GKE project {project}: zones {} did not answer, so its entries were not pruned",
            response.missing_zones.join(", ")
        ))
    };
    SourceResult {
        source,
        answer,
        clusters,
    }
}

/// Looks through the wrapper a retry time limit puts around the last error.
fn innermost(e: &GaxError) -> &GaxError {
    let mut current = e;
    while current.is_exhausted() {
        match std::error::Error::source(current).and_then(|s| s.downcast_ref::<GaxError>()) {
            Some(inner) => current = inner,
            None => break,
        }
    }
    current
}

/// A project without the GKE API has no clusters: not an error.
fn service_disabled(e: &GaxError) -> bool {
    innermost(e).status().is_some_and(|status| {
        status.details.iter().any(
            |d| matches!(d, StatusDetails::ErrorInfo(info) if info.reason == "SERVICE_DISABLED"),
        )
    })
}

fn project_error(project: &str, e: &GaxError) -> Error {
    let e = innermost(e);
    let error = Error::new(format!("could not list GKE clusters of project {project}"));
    let error = match e.status() {
        Some(status) => error.because(format!("{} ({})", status.message, status.code.name())),
        None => error.cause(e),
    };
    error.hint(match e.http_status_code() {
        Some(403) => format!("the identity needs container.clusters.list on project {project} (roles/container.clusterViewer), or drop the project from the scan"),
        Some(401) => "run `gcloud auth application-default login`".to_string(),
        Some(404) => format!("check that project {project} exists (`gcloud projects describe {project}`)"),
        _ => "this may be transient: run the sync again; -v logs every API call".to_string(),
    })
}

/// The entry a cluster gets, if it has a usable endpoint.
#[allow(deprecated)] // privateClusterConfig.privateEndpoint is the older home of the private IP
fn found(cluster: &Cluster, project: &str, source: &str, endpoint: Endpoint) -> Option<Found> {
    use google_cloud_container_v1::model::cluster::Status;
    if !matches!(
        cluster.status,
        Status::Running | Status::Reconciling | Status::Degraded | Status::Unspecified
    ) {
        return None;
    }
    let planes = cluster.control_plane_endpoints_config.as_ref();
    let ip = planes.and_then(|p| p.ip_endpoints_config.as_ref());
    let dns = planes
        .and_then(|p| p.dns_endpoint_config.as_ref())
        .map(|d| d.endpoint.as_str())
        .filter(|e| !e.is_empty());
    let mode = if ip.and_then(|i| i.enabled) == Some(false) {
        Endpoint::Dns
    } else {
        endpoint
    };
    let ca = cluster
        .master_auth
        .as_ref()
        .map(|m| m.cluster_ca_certificate.clone())
        .filter(|c| !c.is_empty());
    let (host, ca) = match mode {
        Endpoint::Public => (
            Some(cluster.endpoint.as_str()).filter(|e| !e.is_empty()),
            ca,
        ),
        Endpoint::Private => (
            ip.map(|i| i.private_endpoint.as_str())
                .filter(|e| !e.is_empty())
                .or_else(|| {
                    cluster
                        .private_cluster_config
                        .as_ref()
                        .map(|p| p.private_endpoint.as_str())
                        .filter(|e| !e.is_empty())
                }),
            ca,
        ),
        Endpoint::Dns => (dns, None),
    };
    let Some(host) = host else {
        let kind = match mode {
            Endpoint::Public => "public",
            Endpoint::Private => "private",
            Endpoint::Dns => "DNS",
        };
        crate::error::warn(format!(
            "GKE cluster {} in project {project} ({}) has no {kind} endpoint; skipped (try another --gke-endpoint)",
            cluster.name, cluster.location
        ));
        return None;
    };
    Some(Found {
        provider: "gke",
        source: source.to_string(),
        name: cluster.name.clone(),
        location: cluster.location.clone(),
        owner: project.to_string(),
        profile: None,
        server: format!("https://{host}"),
        ca_data: ca,
        token_args: vec!["token".into(), "gke".into()],
        shared_user: Some(SHARED_USER.to_string()),
        labels: Vec::new(),
    })
}
