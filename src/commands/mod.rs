//! The command line, cargo's way: one file per subcommand, each holding its clap
//! definition (the doc comments are the help text) and a small `exec` that builds
//! plain options and calls the library. Every cloud adds its own flags and its
//! `token` subcommand from the registry (`cloud::CLOUDS`); nothing here names one.

mod cache;
mod completions;
mod kubeconfig;
mod list;
mod status;
mod sync;
mod token;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use completions::{COMPLETE_VAR, complete_if_asked, completion_script};

use crate::error::{Error, Exit, Result};

/// Every cluster you can reach, in your kubeconfig, with credentials that cost
/// milliseconds.
#[derive(Debug, Parser)]
#[command(name = "fleetctx", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
struct Output {
    /// Print a debug line for every API call (method, host, outcome, duration; never a secret).
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "quiet",
        display_order = 900
    )]
    verbose: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true, display_order = 901)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Discover every cluster you can reach and merge them into kubeconfig.
    ///
    /// Writes a cluster, a user (which runs `fleetctx token`) and a context per
    /// cluster; keeps every entry it does not own; prunes entries of clusters that
    /// are gone, for sources that answered completely. Sources come from the flags,
    /// else from config.yaml, else gcloud's default project and the default AWS
    /// profile across every region.
    ///
    /// Example: fleetctx sync --gke-all-projects --eks-profile dev --eks-profile prod
    Sync(sync::SyncArgs),
    /// List the clusters fleetctx manages in your kubeconfig (foreign entries are not shown).
    ///
    /// Example: fleetctx list -o json | jq -r '.[] | select(.provider == "eks") | .context'
    List(list::ListArgs),
    /// Write one context alone in a small kubeconfig (0600, in the cache directory) and print its path.
    ///
    /// kubectl then parses three entries instead of the whole fleet.
    ///
    /// Example: export KUBECONFIG=$(fleetctx kubeconfig eks_prod_eu-west-1_api)
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Start $SHELL with KUBECONFIG pointing at one context alone: one context per shell.
    ///
    /// Example: fleetctx shell gke_my-project_europe-west1_prod
    Shell(kubeconfig::KubeconfigArgs),
    /// Every cluster's state: reachable, authenticated, version, node, namespace
    /// and pod counts, latency.
    ///
    /// Probes the managed contexts of the kubeconfig (or, with --discover, what
    /// sync would scan) concurrently; a failing cluster shows why and never stops
    /// the report. Exits 3 when any cluster failed.
    ///
    /// Example: fleetctx status --context 'eks_*' -o json
    Status(status::StatusArgs),
    /// Show or clear the token cache (identities and expiry; never a token).
    ///
    /// Example: fleetctx cache clear --provider eks
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    ///
    /// Example: fleetctx completions bash > ~/.local/share/bash-completion/completions/fleetctx
    Completions(completions::CompletionsArgs),
}

/// The whole command line: the fixed commands, with `token` and every cloud's
/// scan flags added from the registry.
pub fn command() -> clap::Command {
    Cli::command()
        .subcommand(token::command(None).display_order(0))
        .mut_subcommand("sync", crate::cloud::scan_flags)
        .mut_subcommand("status", crate::cloud::scan_flags)
}

/// The command line that parses `args`. kubectl runs `fleetctx token ...` for
/// every call, so that gets the `token` tree alone: the rest is never built.
pub fn command_for(args: &[std::ffi::OsString]) -> clap::Command {
    if args.get(1).is_some_and(|a| a == "token") {
        let root = clap::Command::new("fleetctx").version(env!("CARGO_PKG_VERSION"));
        let cloud = args
            .get(2)
            .and_then(|a| a.to_str())
            .and_then(crate::cloud::by_name);
        Output::augment_args(root).subcommand(token::command(cloud))
    } else {
        command()
    }
}

/// Runs a parsed command line.
pub fn run(matches: &ArgMatches) -> Result<Exit> {
    let verbose = matches.get_flag("verbose");
    let quiet = matches.get_flag("quiet");
    if let Some(("token", args)) = matches.subcommand() {
        return token::exec(args);
    }
    let cli = Cli::from_arg_matches(matches).map_err(|e| Error::new(e.to_string()))?;
    match cli.command {
        Command::Sync(args) => {
            let flags = matches
                .subcommand_matches("sync")
                .expect("sync was matched");
            sync::exec(args, flags, verbose, quiet)
        }
        Command::List(args) => list::exec(args),
        Command::Status(args) => {
            let flags = matches
                .subcommand_matches("status")
                .expect("status was matched");
            status::exec(args, flags, quiet)
        }
        Command::Kubeconfig(args) => kubeconfig::exec(args),
        Command::Shell(args) => kubeconfig::shell(args, quiet),
        Command::Cache(command) => cache::exec(command, quiet),
        Command::Completions(args) => completions::exec(args),
    }
}
