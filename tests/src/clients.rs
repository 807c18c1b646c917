//! Real clients run as processes against the data plane: the official Python SDKs
//! (OpenAI, Anthropic, Google GenAI) through the scripts in `tests/clients/`, Claude
//! Code in print mode and Codex CLI's `exec`. `scripts/ensure-clients.sh` installs
//! them, pinned, under [`install_dir`]; a client that is not there is
//! [`HarnessError::Missing`], which the suite reports as a skip.
//!
//! Each scenario runs for a [`Tenant`]: an owner whose one provider key is of the
//! kind the scenario is given (the fake upstream plays it scripted), and a
//! sub-account whose issued key the client uses, so the bill can show the calls
//! metered to it.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard_core::types::ProviderKind;
use switchyard_fake_upstream::{Behaviour, FakeUpstream};
use tokio::process::Command;

use crate::HarnessError;
use crate::system::{System, wait_for_key};
use crate::wait;

/// How long one client run may take before it is killed and the scenario fails.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where `scripts/ensure-clients.sh` installs the clients.
pub fn install_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_CLIENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("switchyard-clients"))
}

/// The clients the harness runs.
#[derive(Clone, Copy, Debug)]
pub enum Client {
    /// The Python SDKs (`openai`, `anthropic`, `google-genai`) in their venv.
    PythonSdks,
    ClaudeCode,
    CodexCli,
}

impl Client {
    /// The client's executable, or why it is missing.
    pub fn executable(self) -> Result<PathBuf, HarnessError> {
        let (relative, what) = match self {
            Self::PythonSdks => ("venv/bin/python", "the Python SDKs' venv"),
            Self::ClaudeCode => ("npm/bin/claude", "Claude Code"),
            Self::CodexCli => ("npm/bin/codex", "Codex CLI"),
        };
        let path = install_dir().join(relative);
        if path.is_file() {
            Ok(path)
        } else {
            let needs = match self {
                Self::PythonSdks => "Python 3",
                Self::ClaudeCode | Self::CodexCli => "Node and npm",
            };
            Err(HarnessError::Missing(format!(
                "{what} is not installed at {} (scripts/ensure-clients.sh installs it; \
                 it needs {needs})",
                path.display()
            )))
        }
    }

    /// Whether a suite should skip for want of this client: says why when so.
    pub fn missing(self) -> bool {
        match self.executable() {
            Ok(_) => false,
            Err(why) => {
                eprintln!("skipped: {why}");
                true
            }
        }
    }
}

/// What a client run printed.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fail the test with everything the client said unless it succeeded.
    pub fn ok(self) -> Self {
        assert!(
            self.success,
            "the client failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Run `command` with a clean environment plus `env`, in `dir`, killed after
/// [`CLIENT_TIMEOUT`].
async fn run(
    mut command: Command,
    env: &[(&str, &str)],
    dir: &Path,
    what: &str,
) -> Result<Run, HarnessError> {
    // Only what is set here reaches the client: no host credentials, proxies or
    // configuration of the machine running the tests.
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn()?;
    let output = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| HarnessError::Command {
            what: what.into(),
            detail: format!("no answer within {CLIENT_TIMEOUT:?}"),
        })??;
    Ok(Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Run `tests/clients/<script>` with `args` under the SDKs' Python, pointed at the
/// data plane's root `base_url` with `key`: the JSON it prints.
pub async fn python(
    script: &str,
    args: &[&str],
    base_url: &str,
    key: &str,
) -> Result<Value, HarnessError> {
    let python = Client::PythonSdks.executable()?;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(script);
    let mut command = Command::new(python);
    command.arg(&path).args(args);
    let home = tempfile::tempdir()?;
    let home_dir = home.path().to_string_lossy().into_owned();
    let env = [
        ("HOME", home_dir.as_str()),
        ("SWITCHYARD_BASE_URL", base_url),
        ("SWITCHYARD_KEY", key),
    ];
    let out = run(command, &env, home.path(), script).await?.ok();
    serde_json::from_str(out.stdout.trim()).map_err(|e| HarnessError::Command {
        what: script.into(),
        detail: format!("printed no JSON ({e}): {}", out.stdout),
    })
}

/// Claude Code in print mode (`claude -p PROMPT --output-format json`) in `workdir`,
/// with a throwaway HOME, talking to the data plane's root `base_url` with `key`
/// and nothing else; `args` are added.
pub async fn claude(
    base_url: &str,
    key: &str,
    workdir: &Path,
    prompt: &str,
    args: &[&str],
) -> Result<Run, HarnessError> {
    claude_with(
        base_url,
        &[("ANTHROPIC_API_KEY", key)],
        workdir,
        prompt,
        args,
    )
    .await
}

/// [`claude`] with the credential (and any other setting) given as environment:
/// e.g. an OAuth login in `CLAUDE_CODE_OAUTH_TOKEN` and the issued key in
/// `ANTHROPIC_CUSTOM_HEADERS`.
pub async fn claude_with(
    base_url: &str,
    credentials: &[(&str, &str)],
    workdir: &Path,
    prompt: &str,
    args: &[&str],
) -> Result<Run, HarnessError> {
    let claude = Client::ClaudeCode.executable()?;
    let home = tempfile::tempdir()?;
    let home_dir = home.path().to_string_lossy().into_owned();
    let mut command = Command::new(claude);
    command
        .args(["-p", prompt, "--output-format", "json"])
        .args(args);
    let mut env = vec![
        ("HOME", home_dir.as_str()),
        ("ANTHROPIC_BASE_URL", base_url),
        // Off the network but for the base URL: no telemetry, error reports,
        // update checks or other traffic, and no retries hiding a refusal.
        ("DISABLE_TELEMETRY", "1"),
        ("DISABLE_ERROR_REPORTING", "1"),
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_BUG_COMMAND", "1"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("CLAUDE_CODE_MAX_RETRIES", "0"),
    ];
    env.extend_from_slice(credentials);
    run(command, &env, workdir, "claude -p").await
}

/// Codex CLI's `codex exec PROMPT` in `workdir`, with a throwaway CODEX_HOME whose
/// one model provider is the data plane (`base_url` its root; Responses; the key in
/// an environment variable), approvals and sandbox off (a container has no
/// sandbox to give): the run and its last message.
pub async fn codex(
    base_url: &str,
    key: &str,
    workdir: &Path,
    prompt: &str,
) -> Result<(Run, String), HarnessError> {
    codex_with(base_url, key, "", workdir, prompt).await
}

/// [`codex`] with `provider` (TOML lines, e.g. `http_headers = {…}`) added to the
/// data plane's model provider; `bearer` is what Codex sends as its bearer.
pub async fn codex_with(
    base_url: &str,
    bearer: &str,
    provider: &str,
    workdir: &Path,
    prompt: &str,
) -> Result<(Run, String), HarnessError> {
    let key = bearer;
    let codex = Client::CodexCli.executable()?;
    let home = tempfile::tempdir()?;
    let config = format!(
        r#"model = "gpt-5-codex"
model_provider = "switchyard"
check_for_update_on_startup = false

[model_providers.switchyard]
name = "Switchyard"
base_url = "{base_url}/v1"
env_key = "SWITCHYARD_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
{provider}

[analytics]
enabled = false
"#
    );
    std::fs::write(home.path().join("config.toml"), config)?;
    let last = home.path().join("last-message.txt");
    let home_dir = home.path().to_string_lossy().into_owned();
    let mut command = Command::new(codex);
    command
        .args([
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "--output-last-message",
        ])
        .arg(&last)
        .arg(prompt);
    let env = [
        ("HOME", home_dir.as_str()),
        ("CODEX_HOME", home_dir.as_str()),
        ("SWITCHYARD_KEY", key),
    ];
    let out = run(command, &env, workdir, "codex exec").await?;
    let message = std::fs::read_to_string(&last).unwrap_or_default();
    Ok((out, message))
}

/// An owner whose one provider key is of a given kind, and the sub-account whose
/// key the client uses.
pub struct Tenant {
    pub owner_key: String,
    pub member_key: String,
    pub member_id: String,
    /// The provider key's secret, unique to this tenant: what the fake counts by.
    pub secret: String,
}

/// A tenant named `name` whose provider key is of `kind` (serving every model) and
/// played scripted by `fake`; returned once the data plane knows the member's key.
pub async fn tenant(sys: &System, fake: &FakeUpstream, kind: ProviderKind, name: &str) -> Tenant {
    // One system serves a scenario for several kinds: each its own tenant and secret.
    let name = format!("{name}-{}", kind.as_str());
    let secret = format!("sk-{name}-upstream-0123456789");
    fake.set_behaviour(&secret, Behaviour::Scripted);
    // Gemini's API lives under `/v1beta`; the others under `/v1`.
    let base_url = match kind {
        ProviderKind::Gemini => format!("http://{}/v1beta", fake.addr),
        _ => fake.base_url(),
    };
    let key =
        json!({"provider": kind.as_str(), "base_url": base_url, "secret": secret, "models": ["*"]});
    tenant_with(sys, &name, key, secret).await
}

/// A tenant named `name` whose one provider key is a passthrough key of `protocol`
/// to the fake's subscription login at `path` (`/claude`, `/backend-api/codex`),
/// serving `models`; its `secret` is the caller's own `login`, which the fake
/// counts calls by.
pub async fn passthrough_tenant(
    sys: &System,
    fake: &FakeUpstream,
    (protocol, path, models): (&str, &str, &str),
    login: &str,
    name: &str,
) -> Tenant {
    let key = json!({"provider": "passthrough", "protocol": protocol,
                     "base_url": format!("http://{}{path}", fake.addr), "models": [models]});
    fake.set_behaviour(login, Behaviour::Scripted);
    let tenant = tenant_with(sys, name, key, login.to_owned()).await;
    // Routing knows the passthrough key only once the snapshot holding it is applied.
    crate::system::settle(sys).await;
    tenant
}

/// An owner named `name` with the provider key `key` and its sub-account.
async fn tenant_with(sys: &System, name: &str, key: Value, secret: String) -> Tenant {
    let (status, owner) = sys.post("/x-users", &sys.root, json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    let owner_key = owner["api_key"].as_str().unwrap().to_owned();
    let (status, pk) = sys.post("/x-keys", &owner_key, key).await;
    assert_eq!(status, StatusCode::CREATED, "{pk}");
    let (status, member) = sys
        .post(
            "/x-users",
            &owner_key,
            json!({"name": format!("{name}-dev")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{member}");
    let member_key = member["api_key"].as_str().unwrap().to_owned();
    let member_id = member["account"]["id"].as_str().unwrap().to_owned();
    wait_for_key(sys, &member_key).await;
    Tenant {
        owner_key,
        member_key,
        member_id,
        secret,
    }
}

/// Requests per account in the owner's bill (`/x-bill`, by account).
async fn requests_by_account(sys: &System, tenant: &Tenant) -> Vec<(String, u64)> {
    bill_sums(sys, tenant, "/x-bill".into(), "account_id").await
}

/// Calls of the owner's tree the data plane answered without an upstream (a token
/// count estimated across protocols): usage events naming no upstream protocol.
pub async fn answered_locally(sys: &System, tenant: &Tenant) -> u64 {
    let (status, page) = sys
        .call(
            Method::GET,
            "/dashboard/logs?limit=500".into(),
            tenant.owner_key.clone(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().cloned().unwrap_or_default();
    let local = events.iter().filter(|e| e["upstream_protocol"].is_null());
    u64::try_from(local.count()).unwrap()
}

/// Waits until the owner's bill shows every call the upstream answered for this
/// tenant (at least `at_least`), and every call the data plane answered itself,
/// metered to the member, and to no other account.
pub async fn billed_to_member(sys: &System, fake: &FakeUpstream, tenant: &Tenant, at_least: u64) {
    let answered = fake.calls_with(&tenant.secret);
    assert!(
        answered >= at_least,
        "the upstream answered {answered} calls for {}, expected at least {at_least}",
        tenant.member_id
    );
    let what = format!(
        "{answered} calls and those answered locally billed to {}",
        tenant.member_id
    );
    wait::until_ok(Duration::from_secs(15), what, async || {
        let local = answered_locally(sys, tenant).await;
        let expected = vec![(tenant.member_id.clone(), answered + local)];
        let seen = requests_by_account(sys, tenant).await;
        if seen == expected {
            Ok(())
        } else {
            Err(format!("{seen:?}, {local} answered locally"))
        }
    })
    .await;
}

/// The requests the owner's bill by `by` (user, session or tag) counts under
/// `label`, once it counts some.
pub async fn billed_label(sys: &System, tenant: &Tenant, by: &str, label: &str) -> u64 {
    let what = format!("the label {label:?} in the bill by {by}");
    wait::until_ok(Duration::from_secs(15), what, async || {
        let labels = bill_by_label(sys, tenant, by).await;
        match labels.iter().find(|(l, _)| l == label) {
            Some((_, requests)) if *requests > 0 => Ok(*requests),
            _ => Err(format!("{labels:?}")),
        }
    })
    .await
}

/// Requests per label in the owner's bill by `by`.
async fn bill_by_label(sys: &System, tenant: &Tenant, by: &str) -> Vec<(String, u64)> {
    bill_sums(sys, tenant, format!("/x-bill?by={by}"), "label").await
}

/// The requests of the owner's bill at `path`, summed by each row's `field`.
async fn bill_sums(sys: &System, tenant: &Tenant, path: String, field: &str) -> Vec<(String, u64)> {
    let (status, bill) = sys
        .call(Method::GET, path, tenant.owner_key.clone(), None)
        .await;
    assert_eq!(status, 200, "{bill}");
    let mut sums = std::collections::BTreeMap::<String, u64>::new();
    for row in bill["rows"].as_array().cloned().unwrap_or_default() {
        let key = row[field].as_str().unwrap_or_default().to_owned();
        *sums.entry(key).or_default() += row["requests"].as_u64().unwrap_or(0);
    }
    sums.into_iter().collect()
}

/// The labels of the owner's bill by `by` (user, session or tag), each with its
/// requests, once there are some.
pub async fn labels_billed(sys: &System, tenant: &Tenant, by: &str) -> Vec<(String, u64)> {
    let what = format!("labels in the bill by {by}");
    wait::until_ok(Duration::from_secs(15), what, async || {
        let labels = bill_by_label(sys, tenant, by).await;
        if labels.is_empty() {
            Err("none".to_owned())
        } else {
            Ok(labels)
        }
    })
    .await
}

/// Every JSON body the fake received whose text holds `needle`.
pub fn bodies_holding(fake: &FakeUpstream, needle: &str) -> Vec<Value> {
    fake.observed()
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b.to_string().contains(needle))
        .cloned()
        .collect()
}

/// The client and upstream protocols of each of the owner's usage events, once
/// there are `n` of them (the REST logs API).
pub async fn protocols_logged(sys: &System, tenant: &Tenant, n: usize) -> Vec<(String, String)> {
    crate::system::usage_logs(sys, &tenant.owner_key, n)
        .await
        .iter()
        .map(|e| {
            let name = |field: &str| e[field].as_str().unwrap_or_default().to_owned();
            (name("client_protocol"), name("upstream_protocol"))
        })
        .collect()
}
