//! The usage store, every scenario on SQLite and on Postgres.

#![expect(
    clippy::unwrap_used,
    reason = "scenarios fail loudly on the first surprise"
)]

use switchyard_core::ids::{AccountId, EventId, IssuedKeyId, ProviderKeyId};
use switchyard_core::usage::{TokenUsage, UsageEvent, UsageSource};
use switchyard_usage_collector::store::{
    EventFilter, Granularity, MAX_ROLLUP_ROWS, RollupBy, RollupFilter, StoreError, UsageStore,
};

switchyard_tests::every_backend!(
    replays_change_nothing,
    large_batches_with_repeats_count_once,
    rollups_by_day_month_and_account,
    events_page_newest_first,
    old_events_are_forgotten_and_rollups_stay,
    rollups_per_provider_key_for_the_owner,
    batches_stored_together_say_how_each_landed,
    overlapping_batches_at_once_count_each_event_once,
    sessions_are_stored_and_filter_the_events,
    rollups_per_endpoint_tell_counting_from_generation,
    a_rollup_read_too_big_to_answer_is_refused,
    rollups_per_child_sum_each_subtree_past_the_cap,
    rollups_of_one_model_are_read_alone
);

// 2026-11-21T10:00:00Z and the next days.
const DAY: i64 = 1_795_219_200_000 + 10 * 3_600_000;
const MS_PER_DAY: i64 = 86_400_000;

fn event(
    chain: &[AccountId],
    at: i64,
    model: &str,
    status: u16,
    input: u64,
    output: u64,
) -> UsageEvent {
    UsageEvent {
        id: EventId::new(),
        at_unix_ms: at,
        account_chain: chain.to_vec(),
        issued_key: IssuedKeyId::new(),
        provider_key: Some(ProviderKeyId::new()),
        model_requested: model.into(),
        model_served: model.into(),
        level: 1,
        status,
        latency_ms: 10,
        ttfb_ms: Some(5),
        tokens: TokenUsage {
            input,
            output,
            cached: input / 2,
            cache_write: 0,
        },
        source: UsageSource::Reported,
        cost_nanos: 7,
        billed_nanos: 9,
        price_version: 41,
        path: "/v1/chat/completions".into(),
        client_addr: "127.0.0.1".into(),
        streamed: false,
        session: None,
        end_user: None,
        tag: None,
        client_protocol: None,
        upstream_protocol: None,
    }
}

fn filter(main: AccountId, granularity: Granularity) -> RollupFilter {
    RollupFilter {
        main_account: Some(main),
        accounts: vec![],
        children: vec![],
        model: None,
        by: RollupBy::Account,
        from_day: "2026-11-01".parse().unwrap(),
        to_day: "2026-12-31".parse().unwrap(),
        granularity,
    }
}

async fn replays_change_nothing(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    let batch: Vec<_> = (0..50)
        .map(|i| event(&[main], DAY + i, "m", 200, 10, 3))
        .collect();
    let first = store.insert(&batch).await.unwrap();
    assert_eq!((first.new, first.duplicates), (50, 0));
    let before = store
        .rollups(&filter(main, Granularity::Day))
        .await
        .unwrap();

    // The same batch again, and a batch that overlaps it by half.
    let again = store.insert(&batch).await.unwrap();
    assert_eq!((again.new, again.duplicates), (0, 50));
    let mut overlap: Vec<_> = batch[25..].to_vec();
    overlap.extend((0..25).map(|i| event(&[main], DAY + i, "m", 200, 10, 3)));
    let mixed = store.insert(&overlap).await.unwrap();
    assert_eq!((mixed.new, mixed.duplicates), (25, 25));

    let after = store
        .rollups(&filter(main, Granularity::Day))
        .await
        .unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].requests, 50);
    assert_eq!(after[0].requests, 75);
    assert_eq!(after[0].input_tokens, 750);
    assert_eq!(after[0].output_tokens, 225);
    assert_eq!(after[0].cached_tokens, 375);
    assert_eq!(after[0].cost_nanos, 525);
    assert_eq!(after[0].billed_nanos, 675);
}

/// A batch spanning several statements, holding one event twice: stored and rolled
/// up once each.
async fn large_batches_with_repeats_count_once(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    let child = AccountId::new();
    let mut batch: Vec<_> = (0..600)
        .map(|i| {
            let chain: &[AccountId] = if i % 3 == 0 { &[child, main] } else { &[main] };
            event(
                chain,
                DAY + i,
                "m",
                if i % 10 == 0 { 500 } else { 200 },
                2,
                1,
            )
        })
        .collect();
    batch.push(batch[7].clone());
    let stored = store.insert(&batch).await.unwrap();
    assert_eq!((stored.new, stored.duplicates), (600, 1));
    let rows = store
        .rollups(&filter(main, Granularity::Day))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 600);
    assert_eq!(rows.iter().map(|r| r.errors).sum::<u64>(), 60);
    assert_eq!(rows.iter().map(|r| r.input_tokens).sum::<u64>(), 1200);
    let child_row = rows
        .iter()
        .find(|r| r.account_id == child.to_string())
        .unwrap();
    assert_eq!(child_row.requests, 200);
}

async fn rollups_by_day_month_and_account(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    let child = AccountId::new();
    let stranger = AccountId::new();
    store
        .insert(&[
            event(&[main], DAY, "a", 200, 1, 1),
            event(&[main], DAY + 1, "a", 500, 2, 0),
            event(&[child, main], DAY + MS_PER_DAY, "a", 200, 4, 4),
            event(&[child, main], DAY + 10 * MS_PER_DAY, "b", 200, 8, 8),
            event(&[stranger], DAY, "a", 200, 100, 100),
        ])
        .await
        .unwrap();

    let days = store
        .rollups(&filter(main, Granularity::Day))
        .await
        .unwrap();
    assert_eq!(days.len(), 3, "{days:?}");
    let first = days.iter().find(|r| r.period == "2026-11-21").unwrap();
    assert_eq!(
        (first.requests, first.errors, first.input_tokens),
        (2, 1, 3)
    );

    let months = store
        .rollups(&filter(main, Granularity::Month))
        .await
        .unwrap();
    let child_a = months
        .iter()
        .find(|r| r.account_id == child.to_string() && r.model == "a")
        .unwrap();
    assert_eq!((child_a.period.as_str(), child_a.requests), ("2026-11", 1));
    assert_eq!(months.iter().map(|r| r.requests).sum::<u64>(), 4);

    let mut only_child = filter(main, Granularity::Month);
    only_child.accounts = vec![child];
    let rows = store.rollups(&only_child).await.unwrap();
    assert!(rows.iter().all(|r| r.account_id == child.to_string()));
    assert_eq!(rows.iter().map(|r| r.input_tokens).sum::<u64>(), 12);

    let mut narrow = filter(main, Granularity::Day);
    narrow.to_day = "2026-11-21".parse().unwrap();
    assert_eq!(store.rollups(&narrow).await.unwrap().len(), 1);

    let mut everyone = filter(main, Granularity::Day);
    everyone.main_account = None;
    assert_eq!(
        store
            .rollups(&everyone)
            .await
            .unwrap()
            .iter()
            .map(|r| r.requests)
            .sum::<u64>(),
        5
    );
}

async fn events_page_newest_first(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    let child = AccountId::new();
    let stranger = AccountId::new();
    let all = vec![
        event(&[main], DAY, "a", 200, 1, 1),
        event(&[child, main], DAY + 1, "b", 500, 2, 2),
        event(&[child, main], DAY + 2, "a", 200, 3, 3),
        event(&[stranger], DAY + 3, "a", 200, 4, 4),
    ];
    store.insert(&all).await.unwrap();
    let filter = |within: Option<AccountId>| EventFilter {
        main_account: Some(main),
        within,
        from_ms: DAY,
        to_ms: DAY + MS_PER_DAY,
        model: None,
        status: None,
        session: None,
        end_user: None,
        tag: None,
        before: None,
        accounts: Vec::new(),
        limit: 10,
    };
    let got = store.events(&filter(None)).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.at_unix_ms).collect::<Vec<_>>(),
        vec![DAY + 2, DAY + 1, DAY]
    );
    assert_eq!(got[0], all[2]);
    assert_eq!(store.events(&filter(Some(child))).await.unwrap().len(), 2);
    let mut f = filter(None);
    f.model = Some("a".into());
    assert_eq!(store.events(&f).await.unwrap().len(), 2);
    let mut f = filter(None);
    f.status = Some(500);
    assert_eq!(store.events(&f).await.unwrap().len(), 1);
    let mut f = filter(None);
    f.limit = 1;
    f.before = Some((all[2].at_unix_ms, all[2].id.to_string()));
    assert_eq!(store.events(&f).await.unwrap()[0].id, all[1].id);
    let mut f = filter(None);
    f.from_ms = DAY + 1;
    f.to_ms = DAY + 2;
    assert_eq!(store.events(&f).await.unwrap().len(), 1);
    let mut every = filter(None);
    every.main_account = None;
    assert_eq!(store.events(&every).await.unwrap().len(), 4);

    // Listed accounts: their own events only, whoever is below them.
    let mut f = filter(None);
    f.accounts = vec![child];
    let got = store.events(&f).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![all[2].id, all[1].id]
    );
    f.accounts = vec![main, child];
    assert_eq!(store.events(&f).await.unwrap().len(), 3);
    f.accounts = vec![main];
    f.within = Some(main);
    assert_eq!(store.events(&f).await.unwrap()[0].id, all[0].id);
    f.accounts = vec![stranger];
    assert!(store.events(&f).await.unwrap().is_empty());

    // Pages of one event walk a millisecond three events share by id, then go on.
    let tied: Vec<_> = (0..3)
        .map(|i| event(&[main], DAY + 10, "a", 200, i, i))
        .chain([event(&[main], DAY + 9, "a", 200, 9, 9)])
        .collect();
    store.insert(&tied).await.unwrap();
    let mut expected: Vec<String> = tied[..3].iter().map(|e| e.id.to_string()).collect();
    expected.sort();
    expected.reverse();
    expected.push(tied[3].id.to_string());
    let mut f = filter(None);
    f.from_ms = DAY + 9;
    f.limit = 1;
    let mut walked = Vec::new();
    while let Some(e) = store.events(&f).await.unwrap().pop() {
        f.before = Some((e.at_unix_ms, e.id.to_string()));
        walked.push(e.id.to_string());
    }
    assert_eq!(walked, expected);
}

async fn old_events_are_forgotten_and_rollups_stay(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    // Two share a millisecond: a batch ending on it takes both.
    let old: Vec<UsageEvent> = [0, 1, 1, 2, 3]
        .into_iter()
        .map(|ms| event(&[main], DAY + ms, "a", 200, 1, 1))
        .collect();
    let recent = event(&[main], DAY + 3 * MS_PER_DAY, "a", 200, 1, 1);
    store.insert(&old).await.unwrap();
    store.insert(std::slice::from_ref(&recent)).await.unwrap();
    let before = store
        .rollups(&filter(main, Granularity::Month))
        .await
        .unwrap();

    let cutoff = DAY + MS_PER_DAY;
    assert_eq!(store.forget_events_before(cutoff, 1).await.unwrap(), 1);
    assert_eq!(store.forget_events_before(cutoff, 1).await.unwrap(), 2);
    assert_eq!(store.forget_events_before(cutoff, 10).await.unwrap(), 2);
    assert_eq!(store.forget_events_before(cutoff, 10).await.unwrap(), 0);

    let all = EventFilter {
        main_account: Some(main),
        within: None,
        from_ms: 0,
        to_ms: i64::MAX,
        model: None,
        status: None,
        session: None,
        end_user: None,
        tag: None,
        before: None,
        accounts: Vec::new(),
        limit: 100,
    };
    let left = store.events(&all).await.unwrap();
    assert_eq!(left, vec![recent.clone()]);
    assert_eq!(
        store
            .rollups(&filter(main, Granularity::Month))
            .await
            .unwrap(),
        before,
        "rollups are kept for good"
    );
}

/// The owner sees what each of its provider keys carried, across its whole tree,
/// with cache reads and writes apart; replays change nothing here either.
async fn rollups_per_provider_key_for_the_owner(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let (main, child, other_main) = (AccountId::new(), AccountId::new(), AccountId::new());
    let (first, second) = (ProviderKeyId::new(), ProviderKeyId::new());
    let through = |key: ProviderKeyId, chain: &[AccountId], at: i64, status: u16| {
        let mut e = event(chain, at, "m", status, 10, 4);
        e.provider_key = Some(key);
        e.tokens.cache_write = 3;
        e
    };
    let mut batch = vec![
        through(first, &[main], DAY, 200),
        through(first, &[child, main], DAY + 1, 500),
        through(second, &[child, main], DAY + 2, 200),
        through(first, &[main], DAY + MS_PER_DAY, 200),
        through(first, &[other_main], DAY, 200),
    ];
    let mut no_key = event(&[main], DAY, "m", 503, 0, 0);
    no_key.provider_key = None;
    batch.push(no_key);
    store.insert(&batch).await.unwrap();
    store.insert(&batch).await.unwrap();

    let by_key = |granularity| RollupFilter {
        by: RollupBy::ProviderKey,
        ..filter(main, granularity)
    };
    let days = store.rollups(&by_key(Granularity::Day)).await.unwrap();
    let rows: Vec<_> = days
        .iter()
        .map(|r| {
            (
                r.provider_key_id.clone(),
                r.period.clone(),
                r.requests,
                r.errors,
            )
        })
        .collect();
    let mut expected = vec![
        (first.to_string(), "2026-11-21".to_owned(), 2, 1),
        (first.to_string(), "2026-11-22".to_owned(), 1, 0),
        (second.to_string(), "2026-11-21".to_owned(), 1, 0),
    ];
    let mut sorted = rows.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    assert!(days.iter().all(|r| r.account_id.is_empty()));
    let months = store.rollups(&by_key(Granularity::Month)).await.unwrap();
    let first_month = months
        .iter()
        .find(|r| r.provider_key_id == first.to_string())
        .unwrap();
    assert_eq!(first_month.period, "2026-11");
    assert_eq!(
        (
            first_month.requests,
            first_month.input_tokens,
            first_month.cached_tokens,
            first_month.cache_write_tokens,
            first_month.cost_nanos
        ),
        (3, 30, 15, 9, 21)
    );
    // The account rows hold the same totals, cache writes included.
    let accounts = store
        .rollups(&filter(main, Granularity::Month))
        .await
        .unwrap();
    assert_eq!(accounts.iter().map(|r| r.requests).sum::<u64>(), 5);
    assert_eq!(
        accounts.iter().map(|r| r.cache_write_tokens).sum::<u64>(),
        12
    );
    // Raw events keep their cache writes too.
    let events = store
        .events(&EventFilter {
            main_account: Some(main),
            within: None,
            from_ms: 0,
            to_ms: i64::MAX,
            model: None,
            status: Some(500),
            session: None,
            end_user: None,
            tag: None,
            before: None,
            accounts: Vec::new(),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].tokens.cache_write, 3);
}

/// Batches of several streams stored in one transaction: each learns what of it was
/// new, an event in two of them counts once (in the first), and the rollups agree.
async fn batches_stored_together_say_how_each_landed(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    let first: Vec<_> = (0..5)
        .map(|i| event(&[main], DAY + i, "m", 200, 1, 1))
        .collect();
    let mut second: Vec<_> = (0..3)
        .map(|i| event(&[main], DAY + i, "m", 200, 1, 1))
        .collect();
    second.push(first[0].clone());
    store.insert(&first[3..]).await.unwrap();
    let landed = store.insert_batches(&[&first, &second]).await.unwrap();
    assert_eq!(
        landed
            .iter()
            .map(|s| (s.new, s.duplicates))
            .collect::<Vec<_>>(),
        [(3, 2), (3, 1)]
    );
    let rows = store
        .rollups(&filter(main, Granularity::Day))
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 8);
}

/// Writers racing with overlapping batches (as replicas replaying a spool do): each
/// event is new to exactly one of them, and the rollups count it once.
async fn overlapping_batches_at_once_count_each_event_once(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    let events: Vec<_> = (0..200)
        .map(|i| event(&[main], DAY + i, "m", 200, 1, 1))
        .collect();
    // Four writers, each taking a window of 100 that overlaps its neighbours' by half.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            let batch: Vec<_> = events[w * 33..w * 33 + 100].to_vec();
            tokio::spawn(async move { store.insert(&batch).await.unwrap() })
        })
        .collect();
    let mut new = 0;
    let mut duplicates = 0;
    for w in writers {
        let landed = w.await.unwrap();
        new += landed.new;
        duplicates += landed.duplicates;
    }
    // The windows cover events 0..199, 400 copies in all.
    assert_eq!((new, duplicates), (199, 201));
    let rows = store
        .rollups(&filter(main, Granularity::Day))
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 199);
}

async fn sessions_are_stored_and_filter_the_events(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    let mut first = event(&[main], DAY, "m", 200, 10, 1);
    first.session = Some("claude-5f0c".into());
    let mut second = event(&[main], DAY + 1, "m", 200, 10, 1);
    second.session = Some("codex-1".into());
    let none = event(&[main], DAY + 2, "m", 200, 10, 1);
    store
        .insert(&[first.clone(), second.clone(), none.clone()])
        .await
        .unwrap();
    let filter = |session: Option<&str>| EventFilter {
        main_account: Some(main),
        within: None,
        from_ms: DAY,
        to_ms: DAY + MS_PER_DAY,
        model: None,
        status: None,
        session: session.map(str::to_owned),
        end_user: None,
        tag: None,
        before: None,
        accounts: Vec::new(),
        limit: 10,
    };
    // Read back as written, absent included.
    assert_eq!(
        store.events(&filter(None)).await.unwrap(),
        vec![none, second.clone(), first.clone()]
    );
    assert_eq!(
        store.events(&filter(Some("claude-5f0c"))).await.unwrap(),
        vec![first]
    );
    assert_eq!(
        store.events(&filter(Some("codex-1"))).await.unwrap(),
        vec![second]
    );
    assert!(
        store
            .events(&filter(Some("other")))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn rollups_per_endpoint_tell_counting_from_generation(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    let child = AccountId::new();
    let mut counting = event(&[child, main], DAY, "claude", 200, 0, 0);
    counting.path = "/v1/messages/count_tokens".into();
    let batch = vec![
        event(&[main], DAY, "claude", 200, 10, 2),
        event(&[child, main], DAY + 1, "claude", 500, 4, 0),
        counting,
    ];
    store.insert(&batch).await.unwrap();
    // A replay adds nothing.
    store.insert(&batch).await.unwrap();
    let rows = store
        .rollups(&RollupFilter {
            by: RollupBy::Endpoint,
            ..filter(main, Granularity::Month)
        })
        .await
        .unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.endpoint.as_str(),
                r.account_id.as_str(),
                r.requests,
                r.errors,
                r.input_tokens,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("/v1/chat/completions", "", 2, 1, 14),
            ("/v1/messages/count_tokens", "", 1, 0, 0),
        ]
    );
}

/// A read whose answer would pass the bound is refused (never read whole), and the
/// same read narrowed to one account's subtree answers.
async fn a_rollup_read_too_big_to_answer_is_refused(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let main = AccountId::new();
    let child = AccountId::new();
    let mut events: Vec<UsageEvent> = (0..=MAX_ROLLUP_ROWS)
        .map(|i| event(&[main], DAY, &format!("m-{i}"), 200, 1, 1))
        .collect();
    events.push(event(&[child, main], DAY, "a", 200, 5, 5));
    for batch in events.chunks(5_000) {
        store.insert(batch).await.unwrap();
    }
    let refused = store.rollups(&filter(main, Granularity::Day)).await;
    assert!(
        matches!(refused, Err(StoreError::TooManyRows)),
        "{refused:?}"
    );
    let mut only_child = filter(main, Granularity::Day);
    only_child.accounts = vec![child];
    let rows = store.rollups(&only_child).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].input_tokens, 5);
}

/// A tree whose rows per account are past the cap: main, child `big` with 10,001
/// accounts below it (one of them a level deeper) calling on two days, child `small`
/// calling another model, and the main account's own call. Per child, the statement
/// sums each subtree into one row per day (or month) and model, the list of accounts
/// mapped in two parts.
async fn rollups_per_child_sum_each_subtree_past_the_cap(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let (main, big, small) = (AccountId::new(), AccountId::new(), AccountId::new());
    let below: Vec<AccountId> = (0..10_000).map(|_| AccountId::new()).collect();
    let deeper = AccountId::new();
    let mut events = Vec::new();
    for a in &below {
        events.push(event(&[*a, big, main], DAY, "m", 200, 2, 1));
        events.push(event(&[*a, big, main], DAY + MS_PER_DAY, "m", 500, 2, 1));
    }
    events.push(event(&[deeper, below[0], big, main], DAY, "m", 200, 2, 1));
    events.push(event(&[small, main], DAY, "x", 200, 1, 1));
    events.push(event(&[main], DAY, "m", 200, 100, 1));
    for batch in events.chunks(5_000) {
        store.insert(batch).await.unwrap();
    }
    let mut mapping: Vec<(AccountId, AccountId)> =
        vec![(main, main), (big, big), (small, small), (deeper, big)];
    mapping.extend(below.iter().map(|a| (*a, big)));
    let (accounts, children): (Vec<_>, Vec<_>) = mapping.into_iter().unzip();

    let each = RollupFilter {
        accounts: accounts.clone(),
        ..filter(main, Granularity::Day)
    };
    let refused = store.rollups(&each).await;
    assert!(
        matches!(refused, Err(StoreError::TooManyRows)),
        "per account, the tree is past the cap: {refused:?}"
    );

    let per_child = RollupFilter {
        accounts,
        children,
        by: RollupBy::Child,
        ..filter(main, Granularity::Day)
    };
    let rows = store.rollups(&per_child).await.unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            let who = [(main, "main"), (big, "big"), (small, "small")]
                .iter()
                .find(|(id, _)| id.to_string() == r.account_id)
                .map_or("?", |(_, name)| *name);
            (
                r.period.as_str(),
                who,
                r.model.as_str(),
                r.requests,
                r.errors,
            )
        })
        .collect();
    let (first, second) = ("2026-11-21", "2026-11-22");
    let mut want = vec![
        (first, "big", "m", 10_001, 0),
        (first, "main", "m", 1, 0),
        (first, "small", "x", 1, 0),
        (second, "big", "m", 10_000, 10_000),
    ];
    want.sort_by_key(|w| {
        let id = match w.1 {
            "main" => main,
            "big" => big,
            _ => small,
        };
        (w.0, id.to_string(), w.2)
    });
    assert_eq!(got, want);
    let own = rows
        .iter()
        .find(|r| r.account_id == main.to_string())
        .unwrap();
    assert_eq!(
        (own.input_tokens, own.cost_nanos, own.billed_nanos),
        (100, 7, 9)
    );
    let big_day = &rows
        .iter()
        .find(|r| r.account_id == big.to_string())
        .unwrap();
    assert_eq!(
        (
            big_day.input_tokens,
            big_day.output_tokens,
            big_day.cached_tokens
        ),
        (20_002, 10_001, 10_001)
    );
    assert_eq!(big_day.cost_nanos, 7 * 10_001);

    // Months: one row per child and model.
    let months = store
        .rollups(&RollupFilter {
            granularity: Granularity::Month,
            ..per_child.clone()
        })
        .await
        .unwrap();
    let big_month = months
        .iter()
        .find(|r| r.account_id == big.to_string())
        .unwrap();
    assert_eq!(months.len(), 3, "{months:?}");
    assert_eq!(
        (big_month.period.as_str(), big_month.requests),
        ("2026-11", 20_001)
    );

    // One model, in the statement.
    let only_x = store
        .rollups(&RollupFilter {
            model: Some("x".into()),
            ..per_child.clone()
        })
        .await
        .unwrap();
    assert_eq!(only_x.len(), 1);
    assert_eq!(only_x[0].account_id, small.to_string());

    // Every tree (the operator's): a row per main account.
    let trees = store
        .rollups(&RollupFilter {
            main_account: None,
            accounts: vec![],
            children: vec![],
            granularity: Granularity::Month,
            ..per_child.clone()
        })
        .await
        .unwrap();
    let tree: Vec<_> = trees
        .iter()
        .filter(|r| r.account_id == main.to_string())
        .map(|r| (r.model.as_str(), r.requests))
        .collect();
    assert_eq!(tree, [("m", 20_002), ("x", 1)]);

    // A mapping that does not pair every account is refused.
    let unpaired = store
        .rollups(&RollupFilter {
            children: vec![main],
            ..per_child
        })
        .await;
    assert!(
        matches!(unpaired, Err(StoreError::Range(_))),
        "{unpaired:?}"
    );
}

/// A model asked for is a condition of the statement: only its rows are read, in
/// every grouping.
async fn rollups_of_one_model_are_read_alone(url: &str) {
    let store = UsageStore::open(url).await.unwrap();
    let (main, child) = (AccountId::new(), AccountId::new());
    store
        .insert(&[
            event(&[main], DAY, "a", 200, 1, 1),
            event(&[child, main], DAY, "a", 200, 2, 1),
            event(&[child, main], DAY, "b", 200, 4, 1),
        ])
        .await
        .unwrap();
    for by in [RollupBy::Account, RollupBy::Endpoint, RollupBy::ProviderKey] {
        let rows = store
            .rollups(&RollupFilter {
                by,
                model: Some("b".into()),
                ..filter(main, Granularity::Month)
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{by:?}: {rows:?}");
        assert_eq!((rows[0].model.as_str(), rows[0].input_tokens), ("b", 4));
    }
    let listed = store
        .rollups(&RollupFilter {
            accounts: vec![main],
            model: Some("a".into()),
            ..filter(main, Granularity::Day)
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].input_tokens, 1);
}
