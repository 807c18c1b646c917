//! A main account's rules document: read whole or by section, and every edit.
//!
//! The document carries its own revision (1 at the first save, one more at each):
//! a reader may hand it back with an edit, and the edit is then applied only if
//! nobody saved the rules since (compare-and-set), so two admins editing at once never
//! silently overwrite each other.

use std::collections::BTreeSet;

use switchyard_core::error::ErrorCode;
use switchyard_core::rules::{EditError, Rules};

use super::audit::state;
use super::{ApiError, Caller, Service};
use crate::store::StoreError;

/// A rules document and the revision it was read (or stored) at; 0: never saved.
#[derive(Clone, Debug)]
pub struct RulesAt {
    pub rules: Rules,
    pub revision: i64,
}

impl Service {
    /// `GET /x-conf`: the caller's main account's rules.
    pub async fn rules(&self, caller: &Caller) -> Result<Rules, ApiError> {
        Ok(self.rules_at(caller).await?.rules)
    }

    /// The caller's main account's rules with their revision.
    pub async fn rules_at(&self, caller: &Caller) -> Result<RulesAt, ApiError> {
        let owner = Self::key_owner(caller)?;
        let (rules, revision) = self.store.rules(owner).await?;
        Ok(RulesAt { rules, revision })
    }

    /// `GET /x-config/{section}`: one section and the revision it was read at.
    pub async fn rule_section(
        &self,
        caller: &Caller,
        section: &str,
    ) -> Result<(serde_json::Value, i64), ApiError> {
        let at = self.rules_at(caller).await?;
        Ok((at.rules.section(section).map_err(edit_error)?, at.revision))
    }

    /// Every rules write: read, edit, validate the whole document against the owner's
    /// levels, store if nobody changed it meanwhile. With `expected` (the revision the
    /// caller read), a save by anyone else since is refused (409); without it, the
    /// edit is applied to whatever is current (retrying a few times under contention).
    pub async fn edit_rules(
        &self,
        caller: &Caller,
        expected: Option<i64>,
        edit: impl Fn(&Rules) -> Result<Rules, EditError>,
    ) -> Result<RulesAt, ApiError> {
        let owner = Self::key_owner(caller)?;
        if expected.is_some_and(|e| e < 0) {
            return Err(ApiError::invalid("a rules revision is 0 or more"));
        }
        for _ in 0..3 {
            let (current, version) = self.store.rules(owner).await?;
            if let Some(read) = expected
                && read != version
            {
                return Err(conflict(read, version));
            }
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
                    return Ok(RulesAt {
                        rules: next,
                        revision: version + 1,
                    });
                }
                Err(StoreError::Conflict(_)) => {
                    if let Some(read) = expected {
                        let (_, now) = self.store.rules(owner).await?;
                        return Err(conflict(read, now));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict("rules").into())
    }
}

/// An edit made against a revision that is no longer current.
fn conflict(read: i64, current: i64) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!(
            "another admin saved these rules at revision {current}; your edit was not applied (it was made at revision {read})"
        ),
    )
}

fn edit_error(e: EditError) -> ApiError {
    match e {
        EditError::NoSuchEntry { .. } => ApiError::new(ErrorCode::NotFound, e.to_string()),
        EditError::UnknownSection(_) | EditError::Invalid(_) => ApiError::invalid(e.to_string()),
    }
}
