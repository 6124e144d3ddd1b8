//! `fleetctx sync`: its flags (each cloud adds its own), merged with config.yaml
//! into plain `SyncOptions` for the library's `sync::run`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args};

use crate::error::{Error, Exit, Result};
use crate::settings::Settings;
use crate::sync::SyncOptions;
use crate::token::TokenOptions;

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Settings file (default: config.yaml in the user's config directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The kubeconfig to write (default: kubectl's rule: KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Entry names, from {provider} {project} {account} {profile} {location} {region} {name}
    /// [default: gke_{project}_{location}_{name} and eks_{profile}_{region}_{name}].
    #[arg(long, value_name = "TEMPLATE")]
    pub name_template: Option<String>,
    /// The command users run for credentials (default: this fleetctx's absolute path).
    #[arg(long, value_name = "COMMAND")]
    pub exec_command: Option<String>,
    /// Most API calls in flight at once.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Keep entries of clusters that no longer exist.
    #[arg(long)]
    pub no_prune: bool,
    /// Take over same-named entries fleetctx did not write.
    #[arg(long)]
    pub adopt: bool,
    /// Print what would be added, changed and removed; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `json`: print a report on stdout (each source's outcome, the changes per
    /// file, the exit code) for cron and CI; messages stay on stderr.
    #[arg(short, long, value_enum, default_value_t = Report::Text, value_name = "FORMAT")]
    pub output: Report,
    /// Limit for each API call.
    #[arg(
        long,
        env = "FLEETCTX_TIMEOUT",
        default_value_t = 20,
        value_name = "SECONDS"
    )]
    pub timeout: u64,
    /// How long to wait for kubectl's `<kubeconfig>.lock`.
    #[arg(
        long,
        env = "FLEETCTX_LOCK_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub lock_timeout: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Report {
    Text,
    Json,
}

/// Flags over settings over defaults.
pub fn exec(args: SyncArgs, flags: &ArgMatches, verbose: bool, quiet: bool) -> Result<Exit> {
    let settings = Settings::load(args.config.as_deref())?;
    let scans = crate::cloud::plans(flags, &settings)?;
    let exec_command = match args.exec_command.or(settings.exec_command) {
        Some(command) => command,
        None => exec_path()?.display().to_string(),
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    let lock_timeout = Duration::from_secs(args.lock_timeout);
    crate::sync::run(SyncOptions {
        scans,
        kubeconfig: args.kubeconfig.or(settings.kubeconfig),
        name_template: args.name_template.or(settings.name_template),
        exec_command,
        concurrency: args
            .concurrency
            .or(settings.concurrency)
            .unwrap_or(64)
            .max(1),
        timeout,
        lock_timeout,
        prune: !args.no_prune,
        adopt: args.adopt,
        dry_run: args.dry_run,
        json: args.output == Report::Json,
        verbose,
        quiet,
        token: TokenOptions {
            use_cache: true,
            min_ttl: Duration::from_secs(300),
            lock_timeout,
            timeout,
        },
    })
}

/// The path entries should run: the one this fleetctx was started through, when
/// it leads to this very binary. A package manager's `bin/fleetctx` symlink
/// (Homebrew, nix, asdf) then survives upgrades, where the versioned target
/// `current_exe` resolves to would vanish with the old version.
fn exec_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| {
        Error::new("could not find the path of this fleetctx")
            .cause(e)
            .hint("pass --exec-command")
    })?;
    let started_as = std::env::args_os().next().map(PathBuf::from);
    let candidate = started_as.and_then(|arg0| {
        if arg0.components().count() > 1 {
            std::path::absolute(&arg0).ok()
        } else {
            let paths = std::env::var_os("PATH")?;
            std::env::split_paths(&paths)
                .filter(|dir| dir.is_absolute())
                .map(|dir| dir.join(&arg0))
                .find(|p| p.is_file())
        }
    });
    let same_binary =
        |p: &PathBuf| std::fs::canonicalize(p).ok() == std::fs::canonicalize(&exe).ok();
    Ok(candidate.filter(same_binary).unwrap_or(exe))
}
