//! `fleetctx list`: the contexts fleetctx manages.

use std::path::PathBuf;

use clap::Args;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};

use crate::error::{Exit, Result, write_stdout};
use crate::kubeconfig::{self, Kind};
use crate::list::{self, Format};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format; json and yaml are stable shapes for scripts.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Read this kubeconfig (default: the files kubectl reads).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Show only these contexts.
    #[arg(value_name = "CONTEXT", add = ArgValueCompleter::new(complete_contexts))]
    pub contexts: Vec<String>,
}

pub fn exec(args: ListArgs) -> Result<Exit> {
    let mut entries = list::managed(args.kubeconfig.as_deref())?;
    if !args.contexts.is_empty() {
        entries.retain(|m| args.contexts.contains(&m.context));
    }
    write_stdout(&list::render(&entries, args.output)?)
}

/// Context names from the local kubeconfig only: no credentials, no network.
pub fn complete_contexts(current: &std::ffi::OsStr) -> Vec<CompletionCandidate> {
    let prefix = current.to_string_lossy();
    let mut names: Vec<String> = kubeconfig::load_all(None)
        .unwrap_or_default()
        .iter()
        .flat_map(|(_, doc)| kubeconfig::entry_names(doc, Kind::Context))
        .filter(|n| n.starts_with(prefix.as_ref()))
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}
