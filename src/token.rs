//! `fleetctx token`: serve an ExecCredential from the cache, or refresh it once
//! across every process that asks at the same moment.
//!
//! A provider (one module per cloud) says how to key and how to mint; this module
//! owns the cache protocol: check, lock, check again, mint, write.

use std::future::Future;
use std::time::Duration;

use crate::cache::{self, CacheKey, Entry, Secret, TokenCache};
use crate::error::{Error, Result};

/// A freshly minted bearer token.
pub struct Minted {
    pub token: Secret,
    /// Unix seconds: when the token stops working (or should stop being used).
    pub expires_at: i64,
}

/// What a cloud provides to the token command: each cloud's `token.rs`
/// (`GkeToken`, `EksToken`, `AksToken`).
pub trait TokenSource {
    /// The cache key: everything that selects the identity or changes the token.
    /// Must be cheap (environment and `stat` only): it runs on every cache hit.
    fn cache_key(&self) -> CacheKey;
    /// A human description of the identity, stored with the entry (no secrets).
    fn identity(&self) -> String;
    /// Makes a new token. May use the cache for intermediate credentials.
    fn mint(&self, context: &MintContext<'_>) -> impl Future<Output = Result<Minted>>;
    /// For a key that also covers files the mint itself rewrites (the Azure
    /// CLI's token cache): the part that picks the identity. When it is the
    /// same after the mint as before, the token is also stored under the key
    /// as it stands after, so the next call is a hit.
    fn identity_key(&self) -> Option<CacheKey> {
        None
    }
}

/// What a provider may use while minting.
pub struct MintContext<'a> {
    /// The cache, for intermediate credentials (assumed-role sessions); `None`
    /// with `--no-cache`.
    pub cache: Option<&'a TokenCache>,
    pub options: &'a TokenOptions,
}

#[derive(Clone, Debug)]
pub struct TokenOptions {
    pub use_cache: bool,
    /// Never hand out a token with less than this left.
    pub min_ttl: Duration,
    pub lock_timeout: Duration,
    /// Limit for each network step.
    pub timeout: Duration,
}

// The flags every `token` subcommand takes (each cloud flattens them into its
// own; no doc comment: it would become the subcommand's help text).
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// Bypass the token cache: always mint, store nothing.
    #[arg(long)]
    pub no_cache: bool,
    /// Never serve a cached token with less than this many seconds left.
    #[arg(
        long,
        env = "FLEETCTX_MIN_TTL",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub min_ttl: u64,
    /// How long to wait for another fleetctx that is refreshing the same token.
    #[arg(
        long,
        env = "FLEETCTX_LOCK_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub lock_timeout: u64,
    /// Limit for each network call.
    #[arg(
        long,
        env = "FLEETCTX_TIMEOUT",
        default_value_t = 20,
        value_name = "SECONDS"
    )]
    pub timeout: u64,
}

impl CacheArgs {
    /// The plain options the token flow takes.
    pub fn options(&self) -> TokenOptions {
        TokenOptions {
            use_cache: !self.no_cache,
            min_ttl: Duration::from_secs(self.min_ttl),
            lock_timeout: Duration::from_secs(self.lock_timeout),
            timeout: Duration::from_secs(self.timeout.max(1)),
        }
    }
}

/// A token ready to print: the secret and its RFC 3339 expiry.
pub struct Credential {
    pub token: Secret,
    pub expiration: String,
    /// The same instant, in Unix seconds.
    pub expires_at: i64,
}

/// The whole token flow. The cache-hit path is: compute the key, read one file.
pub fn credential<S: TokenSource>(source: &S, options: &TokenOptions) -> Result<Credential> {
    let key = source.cache_key();
    let cache = options.use_cache.then(TokenCache::locate).flatten();
    let Some(cache) = cache else {
        return mint_now(source, &key, None, options).map(Credential::from);
    };
    let fresh_until = || cache::now() + options.min_ttl.as_secs() as i64;
    if let Some(hit) = cache.get(&key, fresh_until()) {
        return Ok(hit.into());
    }

    // Miss: one process refreshes, the others wait for its result. What picks
    // the identity is read now, next to the key, and again after the mint.
    let identity = source.identity_key();
    let what = format!("the {} token for {}", key.kind(), source.identity());
    let _lock = cache.lock_or_warn(&key, options.lock_timeout, &what);
    if let Some(hit) = cache.get(&key, fresh_until()) {
        return Ok(hit.into());
    }
    let entry = mint_now(source, &key, Some(&cache), options)?;
    if identity.is_none() {
        cache::put_or_warn(&cache, &key, &entry);
    } else if source.identity_key() == identity {
        cache::put_or_warn(&cache, &key, &entry);
        let after = source.cache_key();
        if after != key {
            cache::put_or_warn(&cache, &after, &entry);
        }
    }
    // Else the identity changed while this process waited or minted (another
    // `az login`): whose token this is is unsure, so it is served once, not kept.
    Ok(entry.into())
}

fn mint_now<S: TokenSource>(
    source: &S,
    key: &CacheKey,
    cache: Option<&TokenCache>,
    options: &TokenOptions,
) -> Result<Entry> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new("could not start the async runtime").cause(e))?;
    let context = MintContext { cache, options };
    let minted = runtime.block_on(source.mint(&context))?;
    Ok(Entry::new(
        key,
        source.identity(),
        minted.expires_at,
        minted.token,
    ))
}

impl From<Entry> for Credential {
    fn from(entry: Entry) -> Self {
        Credential {
            token: entry.secret,
            expiration: entry.expiration,
            expires_at: entry.expires_at,
        }
    }
}

/// Whether a failed attempt is worth another: `No`, `Yes` (after the next
/// exponential delay), or `After` what the server asked for (`Retry-After`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    No,
    Yes,
    After(Duration),
}

impl From<bool> for Retry {
    fn from(transient: bool) -> Self {
        if transient { Retry::Yes } else { Retry::No }
    }
}

/// The longest wait a `Retry-After` may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Runs `attempt` until it succeeds, fails for good, or `tries` run out; waits
/// 200 ms, 400 ms, ... between tries, or what the server asked for (at most
/// 10 s). `attempt` says whether a failure is worth another try.
pub async fn with_retries<T, R, F, Fut>(tries: u32, mut attempt: F) -> Result<T>
where
    R: Into<Retry>,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, (Error, R)>>,
{
    let mut delay = Duration::from_millis(200);
    let mut left = tries.max(1);
    loop {
        left -= 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err((error, retry)) => {
                let wait = match retry.into() {
                    Retry::No => return Err(error),
                    _ if left == 0 => return Err(error),
                    Retry::Yes => delay,
                    Retry::After(asked) => asked.min(MAX_RETRY_AFTER).max(delay),
                };
                eprintln!(
                    "fleetctx: {}; retrying in {} ms",
                    error.message(),
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
                delay *= 2;
            }
        }
    }
}

/// Bounds a network step: kubectl never times the plugin out, so we must.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    step: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result,
        Err(_) => Err(
            Error::new(format!("timed out after {}s {what}", limit.as_secs()))
                .hint("check your network or proxy; set FLEETCTX_TIMEOUT (seconds) to wait longer"),
        ),
    }
}
