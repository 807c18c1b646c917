//! The collector's gRPC service: acked ingest and rollup queries.

use std::pin::Pin;

use futures_util::Stream;
use switchyard_core::ids::{AccountId, EventId, IssuedKeyId, ProviderKeyId};
use switchyard_core::usage::{TokenUsage, UsageEvent, UsageSource};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::usage_service_server::UsageService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::store::{Granularity, RollupFilter, UsageStore};

/// Longest account chain accepted; deeper trees are refused at the control plane.
const MAX_CHAIN: usize = 64;
const MAX_TEXT: usize = 512;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("field {0} is not a valid id")]
    BadId(&'static str),
    #[error("account_chain must hold 1-{MAX_CHAIN} accounts")]
    BadChain,
    #[error("field {0} is empty or longer than {MAX_TEXT} bytes")]
    BadText(&'static str),
    #[error("status {0} is not an HTTP status")]
    BadStatus(u32),
    #[error("token counts do not fit")]
    BadTokens,
}

fn id<T: std::str::FromStr>(text: &str, field: &'static str) -> Result<T, EventError> {
    text.parse().map_err(|_| EventError::BadId(field))
}

fn text(value: String, field: &'static str, may_be_empty: bool) -> Result<String, EventError> {
    if (value.is_empty() && !may_be_empty) || value.len() > MAX_TEXT {
        return Err(EventError::BadText(field));
    }
    Ok(value)
}

/// The wire event as a domain event, or why it is refused.
pub fn decode_event(e: pb::UsageEvent) -> Result<UsageEvent, EventError> {
    if e.account_chain.is_empty() || e.account_chain.len() > MAX_CHAIN {
        return Err(EventError::BadChain);
    }
    let account_chain = e
        .account_chain
        .iter()
        .map(|a| id::<AccountId>(a, "account_chain"))
        .collect::<Result<Vec<_>, _>>()?;
    let status = u16::try_from(e.status)
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or(EventError::BadStatus(e.status))?;
    if e.cached_tokens > e.input_tokens
        || i64::try_from(e.input_tokens.max(e.output_tokens)).is_err()
    {
        return Err(EventError::BadTokens);
    }
    let source = match pb::UsageSource::try_from(e.source) {
        Ok(pb::UsageSource::Reported) => UsageSource::Reported,
        _ => UsageSource::Missing,
    };
    Ok(UsageEvent {
        id: id::<EventId>(&e.id, "id")?,
        at_unix_ms: e.at_unix_ms,
        account_chain,
        issued_key: id::<IssuedKeyId>(&e.issued_key_id, "issued_key_id")?,
        provider_key: if e.provider_key_id.is_empty() {
            None
        } else {
            Some(id::<ProviderKeyId>(&e.provider_key_id, "provider_key_id")?)
        },
        model_requested: text(e.model_requested, "model_requested", false)?,
        model_served: text(e.model_served, "model_served", false)?,
        level: e.level,
        status,
        latency_ms: e.latency_ms,
        ttfb_ms: e.ttfb_ms,
        tokens: TokenUsage {
            input: e.input_tokens,
            output: e.output_tokens,
            cached: e.cached_tokens,
        },
        source,
        cost_nanos: e.cost_nanos,
        path: text(e.path, "path", false)?,
        client_addr: text(e.client_addr, "client_addr", true)?,
        streamed: e.streamed,
    })
}

pub struct UsageGrpc {
    pub store: UsageStore,
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::UsageAck, Status>> + Send>>;

#[tonic::async_trait]
impl UsageService for UsageGrpc {
    type IngestStream = AckStream;

    async fn ingest(
        &self,
        request: Request<Streaming<pb::UsageBatch>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let mut inbound = request.into_inner();
        let store = self.store.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(b)) => b,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "ingest stream ended");
                        return;
                    }
                };
                let mut events = Vec::with_capacity(batch.events.len());
                let mut rejected = 0u32;
                for e in batch.events {
                    let event_id = e.id.clone();
                    match decode_event(e) {
                        Ok(ev) => events.push(ev),
                        Err(why) => {
                            rejected += 1;
                            tracing::warn!(event = %event_id, reason = %why, "usage event refused");
                        }
                    }
                }
                // Ack only after the transaction commits; on failure the stream ends
                // and the sender replays the unacked batch.
                let ack = match store.insert(&events).await {
                    Ok(stored) => pb::UsageAck {
                        seq: batch.seq,
                        stored: stored.new,
                        duplicates: stored.duplicates,
                        rejected,
                    },
                    Err(e) => {
                        tracing::error!(error = %e, seq = batch.seq, "storing usage failed");
                        let _ = tx
                            .send(Err(Status::unavailable("usage store failed; retry")))
                            .await;
                        return;
                    }
                };
                if tx.send(Ok(ack)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn query_rollups(
        &self,
        request: Request<pb::RollupQuery>,
    ) -> Result<Response<pb::RollupReply>, Status> {
        let q = request.into_inner();
        let main_account = if q.main_account_id.is_empty() {
            None
        } else {
            Some(
                id::<AccountId>(&q.main_account_id, "main_account_id")
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            )
        };
        let accounts = q
            .account_ids
            .iter()
            .map(|a| id::<AccountId>(a, "account_ids"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        for (day, field) in [(&q.from_day, "from_day"), (&q.to_day, "to_day")] {
            if switchyard_core::time::parse_utc_day(day).is_none() {
                return Err(Status::invalid_argument(format!(
                    "{field} must be YYYY-MM-DD"
                )));
            }
        }
        let granularity = match pb::Granularity::try_from(q.granularity) {
            Ok(pb::Granularity::Month) => Granularity::Month,
            _ => Granularity::Day,
        };
        let rows = self
            .store
            .rollups(&RollupFilter {
                main_account,
                accounts,
                from_day: q.from_day,
                to_day: q.to_day,
                granularity,
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "rollup query failed");
                Status::unavailable("usage store unavailable")
            })?;
        Ok(Response::new(pb::RollupReply {
            rows: rows
                .into_iter()
                .map(|r| pb::RollupRow {
                    period: r.period,
                    account_id: r.account_id,
                    model: r.model,
                    requests: r.requests,
                    errors: r.errors,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    cached_tokens: r.cached_tokens,
                    cost_nanos: r.cost_nanos,
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> pb::UsageEvent {
        pb::UsageEvent {
            id: EventId::new().to_string(),
            at_unix_ms: 1,
            account_chain: vec![AccountId::new().to_string()],
            issued_key_id: IssuedKeyId::new().to_string(),
            provider_key_id: String::new(),
            model_requested: "m".into(),
            model_served: "m".into(),
            status: 200,
            path: "/v1/chat/completions".into(),
            input_tokens: 3,
            cached_tokens: 1,
            ..Default::default()
        }
    }

    #[test]
    fn decodes_a_good_event() {
        let e = decode_event(event()).unwrap();
        assert_eq!(e.tokens.input, 3);
        assert_eq!(e.provider_key, None);
    }

    #[test]
    fn refuses_bad_events() {
        type Mutation = fn(&mut pb::UsageEvent);
        let cases: Vec<(Mutation, EventError)> = vec![
            (|e| e.id = "nope".into(), EventError::BadId("id")),
            (|e| e.account_chain.clear(), EventError::BadChain),
            (
                |e| e.account_chain = vec!["x".into()],
                EventError::BadId("account_chain"),
            ),
            (|e| e.status = 42, EventError::BadStatus(42)),
            (|e| e.cached_tokens = 9, EventError::BadTokens),
            (
                |e| e.model_served = String::new(),
                EventError::BadText("model_served"),
            ),
            (
                |e| e.provider_key_id = "bad".into(),
                EventError::BadId("provider_key_id"),
            ),
        ];
        for (mutate, want) in cases {
            let mut e = event();
            mutate(&mut e);
            assert_eq!(decode_event(e), Err(want));
        }
    }
}
