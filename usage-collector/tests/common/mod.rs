//! The collector started in process for a test, and the usage events tests send it.

#![allow(
    dead_code,
    clippy::allow_attributes,
    reason = "each test binary uses its own part of this module"
)]

use std::time::Duration;

use switchyard_core::ids::{AccountId, EventId, IssuedKeyId};
use switchyard_core::usage::{TokenUsage, UsageEvent, UsageSource};
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use switchyard_runtime::{ShutdownTrigger, bind, shutdown_pair};
use switchyard_usage_collector::store::UsageStore;
use switchyard_usage_collector::{CollectorError, Listeners, Retention};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A collector serving its gRPC face on a free port, and a client of it.
pub struct Collector {
    pub client: UsageServiceClient<Channel>,
    stop: ShutdownTrigger,
    server: JoinHandle<Result<(), CollectorError>>,
}

impl Collector {
    /// The collector on the store at `url`, keeping raw events `keep_days`.
    pub async fn start(url: &str, keep_days: u32) -> Result<Self, Box<dyn std::error::Error>> {
        let store = UsageStore::open(url).await?;
        let grpc = bind("127.0.0.1:0").await?;
        let addr = grpc.local_addr()?;
        let (stop, shutdown) = shutdown_pair();
        let server = tokio::spawn(switchyard_usage_collector::run(
            store,
            Listeners {
                grpc,
                http: bind("127.0.0.1:0").await?,
            },
            Some(Retention {
                keep_days,
                every: Duration::from_secs(3600),
                leader: tokio::sync::watch::channel(true).1,
            }),
            shutdown,
        ));
        let client = UsageServiceClient::connect(format!("http://{addr}")).await?;
        Ok(Self {
            client,
            stop,
            server,
        })
    }

    /// Stop serving and wait (a while) for the server to end.
    pub async fn stop(self) {
        self.stop.trigger();
        drop(self.client);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
    }
}

/// A good event of `main`'s at `at_unix_ms`.
pub fn event(main: AccountId, at_unix_ms: i64) -> UsageEvent {
    UsageEvent {
        id: EventId::new(),
        at_unix_ms,
        account_chain: vec![main],
        issued_key: IssuedKeyId::new(),
        provider_key: None,
        model_requested: "gpt-4o".into(),
        model_served: "gpt-4o".into(),
        level: 1,
        status: 200,
        latency_ms: 1,
        ttfb_ms: None,
        tokens: TokenUsage {
            input: 3,
            output: 2,
            cached: 0,
            cache_write: 0,
        },
        source: UsageSource::Reported,
        cost_nanos: 1,
        billed_nanos: 1,
        price_version: 1,
        path: "/v1/chat/completions".into(),
        client_addr: "10.0.0.1".into(),
        streamed: false,
        session: None,
        end_user: None,
        tag: None,
        client_protocol: None,
        upstream_protocol: None,
    }
}
