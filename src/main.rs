use std::process::ExitCode;

fn main() -> ExitCode {
    fleetctx::commands::complete_if_asked();
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error: {info}");
        eprintln!("hint: this is a bug in fleetctx; please report it with the command you ran");
        std::process::exit(fleetctx::error::Exit::Internal as i32);
    }));
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = fleetctx::commands::command_for(&args).get_matches_from(args);
    match fleetctx::commands::run(&matches) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(error.exit() as u8)
        }
    }
}
