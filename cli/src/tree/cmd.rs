//! `export`, `diff` and `apply`: the server's tree read over REST, a file checked
//! whole before anything changes, and the plan's steps carried out in order.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::doc::{self, Remote, RemoteAccount, RemoteKey, SecretFrom, TreeDoc};
use super::plan::{self, Action, Step, Target};
use crate::client::Client;
use crate::error::{CliError, Result};
use crate::output::Format;
use crate::output::{eprint, print};
use crate::yaml::{self, Problem};
use crate::{Ctx, secret};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to this file instead of standard output.
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct FileArgs {
    /// The tree file (YAML).
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: PathBuf,
    /// Also what the file no longer names: delete it.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub file: FileArgs,
}

const HEADER: &str = "# A Switchyard tree: `switchyard diff -f FILE` shows what `switchyard apply -f FILE` would change.\n# Provider secrets are never here: a new key's comes from secret_from {env: NAME} or {file: PATH}.\n";

pub async fn export(ctx: &Ctx, args: ExportArgs) -> Result<()> {
    let client = ctx.client()?;
    let remote = read_remote(&client).await?;
    let value = serde_json::to_value(doc::export(&remote))
        .map_err(|e| CliError::Protocol(e.to_string()))?;
    let text = match ctx.global.output {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ),
        _ => format!("{HEADER}{}", yaml::to_string(&value)),
    };
    match args.file {
        Some(path) => {
            std::fs::write(&path, text).map_err(CliError::io(format!("writing {}", path.display())))
        }
        None => {
            print(&text);
            Ok(())
        }
    }
}

/// The file and the plan that makes the server match it: checked whole first.
async fn prepare(client: &Client, args: &FileArgs) -> Result<(Remote, Vec<Step>)> {
    let name = args.file.display().to_string();
    let invalid = |problems: Vec<Problem>| CliError::Invalid {
        file: name.clone(),
        problems,
    };
    let text =
        std::fs::read_to_string(&args.file).map_err(CliError::io(format!("reading {name}")))?;
    let located = yaml::parse(&text).map_err(|p| invalid(vec![p]))?;
    let tree: TreeDoc = located.decode().map_err(|p| invalid(vec![p]))?;
    let remote = read_remote(client).await?;
    let pos = |p: &str| located.pos(p);
    let mut problems = super::check::check(&tree, &remote.main_name, &remote.main_effective, &pos);
    match plan::plan(&tree, &remote, args.prune, &pos) {
        Ok(steps) if problems.is_empty() => {
            // Every secret a step needs is read now, before the first change.
            let mut missing = Vec::new();
            for (i, spec) in tree.provider_keys.iter().enumerate() {
                let creates = steps
                    .iter()
                    .any(|s| matches!(&s.action, Action::CreateKey { spec: c } if c == spec));
                if creates
                    && let Some(from) = &spec.secret_from
                    && let Err(e) = read_secret(from)
                {
                    missing.push(Problem {
                        pos: pos(&format!("provider_keys[{i}].secret_from")),
                        message: e.to_string(),
                    });
                }
            }
            if missing.is_empty() {
                Ok((remote, steps))
            } else {
                Err(invalid(missing))
            }
        }
        Ok(_) => Err(invalid(problems)),
        Err(more) => {
            problems.extend(more);
            problems.sort_by_key(|p| p.pos);
            problems.dedup();
            Err(invalid(problems))
        }
    }
}

fn read_secret(from: &SecretFrom) -> Result<String> {
    match from {
        SecretFrom::Env(name) => std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| CliError::Usage(format!("the environment variable {name} is not set"))),
        SecretFrom::File(path) => secret::read(secret::Source::File(std::path::Path::new(path))),
    }
}

pub async fn diff(ctx: &Ctx, args: FileArgs) -> Result<()> {
    let client = ctx.client()?;
    let (_, steps) = prepare(&client, &args).await?;
    report(ctx, &steps, "change(s) to apply");
    Ok(())
}

fn report(ctx: &Ctx, steps: &[Step], what: &str) {
    match ctx.global.output {
        Format::Table => {
            let mut out: String = steps.iter().map(|s| format!("{}\n", s.line)).collect();
            if steps.is_empty() {
                out.push_str("No changes.\n");
            } else {
                out.push_str(&format!("{} {what}.\n", steps.len()));
            }
            print(&out);
        }
        format => {
            let lines: Vec<&str> = steps.iter().map(|s| s.line.as_str()).collect();
            print(&crate::output::render(
                format,
                &json!({"changes": lines}),
                |_| String::new(),
            ));
        }
    }
}

pub async fn apply(ctx: &Ctx, args: ApplyArgs) -> Result<()> {
    let client = ctx.client()?;
    let (remote, steps) = prepare(&client, &args.file).await?;
    let mut run = Runner {
        main: client,
        main_id: remote.main_id.clone(),
        rules_etag: remote.rules_etag.clone(),
        created: HashMap::new(),
        acting: HashMap::new(),
    };
    let mut done = Vec::new();
    let mut failure = None;
    for step in &steps {
        match run.step(&step.action).await {
            Ok(()) => {
                if ctx.global.output == Format::Table {
                    print(&format!("{}\n", step.line));
                }
                done.push(step.clone());
            }
            Err(e) => {
                eprint(&format!("failed: {}\n", step.line));
                failure = Some(e);
                break;
            }
        }
    }
    // Keys issued to act as an account are revoked whatever happened.
    run.revoke_all().await;
    match failure {
        None => {
            report_applied(ctx, &done);
            Ok(())
        }
        Some(e) => {
            eprint(&format!(
                "{} of {} change(s) applied before the failure.\n",
                done.len(),
                steps.len()
            ));
            Err(e)
        }
    }
}

fn report_applied(ctx: &Ctx, done: &[Step]) {
    match ctx.global.output {
        Format::Table => print(&if done.is_empty() {
            "No changes.\n".to_owned()
        } else {
            format!("{} change(s) applied.\n", done.len())
        }),
        _ => report(ctx, done, "change(s) applied"),
    }
}

/// Carries the steps out. Creating a child or giving it credit needs its parent's
/// own key: for the main account the caller's, for others a short-lived key issued
/// (or the one a creation answered), revoked when apply ends.
struct Runner {
    main: Client,
    main_id: String,
    rules_etag: Option<String>,
    created: HashMap<String, String>,
    acting: HashMap<String, (Client, String)>,
}

impl Runner {
    fn id_of(&self, target: &Target) -> Result<String> {
        match target {
            Target::Main => Ok(self.main_id.clone()),
            Target::Existing(id) => Ok(id.clone()),
            Target::New(path) => self
                .created
                .get(path)
                .cloned()
                .ok_or_else(|| CliError::Protocol(format!("{path} was not created"))),
        }
    }

    async fn as_account(&mut self, target: &Target) -> Result<Client> {
        if *target == Target::Main {
            return Ok(self.main.clone());
        }
        let id = self.id_of(target)?;
        if let Some((c, _)) = self.acting.get(&id) {
            return Ok(c.clone());
        }
        let expires = now_ms() + 3_600_000;
        let created = self
            .main
            .post(
                &format!("/x-users/{id}/keys"),
                json!({"expires_at_unix_ms": expires}),
            )
            .await?;
        let (key, key_id) = key_of(&created["api_key"], &created["key"]["id"])?;
        let client = self.main.with_key(&key);
        self.acting.insert(id, (client.clone(), key_id));
        Ok(client)
    }

    async fn step(&mut self, action: &Action) -> Result<()> {
        match action {
            Action::CreateKey { spec } => {
                let mut body = json!({
                    "provider": spec.provider.as_str(),
                    "base_url": spec.base_url,
                    "models": spec.models,
                    "level": spec.level,
                    "weight": spec.weight,
                });
                if let Some(protocol) = spec.protocol {
                    body["protocol"] = json!(protocol.as_str());
                }
                if spec.takes_secret() {
                    body["secret"] = match &spec.secret_from {
                        Some(from) => json!(read_secret(from)?),
                        None => {
                            return Err(CliError::Usage(
                                "a new provider key needs secret_from".into(),
                            ));
                        }
                    };
                }
                let key = self.main.post("/x-keys", body).await?;
                if spec.status == doc::Status::Disabled {
                    let id = key["id"].as_str().unwrap_or_default();
                    self.main
                        .patch(&format!("/x-keys/{id}"), json!({"status": "disabled"}))
                        .await?;
                }
            }
            Action::UpdateKey { id, patch } => {
                self.main
                    .patch(&format!("/x-keys/{id}"), Value::Object(patch.clone()))
                    .await?;
            }
            Action::DeleteKey { id } => {
                self.main.delete(&format!("/x-keys/{id}"), &[]).await?;
            }
            Action::SetRules { rules } => {
                let body =
                    serde_json::to_value(rules).map_err(|e| CliError::Protocol(e.to_string()))?;
                self.main
                    .call(reqwest::Method::PUT, "/x-conf", &[], Some(body), self.rules_etag.as_deref())
                    .await
                    .map_err(|e| match e {
                        CliError::Refused { status: 409 | 412, message, .. } => CliError::Conflict(format!(
                            "the rules changed since apply read them ({message}): run diff and apply again"
                        )),
                        e => e,
                    })?;
            }
            Action::CreateAccount {
                path,
                parent,
                name,
                policy,
                billing,
            } => {
                let client = self.as_account(parent).await?;
                let mut body = json!({"name": name});
                if *policy != Default::default() {
                    body["policy"] = serde_json::to_value(policy)
                        .map_err(|e| CliError::Protocol(e.to_string()))?;
                }
                if *billing != Default::default() {
                    body["billing"] = serde_json::to_value(billing)
                        .map_err(|e| CliError::Protocol(e.to_string()))?;
                }
                let created = client.post("/x-users", body).await?;
                let id = created["account"]["id"]
                    .as_str()
                    .ok_or_else(|| CliError::Protocol("a created account without an id".into()))?
                    .to_owned();
                let (key, key_id) = key_of(&created["api_key"], &created["api_key_id"])?;
                // Its first key acts for it below, and is revoked at the end like
                // any other: apply leaves no key behind that nobody has seen.
                self.acting
                    .insert(id.clone(), (self.main.with_key(&key), key_id));
                self.created.insert(path.clone(), id);
            }
            Action::UpdateAccount {
                target,
                parent,
                patch,
            } => {
                let id = self.id_of(target)?;
                // A disabled account's key cannot revoke itself: revoke it first.
                if patch.get("status").is_some_and(|s| s == "disabled")
                    && let Some((client, key_id)) = self.acting.remove(&id)
                {
                    revoke(&client, &key_id).await;
                }
                // Billing is its direct parent's to set; the rest any ancestor's.
                let client = if patch.contains_key("billing") {
                    self.as_account(parent).await?
                } else {
                    self.main.clone()
                };
                client
                    .patch(&format!("/x-users/{id}"), Value::Object(patch.clone()))
                    .await?;
            }
            Action::Credit {
                target,
                parent,
                amount_nanos,
            } => {
                let id = self.id_of(target)?;
                let client = self.as_account(parent).await?;
                client
                    .post(
                        &format!("/x-users/{id}/credits"),
                        json!({"amount_nanos": amount_nanos, "note": "switchyard apply"}),
                    )
                    .await?;
            }
            Action::DeleteAccount { id } => {
                self.main.delete(&format!("/x-users/{id}"), &[]).await?;
            }
        }
        Ok(())
    }

    async fn revoke_all(&mut self) {
        for (_, (client, key_id)) in self.acting.drain() {
            revoke(&client, &key_id).await;
        }
    }
}

/// Revoke a key with itself. One whose account was deleted went with it.
async fn revoke(client: &Client, key_id: &str) {
    if let Err(e) = client.delete(&format!("/x-self/keys/{key_id}"), &[]).await
        && !matches!(
            e,
            CliError::Refused {
                status: 401 | 404,
                ..
            }
        )
    {
        eprint(&format!(
            "could not revoke a key issued for apply ({key_id}): {e}\n"
        ));
    }
}

fn key_of(key: &Value, id: &Value) -> Result<(String, String)> {
    match (key.as_str(), id.as_str()) {
        (Some(k), Some(i)) => Ok((k.to_owned(), i.to_owned())),
        _ => Err(CliError::Protocol("a key was issued without its id".into())),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn decode<T: DeserializeOwned>(what: &str, value: &Value) -> Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| CliError::Protocol(format!("{what}: {e}")))
}

/// The main account's tree as the server holds it.
pub async fn read_remote(client: &Client) -> Result<Remote> {
    let me = client.get("/x-self", &[]).await.map_err(|e| match e {
        CliError::Refused { status: 403, .. } => CliError::Usage(
            "export, diff and apply take a main account's key (not the root key)".into(),
        ),
        e => e,
    })?;
    if !me["ancestors"].as_array().is_some_and(Vec::is_empty) {
        return Err(CliError::Usage(
            "export, diff and apply take a main account's key, not a sub-account's".into(),
        ));
    }
    let main_id = decode::<String>("account id", &me["account"]["id"])?;
    let rules_answer = client
        .call(reqwest::Method::GET, "/x-conf", &[], None, None)
        .await?;
    let rules = decode("rules", &rules_answer.body)?;
    let mut keys = Vec::new();
    for k in client
        .get("/x-keys", &[])
        .await?
        .as_array()
        .into_iter()
        .flatten()
    {
        keys.push(RemoteKey {
            id: decode("provider key id", &k["id"])?,
            provider: decode("provider", &k["provider"])?,
            protocol: decode("protocol", &k["protocol"])?,
            base_url: decode("base_url", &k["base_url"])?,
            hint: decode("secret_hint", &k["secret_hint"])?,
            models: decode("models", &k["models"])?,
            level: decode("level", &k["level"])?,
            weight: decode("weight", &k["weight"])?,
            status: decode("status", &k["status"])?,
        });
    }
    let mut accounts = Vec::new();
    for entry in client.all_pages("/x-dna", &[]).await? {
        let id: String = decode("account id", &entry["id"])?;
        let info = client.get("/x-info", &[("id", id.clone())]).await?;
        let credit = client.get(&format!("/x-users/{id}/credits"), &[]).await?;
        accounts.push(RemoteAccount {
            parent_id: decode("parent_id", &entry["parent_id"])?,
            name: decode("name", &entry["name"])?,
            status: decode("status", &entry["status"])?,
            policy: decode("policy", &info["policy"])?,
            billing: decode("billing", &info["billing"])?,
            credit_nanos: decode("allocated_nanos", &credit["allocated_nanos"])?,
            id,
        });
    }
    Ok(Remote {
        main_name: decode("name", &me["account"]["name"])?,
        main_effective: decode("effective_policy", &me["effective_policy"])?,
        main_id,
        rules,
        rules_etag: rules_answer.etag,
        keys,
        accounts,
    })
}
