//! The dashboard's views of the system: the models a caller may call, and the
//! snapshot every data plane applied.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_core::model::ModelPattern;
use switchyard_core::rules::Price;
use switchyard_core::snapshot::Status;

use super::{ApiError, Caller, Service};

#[derive(Debug, Serialize)]
pub struct ModelList {
    /// Exact names and `prefix*` patterns.
    pub models: Vec<String>,
    /// What the caller is billed for each listed model a price names: its parent's
    /// own price, or the owner's price times the parent's multiplier
    /// (`switchyard_core::billing::Billing::price`).
    pub prices: BTreeMap<String, Price>,
}

#[derive(Debug, Serialize)]
pub struct DataPlaneStatus {
    pub replica: String,
    pub applied_version: u64,
    /// Versions behind the newest committed configuration.
    pub lag: u64,
    pub last_rejection: Option<String>,
    /// The control-plane replica serving its snapshot stream.
    pub control_plane: String,
}

/// `GET /dashboard/status`.
#[derive(Debug, Serialize)]
pub struct SystemStatus {
    pub snapshot_version: u64,
    /// The newest committed configuration revision; data planes are current once
    /// they applied it.
    pub config_revision: u64,
    pub data_planes: Vec<DataPlaneStatus>,
}

impl Service {
    /// `GET /dashboard/models`: exactly what the caller may call — the models its main
    /// account's active provider keys serve, narrowed by its effective policy.
    pub async fn dashboard_models(&self, caller: &Caller) -> Result<ModelList, ApiError> {
        let (account, _) = Self::own_account(caller)?;
        let placed = self.placed(caller, account.id, true).await?;
        let effective = self.effective_of(&placed.record, &placed.ancestors).await?;
        let main = placed.main();
        let served: Vec<ModelPattern> = self
            .store
            .provider_keys(main)
            .await?
            .into_iter()
            .filter(|k| k.key.status == Status::Active)
            .flat_map(|k| k.key.models)
            .collect();
        let models: Vec<String> = effective
            .callable_models(&served)
            .iter()
            .map(ToString::to_string)
            .collect();
        let (rules, _) = self.store.rules(main).await?;
        let billing = &placed.record.account.billing;
        let prices = models
            .iter()
            .filter_map(|m| Some((m.clone(), billing.price(m, rules.price_for(m))?)))
            .collect();
        Ok(ModelList { models, prices })
    }

    /// `GET /dashboard/status`: the snapshot version and every connected data plane.
    pub async fn dashboard_status(&self) -> SystemStatus {
        let version = self.publisher.current_version();
        let newest = version
            .max(self.publisher.committed_revision())
            .max(self.publisher.announced_revision());
        let mut data_planes: Vec<DataPlaneStatus> = self
            .publisher
            .replicas()
            .await
            .into_iter()
            .map(|(replica, state)| DataPlaneStatus {
                replica,
                applied_version: state.applied_version,
                lag: newest.saturating_sub(state.applied_version),
                last_rejection: state.last_rejection,
                control_plane: state.control_plane,
            })
            .collect();
        data_planes.sort_by(|a, b| a.replica.cmp(&b.replica));
        SystemStatus {
            snapshot_version: version,
            config_revision: newest,
            data_planes,
        }
    }
}
