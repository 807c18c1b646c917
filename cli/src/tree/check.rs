//! Every problem of a tree file that can be found before anything changes: names,
//! policy shapes, and the bound that no child is wider than its parent (computed as
//! the server does, with core's policy functions, from the main account's effective
//! policy down the file's chain).

use std::collections::HashSet;

use switchyard_core::policy::{Policy, PolicyError};

use super::doc::{AccountSpec, SecretFrom, TreeDoc};
use crate::yaml::{Pos, Problem, Segment, join_path};

pub fn check(
    doc: &TreeDoc,
    main_name: &str,
    main_effective: &Policy,
    pos: &dyn Fn(&str) -> Pos,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |path: &str, message: String| {
        problems.push(Problem {
            pos: pos(path),
            message,
        });
    };
    if doc.main != main_name {
        problem(
            "main",
            format!(
                "this file is for main account {:?}, but the key is {main_name:?}'s",
                doc.main
            ),
        );
    }
    for (i, key) in doc.provider_keys.iter().enumerate() {
        let path = join_path("provider_keys", Segment::Index(i));
        if key.models.is_empty() {
            problem(
                &join_path(&path, Segment::Key("models")),
                "a provider key serves at least one model".into(),
            );
        }
        if let Some(SecretFrom::Env(name) | SecretFrom::File(name)) = &key.secret_from
            && name.trim().is_empty()
        {
            problem(
                &join_path(&path, Segment::Key("secret_from")),
                "secret_from names nothing".into(),
            );
        }
    }
    accounts(&doc.accounts, "accounts", main_effective, &mut problem);
    problems.sort_by_key(|p| p.pos);
    problems
}

fn accounts(
    list: &[AccountSpec],
    path: &str,
    parent_effective: &Policy,
    problem: &mut dyn FnMut(&str, String),
) {
    let mut names = HashSet::new();
    for (i, account) in list.iter().enumerate() {
        let here = join_path(path, Segment::Index(i));
        let name = account.name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            problem(
                &join_path(&here, Segment::Key("name")),
                "a name is 1-100 printable characters".into(),
            );
        } else if name.contains('/') {
            problem(
                &join_path(&here, Segment::Key("name")),
                "a name in a tree file has no '/'".into(),
            );
        }
        if !names.insert(name) {
            problem(
                &join_path(&here, Segment::Key("name")),
                format!("{name:?} is named twice among its siblings"),
            );
        }
        let policy_path = join_path(&here, Segment::Key("policy"));
        if let Err(e) = account.policy.validate() {
            // The field the error is about, so its place is the field's.
            let field = match &e {
                PolicyError::TooMany(f) => join_path(&policy_path, Segment::Key(f)),
                PolicyError::BadResource(_) => join_path(&policy_path, Segment::Key("resources")),
                PolicyError::Zero(what) => match what.split_once(' ') {
                    Some((f, pattern)) => join_path(
                        &join_path(&policy_path, Segment::Key(f)),
                        Segment::Key(pattern),
                    ),
                    None => join_path(&policy_path, Segment::Key(what)),
                },
            };
            problem(&field, format!("{name}: {e}"));
        }
        for excess in parent_effective.excesses(&account.policy) {
            problem(
                &join_path(&policy_path, Segment::Key(excess.field)),
                format!("{name}: wider than its parent: {excess}"),
            );
        }
        if account.credit_nanos.is_some_and(|c| c < 0) {
            problem(
                &join_path(&here, Segment::Key("credit_nanos")),
                "credit is never negative".into(),
            );
        }
        let effective = parent_effective.intersect(&account.policy);
        accounts(
            &account.accounts,
            &join_path(&here, Segment::Key("accounts")),
            &effective,
            problem,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn problems(text: &str, main_effective: &str) -> Vec<Problem> {
        let located = yaml::parse(text).unwrap();
        let doc: TreeDoc = located.decode().unwrap();
        let bound: Policy = serde_json::from_str(main_effective).unwrap();
        check(&doc, "acme", &bound, &|p| located.pos(p))
    }

    #[test]
    fn a_child_wider_than_its_parent_is_named_with_its_place() {
        let text = "\
main: acme
accounts:
  - name: team
    policy:
      models: [gpt-4o*]
      rpm: 100
    accounts:
      - name: dev
        policy:
          models: [claude-3]
          rpm: 500
";
        let found = problems(text, "{}");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].pos, Pos { line: 10, col: 19 });
        assert!(found[0].message.contains("claude-3"), "{}", found[0]);
        assert_eq!(found[1].pos, Pos { line: 11, col: 16 });
        assert!(
            found[1].message.contains("500 exceeds the parent's 100"),
            "{}",
            found[1]
        );
    }

    #[test]
    fn the_main_accounts_own_bound_counts() {
        let text = "main: acme\naccounts:\n  - name: team\n    policy:\n      rpm: 100\n";
        assert!(problems(text, "{}").is_empty());
        let zero = problems(&text.replace("rpm: 100", "models: [a]\n      rpm: 0"), "{}");
        assert_eq!(zero.len(), 1, "{zero:?}");
        assert_eq!(zero[0].pos, Pos { line: 6, col: 12 });
        let found = problems(text, r#"{"rpm": 50}"#);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].pos, Pos { line: 5, col: 12 });
    }

    #[test]
    fn names_are_unique_among_siblings_and_main_must_match() {
        let text = "main: other\naccounts:\n  - name: a\n  - name: a\n";
        let found = problems(text, "{}");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].pos, Pos { line: 1, col: 7 });
        assert_eq!(found[1].pos, Pos { line: 4, col: 11 });
    }
}
