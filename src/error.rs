//! One error type for the whole tool: what failed, why (a chain of causes), and
//! the next step for the user. Printed in one place, at the edge (`main.rs`).
//!
//! Messages are built from names, paths and upstream error text, never from
//! credentials: nothing that holds a token is ever formatted into an `Error`.

use std::fmt;

/// Process exit codes, documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked.
    Success = 0,
    /// The command could not do its job (no credentials, upstream refused, bad file).
    Failure = 1,
    /// The command line was wrong (clap's own code for usage errors).
    Usage = 2,
    /// `sync` wrote what it could, but at least one source failed.
    Partial = 3,
    /// A bug in fleetctx (a panic).
    Internal = 70,
}

#[derive(Debug)]
pub struct Error {
    message: String,
    causes: Vec<String>,
    hint: Option<String>,
    exit: Exit,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            causes: Vec::new(),
            hint: None,
            exit: Exit::Failure,
        }
    }

    /// Adds the next link of the cause chain, with the source's own chain after it.
    pub fn cause(mut self, cause: impl std::error::Error) -> Self {
        self.causes.push(cause.to_string());
        let mut source = cause.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !self.causes.iter().any(|c| c.contains(&text)) {
                self.causes.push(text);
            }
            source = s.source();
        }
        self
    }

    /// Adds a cause given as text (for upstream answers that are not `std::error::Error`s).
    pub fn because(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn exit(&self) -> Exit {
        self.exit
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for Error {
    /// `error: ...`, `  caused by: ...` lines, then `hint: ...`, as printed on stderr.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        for cause in &self.causes {
            write!(f, "\n  caused by: {cause}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Prints a warning on stderr in the same style as errors.
pub fn warn(message: impl fmt::Display) {
    eprintln!("warning: {message}");
}

/// Writes data to stdout; a closed pipe is a quiet success.
pub fn write_stdout(text: &str) -> Result<Exit> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => Ok(Exit::Success),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        Err(e) => Err(Error::new("could not write to stdout").cause(e)),
    }
}
