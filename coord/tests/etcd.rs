//! Two coordinators over one real etcd: one hears what the other announces, sees
//! what it registers and unregisters, exactly one leads an election, and when the
//! leader stops its leadership and its entries go at once (its lease is revoked),
//! not after the lease's time-to-live.

use std::time::Duration;

use switchyard_coord::{CoordError, Coordinator, EtcdError, EtcdSettings};
use switchyard_runtime::{ShutdownTrigger, shutdown_pair};
use switchyard_tests::etcd::EtcdServer;
use tokio::sync::watch;

/// Far longer than anything here should take, far shorter than a hung test.
const PATIENCE: Duration = Duration::from_secs(10);

fn settings(endpoint: &str, member: &str) -> EtcdSettings {
    EtcdSettings {
        endpoints: vec![endpoint.to_owned()],
        prefix: "/coord-test/".into(),
        member: member.to_owned(),
        // Long, so that anything faster than this came from a revocation.
        lease_ttl: Duration::from_secs(30),
    }
}

fn start(endpoint: &str, member: &str) -> Result<(Coordinator, ShutdownTrigger), CoordError> {
    let (trigger, shutdown) = shutdown_pair();
    Ok((
        Coordinator::etcd(settings(endpoint, member), shutdown)?,
        trigger,
    ))
}

/// Poll `check` until it holds; false if it never did within [`PATIENCE`].
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    switchyard_tests::wait::within(PATIENCE, async || check().await.then_some(()))
        .await
        .is_some()
}

async fn members(c: &Coordinator) -> Vec<(String, String)> {
    c.members("planes").await.unwrap_or_default()
}

fn leading(leader: &watch::Receiver<bool>) -> bool {
    *leader.borrow()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_signals_registry_and_one_leadership_over_etcd() {
    let etcd = EtcdServer::start().unwrap();
    let endpoint = etcd.endpoint();
    let (a, stop_a) = start(&endpoint, "a").unwrap();
    let (b, stop_b) = start(&endpoint, "b").unwrap();
    assert_eq!(a.backend(), "etcd");

    // A signal from one replica reaches the other.
    let heard = b.revisions();
    a.announce(7);
    assert!(
        eventually(|| async { *heard.borrow() >= 7 }).await,
        "b never heard revision 7"
    );
    assert_eq!(*heard.borrow(), 7);

    // Registry: entries of both, by id; an unregistered one goes.
    a.register("planes", "a-1", "10.0.0.1".into()).await;
    b.register("planes", "b-1", "10.0.0.2".into()).await;
    b.register("planes", "b-2", "10.0.0.3".into()).await;
    b.register("other", "x", "elsewhere".into()).await;
    let all = vec![
        ("a-1".to_owned(), "10.0.0.1".to_owned()),
        ("b-1".to_owned(), "10.0.0.2".to_owned()),
        ("b-2".to_owned(), "10.0.0.3".to_owned()),
    ];
    assert!(
        eventually(|| async { members(&a).await == all }).await,
        "a sees {:?}",
        members(&a).await
    );
    b.unregister("planes", "b-2").await;
    assert!(
        eventually(|| async { members(&a).await.len() == 2 }).await,
        "b-2 still registered: {:?}",
        members(&a).await
    );

    // Exactly one of them leads.
    let leader_a = a.leadership("retention");
    let leader_b = b.leadership("retention");
    assert!(
        eventually(|| async { leading(&leader_a) || leading(&leader_b) }).await,
        "nobody leads"
    );
    assert!(!(leading(&leader_a) && leading(&leader_b)), "both lead");

    // The leader stops: the other leads well before the 30 s lease would have
    // expired, and the stopped one's entries are gone.
    let a_led = leading(&leader_a);
    let (stop, stopped_leader, survivor, survivor_leader, survivor_entry) = if a_led {
        (&stop_a, &leader_a, &b, &leader_b, ("b-1", "10.0.0.2"))
    } else {
        (&stop_b, &leader_b, &a, &leader_a, ("a-1", "10.0.0.1"))
    };
    stop.trigger();
    assert!(
        eventually(|| async { !leading(stopped_leader) && leading(survivor_leader) }).await,
        "leadership did not move"
    );
    let left = vec![(survivor_entry.0.to_owned(), survivor_entry.1.to_owned())];
    assert!(
        eventually(|| async { members(survivor).await == left }).await,
        "the stopped replica's entries stayed: {:?}",
        members(survivor).await
    );
}

#[tokio::test]
async fn endpoints_etcd_cannot_be_reached_through_are_refused_at_start() {
    for endpoint in [
        "https://etcd:2379",
        "unix:///run/etcd.sock",
        "http://bad host",
    ] {
        let (_trigger, shutdown) = shutdown_pair();
        let refused = Coordinator::etcd(settings(endpoint, "a"), shutdown);
        assert!(
            matches!(refused, Err(CoordError::Etcd(EtcdError::Endpoint { .. }))),
            "{endpoint} was taken"
        );
    }
}
