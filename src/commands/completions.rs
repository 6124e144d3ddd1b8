//! `fleetctx completions SHELL`, and answering a shell that asks for candidates.

use clap::{Args, ValueEnum};

use crate::error::{Error, Exit, Result, write_stdout};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print a script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
}

/// The environment variable through which shells ask fleetctx for completions.
pub const COMPLETE_VAR: &str = "FLEETCTX_COMPLETE";

/// Answers a shell's completion request and exits, when the shell is asking.
/// Costs one environment lookup otherwise.
pub fn complete_if_asked() {
    clap_complete::CompleteEnv::with_factory(super::command)
        .var(COMPLETE_VAR)
        .bin("fleetctx")
        .completer("fleetctx")
        .complete();
}

/// The registration script for a shell: it calls `fleetctx` back for candidates,
/// so completions follow the same clap definitions as the help text.
pub fn completion_script(shell: Shell) -> Result<String> {
    let name = shell
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let shells = clap_complete::env::Shells::builtins();
    let completer = shells
        .completer(&name)
        .ok_or_else(|| Error::new(format!("no completion support for {name}")))?;
    let mut script = Vec::new();
    completer
        .write_registration(
            COMPLETE_VAR,
            "fleetctx",
            "fleetctx",
            "fleetctx",
            &mut script,
        )
        .map_err(|e| Error::new("could not write the completion script").cause(e))?;
    Ok(String::from_utf8_lossy(&script).into_owned())
}

pub fn exec(args: CompletionsArgs) -> Result<Exit> {
    write_stdout(completion_script(args.shell)?.trim_end())
}
