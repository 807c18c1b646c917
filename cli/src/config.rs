//! The per-user config file: profiles, each a server URL and the key issued for it.
//! `$XDG_CONFIG_HOME/switchyard/config.yaml` (or `~/.config/switchyard/config.yaml`),
//! created readable by its owner only, since it holds keys.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};
use crate::yaml;

pub const DEFAULT_PROFILE: &str = "default";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub url: String,
    pub api_key: String,
}

/// Where the config file lives, from the environment given.
pub fn path(env: impl Fn(&str) -> Option<String>) -> Result<PathBuf> {
    let base = match env("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match env("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Path::new(&home).join(".config"),
            None => {
                return Err(CliError::Usage(
                    "neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the config".into(),
                ));
            }
        },
    };
    Ok(base.join("switchyard").join("config.yaml"))
}

pub fn load(path: &Path) -> Result<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(CliError::io(format!("reading {}", path.display()))(e)),
    };
    let invalid = |p| CliError::Invalid {
        file: path.display().to_string(),
        problems: vec![p],
    };
    let doc = yaml::parse(&text).map_err(invalid)?;
    if doc.value.is_null() {
        return Ok(Config::default());
    }
    doc.decode().map_err(invalid)
}

/// Write the whole file anew, mode 0600 from its creation (never world-readable,
/// not even for a moment), through a temporary file renamed over the old one.
pub fn save(path: &Path, config: &Config) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| CliError::Usage(format!("{} has no directory", path.display())))?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(CliError::io(format!("creating {}", dir.display())))?;
    let value = serde_json::to_value(config).map_err(|e| CliError::Protocol(e.to_string()))?;
    // tempfile creates its files with mode 0600.
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(CliError::io(format!(
        "creating a file in {}",
        dir.display()
    )))?;
    file.write_all(yaml::to_string(&value).as_bytes())
        .map_err(CliError::io(format!("writing {}", path.display())))?;
    file.persist(path)
        .map_err(|e| CliError::io(format!("writing {}", path.display()))(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_first_then_home() {
        let env = |k: &str| match k {
            "XDG_CONFIG_HOME" => Some("/x".to_owned()),
            "HOME" => Some("/h".to_owned()),
            _ => None,
        };
        assert_eq!(path(env).unwrap(), Path::new("/x/switchyard/config.yaml"));
        let env = |k: &str| (k == "HOME").then(|| "/h".to_owned());
        assert_eq!(
            path(env).unwrap(),
            Path::new("/h/.config/switchyard/config.yaml")
        );
        assert!(path(|_| None).is_err());
    }

    #[test]
    fn saved_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard").join("config.yaml");
        let mut config = Config {
            current: Some("prod".into()),
            ..Config::default()
        };
        config.profiles.insert(
            "prod".into(),
            Profile {
                url: "https://sy.example.com".into(),
                api_key: "sy-abc".into(),
            },
        );
        save(&file, &config).unwrap();
        assert_eq!(load(&file).unwrap(), config);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
