//! The few etcd calls coordination makes, over the generated gRPC stubs: put (with a
//! lease), get (one key or a prefix), delete, lease grant/keep-alive/revoke, watch
//! one key, and campaign in an election.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

use super::proto::etcdserverpb::kv_client::KvClient;
use super::proto::etcdserverpb::lease_client::LeaseClient;
use super::proto::etcdserverpb::watch_client::WatchClient;
use super::proto::etcdserverpb::watch_request::RequestUnion;
use super::proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseRevokeRequest, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use super::proto::mvccpb::KeyValue;
use super::proto::mvccpb::event::EventType;
use super::proto::v3electionpb::CampaignRequest;
use super::proto::v3electionpb::election_client::ElectionClient;

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("invalid etcd endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("{0}")]
    Call(#[from] tonic::Status),
    #[error("etcd refused the call: {0}")]
    Refused(String),
    #[error("etcd closed the {0} stream")]
    StreamClosed(&'static str),
}

/// How the connection to etcd is kept.
pub(crate) struct ConnectSettings {
    pub connect_timeout: Duration,
    /// HTTP/2 pings at this interval, also while idle, so a dead etcd (or path to
    /// it) is noticed even when no call is pending.
    pub keep_alive_interval: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    pub keep_alive_timeout: Duration,
}

/// A client of one etcd cluster; cheap to clone. Connects lazily, spreading calls
/// over the endpoints, and reconnects by itself.
#[derive(Clone)]
pub(crate) struct EtcdClient {
    channel: Channel,
}

/// One key and its value, as stored.
pub(crate) struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// What a read found, and at which revision of the store.
pub(crate) struct Found {
    pub entries: Vec<Entry>,
    pub revision: i64,
}

/// The end of etcd's key range that holds every key starting with `prefix`: the
/// prefix with its last byte below 0xff raised by one; `\0` (every key) when there is
/// no such byte.
pub(crate) fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `http://host:port`, or `host:port` meaning plain HTTP; TLS is not supported.
fn endpoint_uri(endpoint: &str) -> Result<String, EtcdError> {
    let refuse = |reason: &str| EtcdError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    if endpoint.starts_with("https://") {
        return Err(refuse("TLS to etcd is not supported; use http://"));
    }
    if endpoint.starts_with("http://") {
        Ok(endpoint.to_owned())
    } else if endpoint.contains("://") {
        Err(refuse("only http:// endpoints are supported"))
    } else {
        Ok(format!("http://{endpoint}"))
    }
}

fn into_entry(kv: KeyValue) -> Entry {
    Entry {
        key: kv.key,
        value: kv.value,
    }
}

impl EtcdClient {
    /// A client of `endpoints`. Needs a tokio runtime; does not wait for etcd.
    pub fn new(endpoints: &[String], settings: &ConnectSettings) -> Result<Self, EtcdError> {
        let mut list = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let uri = endpoint_uri(endpoint)?;
            let built = Endpoint::from_shared(uri).map_err(|e| EtcdError::Endpoint {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
            list.push(
                built
                    .connect_timeout(settings.connect_timeout)
                    .http2_keep_alive_interval(settings.keep_alive_interval)
                    .keep_alive_timeout(settings.keep_alive_timeout)
                    .keep_alive_while_idle(true),
            );
        }
        if list.is_empty() {
            return Err(EtcdError::Endpoint {
                endpoint: String::new(),
                reason: "no etcd endpoints".into(),
            });
        }
        Ok(Self {
            channel: Channel::balance_list(list.into_iter()),
        })
    }

    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }

    fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel.clone())
    }

    /// Put `value` at `key`, bound to `lease` if given (it disappears with it).
    pub async fn put(&self, key: &str, value: &str, lease: Option<i64>) -> Result<(), EtcdError> {
        self.kv()
            .put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                lease: lease.unwrap_or(0),
                ..PutRequest::default()
            })
            .await?;
        Ok(())
    }

    /// The entry at `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Found, EtcdError> {
        self.range(key.as_bytes().to_vec(), Vec::new()).await
    }

    /// Every entry whose key starts with `prefix`.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Found, EtcdError> {
        let end = prefix_range_end(prefix.as_bytes());
        self.range(prefix.as_bytes().to_vec(), end).await
    }

    async fn range(&self, key: Vec<u8>, range_end: Vec<u8>) -> Result<Found, EtcdError> {
        let answer = self
            .kv()
            .range(RangeRequest {
                key,
                range_end,
                ..RangeRequest::default()
            })
            .await?
            .into_inner();
        Ok(Found {
            revision: answer.header.map_or(0, |h| h.revision),
            entries: answer.kvs.into_iter().map(into_entry).collect(),
        })
    }

    pub async fn delete(&self, key: &str) -> Result<(), EtcdError> {
        self.kv()
            .delete_range(DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..DeleteRangeRequest::default()
            })
            .await?;
        Ok(())
    }

    /// A new lease living `ttl` seconds unless kept alive; its id.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, EtcdError> {
        let answer = self
            .lease()
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await?
            .into_inner();
        if !answer.error.is_empty() {
            return Err(EtcdError::Refused(answer.error));
        }
        Ok(answer.id)
    }

    /// End `lease` now, and with it every key bound to it.
    pub async fn lease_revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.lease()
            .lease_revoke(LeaseRevokeRequest { id: lease })
            .await?;
        Ok(())
    }

    /// Open a keep-alive stream for `lease` and renew it once; fails if the lease
    /// is gone.
    pub async fn lease_keep_alive(&self, lease: i64) -> Result<LeaseKeeper, EtcdError> {
        // Room for a few renewals in flight; the keeper sends one per answer.
        let (requests, outgoing) = mpsc::channel(4);
        let first = LeaseKeepAliveRequest { id: lease };
        requests
            .try_send(first)
            .map_err(|_| EtcdError::StreamClosed("lease keep-alive"))?;
        let answers = self
            .lease()
            .lease_keep_alive(ReceiverStream::new(outgoing))
            .await?
            .into_inner();
        let mut keeper = LeaseKeeper {
            lease,
            requests,
            answers,
        };
        if keeper.receive().await? <= 0 {
            return Err(EtcdError::Refused("lease not found".into()));
        }
        Ok(keeper)
    }

    /// Watch `key` from `start_revision` on (0: from now). The stream is open once
    /// this returns.
    pub async fn watch(&self, key: &str, start_revision: i64) -> Result<KeyWatch, EtcdError> {
        let (requests, outgoing) = mpsc::channel(1);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.as_bytes().to_vec(),
                start_revision,
                ..WatchCreateRequest::default()
            })),
        };
        requests
            .try_send(create)
            .map_err(|_| EtcdError::StreamClosed("watch"))?;
        let answers = WatchClient::new(self.channel.clone())
            .watch(ReceiverStream::new(outgoing))
            .await?
            .into_inner();
        Ok(KeyWatch {
            _requests: requests,
            answers,
        })
    }

    /// Stand for election `name` as `value`, bound to `lease`; returns once elected
    /// (it may wait for as long as another candidate leads).
    pub async fn campaign(&self, name: &str, value: &str, lease: i64) -> Result<(), EtcdError> {
        ElectionClient::new(self.channel.clone())
            .campaign(CampaignRequest {
                name: name.as_bytes().to_vec(),
                lease,
                value: value.as_bytes().to_vec(),
            })
            .await?;
        Ok(())
    }
}

/// An open keep-alive stream for one lease.
pub(crate) struct LeaseKeeper {
    lease: i64,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    answers: Streaming<LeaseKeepAliveResponse>,
}

impl LeaseKeeper {
    /// The lease's remaining time to live after the latest renewal, in seconds; 0
    /// or less when etcd no longer knows the lease.
    async fn receive(&mut self) -> Result<i64, EtcdError> {
        match self.answers.message().await? {
            Some(answer) => Ok(answer.ttl),
            None => Err(EtcdError::StreamClosed("lease keep-alive")),
        }
    }

    /// Renew the lease once; its remaining time to live in seconds (0 or less: it
    /// expired).
    pub async fn keep_alive(&mut self) -> Result<i64, EtcdError> {
        self.requests
            .try_send(LeaseKeepAliveRequest { id: self.lease })
            .map_err(|_| EtcdError::StreamClosed("lease keep-alive"))?;
        self.receive().await
    }
}

/// An open watch of one key.
pub(crate) struct KeyWatch {
    /// Held so the request side stays open: the watch lives as long as it does.
    _requests: mpsc::Sender<WatchRequest>,
    answers: Streaming<WatchResponse>,
}

impl KeyWatch {
    /// The values put at the key by the next batch of changes (deletions are
    /// left out); `None` when etcd ends the stream. A watch etcd cancels (for one,
    /// its start revision was compacted away) is an error, so the caller reads
    /// the key again and watches anew.
    pub async fn next(&mut self) -> Result<Option<Vec<Vec<u8>>>, EtcdError> {
        let Some(answer) = self.answers.message().await? else {
            return Ok(None);
        };
        if answer.canceled {
            return Err(EtcdError::Refused(format!(
                "watch canceled: {} (compacted up to revision {})",
                answer.cancel_reason, answer.compact_revision
            )));
        }
        Ok(Some(
            answer
                .events
                .into_iter()
                .filter(|event| event.r#type() == EventType::Put)
                .filter_map(|event| event.kv)
                .map(|kv| kv.value)
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_past_its_last_key() {
        assert_eq!(prefix_range_end(b"/a/"), b"/a0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_range_end(b""), b"\0");
    }

    #[test]
    fn endpoints_are_plain_http() {
        assert_eq!(
            endpoint_uri("http://127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(endpoint_uri("etcd:2379").unwrap(), "http://etcd:2379");
        assert!(matches!(
            endpoint_uri("https://etcd:2379"),
            Err(EtcdError::Endpoint { .. })
        ));
        assert!(matches!(
            endpoint_uri("unix:///run/etcd.sock"),
            Err(EtcdError::Endpoint { .. })
        ));
    }
}
