//! The clouds fleetctx reaches, one folder each, behind one trait.
//!
//! A cloud says which flags and `config.yaml` section it reads, what it would
//! scan, how it discovers one source (answering `SourceResult`s with the exec
//! arguments of each entry), how it mints a token, and which cache entries are
//! its own. `sync`, `list`, `cache` and the command line iterate over `CLOUDS`
//! and name none of them. `README.md` beside this file says what a new cloud
//! implements.

pub mod aks;
pub mod eks;
pub mod gke;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use clap::{ArgMatches, Command};
use yaml_serde::Value;

use crate::discovery::{Found, Limits, Progress, SourceResult};
use crate::error::{Error, Result};
use crate::token::{Credential, TokenOptions};

/// Every cloud, in the order they are scanned, listed and offered in `--help`.
pub static CLOUDS: &[&dyn Cloud] = &[&gke::Gke, &eks::Eks, &aks::Aks];

/// The registered cloud called `name` (a marker's `provider`).
pub fn by_name(name: &str) -> Option<&'static dyn Cloud> {
    CLOUDS.iter().copied().find(|c| c.name() == name)
}

/// The flags that name what to scan: every cloud's, and a `--no-NAME` for each
/// (`sync` has them, and so has the library's `Sources`).
pub fn scan_flags(mut command: Command) -> Command {
    for cloud in CLOUDS {
        command = command.next_help_heading(cloud.name().to_uppercase());
        command = cloud.scan_args(command).arg(
            clap::Arg::new(format!("no-{}", cloud.name()))
                .long(format!("no-{}", cloud.name()))
                .action(clap::ArgAction::SetTrue)
                .help(format!("Do not scan {}.", cloud.name().to_uppercase())),
        );
    }
    command.next_help_heading(None)
}

/// What each cloud scans, from `scan_flags`' matches over config.yaml. Naming
/// sources of one cloud on the command line scans only that cloud.
pub fn plans(
    flags: &ArgMatches,
    settings: &crate::settings::Settings,
) -> Result<Vec<(&'static str, Box<dyn Scan>)>> {
    let named: Vec<&str> = CLOUDS
        .iter()
        .filter(|c| c.named(flags))
        .map(|c| c.name())
        .collect();
    let mut scans = Vec::new();
    for cloud in CLOUDS {
        let off = flags.get_flag(&format!("no-{}", cloud.name()));
        if off || !(named.is_empty() || named.contains(&cloud.name())) {
            continue;
        }
        if let Some(scan) = cloud.plan(flags, settings.section(cloud.name()))? {
            scans.push((cloud.name(), scan));
        }
    }
    Ok(scans)
}

/// One cloud.
pub trait Cloud: Sync {
    /// `gke`, `eks`: the `token NAME` subcommand, the `--no-NAME` flag, the
    /// `config.yaml` section and every entry marker's `provider`.
    fn name(&self) -> &'static str;
    /// The marker key naming an entry's owner (`project`, `account`): a template
    /// placeholder and a column of `list`.
    fn owner_key(&self) -> &'static str;
    /// The default entry name template for a cluster it found.
    fn default_template(&self, found: &Found) -> &'static str;
    /// The cache kinds of this cloud's entries (`cache clear --provider NAME`).
    fn cache_kinds(&self) -> &'static [&'static str];
    /// Adds this cloud's scan flags to a command that scans (`sync`).
    fn scan_args(&self, command: Command) -> Command;
    /// Whether the command line names sources of this cloud: naming only one
    /// cloud's sources scans only that cloud.
    fn named(&self, flags: &ArgMatches) -> bool;
    /// What to scan, from the flags and this cloud's `config.yaml` section; `None`
    /// when the section switches it off.
    fn plan(
        &self,
        flags: &ArgMatches,
        section: Option<Section<'_>>,
    ) -> Result<Option<Box<dyn Scan>>>;
    /// The `token NAME` subcommand.
    fn token_command(&self) -> Command;
    /// `token NAME`: the credential for the parsed subcommand.
    fn credential(&self, args: &ArgMatches) -> Result<Credential>;
}

/// A cloud's section of `config.yaml`.
#[derive(Clone, Copy)]
pub struct Section<'a> {
    pub file: &'a Path,
    pub value: &'a Value,
}

impl Section<'_> {
    /// The section as the cloud's own settings type (unknown keys refused).
    pub fn parse<T: serde::de::DeserializeOwned>(&self, cloud: &str) -> Result<T> {
        let value = match self.value {
            Value::Null => Value::Mapping(Default::default()),
            other => other.clone(),
        };
        yaml_serde::from_value(value).map_err(|e| {
            Error::new(format!(
                "the `{cloud}` section of settings file {} is not valid",
                self.file.display()
            ))
            .because(e.to_string())
            .hint("see the README's `config.yaml` section for the keys fleetctx reads")
        })
    }
}

/// What every scan of one sync shares.
pub struct ScanContext<'a> {
    pub limits: &'a Limits,
    pub progress: &'a Progress,
    /// Sources were chosen (flags or settings): missing credentials are a
    /// failure. Defaults are skipped with a line instead.
    pub explicit: bool,
    pub token: &'a TokenOptions,
}

/// A future a scan answers with.
pub type Scanning<'a> = Pin<Box<dyn Future<Output = Discovered> + Send + 'a>>;

/// One cloud's part of a sync.
pub trait Scan: Send + Sync {
    /// Whether the sources were named (flags or settings) rather than defaulted.
    fn explicit(&self) -> bool;
    /// Work done before the async runtime starts (a cached token, say). `Err`
    /// ends the scan there: the cloud was skipped or failed.
    fn prepare(&mut self, context: &ScanContext<'_>) -> Result<(), Discovered> {
        let _ = context;
        Ok(())
    }
    /// Every source, concurrently under `context.limits`.
    fn discover<'a>(&'a self, context: &'a ScanContext<'a>) -> Scanning<'a>;
}

/// What one cloud's scan found.
#[derive(Debug, Default)]
pub struct Discovered {
    pub results: Vec<SourceResult>,
    /// Lines for a cloud skipped because nothing is set up.
    pub skipped: Vec<String>,
    /// The cloud was reached (credentials found): an entry whose marker source is
    /// the cloud's own name (a shared user) may be pruned when every source
    /// answered completely.
    pub scanned: bool,
    /// The sources are every source there is (a complete project listing): an
    /// entry of a source of this cloud that is not among them is gone.
    pub listing_complete: bool,
}

impl Discovered {
    pub fn skipped(line: String) -> Discovered {
        Discovered {
            skipped: vec![line],
            ..Discovered::default()
        }
    }

    pub fn failed(source: String, error: Error) -> Discovered {
        Discovered {
            results: vec![SourceResult::failed(source, error)],
            ..Discovered::default()
        }
    }
}
