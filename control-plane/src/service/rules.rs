//! A main account's rules document: read whole or by section, and every edit.

use std::collections::BTreeSet;

use switchyard_core::error::ErrorCode;
use switchyard_core::rules::{EditError, Rules};

use super::audit::state;
use super::{ApiError, Caller, Service};
use crate::store::StoreError;

impl Service {
    /// `GET /x-conf`: the caller's main account's rules.
    pub async fn rules(&self, caller: &Caller) -> Result<Rules, ApiError> {
        let owner = Self::key_owner(caller)?;
        Ok(self.store.rules(owner).await?.0)
    }

    /// `GET /x-config/{section}`.
    pub async fn rule_section(
        &self,
        caller: &Caller,
        section: &str,
    ) -> Result<serde_json::Value, ApiError> {
        self.rules(caller)
            .await?
            .section(section)
            .map_err(edit_error)
    }

    /// Every rules write: read, edit, validate the whole document against the owner's
    /// levels, store if nobody changed it meanwhile (retrying a few times if someone did).
    pub async fn edit_rules(
        &self,
        caller: &Caller,
        edit: impl Fn(&Rules) -> Result<Rules, EditError>,
    ) -> Result<Rules, ApiError> {
        let owner = Self::key_owner(caller)?;
        for _ in 0..3 {
            let (current, version) = self.store.rules(owner).await?;
            let next = edit(&current).map_err(edit_error)?;
            let levels: BTreeSet<u32> = self
                .store
                .provider_keys(owner)
                .await?
                .iter()
                .map(|k| k.key.level)
                .collect();
            let problems = next.problems(&levels);
            if !problems.is_empty() {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return Err(ApiError::new(
                    ErrorCode::Unprocessable,
                    format!("rules refused: {}", listed.join("; ")),
                ));
            }
            let audit = self.audit(
                caller,
                Some(owner),
                "rules.update",
                owner.to_string(),
                state(&current),
                state(&next),
            );
            match self.store.put_rules(owner, &next, version, &audit).await {
                Ok(revision) => {
                    self.publisher.changed(revision);
                    tracing::info!(owner = %owner, revision, "rules updated");
                    return Ok(next);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict("rules").into())
    }
}

fn edit_error(e: EditError) -> ApiError {
    match e {
        EditError::NoSuchEntry { .. } => ApiError::new(ErrorCode::NotFound, e.to_string()),
        EditError::UnknownSection(_) | EditError::Invalid(_) => ApiError::invalid(e.to_string()),
    }
}
