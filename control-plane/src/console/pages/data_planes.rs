//! Admin: the data planes following the control plane (the snapshot each applied and
//! how far it is behind), and the health the data planes report of the caller's
//! provider keys.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use crate::console::Console;
use crate::console::session::Signed;
use crate::console::views::{self, Nav, when};
use crate::service::{DataPlaneStatus, ProviderKeyView};

pub const ROUTES: &[(&str, &[&str])] = &[("/admin/data-planes", &["GET"])];

pub fn routes() -> Router<Console> {
    Router::new().route("/admin/data-planes", get(data_planes))
}

/// `GET /admin/data-planes`: what `/dashboard/status` and the provider keys' health
/// say.
async fn data_planes(State(c): State<Console>, signed: Signed) -> Response {
    let status = c.service.dashboard_status().await;
    let keys = c
        .service
        .provider_keys(&signed.caller)
        .await
        .map(|keys| keys.iter().map(KeyHealth::from).collect())
        .map_err(|e| e.message);
    views::page(
        StatusCode::OK,
        &DataPlanesPage {
            nav: signed.nav("admin-data-planes"),
            snapshot_version: status.snapshot_version,
            config_revision: status.config_revision,
            planes: status.data_planes.iter().map(PlaneLine::from).collect(),
            keys,
        },
    )
}

pub struct PlaneLine {
    pub replica: String,
    pub applied_version: u64,
    pub lag: u64,
    pub control_plane: String,
    pub last_rejection: String,
}

impl From<&DataPlaneStatus> for PlaneLine {
    fn from(d: &DataPlaneStatus) -> Self {
        Self {
            replica: d.replica.clone(),
            applied_version: d.applied_version,
            lag: d.lag,
            control_plane: d.control_plane.clone(),
            last_rejection: d.last_rejection.clone().unwrap_or_default(),
        }
    }
}

pub struct KeyHealth {
    pub id: String,
    pub provider: &'static str,
    pub base_url: String,
    pub level: u32,
    pub status: &'static str,
    pub health: String,
    /// When a resting key is tried again.
    pub until: String,
}

impl From<&ProviderKeyView> for KeyHealth {
    fn from(k: &ProviderKeyView) -> Self {
        Self {
            id: k.id.to_string(),
            provider: k.provider,
            base_url: k.base_url.clone(),
            level: k.level,
            status: k.status,
            health: k.health.replace('_', " "),
            until: k.health_until_unix_ms.map(when).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "data_planes.html")]
pub struct DataPlanesPage {
    pub nav: Nav,
    pub snapshot_version: u64,
    pub config_revision: u64,
    pub planes: Vec<PlaneLine>,
    /// The caller's provider keys, or why it has none to show.
    pub keys: Result<Vec<KeyHealth>, String>,
}
