//! The cap on label values in the rollups: per calling account, UTC day and label
//! kind, the first `cap` distinct values the store sees keep rows of their own; every
//! later new value of that day folds into `other` (raw events keep their values).
//! What is decided here is pure; each write path reads and saves, in the batch's
//! transaction, the counts and values it needs (`postgres.rs`, `sqlite.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};

use switchyard_core::ids::AccountId;
use switchyard_core::time::Granularity;
use switchyard_core::usage::{LabelKind, UsageEvent, label_room};

/// Where the cap counts: an account's values of one kind on one day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct LabelGroup {
    pub account: AccountId,
    pub day: String,
    pub kind: LabelKind,
}

/// Per group, the distinct values some new events carry, in the order they came.
/// Ordered by group, so every writer locks groups in the same order.
pub(super) type Candidates<'a> = BTreeMap<LabelGroup, Vec<&'a str>>;

/// The values of `events` (new ones) by group.
pub(super) fn candidates<'a>(events: &[&'a UsageEvent]) -> Candidates<'a> {
    let mut groups: Vec<(LabelGroup, &'a str)> = Vec::new();
    for e in events {
        let (Some(account), Some(_)) = (e.account(), e.main_account()) else {
            continue;
        };
        let day = Granularity::Day.bucket_of_ms(e.at_unix_ms);
        for kind in LabelKind::ALL {
            if let Some(value) = e.label(kind) {
                let group = LabelGroup {
                    account,
                    day: day.clone(),
                    kind,
                };
                groups.push((group, value));
            }
        }
    }
    let mut out = Candidates::new();
    let mut seen: HashSet<(&LabelGroup, &str)> = HashSet::new();
    for (group, value) in &groups {
        if seen.insert((group, value)) {
            out.entry(group.clone()).or_default().push(*value);
        }
    }
    out
}

/// The values that keep rows of their own, per group.
#[derive(Debug, Default)]
pub(super) struct Admitted(HashMap<LabelGroup, HashSet<String>>);

impl Admitted {
    pub fn holds(&self, account: AccountId, day: &str, kind: LabelKind, value: &str) -> bool {
        let group = LabelGroup {
            account,
            day: day.to_owned(),
            kind,
        };
        self.0
            .get(&group)
            .is_some_and(|values| values.contains(value))
    }

    /// Record the decision for one group: of `values` (its candidates), those the
    /// day admitted before (`known`) stay, and the others are admitted in order while
    /// the day holds fewer than `cap`. Returns how many the day holds after.
    pub fn decide(
        &mut self,
        group: &LabelGroup,
        values: &[&str],
        known: &HashSet<&str>,
        cap: u32,
        before: u64,
    ) -> u64 {
        let fresh: Vec<&str> = values
            .iter()
            .copied()
            .filter(|v| !known.contains(v))
            .collect();
        let room = label_room(cap, before, fresh.len());
        let kept = self.0.entry(group.clone()).or_default();
        kept.extend(known.iter().map(|v| (*v).to_owned()));
        kept.extend(fresh[..room].iter().map(|v| (*v).to_owned()));
        before.saturating_add(room as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(account: AccountId, user: Option<&str>, tag: Option<&str>) -> UsageEvent {
        UsageEvent {
            end_user: user.map(str::to_owned),
            tag: tag.map(str::to_owned),
            ..switchyard_tests::events::usage_event(&[account], 1_795_219_200_000)
        }
    }

    #[test]
    fn candidates_are_distinct_per_group_in_arrival_order() {
        let (a, b) = (AccountId::new(), AccountId::new());
        let events = [
            event(a, Some("carol"), Some("t")),
            event(a, Some("ada"), None),
            event(a, Some("carol"), Some("t")),
            event(b, Some("ada"), None),
            event(a, None, None),
        ];
        let refs: Vec<&UsageEvent> = events.iter().collect();
        let found = candidates(&refs);
        let group = |account, kind| LabelGroup {
            account,
            day: "2026-11-21".into(),
            kind,
        };
        assert_eq!(found.len(), 3);
        assert_eq!(found[&group(a, LabelKind::User)], ["carol", "ada"]);
        assert_eq!(found[&group(a, LabelKind::Tag)], ["t"]);
        assert_eq!(found[&group(b, LabelKind::User)], ["ada"]);
    }

    #[test]
    fn known_values_stay_and_new_ones_fill_the_room_in_order() {
        let account = AccountId::new();
        let group = LabelGroup {
            account,
            day: "2026-11-21".into(),
            kind: LabelKind::User,
        };
        let mut admitted = Admitted::default();
        // Two held of three; "ada" was admitted before, one more fits.
        let known = HashSet::from(["ada"]);
        let after = admitted.decide(&group, &["bob", "ada", "carol"], &known, 3, 2);
        assert_eq!(after, 3);
        let holds = |v| admitted.holds(account, "2026-11-21", LabelKind::User, v);
        assert!(holds("ada") && holds("bob") && !holds("carol"));
        assert!(!admitted.holds(account, "2026-11-22", LabelKind::User, "ada"));
        assert!(!admitted.holds(account, "2026-11-21", LabelKind::Tag, "ada"));
        // A full day keeps what it knows and admits nothing new.
        let mut full = Admitted::default();
        let after = full.decide(&group, &["ada", "dan"], &known, 3, 3);
        assert_eq!(after, 3);
        assert!(full.holds(account, "2026-11-21", LabelKind::User, "ada"));
        assert!(!full.holds(account, "2026-11-21", LabelKind::User, "dan"));
    }
}
