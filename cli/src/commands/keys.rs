//! `keys list|create|revoke|rotate`: the caller's own issued API keys (and, with
//! --account, another key for a descendant).

use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::{done, show};
use crate::Ctx;
use crate::config;
use crate::error::{CliError, Result};
use crate::output::{Table, cell, when};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// The caller's keys (never the keys themselves: their recognisable tails).
    #[command(after_help = "Example:\n  switchyard keys list")]
    List,
    /// Issue another key, printed once: for the caller, or a descendant (--account).
    #[command(
        after_help = "Examples:\n  switchyard keys create\n  switchyard keys create --account 0190f0c2-... --expires-in-days 30"
    )]
    Create {
        /// A descendant to issue the key for.
        #[arg(long, value_name = "ID")]
        account: Option<String>,
        /// The key stops working after this many days (default: never).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// Revoke one of the caller's keys at once.
    #[command(after_help = "Example:\n  switchyard keys revoke 0190f0c2-...")]
    Revoke { id: String },
    /// Replace the key this command runs with; the profile keeps the new one.
    #[command(
        after_help = "Examples:\n  switchyard keys rotate\n  switchyard keys rotate --overlap-seconds 3600"
    )]
    Rotate {
        /// How long the old key keeps working (default 0: it stops now).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=604_800))]
        overlap_seconds: u32,
    },
}

pub async fn run(ctx: &Ctx, command: KeysCommand) -> Result<()> {
    let conn = ctx.connect()?;
    let client = &conn.client;
    match command {
        KeysCommand::List => {
            let me = client.get("/x-self", &[]).await?;
            show(ctx, &me["keys"], |v| {
                let mut t = Table::new(&["ID", "TAIL", "STATUS", "EXPIRES", "CREATED", "THIS ONE"]);
                for k in v.as_array().into_iter().flatten() {
                    t.row(vec![
                        cell(&k["id"]),
                        cell(&k["tail"]),
                        cell(&k["status"]),
                        when(&k["expires_at_unix_ms"]),
                        when(&k["created_at_unix_ms"]),
                        if k["in_use"] == true {
                            "yes".into()
                        } else {
                            String::new()
                        },
                    ]);
                }
                t.render()
            });
        }
        KeysCommand::Create {
            account,
            expires_in_days,
        } => {
            let mut body = Map::new();
            if let Some(days) = expires_in_days {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let at = now + u128::from(days) * 86_400_000;
                body.insert(
                    "expires_at_unix_ms".into(),
                    json!(u64::try_from(at).unwrap_or(u64::MAX)),
                );
            }
            let path = match &account {
                Some(id) => format!("/x-users/{id}/keys"),
                None => "/x-self/keys".into(),
            };
            let created = client.post(&path, Value::Object(body)).await?;
            show(ctx, &created, |v| {
                format!(
                    "Issued key {} (shown once, keep it now):\n{}\n",
                    cell(&v["key"]["id"]),
                    cell(&v["api_key"])
                )
            });
        }
        KeysCommand::Revoke { id } => {
            client.delete(&format!("/x-self/keys/{id}"), &[]).await?;
            done(ctx, &json!({"revoked": id}), &format!("Revoked {id}."));
        }
        KeysCommand::Rotate { overlap_seconds } => {
            let created = client
                .post(
                    "/x-self/rotate",
                    json!({"overlap_seconds": overlap_seconds}),
                )
                .await?;
            let new_key = created["api_key"]
                .as_str()
                .ok_or_else(|| CliError::Protocol("rotate answered no api_key".into()))?
                .to_owned();
            if conn.key_from_profile {
                // The old key may stop now: the profile must hold the new one.
                let mut config = ctx.load_config()?;
                if let Some(p) = config.profiles.get_mut(&conn.profile) {
                    p.api_key = new_key;
                    config::save(&ctx.config_path, &config)?;
                }
                let value = json!({"key": created["key"], "profile": conn.profile});
                show(ctx, &value, |_| {
                    format!(
                        "Rotated: key {} is now profile {}'s.\n",
                        cell(&created["key"]["id"]),
                        conn.profile
                    )
                });
            } else {
                // The key came from SWITCHYARD_API_KEY: nowhere to keep the new one.
                show(ctx, &created, |v| {
                    format!(
                        "Rotated: the new key (shown once, put it in SWITCHYARD_API_KEY):\n{}\n",
                        cell(&v["api_key"])
                    )
                });
            }
        }
    }
    Ok(())
}
