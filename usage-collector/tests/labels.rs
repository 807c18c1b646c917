//! Rollups per label (end user, session, tag) and the cap on their distinct values,
//! every scenario on SQLite and on Postgres.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

use switchyard_core::ids::AccountId;
use switchyard_core::usage::{RollupRow, UsageEvent};
use switchyard_tests::events::usage_event;
use switchyard_usage_collector::store::{
    EventFilter, Granularity, RollupBy, RollupFilter, UsageStore,
};

switchyard_tests::every_backend!(
    rollups_per_label_sum_a_subtree,
    the_cap_folds_new_values_into_other,
    replays_add_nothing_to_label_rollups,
    concurrent_writers_never_pass_the_cap,
    events_filter_by_end_user_and_tag,
);

// 2026-11-21T10:00:00Z.
const DAY: i64 = 1_795_219_200_000 + 10 * 3_600_000;
const MS_PER_DAY: i64 = 86_400_000;

/// A call of `chain[0]` at `at` carrying the labels given.
fn call(
    chain: &[AccountId],
    at: i64,
    user: Option<&str>,
    session: Option<&str>,
    tag: Option<&str>,
) -> UsageEvent {
    UsageEvent {
        session: session.map(str::to_owned),
        end_user: user.map(str::to_owned),
        tag: tag.map(str::to_owned),
        ..usage_event(chain, at)
    }
}

fn user(chain: &[AccountId], at: i64, value: &str) -> UsageEvent {
    call(chain, at, Some(value), None, None)
}

/// Rows per `by` of `main`'s tree (or of `accounts`), by day, summed over models.
async fn by(
    store: &UsageStore,
    main: AccountId,
    by: RollupBy,
    accounts: &[AccountId],
    granularity: Granularity,
) -> Vec<RollupRow> {
    store
        .rollups(&RollupFilter {
            main_account: Some(main),
            accounts: accounts.to_vec(),
            children: vec![],
            model: None,
            by,
            from_day: "2026-11-01".parse().unwrap(),
            to_day: "2026-12-31".parse().unwrap(),
            granularity,
        })
        .await
        .unwrap()
}

/// `(label, folded, requests)` of each row, in the store's order.
fn labels(rows: &[RollupRow]) -> Vec<(String, bool, u64)> {
    rows.iter()
        .map(|r| (r.label.clone().unwrap(), r.folded, r.requests))
        .collect()
}

fn row(label: &str, folded: bool, requests: u64) -> (String, bool, u64) {
    (label.to_owned(), folded, requests)
}

async fn rollups_per_label_sum_a_subtree(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let (main, child) = (AccountId::new(), AccountId::new());
    let under = [child, main];
    store
        .insert(&[
            call(&[main], DAY, Some("ada"), Some("s-1"), Some("build")),
            call(&under, DAY + 1, Some("ada"), Some("s-2"), None),
            call(&under, DAY + 2, Some("bob"), None, Some("build")),
            call(&under, DAY + 3, None, None, None),
            call(&under, DAY + MS_PER_DAY, Some("bob"), None, None),
        ])
        .await
        .unwrap();
    // The whole tree: every call once under each kind, '' for those without one.
    let rows = by(&store, main, RollupBy::User, &[], Granularity::Day).await;
    assert_eq!(
        labels(&rows),
        [
            row("", false, 1),
            row("ada", false, 2),
            row("bob", false, 1),
            row("bob", false, 1),
        ]
    );
    assert_eq!(rows[1].period, "2026-11-21");
    assert_eq!(rows[3].period, "2026-11-22");
    assert_eq!(
        (
            rows[1].input_tokens,
            rows[1].cost_nanos,
            rows[1].billed_nanos
        ),
        (20, 10, 12)
    );
    assert!(rows.iter().all(|r| r.account_id.is_empty()));
    let month = by(&store, main, RollupBy::User, &[], Granularity::Month).await;
    assert_eq!(
        labels(&month),
        [
            row("", false, 1),
            row("ada", false, 2),
            row("bob", false, 2)
        ]
    );
    // A subtree sees its own accounts' calls only.
    let child_only = by(&store, main, RollupBy::User, &[child], Granularity::Month).await;
    assert_eq!(
        labels(&child_only),
        [
            row("", false, 1),
            row("ada", false, 1),
            row("bob", false, 2)
        ]
    );
    let sessions = by(
        &store,
        main,
        RollupBy::Session,
        &[child],
        Granularity::Month,
    )
    .await;
    assert_eq!(labels(&sessions), [row("", false, 3), row("s-2", false, 1)]);
    let tags = by(&store, main, RollupBy::Tag, &[], Granularity::Month).await;
    assert_eq!(labels(&tags), [row("", false, 3), row("build", false, 2)]);
    // Another tree sees nothing of this one.
    assert!(
        by(
            &store,
            AccountId::new(),
            RollupBy::Tag,
            &[],
            Granularity::Day
        )
        .await
        .is_empty()
    );
}

async fn the_cap_folds_new_values_into_other(url: &str) {
    let store = UsageStore::open(url).await.unwrap().with_label_cap(2);
    let (main, child) = (AccountId::new(), AccountId::new());
    // "other" is a value like any: it takes a place and keeps a row of its own.
    store
        .insert(&[
            user(&[main], DAY, "ada"),
            user(&[main], DAY + 1, "other"),
            user(&[main], DAY + 2, "carol"),
            user(&[main], DAY + 3, "ada"),
        ])
        .await
        .unwrap();
    // Later batches: a known value stays, a new one folds; the next day starts over;
    // another account has places of its own.
    store
        .insert(&[
            user(&[main], DAY + 4, "dan"),
            user(&[main], DAY + 5, "other"),
            user(&[main], DAY + MS_PER_DAY, "dan"),
            user(&[child, main], DAY + 6, "erin"),
            call(&[main], DAY + 7, None, Some("s"), Some("t")),
        ])
        .await
        .unwrap();
    let rows = by(&store, main, RollupBy::User, &[main], Granularity::Day).await;
    assert_eq!(
        labels(&rows),
        [
            row("", false, 1),
            row("ada", false, 2),
            row("other", false, 2),
            row("other", true, 2),
            row("dan", false, 1),
        ]
    );
    assert_eq!(rows[3].period, "2026-11-21");
    assert_eq!(rows[4].period, "2026-11-22");
    let child_rows = by(&store, main, RollupBy::User, &[child], Granularity::Day).await;
    assert_eq!(labels(&child_rows), [row("erin", false, 1)]);
    // Each kind has its own places.
    let tags = by(&store, main, RollupBy::Tag, &[main], Granularity::Day).await;
    assert_eq!(
        labels(&tags)
            .into_iter()
            .filter(|(label, ..)| !label.is_empty())
            .collect::<Vec<_>>(),
        [row("t", false, 1)]
    );
    // The raw events keep their values.
    let carol = store
        .events(&EventFilter {
            end_user: Some("carol".into()),
            ..events_of(main)
        })
        .await
        .unwrap();
    assert_eq!(carol.len(), 1);
    assert_eq!(carol[0].end_user.as_deref(), Some("carol"));
}

async fn replays_add_nothing_to_label_rollups(url: &str) {
    let store = UsageStore::open(url).await.unwrap().with_label_cap(1);
    let main = AccountId::new();
    let first = [user(&[main], DAY, "ada"), user(&[main], DAY + 1, "bob")];
    store.insert(&first).await.unwrap();
    let before = by(&store, main, RollupBy::User, &[], Granularity::Day).await;
    assert_eq!(
        labels(&before),
        [row("ada", false, 1), row("other", true, 1)]
    );
    // Replayed, alone and inside a larger batch: nothing changes, and the replayed
    // "bob" does not take a place now.
    store.insert(&first).await.unwrap();
    let landed = store
        .insert(&[first[1].clone(), user(&[main], DAY + 2, "ada")])
        .await
        .unwrap();
    assert_eq!((landed.new, landed.duplicates), (1, 1));
    let after = by(&store, main, RollupBy::User, &[], Granularity::Day).await;
    assert_eq!(
        labels(&after),
        [row("ada", false, 2), row("other", true, 1)]
    );
}

/// Writers of separate stores at once (as collector replicas sharing a database):
/// the day still admits exactly the cap.
async fn concurrent_writers_never_pass_the_cap(url: &str) {
    let main = AccountId::new();
    let cap = 5;
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = UsageStore::open(url).await.unwrap().with_label_cap(cap);
        writers.push(tokio::spawn(async move {
            for b in 0..3 {
                let batch: Vec<UsageEvent> = (0..4)
                    .map(|i| user(&[main], DAY + i, &format!("u-{w}-{b}-{i}")))
                    .collect();
                store.insert(&batch).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let store = UsageStore::open(url).await.unwrap();
    let rows = by(&store, main, RollupBy::User, &[], Granularity::Day).await;
    let own = rows.iter().filter(|r| !r.folded).count();
    let folded: u64 = rows.iter().filter(|r| r.folded).map(|r| r.requests).sum();
    assert_eq!(own, cap as usize, "{rows:?}");
    assert!(rows.iter().filter(|r| !r.folded).all(|r| r.requests == 1));
    assert_eq!(folded, 4 * 3 * 4 - u64::from(cap));
}

fn events_of(main: AccountId) -> EventFilter {
    EventFilter {
        main_account: Some(main),
        within: None,
        from_ms: DAY,
        to_ms: DAY + 2 * MS_PER_DAY,
        model: None,
        status: None,
        session: None,
        end_user: None,
        tag: None,
        accounts: Vec::new(),
        before: None,
        limit: 100,
    }
}

async fn events_filter_by_end_user_and_tag(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    let claude = format!(
        "user_{}_account_0c5e6a1e-6a0b-4c1e-9f55-0123456789ab_session_7d1f0a2e",
        "ab".repeat(32)
    );
    let ada = call(&[main], DAY, Some("Ada L"), None, Some("build"));
    let code = call(&[main], DAY + 1, Some(&claude), Some("s"), None);
    let none = call(&[main], DAY + 2, None, None, None);
    store
        .insert(&[ada.clone(), code.clone(), none.clone()])
        .await
        .unwrap();
    // Read back as written, absent values included.
    assert_eq!(
        store.events(&events_of(main)).await.unwrap(),
        [none, code.clone(), ada.clone()]
    );
    let only = |end_user: Option<&str>, tag: Option<&str>| EventFilter {
        end_user: end_user.map(str::to_owned),
        tag: tag.map(str::to_owned),
        ..events_of(main)
    };
    assert_eq!(
        store.events(&only(Some("Ada L"), None)).await.unwrap(),
        std::slice::from_ref(&ada)
    );
    assert_eq!(
        store.events(&only(Some(&claude), None)).await.unwrap(),
        [code]
    );
    assert_eq!(
        store.events(&only(None, Some("build"))).await.unwrap(),
        std::slice::from_ref(&ada)
    );
    assert_eq!(
        store
            .events(&only(Some("Ada L"), Some("build")))
            .await
            .unwrap(),
        [ada]
    );
    assert!(
        store
            .events(&only(Some("Ada L"), Some("other")))
            .await
            .unwrap()
            .is_empty()
    );
}
