//! `login` and `status`.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use super::show;
use crate::client::Client;
use crate::config::{self, Profile};
use crate::error::{CliError, Result};
use crate::output::{Table, cell};
use crate::{Ctx, secret};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Read the API key from standard input.
    #[arg(long, conflicts_with = "key_file")]
    pub key_stdin: bool,
    /// Read the API key from this file.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
}

pub async fn login(ctx: &Ctx, args: LoginArgs) -> Result<()> {
    let url = ctx
        .global
        .url
        .clone()
        .or_else(|| ctx.env("SWITCHYARD_URL"))
        .ok_or_else(|| CliError::Usage("login needs --url (or SWITCHYARD_URL)".into()))?;
    let key = secret::read(secret::source(
        args.key_stdin,
        args.key_file.as_deref(),
        "API key: ",
    ))?;
    // The key must open the server before it is kept.
    let client = Client::new(&url, &key)?;
    client.get("/dashboard/status", &[]).await?;
    let who = whoami(&client).await?;
    let mut config = ctx.load_config()?;
    let profile = ctx
        .global
        .profile
        .clone()
        .unwrap_or_else(|| config::DEFAULT_PROFILE.to_owned());
    config.profiles.insert(
        profile.clone(),
        Profile {
            url: client.base().to_owned(),
            api_key: key,
        },
    );
    config.current = Some(profile.clone());
    config::save(&ctx.config_path, &config)?;
    let value = json!({"profile": profile, "url": client.base(), "account": who});
    show(ctx, &value, |_| {
        format!(
            "Logged in to {} as {} (profile {profile}, saved in {}).\n",
            client.base(),
            describe(&who),
            ctx.config_path.display()
        )
    });
    Ok(())
}

/// The caller's account, or null for the operator's root key (which has none).
pub async fn whoami(client: &Client) -> Result<Value> {
    match client.get("/x-self", &[]).await {
        Ok(me) => Ok(json!({
            "id": me["account"]["id"],
            "name": me["account"]["name"],
            "main": me["ancestors"].as_array().is_some_and(Vec::is_empty),
        })),
        Err(CliError::Refused { status: 403, .. }) => Ok(Value::Null),
        Err(e) => Err(e),
    }
}

fn describe(who: &Value) -> String {
    if who.is_null() {
        return "the operator (root key)".into();
    }
    let kind = if who["main"] == true {
        "main account"
    } else {
        "sub-account"
    };
    format!("{kind} {} ({})", cell(&who["name"]), cell(&who["id"]))
}

pub async fn status(ctx: &Ctx) -> Result<()> {
    let conn = ctx.connect()?;
    let status = conn.client.get("/dashboard/status", &[]).await?;
    let who = whoami(&conn.client).await?;
    let value = json!({
        "url": conn.client.base(),
        "profile": conn.profile,
        "account": who,
        "snapshot_version": status["snapshot_version"],
        "config_revision": status["config_revision"],
        "data_planes": status["data_planes"],
    });
    show(ctx, &value, |v| {
        let mut out = format!(
            "server            {}\nprofile           {}\nsigned in as      {}\nconfig revision   {}\nsnapshot version  {}\n\n",
            cell(&v["url"]),
            cell(&v["profile"]),
            describe(&v["account"]),
            cell(&v["config_revision"]),
            cell(&v["snapshot_version"]),
        );
        let mut t = Table::new(&[
            "DATA PLANE",
            "APPLIED",
            "LAG",
            "CONTROL PLANE",
            "LAST REJECTION",
        ]);
        for dp in v["data_planes"].as_array().into_iter().flatten() {
            t.row(vec![
                cell(&dp["replica"]),
                cell(&dp["applied_version"]),
                cell(&dp["lag"]),
                cell(&dp["control_plane"]),
                cell(&dp["last_rejection"]),
            ]);
        }
        out.push_str(&t.render());
        out
    });
    Ok(())
}
