//! What the usage collector recorded, as the caller may see it: raw events
//! (`/dashboard/logs`) and rollups (`/x-bill`).

use serde::{Deserialize, Serialize};
use switchyard_core::error::ErrorCode;
use switchyard_core::fields;
use switchyard_core::ids::AccountId;
use switchyard_core::time::{Granularity, UtcDay};
use switchyard_core::usage::{LabelKind, RollupBy, RollupRow, UsageEvent, UsageLogView};
use switchyard_proto::v1 as pb;

use super::{ApiError, Caller, Service};
use crate::collector::LogPage;

const MAX_BILL_DAYS: i64 = 400;
/// The most accounts a read of raw events lists (the collector's bound).
const MAX_LISTED_ACCOUNTS: usize = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Unix milliseconds, inclusive; default: seven days before `to`.
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive; default: now.
    pub to: Option<i64>,
    /// Only this account's subtree (the caller or a descendant).
    pub account: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
    /// Only this client session (as its session header named it).
    pub session: Option<String>,
    /// Only this end user (as the request's body named it).
    pub user: Option<String>,
    /// Only this tag (`x-switchyard-tag`).
    pub tag: Option<String>,
    /// The `next` cursor of the previous page.
    pub before: Option<String>,
    pub limit: Option<u32>,
}

/// A page of raw events as the REST API shows it.
/// Each event in its log view (`switchyard_core::usage::UsageLogView`).
#[derive(Debug, Serialize)]
pub struct LogPageView {
    #[serde(serialize_with = "log_views")]
    pub events: Vec<UsageEvent>,
    pub next: Option<String>,
}

impl From<LogPage> for LogPageView {
    fn from(page: LogPage) -> Self {
        Self {
            events: page.events,
            next: page.next,
        }
    }
}

fn log_views<S: serde::Serializer>(events: &[UsageEvent], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(events.iter().map(UsageLogView::from))
}

/// A query option as given: a value it names, or the text that names none (kept
/// for the error answer, which quotes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested<T> {
    Known(T),
    Unknown(String),
}

impl<T: std::str::FromStr> From<String> for Requested<T> {
    fn from(text: String) -> Self {
        match text.parse() {
            Ok(value) => Self::Known(value),
            Err(_) => Self::Unknown(text),
        }
    }
}

impl<'de, T: std::str::FromStr> Deserialize<'de> for Requested<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillQuery {
    pub from: Option<Requested<UtcDay>>,
    pub to: Option<Requested<UtcDay>>,
    pub granularity: Option<Requested<Granularity>>,
    /// Only this account (the caller or a descendant) and its descendants.
    pub account: Option<String>,
    /// Only this served model.
    pub model: Option<String>,
    /// `account` (the default), `provider_key` or `endpoint`: rows per calling
    /// account, or, for the owner, per provider key or per endpoint across the whole
    /// tree; `user`, `session` or `tag`: rows per value of that label within the
    /// caller's subtree (or `account`'s).
    pub by: Option<Requested<RollupBy>>,
}

#[derive(Debug, Serialize)]
pub struct Bill {
    pub from: UtcDay,
    pub to: UtcDay,
    pub granularity: Granularity,
    pub by: RollupBy,
    pub rows: Vec<RollupRow>,
}

/// A day given as a bill's `field`, or the error answer quoting it.
fn requested_day(day: Requested<UtcDay>, field: &str) -> Result<UtcDay, ApiError> {
    match day {
        Requested::Known(day) => Ok(day),
        Requested::Unknown(_) => Err(ApiError::invalid_field(
            field,
            format!("`{field}` must be a date like 2026-01-31"),
        )),
    }
}

impl Service {
    /// Whose usage a query covers: `account` (the caller or a descendant), else the
    /// caller's tree; `None` for everything (the operator asking for no account).
    async fn usage_scope(
        &self,
        caller: &Caller,
        account: Option<&str>,
    ) -> Result<Option<AccountId>, ApiError> {
        Ok(match (account, caller) {
            (Some(text), _) => {
                let id: AccountId = text.parse().map_err(|_| {
                    ApiError::invalid_field(
                        "account",
                        format!("account {text:?} is not an account id"),
                    )
                })?;
                Some(self.descendant(caller, id, true).await?.account.id)
            }
            (None, Caller::Account { account, .. }) => Some(account.id),
            (None, Caller::Root) => None,
        })
    }

    /// The main account of `id`'s tree and every account of `id`'s subtree, as the
    /// collector's queries name them.
    pub(super) async fn listed_subtree(
        &self,
        id: AccountId,
    ) -> Result<(String, Vec<String>), ApiError> {
        let subtree = self.store.subtree(id).await?;
        Ok((
            self.main_of(id).await?.to_string(),
            subtree.iter().map(ToString::to_string).collect(),
        ))
    }

    /// `GET /dashboard/logs`: raw usage events of the caller's tree (or of one
    /// descendant's subtree), newest first, a page at a time.
    pub async fn logs(
        &self,
        caller: &Caller,
        query: LogsQuery,
        now_ms: i64,
    ) -> Result<LogPage, ApiError> {
        let to = query.to.unwrap_or(now_ms.saturating_add(1));
        let from = query.from.unwrap_or(to.saturating_sub(7 * 86_400_000));
        if from >= to || to.saturating_sub(from) > 400 * 86_400_000 {
            return Err(ApiError::invalid_field(
                "from",
                "`from` must be before `to`, at most 400 days apart (unix milliseconds)",
            ));
        }
        let limit = query.limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(ApiError::invalid_field("limit", "limit must be 1-1000"));
        }
        for (name, field, value) in [
            ("session", fields::SESSION, &query.session),
            ("user", fields::END_USER, &query.user),
            ("tag", fields::TAG, &query.tag),
        ] {
            if let Some(value) = value {
                field
                    .check(value)
                    .map_err(|e| ApiError::invalid_field(name, e.to_string()))?;
            }
        }
        let within = self.usage_scope(caller, query.account.as_deref()).await?;
        let main = match within {
            Some(id) => self.main_of(id).await?.to_string(),
            None => String::new(),
        };
        // A sub-account's subtree goes to the collector as a list too, when short
        // enough, so its index on the account serves the read instead of a walk of
        // every event by time; a main account's whole tree needs no list.
        let accounts = match within {
            Some(id) if id.to_string() != main => {
                let subtree = self.store.subtree(id).await?;
                if subtree.len() <= MAX_LISTED_ACCOUNTS {
                    subtree.iter().map(ToString::to_string).collect()
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        };
        Ok(self
            .collector
            .events(pb::EventQuery {
                main_account_id: main,
                within_account_id: within.map(|w| w.to_string()).unwrap_or_default(),
                from_unix_ms: from,
                to_unix_ms: to,
                model: query.model.unwrap_or_default(),
                status: u32::from(query.status.unwrap_or(0)),
                session: query.session.unwrap_or_default(),
                end_user: query.user.unwrap_or_default(),
                tag: query.tag.unwrap_or_default(),
                before: query.before.unwrap_or_default(),
                limit,
                account_ids: accounts,
            })
            .await?)
    }

    /// `GET /x-bill`: rollups of the caller and its descendants.
    pub async fn bill(
        &self,
        caller: &Caller,
        query: BillQuery,
        today: UtcDay,
    ) -> Result<Bill, ApiError> {
        let to = match query.to {
            Some(d) => requested_day(d, "to")?,
            None => today,
        };
        let from = match query.from {
            Some(d) => requested_day(d, "from")?,
            None => to.plus_days(-30),
        };
        if from > to {
            return Err(ApiError::invalid_field(
                "from",
                "`from` must not be after `to`",
            ));
        }
        if to.number() - from.number() > MAX_BILL_DAYS {
            return Err(ApiError::invalid_field(
                "from",
                format!("a bill spans at most {MAX_BILL_DAYS} days"),
            ));
        }
        let granularity = match query.granularity {
            None => Granularity::Day,
            Some(Requested::Known(g)) => g,
            Some(Requested::Unknown(other)) => {
                return Err(ApiError::invalid_field(
                    "granularity",
                    format!("granularity must be \"day\" or \"month\", not {other:?}"),
                ));
            }
        };
        let by = match query.by {
            None => RollupBy::Account,
            Some(Requested::Known(by)) => by,
            Some(Requested::Unknown(other)) => {
                return Err(ApiError::invalid_field(
                    "by",
                    format!(
                        "by must be \"account\", \"child\", \"provider_key\", \"endpoint\", \"user\", \"session\" or \"tag\", not {other:?}"
                    ),
                ));
            }
        };
        let whole_tree = match by {
            RollupBy::Account
            | RollupBy::Child
            | RollupBy::User
            | RollupBy::Session
            | RollupBy::Tag => None,
            RollupBy::ProviderKey => Some(("usage per provider key", "of the keys")),
            RollupBy::Endpoint => Some(("usage per endpoint", "of the tree")),
        };
        if let Some((what, owner)) = whole_tree {
            if query.account.is_some() {
                return Err(ApiError::invalid_field(
                    "account",
                    format!("{what} covers the owner's whole tree: leave out `account`"),
                ));
            }
            if let Caller::Account { account, .. } = caller
                && account.parent.is_some()
            {
                return Err(ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!("{what} is for the owner {owner} (the main account)"),
                ));
            }
        }
        let top = self.usage_scope(caller, query.account.as_deref()).await?;
        let (main_account_id, account_ids, child_ids) = match top {
            None => (String::new(), Vec::new(), Vec::new()),
            Some(id) if whole_tree.is_some() => (id.to_string(), Vec::new(), Vec::new()),
            // Each account with the direct child it is summed under: the collector
            // sums in its statement, a row per child however big the subtree.
            Some(id) if by == RollupBy::Child => {
                let (accounts, children) = self
                    .store
                    .subtree_by_child(id)
                    .await?
                    .into_iter()
                    .map(|(a, child)| (a.to_string(), child.to_string()))
                    .unzip();
                (self.main_of(id).await?.to_string(), accounts, children)
            }
            Some(id) => {
                let (main, accounts) = self.listed_subtree(id).await?;
                (main, accounts, Vec::new())
            }
        };
        let rows = self
            .collector
            .rollups(pb::RollupQuery {
                main_account_id,
                account_ids,
                from_day: from.to_string(),
                to_day: to.to_string(),
                granularity: match granularity {
                    Granularity::Day => pb::Granularity::Day,
                    Granularity::Month => pb::Granularity::Month,
                }
                .into(),
                by_provider_key: by == RollupBy::ProviderKey,
                by_endpoint: by == RollupBy::Endpoint,
                by_label: match by.label() {
                    None => pb::RollupLabel::Unspecified,
                    Some(LabelKind::User) => pb::RollupLabel::User,
                    Some(LabelKind::Session) => pb::RollupLabel::Session,
                    Some(LabelKind::Tag) => pb::RollupLabel::Tag,
                }
                .into(),
                by_child: by == RollupBy::Child,
                child_ids,
                model: query.model.unwrap_or_default(),
            })
            .await?;
        Ok(Bill {
            from,
            to,
            granularity,
            by,
            rows,
        })
    }
}

impl Service {
    /// The usage of the caller's tree between two days, per day and model, summed
    /// over its accounts: what the console's overview shows. A main account's tree
    /// (and, for the operator, every tree) is read from the per-endpoint rollups, a
    /// few rows a day however many accounts the tree holds (they count the calls of
    /// accounts deleted since, as the owner paid for them); a sub-account's subtree
    /// from its accounts' rows.
    pub async fn usage_totals(
        &self,
        caller: &Caller,
        from: UtcDay,
        to: UtcDay,
    ) -> Result<Vec<RollupRow>, ApiError> {
        if from > to || to.number() - from.number() > MAX_BILL_DAYS {
            return Err(ApiError::invalid(format!(
                "`from` must not be after `to`, at most {MAX_BILL_DAYS} days apart"
            )));
        }
        let (main_account_id, account_ids, by_endpoint) = match caller {
            Caller::Root => (String::new(), Vec::new(), true),
            Caller::Account { account, .. } if account.parent.is_none() => {
                (account.id.to_string(), Vec::new(), true)
            }
            Caller::Account { account, .. } => {
                let (main, subtree) = self.listed_subtree(account.id).await?;
                (main, subtree, false)
            }
        };
        let rows = self
            .collector
            .rollups(pb::RollupQuery {
                main_account_id,
                account_ids,
                from_day: from.to_string(),
                to_day: to.to_string(),
                granularity: pb::Granularity::Day.into(),
                by_provider_key: false,
                by_endpoint,
                by_label: pb::RollupLabel::Unspecified.into(),
                by_child: false,
                child_ids: Vec::new(),
                model: String::new(),
            })
            .await?;
        Ok(summed_per_period_and_model(rows))
    }
}

/// Rows summed per period and model, whoever (account, key, endpoint) they were of.
fn summed_per_period_and_model(rows: Vec<RollupRow>) -> Vec<RollupRow> {
    let mut sums: std::collections::BTreeMap<(String, String), RollupRow> = Default::default();
    for r in rows {
        let sum = sums
            .entry((r.period.clone(), r.model.clone()))
            .or_insert_with(|| RollupRow {
                period: r.period,
                model: r.model,
                ..RollupRow::default()
            });
        sum.requests += r.requests;
        sum.errors += r.errors;
        sum.input_tokens += r.input_tokens;
        sum.output_tokens += r.output_tokens;
        sum.cached_tokens += r.cached_tokens;
        sum.cache_write_tokens += r.cache_write_tokens;
        sum.cost_nanos = sum.cost_nanos.saturating_add(r.cost_nanos);
        sum.billed_nanos = sum.billed_nanos.saturating_add(r.billed_nanos);
    }
    sums.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_whoever_a_row_was_of() {
        let row = |period: &str, endpoint: &str, model: &str, requests: u64| RollupRow {
            period: period.into(),
            endpoint: endpoint.into(),
            model: model.into(),
            requests,
            errors: 1,
            cost_nanos: 10,
            billed_nanos: 12,
            ..RollupRow::default()
        };
        let sums = summed_per_period_and_model(vec![
            row("2026-01-02", "/v1/messages", "m", 3),
            row("2026-01-01", "/v1/chat/completions", "m", 1),
            row("2026-01-01", "/v1/messages", "m", 2),
            row("2026-01-01", "/v1/messages", "n", 5),
        ]);
        let seen: Vec<_> = sums
            .iter()
            .map(|r| (r.period.as_str(), r.model.as_str(), r.requests, r.errors))
            .collect();
        assert_eq!(
            seen,
            [
                ("2026-01-01", "m", 3, 2),
                ("2026-01-01", "n", 5, 1),
                ("2026-01-02", "m", 3, 1)
            ]
        );
        assert_eq!((sums[0].cost_nanos, sums[0].billed_nanos), (20, 24));
        assert!(sums.iter().all(|r| r.endpoint.is_empty()));
    }

    #[test]
    fn options_name_a_value_or_keep_the_text() {
        let day: Requested<UtcDay> = Requested::from("2026-02-28".to_owned());
        assert_eq!(day, Requested::Known("2026-02-28".parse().unwrap()));
        let day: Requested<UtcDay> = Requested::from("2026-02-30".to_owned());
        assert_eq!(day, Requested::Unknown("2026-02-30".into()));
        let by: Requested<RollupBy> = Requested::from("provider_key".to_owned());
        assert_eq!(by, Requested::Known(RollupBy::ProviderKey));
        let g: Requested<Granularity> = Requested::from("hour".to_owned());
        assert_eq!(g, Requested::Unknown("hour".into()));
        let bill = Bill {
            from: "2026-01-01".parse().unwrap(),
            to: "2026-01-31".parse().unwrap(),
            granularity: Granularity::Month,
            by: RollupBy::ProviderKey,
            rows: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(bill).unwrap(),
            serde_json::json!({"from": "2026-01-01", "to": "2026-01-31",
                "granularity": "month", "by": "provider_key", "rows": []})
        );
    }
}
