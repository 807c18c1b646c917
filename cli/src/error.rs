//! What can go wrong, and the exit code each gives.

use crate::yaml::Problem;

/// Exit codes: 0 ok, 1 refused (by the server, or a file the command will not
/// apply), 2 usage error, 3 the server cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with a refusal; its reason is the message.
    #[error("refused ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The rules changed between reading and writing them.
    #[error("{0}")]
    Conflict(String),
    /// No answer: connection refused, DNS, TLS, timeout.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered something that is not the API's shape.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The command line or the environment is not enough to go on.
    #[error("{0}")]
    Usage(String),
    /// A file that will not be applied: every problem, with its place.
    #[error("{file}: {} problem(s), nothing changed:\n{}", problems.len(), problems.iter().map(|p| format!("  {file}:{}:{}: {}", p.pos.line, p.pos.col, p.message)).collect::<Vec<_>>().join("\n"))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
    /// Reading or writing a local file.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused { .. }
            | CliError::Conflict(_)
            | CliError::Invalid { .. }
            | CliError::Protocol(_)
            | CliError::Io { .. } => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
        }
    }

    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
