//! Keys and provider secrets come in from a prompt without echo, standard input or
//! a file; never from the command line, where `ps` and shell history would keep them.

use std::io::{IsTerminal as _, Read as _};
use std::path::Path;

use crate::error::{CliError, Result};

/// Where a secret is read from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    Stdin,
    File(&'a Path),
    Prompt(&'a str),
}

pub fn read(source: Source<'_>) -> Result<String> {
    let raw = match source {
        Source::File(path) => std::fs::read_to_string(path)
            .map_err(CliError::io(format!("reading {}", path.display())))?,
        Source::Stdin => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(CliError::io("reading standard input"))?;
            s
        }
        Source::Prompt(prompt) => {
            if !std::io::stdin().is_terminal() {
                return Err(CliError::Usage(
                    "no terminal to prompt on: pass the secret with --*-stdin or --*-file".into(),
                ));
            }
            rpassword::prompt_password(prompt).map_err(CliError::io("reading the prompt"))?
        }
    };
    let secret = raw.trim_end_matches(['\n', '\r']).to_owned();
    if secret.trim().is_empty() {
        return Err(CliError::Usage("the secret given is empty".into()));
    }
    Ok(secret)
}

/// The source the flags name, or a prompt when they name none.
pub fn source<'a>(stdin: bool, file: Option<&'a Path>, prompt: &'a str) -> Source<'a> {
    match (stdin, file) {
        (_, Some(f)) => Source::File(f),
        (true, None) => Source::Stdin,
        (false, None) => Source::Prompt(prompt),
    }
}
