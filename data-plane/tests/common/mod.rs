//! What the limiter suites share: their clock, the charges of one call, and losing
//! Redis's keys.

use switchyard_core::ids::IssuedKeyId;
use switchyard_core::limits::{self, AccountLimits, Charge, LimitSubject, Reservation};
use switchyard_tests::redis::RedisServer;

/// The clock every call of a scenario uses: one instant, so one window holds every
/// request whatever the wall clock does meanwhile, and a real one, so Redis's expiry
/// times lie a minute or more ahead.
pub fn clock() -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *START.get_or_init(switchyard_runtime::now_ms)
}

/// The charges of one `gpt-4o` call by a fresh key under `chain`, reserving
/// `reservation`.
pub fn plan(chain: &[AccountLimits], reservation: Reservation) -> Vec<Charge> {
    let subject = LimitSubject {
        key: IssuedKeyId::new(),
        key_rpm: None,
        chain,
    };
    limits::plan(&subject, "gpt-4o", reservation, clock())
}

/// Redis loses every key, as when it restarts without persistence.
pub async fn flush(server: &RedisServer) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut connection)
        .await
        .unwrap();
}
