//! One module per command group; each turns its arguments into REST calls and the
//! answers into output.

pub mod accounts;
pub mod alerts;
pub mod credit;
pub mod keys;
pub mod provider_keys;
pub mod rules;
pub mod session;
pub mod usage;

use serde_json::Value;

use crate::client::Client;
use crate::error::{CliError, Result};
use crate::output::{self, Format, print};
use crate::{Command, Ctx, config, tree, yaml};

pub async fn dispatch(
    ctx: &Ctx,
    command: Command,
    app: impl FnOnce() -> clap::Command,
) -> Result<()> {
    match command {
        Command::Login(args) => session::login(ctx, args).await,
        Command::Status => session::status(ctx).await,
        Command::Accounts(c) => accounts::run(ctx, c).await,
        Command::Keys(c) => keys::run(ctx, c).await,
        Command::ProviderKeys(c) => provider_keys::run(ctx, c).await,
        Command::Rules(c) => rules::run(ctx, c).await,
        Command::Credit(c) => credit::run(ctx, c).await,
        Command::Bill(a) => usage::bill(ctx, a).await,
        Command::Logs(a) => usage::logs(ctx, a).await,
        Command::Audit(a) => usage::audit(ctx, a).await,
        Command::Alerts(c) => alerts::run(ctx, c).await,
        Command::Export(a) => tree::cmd::export(ctx, a).await,
        Command::Diff(a) => tree::cmd::diff(ctx, a).await,
        Command::Apply(a) => tree::cmd::apply(ctx, a).await,
        Command::Completions { shell } => {
            let mut app = app();
            let name = app.get_name().to_owned();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut app, name, &mut buf);
            print(&String::from_utf8_lossy(&buf));
            Ok(())
        }
    }
}

/// Print `value` as the format asks, `table` drawing it for people.
pub fn show(ctx: &Ctx, value: &Value, table: impl FnOnce(&Value) -> String) {
    print(&output::render(ctx.global.output, value, table));
}

/// A short confirmation for people; scripts get the value.
pub fn done(ctx: &Ctx, value: &Value, message: &str) {
    match ctx.global.output {
        Format::Table => print(&format!("{message}\n")),
        _ => show(ctx, value, |_| String::new()),
    }
}

/// Where the server is and which key to use: the flag, then the environment,
/// then the profile.
pub struct Connection {
    pub client: Client,
    pub profile: String,
    /// Whether the key is the profile's (so a rotation must save the new one).
    pub key_from_profile: bool,
}

impl Ctx {
    pub fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    pub fn load_config(&self) -> Result<config::Config> {
        config::load(&self.config_path)
    }

    pub fn profile_name(&self, config: &config::Config) -> String {
        self.global
            .profile
            .clone()
            .or_else(|| config.current.clone())
            .unwrap_or_else(|| config::DEFAULT_PROFILE.to_owned())
    }

    pub fn connect(&self) -> Result<Connection> {
        let config = self.load_config()?;
        let profile_name = self.profile_name(&config);
        let profile = config.profiles.get(&profile_name);
        let url = self
            .global
            .url
            .clone()
            .or_else(|| self.env("SWITCHYARD_URL"))
            .or_else(|| profile.map(|p| p.url.clone()));
        let env_key = self.env("SWITCHYARD_API_KEY");
        let key_from_profile = env_key.is_none();
        let key = env_key.or_else(|| profile.map(|p| p.api_key.clone()));
        let (Some(url), Some(key)) = (url, key) else {
            return Err(CliError::Usage(format!(
                "not logged in (profile {profile_name}): run `switchyard login --url URL` or set SWITCHYARD_URL and SWITCHYARD_API_KEY"
            )));
        };
        Ok(Connection {
            client: Client::new(&url, &key)?,
            profile: profile_name,
            key_from_profile,
        })
    }

    pub fn client(&self) -> Result<Client> {
        Ok(self.connect()?.client)
    }
}

/// A YAML (or JSON) document given inline, or `@path` for a file's.
pub fn document(flag: &str, text: &str) -> Result<Value> {
    let (name, body) = match text.strip_prefix('@') {
        Some(path) => (
            path.to_owned(),
            std::fs::read_to_string(path).map_err(CliError::io(format!("reading {path}")))?,
        ),
        None => (flag.to_owned(), text.to_owned()),
    };
    yaml::parse(&body)
        .map(|d| d.value)
        .map_err(|p| CliError::Invalid {
            file: name,
            problems: vec![p],
        })
}

/// An object's fields as `name  value` lines, nested values as compact JSON.
pub fn fields(value: &Value, names: &[&str]) -> String {
    // Amounts print as dollars and times as dates: their labels lose the unit.
    let label = |n: &str| {
        n.trim_end_matches("_nanos")
            .trim_end_matches("_unix_ms")
            .to_owned()
    };
    let width = names.iter().map(|n| label(n).len()).max().unwrap_or(0);
    let mut out = String::new();
    for name in names {
        let v = &value[*name];
        let text = match v {
            Value::Object(_) => serde_json::to_string(v).unwrap_or_default(),
            Value::Array(a) if a.iter().any(|x| x.is_object()) => {
                serde_json::to_string(v).unwrap_or_default()
            }
            _ if name.ends_with("_unix_ms") => output::when(v),
            _ if name.ends_with("_nanos") => output::dollars(v),
            _ => output::cell(v),
        };
        out.push_str(&format!("{:width$}  {text}\n", label(name)));
    }
    out
}
