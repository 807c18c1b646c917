//! `accounts list|tree|show|create|update|disable|enable|delete`.

use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::{document, done, fields, show};
use crate::Ctx;
use crate::error::Result;
use crate::output::{Table, cell, when};

#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Direct children of the caller (or of --parent).
    #[command(
        after_help = "Examples:\n  switchyard accounts list\n  switchyard accounts list --parent 0190f0c2-..."
    )]
    List {
        /// Whose children (a descendant of the caller).
        #[arg(long, value_name = "ID")]
        parent: Option<String>,
    },
    /// The caller's whole tree (or a descendant's), breadth first.
    #[command(after_help = "Example:\n  switchyard accounts tree")]
    Tree {
        /// Whose tree.
        #[arg(long, value_name = "ID")]
        id: Option<String>,
    },
    /// An account's own and effective policy and billing (the caller's when no ID).
    #[command(
        after_help = "Examples:\n  switchyard accounts show\n  switchyard accounts show 0190f0c2-... --output yaml"
    )]
    Show { id: Option<String> },
    /// Create a child of the caller; its first API key is printed once.
    #[command(
        after_help = "Examples:\n  switchyard accounts create team-a\n  switchyard accounts create team-a --policy '{models: [gpt-4o*], rpm: 600}'\n  switchyard accounts create team-a --policy @policy.yaml --billing '{multiplier_ppm: 1250000}'"
    )]
    Create {
        name: String,
        /// The policy, inline YAML/JSON or @file.
        #[arg(long, value_name = "YAML|@FILE")]
        policy: Option<String>,
        /// What the caller bills it, inline YAML/JSON or @file.
        #[arg(long, value_name = "YAML|@FILE")]
        billing: Option<String>,
    },
    /// Rename a descendant or replace its policy or billing.
    #[command(
        after_help = "Examples:\n  switchyard accounts update 0190f0c2-... --name team-b\n  switchyard accounts update 0190f0c2-... --policy '{rpm: 100}'"
    )]
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// The new policy (replaces the old whole), inline YAML/JSON or @file.
        #[arg(long, value_name = "YAML|@FILE")]
        policy: Option<String>,
        /// The new billing (direct parent only), inline YAML/JSON or @file.
        #[arg(long, value_name = "YAML|@FILE")]
        billing: Option<String>,
    },
    /// Disable a descendant: its keys (and its subtree's) stop working.
    #[command(after_help = "Example:\n  switchyard accounts disable 0190f0c2-...")]
    Disable { id: String },
    /// Enable a disabled descendant again.
    #[command(after_help = "Example:\n  switchyard accounts enable 0190f0c2-...")]
    Enable { id: String },
    /// Delete a descendant (with --cascade, its whole subtree).
    #[command(
        after_help = "Examples:\n  switchyard accounts delete 0190f0c2-...\n  switchyard accounts delete 0190f0c2-... --cascade"
    )]
    Delete {
        id: String,
        #[arg(long)]
        cascade: bool,
    },
}

pub async fn run(ctx: &Ctx, command: AccountsCommand) -> Result<()> {
    let client = ctx.client()?;
    match command {
        AccountsCommand::List { parent } => {
            let query: Vec<(&str, String)> = parent.map(|p| ("id", p)).into_iter().collect();
            let list = Value::Array(client.all_pages("/x-users", &query).await?);
            show(ctx, &list, |v| {
                let mut t = Table::new(&["ID", "NAME", "STATUS", "CREATED"]);
                for a in v.as_array().into_iter().flatten() {
                    t.row(vec![
                        cell(&a["id"]),
                        cell(&a["name"]),
                        cell(&a["status"]),
                        when(&a["created_at_unix_ms"]),
                    ]);
                }
                t.render()
            });
        }
        AccountsCommand::Tree { id } => {
            let query: Vec<(&str, String)> = id.map(|p| ("id", p)).into_iter().collect();
            let list = Value::Array(client.all_pages("/x-dna", &query).await?);
            show(ctx, &list, |v| {
                tree_table(v.as_array().map(Vec::as_slice).unwrap_or(&[]))
            });
        }
        AccountsCommand::Show { id } => {
            let info = match id {
                Some(id) => client.get("/x-info", &[("id", id)]).await?,
                None => client.get("/x-self", &[]).await?,
            };
            show(ctx, &info, |v| {
                let mut flat = v["account"].clone();
                for k in ["policy", "effective_policy", "billing", "ancestors"] {
                    flat[k] = v[k].clone();
                }
                fields(
                    &flat,
                    &[
                        "id",
                        "name",
                        "parent_id",
                        "status",
                        "created_at_unix_ms",
                        "ancestors",
                        "policy",
                        "effective_policy",
                        "billing",
                    ],
                )
            });
        }
        AccountsCommand::Create {
            name,
            policy,
            billing,
        } => {
            let mut body = json!({"name": name});
            if let Some(p) = policy {
                body["policy"] = document("--policy", &p)?;
            }
            if let Some(b) = billing {
                body["billing"] = document("--billing", &b)?;
            }
            let created = client.post("/x-users", body).await?;
            show(ctx, &created, |v| {
                format!(
                    "Created {} ({}).\nIts API key (shown once, keep it now):\n{}\n",
                    cell(&v["account"]["name"]),
                    cell(&v["account"]["id"]),
                    cell(&v["api_key"])
                )
            });
        }
        AccountsCommand::Update {
            id,
            name,
            policy,
            billing,
        } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), Value::String(n));
            }
            if let Some(p) = policy {
                body.insert("policy".into(), document("--policy", &p)?);
            }
            if let Some(b) = billing {
                body.insert("billing".into(), document("--billing", &b)?);
            }
            if body.is_empty() {
                return Err(crate::CliError::Usage(
                    "nothing to change: give --name, --policy or --billing".into(),
                ));
            }
            let info = client
                .patch(&format!("/x-users/{id}"), Value::Object(body))
                .await?;
            done(ctx, &info, &format!("Updated {id}."));
        }
        AccountsCommand::Disable { id } => set_status(ctx, &client, &id, "disabled").await?,
        AccountsCommand::Enable { id } => set_status(ctx, &client, &id, "active").await?,
        AccountsCommand::Delete { id, cascade } => {
            let answer = client
                .delete(
                    &format!("/x-users/{id}"),
                    &[("cascade", cascade.to_string())],
                )
                .await?;
            done(
                ctx,
                &answer,
                &format!("Deleted {} account(s).", cell(&answer["deleted"])),
            );
        }
    }
    Ok(())
}

async fn set_status(
    ctx: &Ctx,
    client: &crate::client::Client,
    id: &str,
    status: &str,
) -> Result<()> {
    let info = client
        .patch(&format!("/x-users/{id}"), json!({"status": status}))
        .await?;
    done(ctx, &info, &format!("{id} is {status}."));
    Ok(())
}

/// The tree indented by depth.
fn tree_table(entries: &[Value]) -> String {
    // Breadth first from the server; drawn depth first, children under parents.
    let mut t = Table::new(&["NAME", "ID", "STATUS"]);
    fn walk(entries: &[Value], parent: &Value, depth: usize, t: &mut Table) {
        for e in entries.iter().filter(|e| &e["parent_id"] == parent) {
            t.row(vec![
                format!("{}{}", "  ".repeat(depth), cell(&e["name"])),
                cell(&e["id"]),
                cell(&e["status"]),
            ]);
            walk(entries, &e["id"], depth + 1, t);
        }
    }
    let roots: Vec<&Value> = entries.iter().filter(|e| e["depth"] == 1).collect();
    let top_parents: Vec<Value> = roots.iter().map(|r| r["parent_id"].clone()).collect();
    let mut seen = Vec::new();
    for p in top_parents {
        if !seen.contains(&p) {
            walk(entries, &p, 0, &mut t);
            seen.push(p);
        }
    }
    t.render()
}
