//! What every cloud's discovery hands to `sync`: clusters found, and how
//! completely each source (a GCP project, an AWS profile in a region) answered.
//! A cloud module implements discovery by returning `SourceResult`s.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::Error;

/// One cluster, provider-neutral.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// `gke` or `eks`.
    pub provider: &'static str,
    /// The source that reported it (`gke/PROJECT`, `eks/PROFILE/REGION`).
    pub source: String,
    pub name: String,
    /// GKE zone or region; EKS region.
    pub location: String,
    /// GCP project id or AWS account id.
    pub owner: String,
    /// The AWS profile it was found through (`None`: the default chain).
    pub profile: Option<String>,
    pub server: String,
    /// Base64 PEM for `certificate-authority-data`; `None` for a publicly trusted endpoint.
    pub ca_data: Option<String>,
    /// Arguments after the exec command (`token eks --cluster ...`).
    pub token_args: Vec<String>,
    /// A user shared by every cluster of one identity (GKE), instead of one per cluster.
    pub shared_user: Option<String>,
}

#[derive(Debug)]
pub enum Answer {
    /// Every cluster of the source is in `clusters`: entries it no longer lists may be pruned.
    Complete,
    /// Some clusters may be missing (GKE `missingZones`): nothing is pruned.
    Partial(String),
    /// Nothing to see here, and nothing to report (a project without the GKE API,
    /// an AWS region the account has not enabled).
    Empty(&'static str),
    Failed(Error),
}

#[derive(Debug)]
pub struct SourceResult {
    pub source: String,
    pub answer: Answer,
    pub clusters: Vec<Found>,
}

impl SourceResult {
    pub fn failed(source: String, error: Error) -> Self {
        SourceResult {
            source,
            answer: Answer::Failed(error),
            clusters: Vec::new(),
        }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self.answer, Answer::Complete | Answer::Empty(_))
    }
}

/// Shared by every call of one sync: at most `concurrency` calls in flight, each
/// bounded by `timeout`.
#[derive(Clone, Debug)]
pub struct Limits {
    pub permits: Arc<Semaphore>,
    pub timeout: Duration,
    /// `-v`: log every API call on stderr.
    pub verbose: bool,
}

impl Limits {
    pub fn new(concurrency: usize, timeout: Duration, verbose: bool) -> Self {
        Limits {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            timeout,
            verbose,
        }
    }

    /// Runs one API call under the concurrency bound and the timeout.
    pub async fn call<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let started = std::time::Instant::now();
        let result = crate::token::within(self.timeout, what, step).await;
        if self.verbose {
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("failed: {}", e.message()),
            };
            eprintln!(
                "fleetctx: {what}: {outcome} ({} ms)",
                started.elapsed().as_millis()
            );
        }
        result
    }
}
