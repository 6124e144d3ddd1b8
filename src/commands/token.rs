//! `fleetctx token NAME`: the kubectl exec credential plugin, one subcommand per
//! cloud (`cloud::Cloud::token_command`).

use clap::ArgMatches;

use crate::cloud::{CLOUDS, Cloud};
use crate::error::{Error, Exit, Result, warn, write_stdout};
use crate::exec_credential;

/// `token`, with every cloud's subcommand, or only `cloud`'s.
pub fn command(cloud: Option<&dyn Cloud>) -> clap::Command {
    let mut command = clap::Command::new("token")
        .about("kubectl exec credential plugin: print an ExecCredential for a cluster")
        .long_about(
            "kubectl exec credential plugin: print an ExecCredential for a cluster.\n\n\
             Tokens come from an on-disk cache shared by every process; a miss refreshes \
             once, however many kubectl processes ask at the same moment.",
        )
        .subcommand_required(true)
        .arg_required_else_help(true);
    match cloud {
        Some(cloud) => command.subcommand(cloud.token_command()),
        None => {
            for cloud in CLOUDS {
                command = command.subcommand(cloud.token_command());
            }
            command
        }
    }
}

/// Prints the ExecCredential in the apiVersion kubectl asked for: one JSON object
/// on stdout, nothing else.
pub fn exec(matches: &ArgMatches) -> Result<Exit> {
    let (name, args) = matches
        .subcommand()
        .ok_or_else(|| Error::new("token needs a cloud"))?;
    let cloud =
        crate::cloud::by_name(name).ok_or_else(|| Error::new(format!("no cloud called {name}")))?;
    let exec_info = std::env::var("KUBERNETES_EXEC_INFO").ok();
    let (api_version, warning) = exec_credential::requested_api_version(exec_info.as_deref());
    if let Some(warning) = warning {
        warn(warning);
    }
    let credential = cloud.credential(args)?;
    let json = exec_credential::render(
        api_version,
        credential.token.expose(),
        &credential.expiration,
    );
    write_stdout(&json)
}
