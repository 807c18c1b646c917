//! Switchyard's admin command line over the REST API of any Switchyard, embedded or
//! deployed: sign in once (`login`), then manage accounts, keys, provider keys,
//! rules, credit and alert rules, read bills, logs and the audit trail, and keep a main
//! account's whole tree as a YAML file (`export`, `diff`, `apply`).
//!
//! The `switchyard` binary parses the command line with [`Global`] and [`Command`]
//! and calls [`run`]; decisions (plan order, diffs, bounds) are plain functions in
//! [`tree`], the HTTP client is at the edge ([`client`]).

pub mod client;
mod commands;
pub mod config;
pub mod error;
pub mod output;
mod secret;
pub mod tree;
pub mod yaml;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use error::CliError;
use output::Format;

/// Flags every admin command takes.
#[derive(Args, Clone, Debug, Default)]
pub struct Global {
    /// The server's REST API (overrides SWITCHYARD_URL and the profile's).
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Which saved login to use (default: the last one logged in).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Output: a table for people, JSON or YAML for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Save a server URL and an API key (read without echo) as a profile.
    #[command(
        after_help = "Examples:\n  switchyard login --url http://127.0.0.1:8080\n  switchyard login --url https://sy.example.com --profile prod --key-file ~/sy-key\n  cat key | switchyard login --url http://127.0.0.1:8080 --key-stdin"
    )]
    Login(commands::session::LoginArgs),
    /// The server: snapshot version, configuration revision, connected data planes.
    #[command(after_help = "Example:\n  switchyard status --output json")]
    Status,
    /// Accounts of the caller's tree.
    #[command(subcommand)]
    Accounts(commands::accounts::AccountsCommand),
    /// The caller's own API keys.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// The main account's upstream provider keys (secrets are never shown).
    #[command(subcommand, name = "provider-keys")]
    ProviderKeys(commands::provider_keys::ProviderKeysCommand),
    /// The main account's rules (model and level mapping, switch-over, limits, pricing).
    #[command(subcommand)]
    Rules(commands::rules::RulesCommand),
    /// Credit an account holds and passes on.
    #[command(subcommand)]
    Credit(commands::credit::CreditCommand),
    /// Usage rollups of the caller's tree.
    #[command(
        after_help = "Examples:\n  switchyard bill\n  switchyard bill --from 2026-11-01 --to 2026-11-30 --granularity month\n  switchyard bill --by provider_key --output json"
    )]
    Bill(commands::usage::BillArgs),
    /// Calls made in the caller's tree, newest first.
    #[command(
        after_help = "Examples:\n  switchyard logs --limit 20\n  switchyard logs --model gpt-4o --status 429\n  switchyard logs --follow"
    )]
    Logs(commands::usage::LogsArgs),
    /// Changes made in the tree, newest first, secrets redacted.
    #[command(
        after_help = "Examples:\n  switchyard audit --limit 50\n  switchyard audit --output yaml"
    )]
    Audit(commands::usage::AuditArgs),
    /// Alert rules (credit share, daily spend, unhealthy provider keys, data plane
    /// lag) delivered as signed webhooks, and their delivery log.
    #[command(subcommand)]
    Alerts(commands::alerts::AlertsCommand),
    /// Write a main account's tree (accounts, policies, billing, credit, provider keys
    /// without secrets, rules) as YAML.
    #[command(after_help = "Example:\n  switchyard export > tree.yaml")]
    Export(tree::cmd::ExportArgs),
    /// What `apply` would change, one line each.
    #[command(after_help = "Example:\n  switchyard diff -f tree.yaml")]
    Diff(tree::cmd::FileArgs),
    /// Make the tree what the file says: creates and updates (deletes only with
    /// --prune), parents widened before children, children narrowed before parents.
    #[command(
        after_help = "Examples:\n  switchyard apply -f tree.yaml\n  OPENAI_KEY=sk-... switchyard apply -f tree.yaml --prune"
    )]
    Apply(tree::cmd::ApplyArgs),
    /// Shell completions.
    #[command(
        after_help = "Examples:\n  switchyard completions bash > /etc/bash_completion.d/switchyard\n  switchyard completions zsh > \"${fpath[1]}/_switchyard\""
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What a command needs from its surroundings.
pub struct Ctx {
    pub global: Global,
    pub config_path: PathBuf,
    env: fn(&str) -> Option<String>,
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Run one admin command; `app` is the whole command line (for completions).
/// Prints the outcome, or the error on stderr, and answers the exit code.
pub async fn run(
    global: Global,
    command: Command,
    app: impl FnOnce() -> clap::Command,
) -> ExitCode {
    let outcome = async {
        let ctx = Ctx {
            global,
            config_path: config::path(process_env)?,
            env: process_env,
        };
        commands::dispatch(&ctx, command, app).await
    }
    .await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::eprint(&format!("switchyard: {e}\n"));
            ExitCode::from(e.exit_code())
        }
    }
}
