//! Each replica's share of a limit while the shared store is away (owners who fail
//! open).

/// How many replicas divide each limit while the shared store is away (owners who
/// fail open): the operator's count when set, else the number of live data planes
/// the control plane last reported, else one.
pub fn share_replicas(hand_set: Option<u32>, live_data_planes: Option<u32>) -> u32 {
    hand_set
        .or(live_data_planes)
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// One replica's limit while the shared store is away: its share of `limit` (rounded
/// up, so `replicas` shares sum to at most `limit + replicas - 1`), less what it
/// already admitted in the same window through the shared store before it went away.
pub fn local_share_limit(limit: u64, replicas: u32, admitted_here: u64) -> u64 {
    limit
        .div_ceil(u64::from(replicas.max(1)))
        .saturating_sub(admitted_here)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_share_follows_the_live_data_planes_unless_set_by_hand() {
        assert_eq!(share_replicas(None, None), 1);
        assert_eq!(share_replicas(None, Some(3)), 3);
        assert_eq!(
            share_replicas(Some(2), Some(3)),
            2,
            "the operator's count wins"
        );
        assert_eq!(share_replicas(None, Some(0)), 1);
        assert_eq!(local_share_limit(60, 2, 0), 30);
        assert_eq!(local_share_limit(61, 2, 0), 31);
        assert_eq!(local_share_limit(60, 2, 25), 5);
        assert_eq!(local_share_limit(60, 2, 45), 0);
        assert_eq!(local_share_limit(60, 0, 0), 60);
    }

    proptest! {
        /// The replicas' shares together pass the limit only by the rounding up of
        /// each share: at most one per replica beyond the first.
        #[test]
        fn shares_sum_to_about_the_limit(limit in 0u64..100_000, replicas in 1u32..64) {
            let sum = u64::from(replicas) * local_share_limit(limit, replicas, 0);
            prop_assert!(sum >= limit);
            prop_assert!(sum < limit + u64::from(replicas));
        }
    }
}
