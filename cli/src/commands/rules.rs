//! `rules show|set|edit`: the main account's rules as one YAML document. A write
//! sends back the revision the rules were read at (`If-Match`, when the server tags
//! its answers), so an edit never silently replaces someone else's.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::{done, show};
use crate::client::{Answer, Client};
use crate::error::{CliError, Result};
use crate::output::{eprint, print};
use crate::{Ctx, yaml};

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// The rules, or one section of them.
    #[command(
        after_help = "Examples:\n  switchyard rules show\n  switchyard rules show --section model_mapper --output json"
    )]
    Show {
        #[arg(long, value_parser = ["model_mapper", "level_mapper", "switch_over", "resources", "model_limits", "pricing", "limits", "forward_headers", "translation"])]
        section: Option<String>,
    },
    /// Replace the rules with a YAML (or JSON) file's, validated as a whole.
    #[command(
        after_help = "Example:\n  switchyard rules show -o yaml > rules.yaml && $EDITOR rules.yaml && switchyard rules set -f rules.yaml"
    )]
    Set {
        #[arg(long, short = 'f', value_name = "PATH")]
        file: PathBuf,
    },
    /// Open the rules in $VISUAL or $EDITOR and save them when the editor exits.
    #[command(
        after_help = "Examples:\n  switchyard rules edit\n  EDITOR=nano switchyard rules edit"
    )]
    Edit,
}

pub async fn run(ctx: &Ctx, command: RulesCommand) -> Result<()> {
    let client = ctx.client()?;
    match command {
        RulesCommand::Show { section } => {
            let rules = match section {
                Some(s) => client.get(&format!("/x-config/{s}"), &[]).await?,
                None => client.get("/x-conf", &[]).await?,
            };
            show(ctx, &rules, yaml::to_string);
        }
        RulesCommand::Set { file } => {
            let name = file.display().to_string();
            let text =
                std::fs::read_to_string(&file).map_err(CliError::io(format!("reading {name}")))?;
            let doc = parse(&name, &text)?;
            let current = read(&client).await?;
            let saved = write(&client, doc, current.etag.as_deref(), None).await?;
            done(ctx, &saved, "Rules saved.");
        }
        RulesCommand::Edit => edit(ctx, &client).await?,
    }
    Ok(())
}

async fn read(client: &Client) -> Result<Answer> {
    client.call(Method::GET, "/x-conf", &[], None, None).await
}

fn parse(name: &str, text: &str) -> Result<Value> {
    let doc = yaml::parse(text).map_err(|p| CliError::Invalid {
        file: name.to_owned(),
        problems: vec![p],
    })?;
    Ok(if doc.value.is_null() {
        Value::Object(Default::default())
    } else {
        doc.value
    })
}

async fn write(
    client: &Client,
    doc: Value,
    etag: Option<&str>,
    kept: Option<&str>,
) -> Result<Value> {
    match client
        .call(Method::PUT, "/x-conf", &[], Some(doc), etag)
        .await
    {
        Ok(a) => Ok(a.body),
        Err(CliError::Refused {
            status: 409 | 412,
            message,
            ..
        }) => {
            let kept = kept
                .map(|k| format!("; your edit is kept in {k}"))
                .unwrap_or_default();
            Err(CliError::Conflict(format!(
                "the rules changed since they were read ({message}): nothing was saved; read them again and redo the change{kept}"
            )))
        }
        Err(e) => Err(e),
    }
}

const HEADER: &str =
    "# The main account's rules. Save and quit to apply them; an empty file changes nothing.\n";

async fn edit(ctx: &Ctx, client: &Client) -> Result<()> {
    let current = read(client).await?;
    let before = format!("{HEADER}{}", yaml::to_string(&current.body));
    // tempfile creates its files readable by the owner only.
    let mut file = tempfile::Builder::new()
        .prefix("switchyard-rules-")
        .suffix(".yaml")
        .tempfile()
        .map_err(CliError::io("creating a file to edit"))?;
    file.write_all(before.as_bytes())
        .and_then(|()| file.flush())
        .map_err(CliError::io("writing the file to edit"))?;
    let path = file.path().to_owned();
    let editor = ctx
        .env("VISUAL")
        .or_else(|| ctx.env("EDITOR"))
        .unwrap_or_else(|| "vi".to_owned());
    // Through the shell, so an editor given with flags (`code --wait`) works.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .map_err(CliError::io(format!("starting the editor {editor}")))?;
    if !status.success() {
        return Err(CliError::Usage(format!(
            "the editor {editor} failed ({status}): nothing saved"
        )));
    }
    let after = std::fs::read_to_string(&path).map_err(CliError::io("reading the edited file"))?;
    if after == before || after.trim().is_empty() {
        print("No change.\n");
        return Ok(());
    }
    let keep = |file: tempfile::NamedTempFile| -> String {
        match file.keep() {
            Ok((_, p)) => p.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    };
    let doc = match parse(&path.display().to_string(), &after) {
        Ok(d) => d,
        Err(e) => {
            let kept = keep(file);
            eprint(&format!("your edit is kept in {kept}\n"));
            return Err(e);
        }
    };
    match write(
        client,
        doc,
        current.etag.as_deref(),
        Some(&path.display().to_string()),
    )
    .await
    {
        Ok(saved) => {
            done(ctx, &saved, "Rules saved.");
            Ok(())
        }
        Err(e) => {
            let kept = keep(file);
            if !matches!(e, CliError::Conflict(_)) {
                eprint(&format!("your edit is kept in {kept}\n"));
            }
            Err(e)
        }
    }
}
