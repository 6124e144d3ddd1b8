#![warn(missing_docs)]
//! `fleetctx status`: each cluster's state, probed concurrently through the
//! library's clients. A cluster that cannot be reached, trusted or entered shows
//! why; it never stops the report.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::fleet::Cluster;

/// What one cluster answered.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    /// The context (or discovered cluster) name.
    pub context: String,
    /// `gke`, `eks`.
    pub provider: String,
    /// The API server's URL.
    pub server: String,
    /// `ok`, or why not: `dns`, `connect`, `tls`, `timeout`, `unauthorized`,
    /// `forbidden`, `credentials`, `error`.
    pub state: &'static str,
    /// The reason in words, when not ok.
    pub reason: Option<String>,
    /// An HTTP answer came back over a trusted TLS connection.
    pub reachable: bool,
    /// The server accepted the token (not 401).
    pub authenticated: bool,
    /// `gitVersion` of `/version`.
    pub version: Option<String>,
    /// Nodes in the cluster.
    pub nodes: Count,
    /// Namespaces in the cluster.
    pub namespaces: Count,
    /// Pods in every namespace.
    pub pods: Count,
    /// Round trip of `/version`, in milliseconds.
    pub latency_ms: Option<u64>,
}

/// A count from one `limit=1` list: the items plus `remainingItemCount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Count {
    /// This many.
    Counted(i64),
    /// The identity may not list these.
    Forbidden,
    /// Not asked (the cluster failed first), no answer in time, an error other
    /// than 403, or more pages without `remainingItemCount`.
    Unknown,
}

impl Count {
    /// The number, `forbidden` or `-`, for the table.
    pub fn text(&self) -> String {
        match self {
            Count::Counted(n) => n.to_string(),
            Count::Forbidden => "forbidden".to_string(),
            Count::Unknown => "-".to_string(),
        }
    }
}

impl ClusterStatus {
    fn new(context: &str, provider: &str, server: &str) -> ClusterStatus {
        ClusterStatus {
            context: context.to_string(),
            provider: provider.to_string(),
            server: server.to_string(),
            state: "ok",
            reason: None,
            reachable: false,
            authenticated: false,
            version: None,
            nodes: Count::Unknown,
            namespaces: Count::Unknown,
            pods: Count::Unknown,
            latency_ms: None,
        }
    }

    fn failed(mut self, state: &'static str, reason: impl std::fmt::Display) -> ClusterStatus {
        self.state = state;
        self.reason = Some(one_line(&reason.to_string()));
        self
    }

    /// A context that cannot be probed at all: its entry says why.
    pub fn unusable(context: &str, why: &crate::error::Error) -> ClusterStatus {
        ClusterStatus::new(context, "", "").failed("error", why.message())
    }
}

/// Probes one cluster within `timeout`: a token, `/version`, then the counts.
pub async fn probe(cluster: &Cluster, timeout: Duration) -> ClusterStatus {
    let status = ClusterStatus::new(&cluster.name, cluster.provider, &cluster.server);
    let deadline = tokio::time::Instant::now() + timeout;
    let client = match crate::fleet::client(cluster) {
        Ok(client) => client,
        Err(e) => return status.failed("error", e.message()),
    };
    // The token first, so the latency is the server's alone.
    match tokio::time::timeout_at(deadline, cluster.tokens.token()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return status.failed("credentials", e.message()),
        Err(_) => {
            return status.failed("timeout", "no token within the timeout");
        }
    }
    let mut status = status;
    let started = Instant::now();
    match tokio::time::timeout_at(deadline, client.apiserver_version()).await {
        Ok(Ok(info)) => {
            status.latency_ms = Some(started.elapsed().as_millis() as u64);
            status.reachable = true;
            status.authenticated = true;
            status.version = Some(info.git_version);
        }
        Ok(Err(e)) => {
            let (state, reason) = classify(&e);
            // Any HTTP answer came over a trusted connection.
            status.reachable = matches!(e, kube::Error::Api(_));
            status.authenticated = status.reachable && state != "unauthorized";
            return status.failed(state, reason);
        }
        Err(_) => {
            return status.failed(
                "timeout",
                format!("no answer within {} s", timeout.as_secs_f32()),
            );
        }
    }
    let (namespaces, nodes, pods) = futures::join!(
        count(Api::<Namespace>::all(client.clone()), deadline),
        count(Api::<Node>::all(client.clone()), deadline),
        count(Api::<Pod>::all(client), deadline),
    );
    status.namespaces = namespaces;
    status.nodes = nodes;
    status.pods = pods;
    status
}

/// Whitespace runs, line breaks included, as one space: a reason fits a row.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One page of one item, and `remainingItemCount`: never the whole list.
async fn count<K>(api: Api<K>, deadline: tokio::time::Instant) -> Count
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let one = ListParams::default().limit(1);
    match tokio::time::timeout_at(deadline, api.list_metadata(&one)).await {
        Ok(Ok(list)) => match (list.metadata.remaining_item_count, &list.metadata.continue_) {
            (Some(more), _) => Count::Counted(list.items.len() as i64 + more),
            // More pages, but the server did not say how many: no guess.
            (None, Some(next)) if !next.is_empty() => Count::Unknown,
            (None, _) => Count::Counted(list.items.len() as i64),
        },
        Ok(Err(kube::Error::Api(status))) if status.code == 403 => Count::Forbidden,
        _ => Count::Unknown,
    }
}

/// Why a call failed, as a state and words: the answer's status, else the first
/// cause down the chain that says what went wrong on the way.
fn classify(error: &kube::Error) -> (&'static str, String) {
    use std::io::ErrorKind;
    if let kube::Error::Api(status) = error {
        return match status.code {
            401 => (
                "unauthorized",
                "401: the server refused the token".to_string(),
            ),
            403 => ("forbidden", format!("403: {}", status.message)),
            code => ("error", format!("{code}: {}", status.message)),
        };
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(ours) = e.downcast_ref::<crate::error::Error>() {
            return ("credentials", ours.message().to_string());
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            use rustls::CertificateError::{BadSignature, UnknownIssuer};
            let why = match tls {
                rustls::Error::InvalidCertificate(UnknownIssuer | BadSignature) => {
                    format!("the certificate does not match its CA ({tls})")
                }
                _ => tls.to_string(),
            };
            return ("tls", why);
        }
        if e.to_string() == "tcp connect error" {
            // Why is the I/O error below: refused, unreachable, reset.
            let why = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
            return match why.map(std::io::Error::kind) {
                Some(ErrorKind::ConnectionRefused) => ("connect", "connection refused".to_string()),
                Some(ErrorKind::TimedOut) => ("timeout", "the connection timed out".to_string()),
                _ => ("connect", why.map_or_else(String::new, |io| io.to_string())),
            };
        }
        if e.to_string() == "dns error" {
            let detail = e.source().map(|s| s.to_string()).unwrap_or_default();
            return ("dns", format!("the name does not resolve ({detail})"));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => {
                    return ("connect", "connection refused".to_string());
                }
                ErrorKind::TimedOut => return ("timeout", "the connection timed out".to_string()),
                _ => {}
            }
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        cause = e.source();
    }
    // Nothing more telling down the chain: all of it, in one line.
    let mut chain = vec![error.to_string()];
    let mut next = std::error::Error::source(error);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    ("error", chain.join(": "))
}
