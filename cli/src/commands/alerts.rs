//! `alerts list|create|delete|deliveries|test`: alert rules on the caller or a
//! descendant, delivered as signed webhooks (docs/alerts.md).

use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::{done, fields, show};
use crate::Ctx;
use crate::error::{CliError, Result};
use crate::output::{Table, cell, parse_dollars, when};

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Rules watching an account (the caller's own when no --account).
    #[command(
        after_help = "Examples:\n  switchyard alerts list\n  switchyard alerts list --account 0190f0c2-... --output json"
    )]
    List {
        #[arg(long, value_name = "ID")]
        account: Option<String>,
    },
    /// Set a rule; its webhook secret is printed this once.
    #[command(
        after_help = "Kinds and their thresholds:\n  credit_share            percents of the account's credit limit (50 80 100)\n  daily_spend             dollars spent in a UTC day (25 or 12.50)\n  provider_key_unhealthy  none (the main account's own keys)\n  data_plane_lag          configuration versions behind (operator only)\n\nExamples:\n  switchyard alerts create --kind credit_share --threshold 80 --threshold 100 --webhook https://hooks.example.com/sy\n  switchyard alerts create --account 0190f0c2-... --kind daily_spend --threshold 25 --webhook https://hooks.example.com/sy"
    )]
    Create {
        /// The watched account: the caller or a descendant (default: the caller).
        #[arg(long, value_name = "ID")]
        account: Option<String>,
        #[arg(long, value_parser = ["credit_share", "daily_spend", "provider_key_unhealthy", "data_plane_lag"])]
        kind: String,
        /// One threshold; repeat for more.
        #[arg(long = "threshold", value_name = "N")]
        thresholds: Vec<String>,
        /// Where the webhooks go (the rule's `url`).
        #[arg(long, value_name = "URL")]
        webhook: String,
    },
    /// Delete a rule with its delivery log.
    #[command(after_help = "Example:\n  switchyard alerts delete 0190f0c2-...")]
    Delete { id: String },
    /// A rule's webhook deliveries, newest first.
    #[command(after_help = "Example:\n  switchyard alerts deliveries 0190f0c2-... --limit 20")]
    Deliveries {
        id: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// Send the rule's receiver a signed test event now and show its answer.
    #[command(after_help = "Example:\n  switchyard alerts test 0190f0c2-...")]
    Test { id: String },
}

pub async fn run(ctx: &Ctx, command: AlertsCommand) -> Result<()> {
    let client = ctx.client()?;
    match command {
        AlertsCommand::List { account } => {
            let query: Vec<(&str, String)> = account.into_iter().map(|a| ("account", a)).collect();
            let rules = client.get("/x-alerts", &query).await?;
            show(ctx, &rules, rules_table);
        }
        AlertsCommand::Create {
            account,
            kind,
            thresholds,
            webhook,
        } => {
            let mut body = Map::new();
            if let Some(account) = account {
                body.insert("account_id".into(), json!(account));
            }
            let thresholds = thresholds
                .iter()
                .map(|t| threshold(&kind, t))
                .collect::<Result<Vec<_>>>()?;
            body.insert("kind".into(), json!(kind));
            body.insert("thresholds".into(), json!(thresholds));
            body.insert("url".into(), json!(webhook));
            let created = client.post("/x-alerts", Value::Object(body)).await?;
            show(ctx, &created, |v| {
                let mut out = fields(v, &["id", "account_id", "kind", "thresholds", "url"]);
                out.push_str(&format!(
                    "\nwebhook secret (shown once; verify the x-switchyard-signature header with it):\n{}\n",
                    cell(&v["secret"])
                ));
                out
            });
        }
        AlertsCommand::Delete { id } => {
            let answer = client.delete(&format!("/x-alerts/{id}"), &[]).await?;
            done(ctx, &answer, &format!("alert rule {id} deleted"));
        }
        AlertsCommand::Deliveries { id, limit } => {
            let query: Vec<(&str, String)> = limit
                .into_iter()
                .map(|l| ("limit", l.to_string()))
                .collect();
            let log = client
                .get(&format!("/x-alerts/{id}/deliveries"), &query)
                .await?;
            show(ctx, &log, |v| {
                let mut t = Table::new(&[
                    "ID", "KIND", "STATE", "ATTEMPTS", "STATUS", "ERROR", "NEXT", "CREATED",
                ]);
                for d in v.as_array().into_iter().flatten() {
                    t.row(vec![
                        cell(&d["id"]),
                        if d["firing_id"].is_null() {
                            "test".into()
                        } else {
                            "alert".into()
                        },
                        cell(&d["state"]),
                        cell(&d["attempts"]),
                        cell(&d["status_code"]),
                        cell(&d["error"]),
                        when(&d["next_attempt_unix_ms"]),
                        when(&d["created_at_unix_ms"]),
                    ]);
                }
                t.render()
            });
        }
        AlertsCommand::Test { id } => {
            let answer = client
                .post(&format!("/x-alerts/{id}/test"), json!({}))
                .await?;
            show(ctx, &answer, |v| {
                fields(v, &["delivery_id", "delivered", "status_code", "error"])
            });
        }
    }
    Ok(())
}

/// A threshold as typed: dollars for `daily_spend` (sent as nano-dollars), whole
/// numbers otherwise.
fn threshold(kind: &str, text: &str) -> Result<i64> {
    let parsed = if kind == "daily_spend" {
        parse_dollars(text)
    } else {
        text.trim()
            .parse::<i64>()
            .map_err(|_| format!("{text:?} is not a whole number"))
    };
    match parsed {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(CliError::Usage(format!(
            "threshold {text:?} must be more than 0"
        ))),
        Err(e) => Err(CliError::Usage(format!("threshold: {e}"))),
    }
}

fn rules_table(v: &Value) -> String {
    let mut t = Table::new(&["ID", "ACCOUNT", "KIND", "THRESHOLDS", "URL", "CREATED"]);
    for r in v.as_array().into_iter().flatten() {
        let thresholds = r["thresholds"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect::<Vec<_>>()
            .join(",");
        t.row(vec![
            cell(&r["id"]),
            cell(&r["account_id"]),
            cell(&r["kind"]),
            thresholds,
            cell(&r["url"]),
            when(&r["created_at_unix_ms"]),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_read_as_their_kind_says() {
        assert_eq!(threshold("daily_spend", "12.50").ok(), Some(12_500_000_000));
        assert_eq!(threshold("credit_share", "80").ok(), Some(80));
        assert!(threshold("credit_share", "80.5").is_err());
        assert!(threshold("data_plane_lag", "0").is_err());
        assert!(threshold("daily_spend", "lots").is_err());
    }
}
