//! From a tree file and the server's tree, the changes that make one the other, in
//! an order that never breaks a bound: credit taken back deepest first; then, from
//! the top down, provider keys, rules, accounts created or widened and credit given;
//! then, from the bottom up, accounts narrowed or disabled, and (with prune) what the
//! file no longer names deleted. Each change is one line, the same for `diff` and
//! `apply`.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};
use switchyard_core::billing::Billing;
use switchyard_core::policy::Policy;
use switchyard_core::rules::Rules;

use super::doc::{
    AccountSpec, KeySpec, Remote, RemoteAccount, RemoteKey, SecretFrom, Status, TreeDoc,
};
use super::widen::{union, widens};
use crate::output::dollars;
use crate::yaml::{Pos, Problem, Segment, join_path};

/// An account a step acts on: on the server already, or created by an earlier step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Main,
    Existing(String),
    New(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    CreateKey {
        spec: KeySpec,
    },
    UpdateKey {
        id: String,
        patch: Map<String, Value>,
    },
    DeleteKey {
        id: String,
    },
    SetRules {
        rules: Rules,
    },
    CreateAccount {
        path: String,
        parent: Target,
        name: String,
        policy: Policy,
        billing: Billing,
    },
    /// `patch` holds what changes; billing only its direct parent may set.
    UpdateAccount {
        target: Target,
        parent: Target,
        patch: Map<String, Value>,
    },
    Credit {
        target: Target,
        parent: Target,
        amount_nanos: i64,
    },
    DeleteAccount {
        id: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub action: Action,
    /// What the step changes, for people: `+` adds, `~` changes, `-` removes.
    pub line: String,
}

fn compact(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `field old -> new` for every top-level field that differs.
fn field_changes(prefix: &str, old: &Value, new: &Value) -> Vec<String> {
    let empty = Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| o.get(*k) != n.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or_else(|| "unset".to_owned(), compact);
            format!("{prefix}{k} {} -> {}", show(o.get(k)), show(n.get(k)))
        })
        .collect()
}

fn key_label(provider: &str, base_url: &str, hint: Option<&str>) -> String {
    match hint {
        Some(h) => format!("provider key {provider} {base_url} {h}"),
        None => format!("provider key {provider} {base_url}"),
    }
}

/// The changes, or every problem that stops them (nothing is changed then).
pub fn plan(
    doc: &TreeDoc,
    remote: &Remote,
    prune: bool,
    pos: &dyn Fn(&str) -> Pos,
) -> Result<Vec<Step>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut first = Vec::new(); // deepest first: credit taken back
    let mut top_down: Vec<(usize, Step)> = Vec::new();
    let mut bottom_up: Vec<(usize, Step)> = Vec::new();

    // Provider keys.
    let matched = match_keys(&doc.provider_keys, &remote.keys, pos, &mut problems);
    for (i, spec) in doc.provider_keys.iter().enumerate() {
        match matched.get(&i) {
            None => {
                if spec.secret_from.is_none() && spec.takes_secret() {
                    problems.push(Problem {
                        pos: pos(&join_path("provider_keys", Segment::Index(i))),
                        message: format!(
                            "{} is not on the server: a new key needs secret_from {{env: NAME}} or {{file: PATH}}",
                            key_label(spec.provider.as_str(), &spec.base_url, spec.hint.as_deref())
                        ),
                    });
                }
                let from = match &spec.secret_from {
                    _ if !spec.takes_secret() => "none: passthrough".into(),
                    Some(SecretFrom::Env(n)) => format!("env {n}"),
                    Some(SecretFrom::File(f)) => format!("file {f}"),
                    None => "nowhere".into(),
                };
                top_down.push((
                    0,
                    Step {
                        line: format!(
                            "+ {} level {} weight {} models {} (secret from {from})",
                            key_label(spec.provider.as_str(), &spec.base_url, None),
                            spec.level,
                            spec.weight,
                            spec.models.join(",")
                        ),
                        action: Action::CreateKey { spec: spec.clone() },
                    },
                ));
            }
            Some(have) => {
                let mut patch = Map::new();
                let mut changes = Vec::new();
                if have.models != spec.models {
                    changes.push(format!(
                        "models {} -> {}",
                        compact(&have.models),
                        compact(&spec.models)
                    ));
                    patch.insert("models".into(), json!(spec.models));
                }
                if have.level != spec.level {
                    changes.push(format!("level {} -> {}", have.level, spec.level));
                    patch.insert("level".into(), json!(spec.level));
                }
                if have.weight != spec.weight {
                    changes.push(format!("weight {} -> {}", have.weight, spec.weight));
                    patch.insert("weight".into(), json!(spec.weight));
                }
                if have.status != spec.status {
                    changes.push(format!(
                        "status {} -> {}",
                        have.status.as_str(),
                        spec.status.as_str()
                    ));
                    patch.insert("status".into(), json!(spec.status.as_str()));
                }
                if !patch.is_empty() {
                    top_down.push((
                        0,
                        Step {
                            line: format!(
                                "~ {}: {}",
                                key_label(have.provider.as_str(), &have.base_url, Some(&have.hint)),
                                changes.join(", ")
                            ),
                            action: Action::UpdateKey {
                                id: have.id.clone(),
                                patch,
                            },
                        },
                    ));
                }
            }
        }
    }
    if prune {
        let kept: Vec<&str> = matched.values().map(|k| k.id.as_str()).collect();
        for k in remote
            .keys
            .iter()
            .filter(|k| !kept.contains(&k.id.as_str()))
        {
            // After the rules, which may name its level no more.
            bottom_up.push((
                0,
                Step {
                    line: format!(
                        "- {}",
                        key_label(k.provider.as_str(), &k.base_url, Some(&k.hint))
                    ),
                    action: Action::DeleteKey { id: k.id.clone() },
                },
            ));
        }
    }

    // Rules.
    if doc.rules != remote.rules {
        let old = serde_json::to_value(&remote.rules).unwrap_or_default();
        let new = serde_json::to_value(&doc.rules).unwrap_or_default();
        top_down.push((
            0,
            Step {
                line: format!("~ rules: {}", field_changes("", &old, &new).join(", ")),
                action: Action::SetRules {
                    rules: doc.rules.clone(),
                },
            },
        ));
    }

    // Accounts.
    let paths = remote.paths();
    let mut by_path: HashMap<&str, Vec<&RemoteAccount>> = HashMap::new();
    for a in &remote.accounts {
        if let Some(p) = paths.get(&a.id) {
            by_path.entry(p.as_str()).or_default().push(a);
        }
    }
    let mut named: Vec<String> = Vec::new();
    let ctx = Walk {
        by_path: &by_path,
        pos,
    };
    ctx.accounts(
        &doc.accounts,
        "",
        "accounts",
        &Target::Main,
        1,
        &mut Out {
            first: &mut first,
            top_down: &mut top_down,
            bottom_up: &mut bottom_up,
            problems: &mut problems,
            named: &mut named,
        },
    );
    if prune {
        for a in &remote.accounts {
            let Some(path) = paths.get(&a.id) else {
                continue;
            };
            if !named.iter().any(|n| n == path) {
                bottom_up.push((
                    depth_of(path),
                    Step {
                        line: format!("- account {path}"),
                        action: Action::DeleteAccount { id: a.id.clone() },
                    },
                ));
            }
        }
    }

    if !problems.is_empty() {
        problems.sort_by_key(|p| p.pos);
        return Err(problems);
    }
    first.sort_by_key(|(d, _)| std::cmp::Reverse(*d));
    top_down.sort_by_key(|(d, _)| *d);
    // Accounts deepest first, then the provider keys (depth 0) the rules let go of.
    bottom_up.sort_by_key(|(d, _)| std::cmp::Reverse(*d));
    Ok(first
        .into_iter()
        .chain(top_down)
        .chain(bottom_up)
        .map(|(_, s)| s)
        .collect())
}

fn depth_of(path: &str) -> usize {
    path.split('/').count()
}

/// Which server key each file key is: by hint first, then by level alone.
fn match_keys<'r>(
    specs: &[KeySpec],
    have: &'r [RemoteKey],
    pos: &dyn Fn(&str) -> Pos,
    problems: &mut Vec<Problem>,
) -> BTreeMap<usize, &'r RemoteKey> {
    let mut out: BTreeMap<usize, &RemoteKey> = BTreeMap::new();
    let mut taken = vec![false; have.len()];
    let same_upstream = |s: &KeySpec, k: &RemoteKey| {
        s.provider == k.provider
            && s.base_url == k.base_url
            && s.protocol.is_none_or(|p| p == k.protocol)
    };
    for (i, spec) in specs.iter().enumerate() {
        let Some(hint) = &spec.hint else { continue };
        let found = (0..have.len())
            .filter(|&j| !taken[j] && same_upstream(spec, &have[j]) && &have[j].hint == hint)
            .min_by_key(|&j| (have[j].level != spec.level, have[j].models != spec.models));
        if let Some(j) = found {
            taken[j] = true;
            out.insert(i, &have[j]);
        }
    }
    for (i, spec) in specs.iter().enumerate() {
        if spec.hint.is_some() {
            continue;
        }
        let found: Vec<usize> = (0..have.len())
            .filter(|&j| !taken[j] && same_upstream(spec, &have[j]) && have[j].level == spec.level)
            .collect();
        match found.as_slice() {
            [] => {}
            [j] => {
                taken[*j] = true;
                out.insert(i, &have[*j]);
            }
            _ => problems.push(Problem {
                pos: pos(&join_path("provider_keys", Segment::Index(i))),
                message: format!(
                    "{} keys on the server are {} at level {}: add `hint:` (as export shows it) to say which",
                    found.len(),
                    key_label(spec.provider.as_str(), &spec.base_url, None),
                    spec.level
                ),
            }),
        }
    }
    out
}

struct Walk<'a> {
    by_path: &'a HashMap<&'a str, Vec<&'a RemoteAccount>>,
    pos: &'a dyn Fn(&str) -> Pos,
}

struct Out<'a> {
    first: &'a mut Vec<(usize, Step)>,
    top_down: &'a mut Vec<(usize, Step)>,
    bottom_up: &'a mut Vec<(usize, Step)>,
    problems: &'a mut Vec<Problem>,
    named: &'a mut Vec<String>,
}

impl Walk<'_> {
    fn accounts(
        &self,
        list: &[AccountSpec],
        parent_path: &str,
        doc_path: &str,
        parent: &Target,
        depth: usize,
        out: &mut Out<'_>,
    ) {
        for (i, spec) in list.iter().enumerate() {
            let here = join_path(doc_path, Segment::Index(i));
            let name = spec.name.trim();
            let path = if parent_path.is_empty() {
                name.to_owned()
            } else {
                format!("{parent_path}/{name}")
            };
            out.named.push(path.clone());
            let existing = match self.by_path.get(path.as_str()).map(Vec::as_slice) {
                None | Some([]) => None,
                Some([one]) => Some(*one),
                Some(many) => {
                    out.problems.push(Problem {
                        pos: (self.pos)(&join_path(&here, Segment::Key("name"))),
                        message: format!(
                            "{} accounts on the server are {path}: rename all but one first",
                            many.len()
                        ),
                    });
                    continue;
                }
            };
            let target = match existing {
                Some(a) => Target::Existing(a.id.clone()),
                None => Target::New(path.clone()),
            };
            match existing {
                None => {
                    let mut extras = Vec::new();
                    if spec.policy != Policy::default() {
                        extras.push(format!("policy {}", compact(&spec.policy)));
                    }
                    if spec.billing != Billing::default() {
                        extras.push(format!("billing {}", compact(&spec.billing)));
                    }
                    out.top_down.push((
                        depth,
                        Step {
                            line: format!(
                                "+ account {path}{}{}",
                                if extras.is_empty() { "" } else { " " },
                                extras.join(" ")
                            ),
                            action: Action::CreateAccount {
                                path: path.clone(),
                                parent: parent.clone(),
                                name: name.to_owned(),
                                policy: spec.policy.clone(),
                                billing: spec.billing.clone(),
                            },
                        },
                    ));
                    if spec.status == Status::Disabled {
                        out.bottom_up.push((
                            depth,
                            status_step(&path, &target, parent, Status::Active, Status::Disabled),
                        ));
                    }
                }
                Some(have) => self.update(spec, have, &path, &target, parent, depth, out),
            }
            if let Some(want) = spec.credit_nanos {
                let had = existing.map_or(0, |a| a.credit_nanos);
                if want != had {
                    let step = Step {
                        line: format!(
                            "~ credit {path}: {} -> {}",
                            dollars(&json!(had)),
                            dollars(&json!(want))
                        ),
                        action: Action::Credit {
                            target: target.clone(),
                            parent: parent.clone(),
                            amount_nanos: want - had,
                        },
                    };
                    if want < had {
                        out.first.push((depth, step));
                    } else {
                        out.top_down.push((depth, step));
                    }
                }
            }
            self.accounts(
                &spec.accounts,
                &path,
                &join_path(&here, Segment::Key("accounts")),
                &target,
                depth + 1,
                out,
            );
        }
    }

    #[expect(clippy::too_many_arguments, reason = "one account's place in the walk")]
    fn update(
        &self,
        spec: &AccountSpec,
        have: &RemoteAccount,
        path: &str,
        target: &Target,
        parent: &Target,
        depth: usize,
        out: &mut Out<'_>,
    ) {
        if spec.status == Status::Active && have.status == Status::Disabled {
            out.top_down.push((
                depth,
                status_step(path, target, parent, have.status, spec.status),
            ));
        }
        if spec.billing != have.billing {
            let old = serde_json::to_value(&have.billing).unwrap_or_default();
            let new = serde_json::to_value(&spec.billing).unwrap_or_default();
            let mut patch = Map::new();
            patch.insert("billing".into(), new.clone());
            out.top_down.push((
                depth,
                Step {
                    line: format!(
                        "~ account {path}: {}",
                        field_changes("billing.", &old, &new).join(", ")
                    ),
                    action: Action::UpdateAccount {
                        target: target.clone(),
                        parent: parent.clone(),
                        patch,
                    },
                },
            ));
        }
        if spec.policy != have.policy {
            let step = |from: &Policy, to: &Policy, note: &str| {
                let old = serde_json::to_value(from).unwrap_or_default();
                let new = serde_json::to_value(to).unwrap_or_default();
                let mut patch = Map::new();
                patch.insert("policy".into(), new.clone());
                Step {
                    line: format!(
                        "~ account {path}: {}{note}",
                        field_changes("policy.", &old, &new).join(", ")
                    ),
                    action: Action::UpdateAccount {
                        target: target.clone(),
                        parent: parent.clone(),
                        patch,
                    },
                }
            };
            let wider = widens(&have.policy, &spec.policy);
            let narrower = widens(&spec.policy, &have.policy);
            if wider && narrower {
                // Both: first to what grants either (top-down, so its children keep
                // fitting), then to the new one once its children are narrowed.
                let both = union(&have.policy, &spec.policy);
                out.top_down.push((
                    depth,
                    step(&have.policy, &both, " (first what either grants)"),
                ));
                out.bottom_up.push((depth, step(&both, &spec.policy, "")));
            } else if narrower {
                out.bottom_up
                    .push((depth, step(&have.policy, &spec.policy, "")));
            } else {
                out.top_down
                    .push((depth, step(&have.policy, &spec.policy, "")));
            }
        }
        if spec.status == Status::Disabled && have.status == Status::Active {
            out.bottom_up.push((
                depth,
                status_step(path, target, parent, have.status, spec.status),
            ));
        }
    }
}

fn status_step(path: &str, target: &Target, parent: &Target, from: Status, to: Status) -> Step {
    let mut patch = Map::new();
    patch.insert("status".into(), json!(to.as_str()));
    Step {
        line: format!(
            "~ account {path}: status {} -> {}",
            from.as_str(),
            to.as_str()
        ),
        action: Action::UpdateAccount {
            target: target.clone(),
            parent: parent.clone(),
            patch,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::doc::Provider;
    use crate::yaml;

    fn policy(json: &str) -> Policy {
        serde_json::from_str(json).unwrap()
    }

    fn account(id: &str, parent: &str, name: &str, p: &str, credit: i64) -> RemoteAccount {
        RemoteAccount {
            id: id.into(),
            parent_id: parent.into(),
            name: name.into(),
            status: Status::Active,
            policy: policy(p),
            billing: Billing::default(),
            credit_nanos: credit,
        }
    }

    fn remote() -> Remote {
        Remote {
            main_id: "m".into(),
            main_name: "acme".into(),
            main_effective: Policy::default(),
            rules: Rules::default(),
            rules_etag: None,
            keys: vec![RemoteKey {
                id: "k1".into(),
                provider: Provider::Openai,
                protocol: Provider::Openai,
                base_url: "https://api.example.com/v1".into(),
                hint: "****abcd".into(),
                models: vec!["gpt-4o*".into()],
                level: 0,
                weight: 1,
                status: Status::Active,
            }],
            accounts: vec![
                account("a", "m", "team", r#"{"rpm": 100}"#, 10),
                account("b", "a", "dev", r#"{"rpm": 50}"#, 5),
            ],
        }
    }

    fn lines(text: &str, prune: bool) -> Vec<String> {
        let located = yaml::parse(text).unwrap();
        let doc: TreeDoc = located.decode().unwrap();
        plan(&doc, &remote(), prune, &|p| located.pos(p))
            .unwrap()
            .into_iter()
            .map(|s| s.line)
            .collect()
    }

    #[test]
    fn the_exported_tree_changes_nothing() {
        let doc = super::super::doc::export(&remote());
        let steps = plan(&doc, &remote(), true, &|_| Pos::default()).unwrap();
        assert!(steps.is_empty(), "{steps:?}");
    }

    #[test]
    fn parents_widen_before_children_and_children_narrow_before_parents() {
        // Widening both: the parent first.
        let wide = "main: acme\nprovider_keys:\n  - {provider: openai, base_url: https://api.example.com/v1, hint: '****abcd', models: [gpt-4o*]}\naccounts:\n  - name: team\n    policy: {rpm: 1000}\n    credit_nanos: 10\n    accounts:\n      - name: dev\n        policy: {rpm: 500}\n        credit_nanos: 5\n";
        assert_eq!(
            lines(wide, false),
            [
                "~ account team: policy.rpm 100 -> 1000",
                "~ account team/dev: policy.rpm 50 -> 500"
            ]
        );
        // Narrowing both: the child first.
        let narrow = wide
            .replace("rpm: 1000", "rpm: 20")
            .replace("rpm: 500", "rpm: 10");
        assert_eq!(
            lines(&narrow, false),
            [
                "~ account team/dev: policy.rpm 50 -> 10",
                "~ account team: policy.rpm 100 -> 20"
            ]
        );
    }

    #[test]
    fn credit_is_taken_back_first_and_given_top_down() {
        let text = "main: acme\nprovider_keys:\n  - {provider: openai, base_url: https://api.example.com/v1, hint: '****abcd', models: [gpt-4o*]}\naccounts:\n  - name: team\n    policy: {rpm: 100}\n    credit_nanos: 3000000000\n    accounts:\n      - name: dev\n        policy: {rpm: 50}\n        credit_nanos: 1\n      - name: new\n        credit_nanos: 2000000000\n";
        assert_eq!(
            lines(text, false),
            [
                "~ credit team/dev: $0.000000005 -> $0.000000001",
                "~ credit team: $0.00000001 -> $3.00",
                "+ account team/new",
                "~ credit team/new: $0.00 -> $2.00",
            ]
        );
    }

    #[test]
    fn prune_deletes_children_before_parents_and_keys_last() {
        let text = "main: acme\nrules: {model_mapper: {a: b}}\n";
        assert_eq!(
            lines(text, true),
            [
                "~ rules: model_mapper unset -> {\"a\":\"b\"}",
                "- account team/dev",
                "- account team",
                "- provider key openai https://api.example.com/v1 ****abcd",
            ]
        );
        // Without prune nothing is deleted.
        assert_eq!(
            lines(text, false),
            ["~ rules: model_mapper unset -> {\"a\":\"b\"}"]
        );
    }

    #[test]
    fn new_keys_need_a_secret_source_and_ambiguous_ones_a_hint() {
        let text = "main: acme\nprovider_keys:\n  - provider: anthropic\n    base_url: https://a.example.com\n    models: [claude*]\n";
        let located = yaml::parse(text).unwrap();
        let doc: TreeDoc = located.decode().unwrap();
        let problems = plan(&doc, &remote(), false, &|p| located.pos(p)).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].pos, Pos { line: 3, col: 5 });
        assert!(problems[0].message.contains("secret_from"));

        let with = format!("{text}    secret_from: {{env: ANTHROPIC_KEY}}\n");
        assert_eq!(
            lines(&with, false),
            [
                "+ provider key anthropic https://a.example.com level 0 weight 1 models claude* (secret from env ANTHROPIC_KEY)"
            ]
        );
        let gemini = "main: acme\nprovider_keys:\n  - provider: gemini\n    base_url: https://generativelanguage.googleapis.com/v1beta\n    models: [gemini-*]\n    secret_from: {env: GEMINI_API_KEY}\n";
        assert_eq!(
            lines(gemini, false),
            [
                "+ provider key gemini https://generativelanguage.googleapis.com/v1beta level 0 weight 1 models gemini-* (secret from env GEMINI_API_KEY)"
            ]
        );
    }

    #[test]
    fn passthrough_keys_take_no_secret_and_export_their_protocol() {
        let text = "main: acme\nprovider_keys:\n  - {provider: passthrough, protocol: anthropic, base_url: https://api.anthropic.com/v1, models: [claude*]}\n";
        assert_eq!(
            lines(text, false),
            [
                "+ provider key passthrough https://api.anthropic.com/v1 level 0 weight 1 models claude* (secret from none: passthrough)"
            ]
        );
        let mut have = remote();
        have.keys.push(RemoteKey {
            id: "k2".into(),
            provider: Provider::Passthrough,
            protocol: Provider::Anthropic,
            base_url: "https://api.anthropic.com/v1".into(),
            hint: String::new(),
            models: vec!["claude*".into()],
            level: 0,
            weight: 1,
            status: Status::Active,
        });
        let exported = crate::tree::doc::export(&have);
        let pass = exported
            .provider_keys
            .iter()
            .find(|k| k.provider == Provider::Passthrough)
            .unwrap();
        assert_eq!(
            (pass.protocol, &pass.secret_from),
            (Some(Provider::Anthropic), &None)
        );
        // Exported, it is the same key: nothing to do.
        let steps = plan(&exported, &have, true, &|_| Pos { line: 0, col: 0 }).unwrap();
        assert!(
            steps.is_empty(),
            "{:?}",
            steps.iter().map(|s| &s.line).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_change_both_ways_widens_first_and_narrows_last() {
        let text = "main: acme\nprovider_keys:\n  - {provider: openai, base_url: https://api.example.com/v1, hint: '****abcd', models: [gpt-4o*]}\naccounts:\n  - name: team\n    policy: {rpm: 200, models: [a]}\n    credit_nanos: 10\n    accounts:\n      - name: dev\n        policy: {rpm: 50}\n        credit_nanos: 5\n";
        assert_eq!(
            lines(text, false),
            [
                "~ account team: policy.rpm 100 -> 200 (first what either grants)",
                "~ account team: policy.models unset -> [\"a\"]",
            ]
        );
    }
}
