//! `provider-keys list|show|add|update|enable|disable|delete|discover`. Secrets go
//! in from a prompt, standard input or a file and never come back out.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::{done, fields, show};
use crate::error::{CliError, Result};
use crate::output::{Table, cell};
use crate::{Ctx, secret};

#[derive(Args, Debug)]
pub struct SecretArgs {
    /// Read the secret from standard input.
    #[arg(long, conflicts_with = "secret_file")]
    pub secret_stdin: bool,
    /// Read the secret from this file.
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ProviderKeysCommand {
    /// The main account's provider keys.
    #[command(after_help = "Example:\n  switchyard provider-keys list")]
    List,
    /// One provider key, with the models its upstream last listed.
    #[command(after_help = "Example:\n  switchyard provider-keys show 0190f0c2-...")]
    Show { id: String },
    /// Add a provider key; the secret is prompted for (or --secret-stdin/--secret-file),
    /// except for a passthrough key, which holds none.
    #[command(
        after_help = "Examples:\n  switchyard provider-keys add --provider openai --base-url https://api.openai.com/v1 --models 'gpt-4o*'\n  pass show openai | switchyard provider-keys add --provider openai --base-url https://api.openai.com/v1 --models gpt-4o,gpt-4o-mini --level 1 --secret-stdin\n  switchyard provider-keys add --kind passthrough --protocol anthropic --base-url https://api.anthropic.com --models 'claude-*'"
    )]
    Add {
        /// The provider, or `passthrough`: each call carries its caller's own credential.
        #[arg(long, alias = "kind", value_parser = ["openai", "anthropic", "gemini", "passthrough"])]
        provider: String,
        /// The protocol a passthrough key speaks.
        #[arg(long, value_parser = ["anthropic", "openai"])]
        protocol: Option<String>,
        #[arg(long, value_name = "URL")]
        base_url: String,
        /// Models it serves: names and `prefix*` patterns, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        models: Vec<String>,
        #[arg(long)]
        level: Option<u32>,
        #[arg(long)]
        weight: Option<u32>,
        #[command(flatten)]
        secret: SecretArgs,
    },
    /// Change a provider key; --new-secret asks for a new secret.
    #[command(
        after_help = "Examples:\n  switchyard provider-keys update 0190f0c2-... --weight 5 --level 2\n  switchyard provider-keys update 0190f0c2-... --new-secret --secret-file new.txt"
    )]
    Update {
        id: String,
        #[arg(long, alias = "kind", value_parser = ["openai", "anthropic", "gemini", "passthrough"])]
        provider: Option<String>,
        /// The protocol a passthrough key speaks.
        #[arg(long, value_parser = ["anthropic", "openai"])]
        protocol: Option<String>,
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        #[arg(long)]
        level: Option<u32>,
        #[arg(long)]
        weight: Option<u32>,
        /// Replace the secret (read as for `add`).
        #[arg(long)]
        new_secret: bool,
        #[command(flatten)]
        secret: SecretArgs,
    },
    /// Stop routing to a provider key.
    #[command(after_help = "Example:\n  switchyard provider-keys disable 0190f0c2-...")]
    Disable { id: String },
    /// Route to a disabled provider key again.
    #[command(after_help = "Example:\n  switchyard provider-keys enable 0190f0c2-...")]
    Enable { id: String },
    /// Delete a provider key.
    #[command(after_help = "Example:\n  switchyard provider-keys delete 0190f0c2-...")]
    Delete { id: String },
    /// Ask the key's upstream for its models now.
    #[command(after_help = "Example:\n  switchyard provider-keys discover 0190f0c2-...")]
    Discover { id: String },
}

pub async fn run(ctx: &Ctx, command: ProviderKeysCommand) -> Result<()> {
    let client = ctx.client()?;
    match command {
        ProviderKeysCommand::List => {
            let list = client.get("/x-keys", &[]).await?;
            show(ctx, &list, |v| {
                let mut t = Table::new(&[
                    "ID", "PROVIDER", "PROTOCOL", "BASE URL", "SECRET", "MODELS", "LEVEL",
                    "WEIGHT", "STATUS", "HEALTH",
                ]);
                for k in v.as_array().into_iter().flatten() {
                    t.row(vec![
                        cell(&k["id"]),
                        cell(&k["provider"]),
                        cell(&k["protocol"]),
                        cell(&k["base_url"]),
                        cell(&k["secret_hint"]),
                        cell(&k["models"]),
                        cell(&k["level"]),
                        cell(&k["weight"]),
                        cell(&k["status"]),
                        cell(&k["health"]),
                    ]);
                }
                t.render()
            });
        }
        ProviderKeysCommand::Show { id } => {
            let key = client.get(&format!("/x-keys/{id}"), &[]).await?;
            show(ctx, &key, one);
        }
        ProviderKeysCommand::Add {
            provider,
            protocol,
            base_url,
            models,
            level,
            weight,
            secret,
        } => {
            let mut body = json!({"provider": provider, "base_url": base_url, "models": models});
            if provider == "passthrough" {
                if secret.secret_stdin || secret.secret_file.is_some() {
                    return Err(CliError::Usage(
                        "a passthrough key holds no secret: each call carries its caller's own credential".into(),
                    ));
                }
            } else {
                body["secret"] = json!(read_secret(&secret)?);
            }
            if let Some(p) = protocol {
                body["protocol"] = json!(p);
            }
            if let Some(l) = level {
                body["level"] = json!(l);
            }
            if let Some(w) = weight {
                body["weight"] = json!(w);
            }
            let key = client.post("/x-keys", body).await?;
            show(ctx, &key, one);
        }
        ProviderKeysCommand::Update {
            id,
            provider,
            protocol,
            base_url,
            models,
            level,
            weight,
            new_secret,
            secret,
        } => {
            let mut body = Map::new();
            if let Some(p) = provider {
                body.insert("provider".into(), json!(p));
            }
            if let Some(p) = protocol {
                body.insert("protocol".into(), json!(p));
            }
            if let Some(b) = base_url {
                body.insert("base_url".into(), json!(b));
            }
            if let Some(m) = models {
                body.insert("models".into(), json!(m));
            }
            if let Some(l) = level {
                body.insert("level".into(), json!(l));
            }
            if let Some(w) = weight {
                body.insert("weight".into(), json!(w));
            }
            if new_secret {
                body.insert("secret".into(), json!(read_secret(&secret)?));
            } else if secret.secret_stdin || secret.secret_file.is_some() {
                return Err(CliError::Usage(
                    "--secret-stdin and --secret-file go with --new-secret".into(),
                ));
            }
            if body.is_empty() {
                return Err(CliError::Usage("nothing to change".into()));
            }
            let key = client
                .patch(&format!("/x-keys/{id}"), Value::Object(body))
                .await?;
            show(ctx, &key, one);
        }
        ProviderKeysCommand::Disable { id } => {
            let key = client
                .patch(&format!("/x-keys/{id}"), json!({"status": "disabled"}))
                .await?;
            done(ctx, &key, &format!("{id} is disabled."));
        }
        ProviderKeysCommand::Enable { id } => {
            let key = client
                .patch(&format!("/x-keys/{id}"), json!({"status": "active"}))
                .await?;
            done(ctx, &key, &format!("{id} is active."));
        }
        ProviderKeysCommand::Delete { id } => {
            client.delete(&format!("/x-keys/{id}"), &[]).await?;
            done(ctx, &json!({"deleted": id}), &format!("Deleted {id}."));
        }
        ProviderKeysCommand::Discover { id } => {
            let key = client
                .post(&format!("/x-keys/{id}/discover"), json!({}))
                .await?;
            show(ctx, &key, one);
        }
    }
    Ok(())
}

fn read_secret(args: &SecretArgs) -> Result<String> {
    secret::read(secret::source(
        args.secret_stdin,
        args.secret_file.as_deref(),
        "Provider secret: ",
    ))
}

fn one(v: &Value) -> String {
    fields(
        v,
        &[
            "id",
            "provider",
            "protocol",
            "base_url",
            "secret_hint",
            "models",
            "level",
            "weight",
            "status",
            "health",
            "created_at_unix_ms",
            "discovered_models",
            "discovered_at_unix_ms",
            "discovery_error",
        ],
    )
}
