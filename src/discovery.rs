//! What every cloud's discovery hands to `sync`: clusters found, and how
//! completely each source (a GCP project, an AWS profile in a region) answered.
//! A cloud module implements discovery by returning `SourceResult`s.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::Error;

/// One cluster, provider-neutral.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The cloud's name (`Cloud::name`).
    pub provider: &'static str,
    /// The source that reported it (`gke/PROJECT`, `eks/PROFILE/REGION`).
    pub source: String,
    pub name: String,
    /// GKE zone or region; EKS or AKS region.
    pub location: String,
    /// GCP project id, AWS account id or Azure subscription id.
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
    /// More of what names the cluster, cloud-specific (an Azure resource group):
    /// each is a `{key}` name-template placeholder and a marker field.
    pub labels: Vec<(&'static str, String)>,
}

impl Found {
    /// Checks every value a cloud API gave before it goes into a kubeconfig: one
    /// bad byte there makes kubectl refuse the whole file, every context included.
    /// The server must be an `https` URL of printable ASCII, the CA data base64 of
    /// PEM certificates, the names printable.
    pub fn validate(&self) -> Result<(), String> {
        let names = [
            ("name", Some(self.name.as_str())),
            ("location", Some(self.location.as_str())),
            ("project or account", Some(self.owner.as_str())),
            ("profile", self.profile.as_deref()),
        ];
        for (what, value) in names {
            if let Some(value) = value
                && let Some(c) = value.chars().find(|c| !printable(*c))
            {
                return Err(format!(
                    "its {what} holds the unprintable character U+{:04X}",
                    c as u32
                ));
            }
        }
        let host = self
            .server
            .strip_prefix("https://")
            .ok_or_else(|| format!("its server {:?} is not an https URL", self.server))?;
        if host.is_empty() || host.starts_with('/') {
            return Err(format!("its server {:?} has no host", self.server));
        }
        if let Some(c) = self.server.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "its server URL holds the character U+{:04X} (whitespace or control)",
                c as u32
            ));
        }
        if let Some(ca) = &self.ca_data {
            check_ca(ca)?;
        }
        Ok(())
    }
}

/// Not a control character, nor one YAML folds or strips (U+2028, U+2029, BOM).
fn printable(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

/// Base64 (standard alphabet, padded) of one or more PEM `CERTIFICATE` blocks.
fn check_ca(ca: &str) -> Result<(), String> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let pem = engine
        .decode(ca.trim())
        .map_err(|e| format!("its CA data is not base64 ({e})"))?;
    let pem = String::from_utf8(pem).map_err(|_| "its CA data is not PEM text".to_string())?;
    let mut blocks = 0;
    let mut rest = pem.trim();
    while !rest.is_empty() {
        let body = rest
            .strip_prefix("-----BEGIN CERTIFICATE-----")
            .ok_or_else(|| "its CA data is not a PEM certificate".to_string())?;
        let (body, after) = body
            .split_once("-----END CERTIFICATE-----")
            .ok_or_else(|| "its CA data has an unterminated PEM certificate".to_string())?;
        let der: String = body.split_whitespace().collect();
        if der.is_empty() || engine.decode(&der).is_err() {
            return Err("its CA data holds a PEM certificate whose body is not base64".to_string());
        }
        blocks += 1;
        rest = after.trim();
    }
    if blocks == 0 {
        return Err("its CA data is empty".to_string());
    }
    Ok(())
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

    /// Drops clusters whose values would corrupt a kubeconfig, with a warning
    /// naming each. A source that lost one no longer answered completely, so
    /// nothing of it is pruned.
    pub fn drop_invalid(&mut self) {
        let before = self.clusters.len();
        self.clusters.retain(|found| match found.validate() {
            Ok(()) => true,
            Err(why) => {
                crate::error::warn(format!(
                    "{} cluster {:?} ({}, {}) skipped: {why}; nothing of {} is pruned until it answers cleanly",
                    found.provider, found.name, found.owner, found.location, self.source
                ));
                false
            }
        });
        let dropped = before - self.clusters.len();
        if dropped > 0 && self.is_complete() {
            self.answer = Answer::Partial(format!(
                "{}: {dropped} cluster(s) with invalid values were skipped, so its entries were not pruned",
                self.source
            ));
        }
    }
}

/// Shared by every call of one sync: at most `concurrency` calls in flight, each
/// bounded by `timeout`. The bound adapts to what the APIs accept: it halves when
/// they throttle (429, `RESOURCE_EXHAUSTED`) and grows back by one after as many
/// successes as the bound (additive increase, multiplicative decrease). A few
/// throttled answers among many are one project's own quota: those calls back off
/// and retry on their own, and only throttling that is widespread, an eighth of
/// the answers of the moment or more, cuts the bound for everyone.
#[derive(Clone, Debug)]
pub struct Limits {
    permits: Arc<Semaphore>,
    window: Arc<std::sync::Mutex<Window>>,
    pub timeout: Duration,
    /// `-v`: log every API call on stderr.
    pub verbose: bool,
}

#[derive(Debug)]
struct Window {
    /// The bound now, and the most it may grow to.
    limit: usize,
    max: usize,
    /// Permits in flight that are to be forgotten when they come back.
    debt: usize,
    successes: usize,
    /// When the bound was last cut: throttled answers to calls that were already
    /// in flight then say nothing new, so one burst of 429s is one cut.
    last_cut: Option<std::time::Instant>,
    /// Answers, and throttled ones among them, since `since`.
    answers: usize,
    throttled: usize,
    since: std::time::Instant,
}

impl Window {
    /// Starts a new tally when the last one is older than a burst.
    fn tally(&mut self) {
        if self.since.elapsed() >= CUT_WINDOW {
            self.since = std::time::Instant::now();
            self.answers = 0;
            self.throttled = 0;
        }
    }
}

/// How long after a cut further throttling is taken as the same burst.
const CUT_WINDOW: Duration = Duration::from_millis(500);

impl Limits {
    pub fn new(concurrency: usize, timeout: Duration, verbose: bool) -> Self {
        let max = concurrency.max(1);
        Limits {
            permits: Arc::new(Semaphore::new(max)),
            window: Arc::new(std::sync::Mutex::new(Window {
                limit: max,
                max,
                debt: 0,
                successes: 0,
                last_cut: None,
                answers: 0,
                throttled: 0,
                since: std::time::Instant::now(),
            })),
            timeout,
            verbose,
        }
    }

    /// The bound on calls in flight now.
    pub fn concurrency(&self) -> usize {
        self.window.lock().expect("never poisoned").limit
    }

    /// An API answered "slow down": halve the bound, once per burst, when
    /// throttling is widespread.
    pub fn throttled(&self) {
        let mut window = self.window.lock().expect("never poisoned");
        window.tally();
        window.throttled += 1;
        if window.throttled * 8 < window.answers.max(window.limit) {
            return;
        }
        if window.last_cut.is_some_and(|at| at.elapsed() < CUT_WINDOW) {
            return;
        }
        window.last_cut = Some(std::time::Instant::now());
        let target = (window.limit / 2).max(1);
        let cut = window.limit - target;
        if cut == 0 {
            return;
        }
        window.limit = target;
        window.successes = 0;
        let forgotten = self.permits.forget_permits(cut);
        window.debt += cut - forgotten;
        if self.verbose {
            eprintln!("fleetctx: throttled: at most {target} calls in flight now");
        }
    }

    #[cfg(test)]
    fn forget_last_cut(&self) {
        let mut window = self.window.lock().expect("never poisoned");
        window.last_cut = None;
        window.since -= CUT_WINDOW;
    }

    fn release(&self, permit: tokio::sync::SemaphorePermit<'_>, succeeded: bool) {
        let mut window = self.window.lock().expect("never poisoned");
        window.tally();
        window.answers += 1;
        if window.debt > 0 {
            window.debt -= 1;
            permit.forget();
            return;
        }
        drop(permit);
        if succeeded && window.limit < window.max {
            window.successes += 1;
            if window.successes >= window.limit {
                window.successes = 0;
                window.limit += 1;
                self.permits.add_permits(1);
            }
        }
    }

    /// Runs one API call under the concurrency bound and the timeout.
    pub async fn call<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let result = self.timed(what, step).await;
        self.release(permit, result.is_ok());
        result
    }

    /// Runs a call the others wait on, the next page of a listing, under the
    /// timeout but outside the bound: a listing has one call in flight, and
    /// queueing it behind the work its pages feed would stretch the whole sync.
    pub async fn lead<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        self.timed(what, step).await
    }

    async fn timed<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
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

/// Whether a failed HTTP answer is worth another try, and when: a throttled
/// one (429, which also tells `limits`) or a server error, after what its
/// `Retry-After` asks; nothing else.
pub fn retry_of(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    limits: &Limits,
) -> crate::token::Retry {
    use crate::token::Retry;
    let asked = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if status.as_u16() == 429 {
        limits.throttled();
    } else if !status.is_server_error() {
        return Retry::No;
    }
    asked.map_or(Retry::Yes, Retry::After)
}

/// Live progress on stderr when it is a terminal: sources done of those known,
/// clusters found. Nothing of the kind when stderr is a pipe or a file.
pub struct Progress {
    enabled: bool,
    /// What is counted: `None` for sources (with clusters found), else the noun.
    counting: Option<&'static str>,
    total: AtomicUsize,
    done: AtomicUsize,
    clusters: AtomicUsize,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            counting: None,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            clusters: AtomicUsize::new(0),
        }
    }

    pub fn expect(&self, sources: usize) {
        self.total.fetch_add(sources, Ordering::Relaxed);
        self.draw();
    }

    pub async fn track(&self, scan: impl Future<Output = SourceResult>) -> SourceResult {
        let result = scan.await;
        self.clusters
            .fetch_add(result.clusters.len(), Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Relaxed);
        self.draw();
        result
    }

    /// Progress over `noun` (`clusters`): done of expected.
    pub fn counting(quiet: bool, noun: &'static str) -> Self {
        Progress {
            counting: Some(noun),
            ..Progress::new(quiet)
        }
    }

    /// One more of `counting`'s noun done when `step` is.
    pub async fn step<T>(&self, step: impl Future<Output = T>) -> T {
        let done = step.await;
        self.done.fetch_add(1, Ordering::Relaxed);
        self.draw();
        done
    }

    fn draw(&self) {
        if let (true, Some(noun)) = (self.enabled, self.counting) {
            eprint!(
                "\r\x1b[2Kfleetctx: {}/{} {noun} done",
                self.done.load(Ordering::Relaxed),
                self.total.load(Ordering::Relaxed),
            );
        } else if self.enabled {
            eprint!(
                "\r\x1b[2Kfleetctx: scanning: {}/{} sources done, {} clusters found",
                self.done.load(Ordering::Relaxed),
                self.total.load(Ordering::Relaxed),
                self.clusters.load(Ordering::Relaxed)
            );
        }
    }

    pub fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bound_halves_when_throttled_and_grows_back_with_successes() {
        let limits = Limits::new(8, Duration::from_secs(1), false);
        // Every permit in flight when the API throttles: half of them are owed
        // and forgotten as they come back.
        let mut in_flight = Vec::new();
        for _ in 0..8 {
            in_flight.push(limits.permits.acquire().await.unwrap());
        }
        limits.throttled();
        assert_eq!(limits.concurrency(), 4);
        limits.throttled();
        assert_eq!(limits.concurrency(), 4, "one burst of 429s is one cut");
        limits.forget_last_cut();
        for permit in in_flight {
            limits.release(permit, false);
        }
        assert_eq!(limits.permits.available_permits(), 4);
        limits.throttled();
        assert_eq!(limits.concurrency(), 2);
        assert_eq!(limits.permits.available_permits(), 2);
        limits.forget_last_cut();
        // Additive increase: one more after as many successes as the bound.
        for _ in 0..2 {
            limits.call("ok", async { Ok(()) }).await.unwrap();
        }
        assert_eq!(limits.concurrency(), 3);
        assert_eq!(limits.permits.available_permits(), 3);
        for _ in 0..3 {
            limits.throttled();
            limits.forget_last_cut();
        }
        assert_eq!(limits.concurrency(), 1, "never below one");
        assert_eq!(limits.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_few_throttled_answers_among_many_keep_the_bound() {
        let limits = Limits::new(32, Duration::from_secs(1), false);
        for _ in 0..80 {
            limits.call("ok", async { Ok(()) }).await.unwrap();
        }
        for _ in 0..9 {
            limits.throttled();
        }
        assert_eq!(
            limits.concurrency(),
            32,
            "9 of 80 answers is one project's quota"
        );
        limits.throttled();
        assert_eq!(
            limits.concurrency(),
            16,
            "10 of 80 is the API throttling everyone"
        );
    }
}
