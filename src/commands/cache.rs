//! `fleetctx cache list|clear`: what the token cache holds, never a token.

use clap::Subcommand;

use crate::cache::TokenCache;
use crate::cloud::CLOUDS;
use crate::error::{Error, Exit, Result, write_stdout};
use crate::list::{self, Format};

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// What is cached: key, provider, identity, expiry.
    ///
    /// Example: fleetctx cache list -o json
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove cached tokens (and assumed-role sessions), all or one provider's.
    ///
    /// Example: fleetctx cache clear --provider gke
    Clear {
        /// Only this provider's entries (eks includes assumed-role sessions).
        #[arg(long, value_name = "CLOUD", value_parser = cloud_names())]
        provider: Option<String>,
    },
}

/// The registered clouds' names, for `--provider`.
fn cloud_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(CLOUDS.iter().map(|c| c.name()))
}

pub fn exec(command: CacheCommand, quiet: bool) -> Result<Exit> {
    match command {
        CacheCommand::List { output } => write_stdout(&cache_listing(output)?),
        CacheCommand::Clear { provider } => clear_cache(provider.as_deref(), quiet),
    }
}

fn cache_listing(output: Format) -> Result<String> {
    #[derive(serde::Serialize)]
    struct Row {
        key: String,
        provider: String,
        identity: String,
        expires: String,
        expired: bool,
    }
    let Some(cache) = TokenCache::locate() else {
        return Err(Error::new("cannot find the cache directory").hint("set XDG_CACHE_HOME"));
    };
    let now = crate::cache::now();
    let rows: Vec<Row> = cache
        .entries()
        .into_iter()
        .map(|(path, entry)| Row {
            key: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            provider: entry.kind,
            identity: entry.identity,
            expires: entry.expiration,
            expired: entry.expires_at <= now,
        })
        .collect();
    list::render_rows(
        &rows,
        output,
        &["KEY", "PROVIDER", "IDENTITY", "EXPIRES"],
        |r| {
            let expires = if r.expired {
                format!("{} (expired)", r.expires)
            } else {
                r.expires.clone()
            };
            [
                r.key.clone(),
                r.provider.clone(),
                r.identity.clone(),
                expires,
            ]
        },
    )
}

fn clear_cache(provider: Option<&str>, quiet: bool) -> Result<Exit> {
    let owns = |kind: &str| match provider.and_then(crate::cloud::by_name) {
        Some(cloud) => cloud.cache_kinds().contains(&kind),
        None => true,
    };
    let Some(cache) = TokenCache::locate() else {
        return Ok(Exit::Success);
    };
    let mut removed = 0;
    for (path, kind) in cache.files() {
        if owns(&kind) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += usize::from(path.extension().is_some_and(|x| x == "json")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::new(format!("could not remove {}", path.display()))
                        .cause(e)
                        .hint(format!(
                            "remove it by hand, or the whole directory {}",
                            cache.dir().display()
                        )));
                }
            }
        }
    }
    if !quiet {
        eprintln!(
            "fleetctx: removed {removed} cache entries from {}",
            cache.dir().display()
        );
    }
    Ok(Exit::Success)
}
