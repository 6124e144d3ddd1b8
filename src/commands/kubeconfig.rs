//! `fleetctx kubeconfig CONTEXT` and `fleetctx shell CONTEXT`: one context alone
//! in a small kubeconfig, so kubectl parses three entries, not the whole fleet.

use std::path::PathBuf;

use clap::Args;
use clap_complete::engine::ArgValueCompleter;

use super::list::complete_contexts;
use crate::cache::TokenCache;
use crate::error::{Error, Exit, Result, write_stdout};
use crate::kubeconfig::{self, single};

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The context to write alone.
    #[arg(value_name = "CONTEXT", add = ArgValueCompleter::new(complete_contexts))]
    pub context: String,
    /// Read this kubeconfig (default: config.yaml's kubeconfig, else the files kubectl reads).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// The one-context file for `args.context`, written under the cache directory.
fn write_single(args: &KubeconfigArgs) -> Result<PathBuf> {
    let fleet = crate::settings::fleet_kubeconfig(args.kubeconfig.as_deref())?;
    let files = kubeconfig::load_all(fleet.as_deref())?;
    let doc = single::extract(&files, &args.context)?;
    let dir = TokenCache::locate()
        .ok_or_else(|| Error::new("cannot find the cache directory").hint("set XDG_CACHE_HOME"))?
        .dir()
        .join("kubeconfigs");
    single::write(&dir, &args.context, &doc)
}

pub fn exec(args: KubeconfigArgs) -> Result<Exit> {
    let path = write_single(&args)?;
    write_stdout(&path.display().to_string())
}

/// Replaces this process with `$SHELL` (else `/bin/sh`), `KUBECONFIG` pointing at
/// the context alone and `FLEETCTX_CONTEXT` naming it.
pub fn shell(args: KubeconfigArgs, quiet: bool) -> Result<Exit> {
    use std::os::unix::process::CommandExt;
    let path = write_single(&args)?;
    let shell = std::env::var_os("SHELL")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".into());
    if !quiet {
        eprintln!(
            "fleetctx: {} with context {} (KUBECONFIG={}); exit to leave",
            PathBuf::from(&shell).display(),
            args.context,
            path.display()
        );
    }
    let error = std::process::Command::new(&shell)
        .env("KUBECONFIG", &path)
        .env("FLEETCTX_CONTEXT", &args.context)
        .exec();
    Err(Error::new(format!(
        "could not start {}",
        PathBuf::from(&shell).display()
    ))
    .cause(error)
    .hint("set SHELL to your shell's path"))
}
