//! The coordination flags every replicated service takes, and the coordinator they
//! describe.

use std::time::Duration;

use switchyard_runtime::Shutdown;

use crate::{CoordError, Coordinator};

#[derive(Clone, Debug, clap::Args)]
pub struct CoordArgs {
    /// etcd endpoints (comma-separated `http://host:port`) through which replicas of
    /// this service coordinate. Unset: this replica works alone.
    #[arg(long, env = "SWITCHYARD_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Prefix of Switchyard's keys in etcd (lets installations share one etcd).
    #[arg(long, env = "SWITCHYARD_ETCD_PREFIX", default_value = "/switchyard/")]
    pub etcd_prefix: String,
    /// Seconds a replica that stopped answering keeps its etcd lease (its
    /// leaderships and registry entries).
    #[arg(long, default_value_t = 10)]
    pub etcd_lease_seconds: u64,
    /// This replica's name among its peers (default: host name and pid).
    #[arg(long, env = "SWITCHYARD_REPLICA_ID")]
    pub replica_id: Option<String>,
}

impl CoordArgs {
    /// This replica's name, `role` standing in for the host name when unknown.
    pub fn member(&self, role: &str) -> String {
        self.replica_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| role.to_owned());
            format!("{host}-{}", std::process::id())
        })
    }

    /// etcd when endpoints are given, else this replica alone. Services under
    /// different `group`s (control plane, collector) keep apart keys in one etcd.
    pub fn coordinator(
        &self,
        group: &str,
        member: &str,
        shutdown: &Shutdown,
    ) -> Result<Coordinator, CoordError> {
        if self.etcd_endpoints.is_empty() {
            return Ok(Coordinator::local());
        }
        let settings = crate::EtcdSettings {
            endpoints: self.etcd_endpoints.clone(),
            prefix: format!("{}{group}/", self.etcd_prefix),
            member: member.to_owned(),
            lease_ttl: Duration::from_secs(self.etcd_lease_seconds),
        };
        Coordinator::etcd(settings, shutdown.clone())
    }
}
