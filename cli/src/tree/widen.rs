//! Whether a policy change grants more (it goes top-down, before the children that
//! may need it) or less (bottom-up, after them), and the step between two policies
//! that neither holds the other.

use switchyard_core::policy::{ModelLimit, Policy};

/// Whether `new` grants anything `old` did not: such a change goes top-down,
/// before the children that may need it.
pub fn widens(old: &Policy, new: &Policy) -> bool {
    if !old.excesses(new).is_empty() {
        return true;
    }
    // A bound dropped altogether grants more too, which `excesses` (a child's view,
    // where a field left out is the parent's) does not count.
    let dropped = |o: bool, n: bool| o && !n;
    dropped(old.models.is_some(), new.models.is_some())
        || dropped(old.resources.is_some(), new.resources.is_some())
        || dropped(old.client_cidrs.is_some(), new.client_cidrs.is_some())
        || dropped(old.rpm.is_some(), new.rpm.is_some())
        || dropped(old.key_rpm.is_some(), new.key_rpm.is_some())
        || dropped(old.forbid_translation, new.forbid_translation)
        || old
            .model_limits
            .iter()
            .any(|(p, l)| match new.model_limits.get(p) {
                None => true,
                Some(n) => {
                    dropped(l.rpm.is_some(), n.rpm.is_some())
                        || dropped(l.tpm.is_some(), n.tpm.is_some())
                }
            })
        || match (&old.credit, &new.credit) {
            (Some(_), None) => true,
            (Some(o), Some(n)) => n.limit_nanos > o.limit_nanos || n.period != o.period,
            _ => false,
        }
}

/// A policy that grants what either grants: the step between two policies that
/// neither holds the other.
pub fn union(a: &Policy, b: &Policy) -> Policy {
    fn lists<T: Clone + PartialEq>(a: &Option<Vec<T>>, b: &Option<Vec<T>>) -> Option<Vec<T>> {
        let (a, b) = (a.as_ref()?, b.as_ref()?);
        let mut out = a.clone();
        out.extend(b.iter().filter(|x| !a.contains(x)).cloned());
        Some(out)
    }
    fn cap<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
        Some(a?.max(b?))
    }
    Policy {
        models: lists(&a.models, &b.models),
        resources: lists(&a.resources, &b.resources),
        client_cidrs: lists(&a.client_cidrs, &b.client_cidrs),
        rpm: cap(a.rpm, b.rpm),
        key_rpm: cap(a.key_rpm, b.key_rpm),
        model_limits: a
            .model_limits
            .iter()
            .filter_map(|(p, l)| {
                let m = b.model_limits.get(p)?;
                let merged = ModelLimit {
                    rpm: cap(l.rpm, m.rpm),
                    tpm: cap(l.tpm, m.tpm),
                };
                (merged.rpm.is_some() || merged.tpm.is_some()).then(|| (p.clone(), merged))
            })
            .collect(),
        credit: match (a.credit, b.credit) {
            (Some(x), Some(y)) if x.period == y.period => {
                Some(if x.limit_nanos >= y.limit_nanos { x } else { y })
            }
            _ => None,
        },
        forbid_translation: a.forbid_translation && b.forbid_translation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Policy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn widening_counts_dropped_bounds() {
        assert!(widens(&policy(r#"{"rpm": 5}"#), &policy("{}")));
        assert!(widens(
            &policy(r#"{"models": ["a"]}"#),
            &policy(r#"{"models": ["a", "b"]}"#)
        ));
        assert!(!widens(
            &policy(r#"{"models": ["a", "b"]}"#),
            &policy(r#"{"models": ["a"]}"#)
        ));
        assert!(!widens(&policy("{}"), &policy(r#"{"rpm": 5}"#)));
        assert!(widens(
            &policy(r#"{"forbid_translation": true}"#),
            &policy("{}")
        ));
        assert!(!widens(
            &policy("{}"),
            &policy(r#"{"forbid_translation": true}"#)
        ));
        assert!(widens(
            &policy(r#"{"credit": {"limit_nanos": 5, "period": "day"}}"#),
            &policy(r#"{"credit": {"limit_nanos": 6, "period": "day"}}"#)
        ));
    }

    #[test]
    fn the_union_holds_both() {
        let both = union(
            &policy(r#"{"models": ["a"], "rpm": 5}"#),
            &policy(r#"{"models": ["b"], "rpm": 9, "key_rpm": 1}"#),
        );
        assert_eq!(both, policy(r#"{"models": ["a", "b"], "rpm": 9}"#));
        assert!(!widens(
            &both,
            &policy(r#"{"models": ["b"], "rpm": 9, "key_rpm": 1}"#)
        ));
        assert!(!widens(&both, &policy(r#"{"models": ["a"], "rpm": 5}"#)));
    }
}
