//! `fleetctx list`: the contexts fleetctx manages.

use std::path::PathBuf;

use clap::Args;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};

use crate::error::{Exit, Result, write_stdout};
use crate::kubeconfig;
use crate::list::{self, Format};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format; json and yaml are stable shapes for scripts.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Read this kubeconfig (default: config.yaml's kubeconfig, else the files kubectl reads).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Show only these contexts.
    #[arg(value_name = "CONTEXT", add = ArgValueCompleter::new(complete_contexts))]
    pub contexts: Vec<String>,
}

pub fn exec(args: ListArgs) -> Result<Exit> {
    let fleet = crate::settings::fleet_kubeconfig(args.kubeconfig.as_deref())?;
    let mut entries = list::managed(fleet.as_deref())?;
    if !args.contexts.is_empty() {
        entries.retain(|m| args.contexts.contains(&m.context));
    }
    write_stdout(&list::render(&entries, args.output)?)
}

/// Context names from the local kubeconfig only: no credentials, no network, and
/// on a fleet-sized file, no parse while its index is fresh.
pub fn complete_contexts(current: &std::ffi::OsStr) -> Vec<CompletionCandidate> {
    let prefix = current.to_string_lossy();
    let fleet = crate::settings::fleet_kubeconfig(None).unwrap_or_default();
    let paths = kubeconfig::listed_paths(fleet.as_deref()).unwrap_or_default();
    let index = crate::cache::TokenCache::locate().map(|c| c.dir().join("names"));
    let mut names: Vec<String> = kubeconfig::names::context_names(&paths, index.as_deref())
        .into_iter()
        .filter(|n| n.starts_with(prefix.as_ref()))
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}
