//! The usage collector as the service layer reaches it: one gRPC client over a
//! shared channel, and the two queries the usage views make.

use switchyard_core::usage::{RollupRow, UsageEvent};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::usage_service_client::UsageServiceClient;
use switchyard_wire::EventError;
use tonic::transport::Channel;

/// Why a query to the collector gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The collector refused the query's arguments; the message says why.
    #[error("{0}")]
    Refused(String),
    /// The collector could not be asked, or failed to answer.
    #[error("usage collector query failed: {0}")]
    Unavailable(tonic::Status),
    /// The collector answered with an event this control plane cannot read.
    #[error("collector returned a malformed event: {0}")]
    Malformed(EventError),
}

/// A page of raw events, newest first.
#[derive(Debug)]
pub struct LogPage {
    pub events: Vec<UsageEvent>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next: Option<String>,
}

/// The collector's `UsageService`; cheap to clone (the channel is shared).
#[derive(Clone, Debug)]
pub struct CollectorClient {
    usage: UsageServiceClient<Channel>,
}

impl CollectorClient {
    pub fn new(usage: UsageServiceClient<Channel>) -> Self {
        Self { usage }
    }

    /// Raw events matching `query`, decoded.
    pub async fn events(&self, query: pb::EventQuery) -> Result<LogPage, CollectorError> {
        let page = self
            .usage
            .clone()
            .query_events(query)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::InvalidArgument => {
                    CollectorError::Refused(status.message().to_owned())
                }
                _ => CollectorError::Unavailable(status),
            })?
            .into_inner();
        let events = page
            .events
            .into_iter()
            .map(switchyard_wire::decode_event)
            .collect::<Result<Vec<_>, _>>()
            .map_err(CollectorError::Malformed)?;
        Ok(LogPage {
            events,
            next: (!page.next.is_empty()).then_some(page.next),
        })
    }

    /// Rollup rows matching `query`. The service checks a bill's query before it
    /// asks; what the collector still refuses is an answer too big to give
    /// (`OUT_OF_RANGE`, its message saying how to narrow it), any other failure is
    /// the collector's.
    pub async fn rollups(&self, query: pb::RollupQuery) -> Result<Vec<RollupRow>, CollectorError> {
        let reply = self
            .usage
            .clone()
            .query_rollups(query)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::OutOfRange => CollectorError::Refused(status.message().to_owned()),
                _ => CollectorError::Unavailable(status),
            })?
            .into_inner();
        Ok(reply
            .rows
            .into_iter()
            .map(switchyard_wire::decode_rollup)
            .collect())
    }
}
