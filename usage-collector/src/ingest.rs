//! The collector's gRPC service: acked ingest and rollup queries.

use std::pin::Pin;

use futures_util::Stream;
use switchyard_core::ids::{AccountId, EventId};
use switchyard_core::time::UtcDay;
use switchyard_core::usage::UsageEvent;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::usage_service_server::UsageService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use switchyard_wire::{EventError, decode_event, encode_event, encode_rollup, id};

use crate::store::{
    EventFilter, Granularity, MAX_LISTED_ACCOUNTS, Quarantined, RollupBy, RollupFilter, StoreError,
    UsageStore,
};
use crate::writer::{WriteError, Writer, set_aside};

pub struct UsageGrpc {
    pub store: UsageStore,
    /// Stores ingested batches, grouping concurrent ones into one transaction.
    pub writer: Writer,
    /// Days raw events are kept (`None`: for good).
    pub keep_days: Option<u32>,
}

/// An event older than the retention cannot be checked for a replay (its raw copy
/// may be gone), so storing it could count it twice.
pub fn beyond_retention(at_ms: i64, now_ms: i64, keep_days: Option<u32>) -> bool {
    keep_days.is_some_and(|days| at_ms < now_ms - i64::from(days) * 86_400_000)
}

/// The quarantine's reason for an event older than the retention.
const BEYOND_RETENTION: &str = "beyond_retention";

/// A batch's events split into those to store and those to set aside, with why.
fn sort_batch(
    events: Vec<pb::UsageEvent>,
    now_ms: i64,
    keep_days: Option<u32>,
) -> (Vec<UsageEvent>, Vec<Quarantined>) {
    let mut good = Vec::with_capacity(events.len());
    let mut refused = Vec::new();
    for e in events {
        let sent = e.clone();
        match decode_event(e) {
            Ok(ev) if beyond_retention(ev.at_unix_ms, now_ms, keep_days) => {
                refused.push(Quarantined::new(
                    &sent.id,
                    BEYOND_RETENTION,
                    "older than the retention: its raw copy may be gone, so a replay could not be recognised",
                    &sent,
                ));
            }
            Ok(ev) => good.push(ev),
            Err(why) => {
                refused.push(Quarantined::new(
                    &sent.id,
                    why.kind(),
                    &why.to_string(),
                    &sent,
                ));
            }
        }
    }
    (good, refused)
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
        let writer = self.writer.clone();
        let store = self.store.clone();
        let keep_days = self.keep_days;
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
                let now = switchyard_runtime::now_ms();
                let (events, refused) = sort_batch(batch.events, now, keep_days);
                // Refused events are set aside before the ack, so none is lost unseen;
                // the batch is acked either way and never comes back.
                let stored = match set_aside(&store, &refused).await {
                    Ok(()) => writer.store(events).await,
                    Err(e) => Err(WriteError::Store(std::sync::Arc::new(e))),
                };
                // Ack only after the transaction commits; on failure the stream ends
                // and the sender replays the unacked batch.
                let ack = match stored {
                    Ok(stored) => pb::UsageAck {
                        seq: batch.seq,
                        stored: stored.new,
                        duplicates: stored.duplicates,
                        rejected: refused.len() as u32 + stored.quarantined,
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

    async fn query_events(
        &self,
        request: Request<pb::EventQuery>,
    ) -> Result<Response<pb::EventPage>, Status> {
        let q = request.into_inner();
        let bad = |e: EventError| Status::invalid_argument(e.to_string());
        let optional_id = |text: &str, field| {
            if text.is_empty() {
                Ok(None)
            } else {
                id::<AccountId>(text, field).map(Some)
            }
        };
        let before = if q.before.is_empty() {
            None
        } else {
            let parsed = q
                .before
                .split_once(':')
                .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.parse::<EventId>().ok()?)));
            let (ms, id) = parsed.ok_or_else(|| {
                Status::invalid_argument("before is not a cursor from a previous page")
            })?;
            Some((ms, id.to_string()))
        };
        if q.limit == 0 || q.limit > 1000 {
            return Err(Status::invalid_argument("limit must be 1-1000"));
        }
        if q.from_unix_ms >= q.to_unix_ms {
            return Err(Status::invalid_argument("from must be before to"));
        }
        if q.account_ids.len() > MAX_LISTED_ACCOUNTS {
            return Err(Status::invalid_argument(format!(
                "account_ids lists at most {MAX_LISTED_ACCOUNTS} accounts"
            )));
        }
        let accounts = q
            .account_ids
            .iter()
            .map(|a| id::<AccountId>(a, "account_ids"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let filter = EventFilter {
            main_account: optional_id(&q.main_account_id, "main_account_id").map_err(bad)?,
            within: optional_id(&q.within_account_id, "within_account_id").map_err(bad)?,
            from_ms: q.from_unix_ms,
            to_ms: q.to_unix_ms,
            model: (!q.model.is_empty()).then_some(q.model),
            status: u16::try_from(q.status).ok().filter(|s| *s != 0),
            session: (!q.session.is_empty()).then_some(q.session),
            end_user: (!q.end_user.is_empty()).then_some(q.end_user),
            tag: (!q.tag.is_empty()).then_some(q.tag),
            before,
            limit: q.limit,
            accounts,
        };
        let events = self.store.events(&filter).await.map_err(|e| {
            tracing::error!(error = %e, "event query failed");
            Status::unavailable("usage store unavailable")
        })?;
        let next = match events.last() {
            Some(last) if events.len() == filter.limit as usize => {
                format!("{}:{}", last.at_unix_ms, last.id)
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::EventPage {
            events: events.into_iter().map(encode_event).collect(),
            next,
        }))
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
        let day = |text: &str, field: &str| {
            text.parse::<UtcDay>()
                .map_err(|_| Status::invalid_argument(format!("{field} must be YYYY-MM-DD")))
        };
        let (from_day, to_day) = (day(&q.from_day, "from_day")?, day(&q.to_day, "to_day")?);
        let granularity = match pb::Granularity::try_from(q.granularity) {
            Ok(pb::Granularity::Month) => Granularity::Month,
            _ => Granularity::Day,
        };
        let label = match pb::RollupLabel::try_from(q.by_label) {
            Ok(pb::RollupLabel::Unspecified) => None,
            Ok(pb::RollupLabel::User) => Some(RollupBy::User),
            Ok(pb::RollupLabel::Session) => Some(RollupBy::Session),
            Ok(pb::RollupLabel::Tag) => Some(RollupBy::Tag),
            Err(_) => return Err(Status::invalid_argument("by_label names no label")),
        };
        let by = match (q.by_provider_key, q.by_endpoint, q.by_child, label) {
            (false, false, false, None) => RollupBy::Account,
            (true, false, false, None) => RollupBy::ProviderKey,
            (false, true, false, None) => RollupBy::Endpoint,
            (false, false, true, None) => RollupBy::Child,
            (false, false, false, Some(by)) => by,
            _ => {
                return Err(Status::invalid_argument(
                    "rollups are per provider key, per endpoint, per child or per label: one of them",
                ));
            }
        };
        let children = q
            .child_ids
            .iter()
            .map(|a| id::<AccountId>(a, "child_ids"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if q.by_child && children.len() != accounts.len() {
            return Err(Status::invalid_argument(
                "rollups per child name one child per listed account: child_ids as long as account_ids",
            ));
        }
        if q.by_child && accounts.is_empty() && main_account.is_some() {
            return Err(Status::invalid_argument(
                "rollups per child of a main account's tree list its accounts in account_ids",
            ));
        }
        if !q.by_child && !children.is_empty() {
            return Err(Status::invalid_argument(
                "child_ids are for rollups per child",
            ));
        }
        if q.by_provider_key && !accounts.is_empty() {
            return Err(Status::invalid_argument(
                "rollups per provider key cover the whole tree: leave account_ids empty",
            ));
        }
        if q.by_endpoint && !accounts.is_empty() {
            return Err(Status::invalid_argument(
                "rollups per endpoint cover the whole tree: leave account_ids empty",
            ));
        }
        let rows = self
            .store
            .rollups(&RollupFilter {
                main_account,
                accounts,
                children,
                by,
                from_day,
                to_day,
                granularity,
                model: (!q.model.is_empty()).then_some(q.model),
            })
            .await
            .map_err(|e| match e {
                StoreError::TooManyRows => Status::out_of_range(e.to_string()),
                e => {
                    tracing::error!(error = %e, "rollup query failed");
                    Status::unavailable("usage store unavailable")
                }
            })?;
        Ok(Response::new(pb::RollupReply {
            rows: rows.into_iter().map(encode_rollup).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_older_than_the_retention_are_refused() {
        let day = 86_400_000;
        let now = 100 * day;
        assert!(!beyond_retention(now - 5 * day, now, None));
        assert!(!beyond_retention(now - 5 * day, now, Some(5)));
        assert!(beyond_retention(now - 5 * day - 1, now, Some(5)));
        assert!(!beyond_retention(now + day, now, Some(5)));
    }
}
