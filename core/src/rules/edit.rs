//! Editing a rules document by section and entry (`/x-config/{section}/{entry}`).

use super::Rules;

/// The sections of a rules document, as `/x-config/{section}` names them.
pub const SECTIONS: [&str; 9] = [
    "model_mapper",
    "level_mapper",
    "switch_over",
    "resources",
    "model_limits",
    "pricing",
    "limits",
    "forward_headers",
    "translation",
];

/// The sections that are lists: an entry is a member, its value ignored.
const LIST_SECTIONS: [&str; 2] = ["resources", "forward_headers"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("unknown section {0:?}; sections are {SECTIONS:?}")]
    UnknownSection(String),
    #[error("{section} has no entry {key:?}")]
    NoSuchEntry { section: String, key: String },
    #[error("{0}")]
    Invalid(String),
}

impl Rules {
    fn to_json(&self) -> Result<serde_json::Map<String, serde_json::Value>, EditError> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            Ok(_) => Err(EditError::Invalid("rules are not an object".into())),
            Err(e) => Err(EditError::Invalid(e.to_string())),
        }
    }

    fn from_json(map: serde_json::Map<String, serde_json::Value>) -> Result<Self, EditError> {
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| EditError::Invalid(e.to_string()))
    }

    fn check_section(section: &str) -> Result<(), EditError> {
        if SECTIONS.contains(&section) {
            Ok(())
        } else {
            Err(EditError::UnknownSection(section.to_owned()))
        }
    }

    /// One section as JSON (an empty object or `null` when unset).
    pub fn section(&self, section: &str) -> Result<serde_json::Value, EditError> {
        Self::check_section(section)?;
        let mut map = self.to_json()?;
        if section == "translation" && !map.contains_key(section) {
            // Unset is on: say so rather than show an empty object.
            return serde_json::to_value(super::TranslationSettings::default())
                .map_err(|e| EditError::Invalid(e.to_string()));
        }
        Ok(map.remove(section).unwrap_or(if section == "resources" {
            serde_json::Value::Null
        } else if section == "forward_headers" {
            serde_json::Value::Array(Vec::new())
        } else {
            serde_json::Value::Object(serde_json::Map::new())
        }))
    }

    /// Replace the sections present in `patch` (`null` clears one), keep the others.
    pub fn patched(
        &self,
        patch: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, EditError> {
        let mut map = self.to_json()?;
        for (section, value) in patch {
            Self::check_section(&section)?;
            if value.is_null() {
                map.remove(&section);
            } else {
                map.insert(section, value);
            }
        }
        Self::from_json(map)
    }

    /// Set one entry: `key → value` in a map section, or add `key` to a list section
    /// (`resources`, `forward_headers`; the value is ignored there).
    pub fn with_entry(
        &self,
        section: &str,
        key: &str,
        value: serde_json::Value,
    ) -> Result<Self, EditError> {
        Self::check_section(section)?;
        let mut map = self.to_json()?;
        let key = list_entry(section, key);
        let key = key.as_str();
        if LIST_SECTIONS.contains(&section) {
            let list = map
                .entry(section)
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(items) = list
                && !items.iter().any(|i| i.as_str() == Some(key))
            {
                items.push(serde_json::Value::String(key.to_owned()));
            }
        } else {
            let entries = map
                .entry(section)
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(entries) = entries {
                entries.insert(key.to_owned(), value);
            }
        }
        Self::from_json(map)
    }

    /// Remove one entry (for `resources`, one path; the list may become empty, which
    /// allows nothing: clear the whole section to allow every path again).
    pub fn without_entry(&self, section: &str, key: &str) -> Result<Self, EditError> {
        Self::check_section(section)?;
        let mut map = self.to_json()?;
        let key = list_entry(section, key);
        let key = key.as_str();
        let missing = || EditError::NoSuchEntry {
            section: section.to_owned(),
            key: key.to_owned(),
        };
        match map.get_mut(section) {
            Some(serde_json::Value::Array(items)) => {
                let before = items.len();
                items.retain(|i| i.as_str() != Some(key));
                if items.len() == before {
                    return Err(missing());
                }
            }
            Some(serde_json::Value::Object(entries)) => {
                entries.remove(key).ok_or_else(missing)?;
            }
            _ => return Err(missing()),
        }
        Self::from_json(map)
    }
}

/// An entry key as its section holds it: header names lowercase.
fn list_entry(section: &str, key: &str) -> String {
    if section == "forward_headers" {
        key.to_ascii_lowercase()
    } else {
        key.to_owned()
    }
}
