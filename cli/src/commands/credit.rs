//! `credit show|top-up|withdraw`. Amounts are dollars (`12.50`), kept exactly as
//! nano-dollars.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{fields, show};
use crate::Ctx;
use crate::error::{CliError, Result};
use crate::output::{Table, cell, dollars, parse_dollars, when};

#[derive(Subcommand, Debug)]
pub enum CreditCommand {
    /// An account's credit and its ledger (the caller's when no ID).
    #[command(
        after_help = "Examples:\n  switchyard credit show\n  switchyard credit show 0190f0c2-... --output json"
    )]
    Show { id: Option<String> },
    /// Give a child more credit, out of what the caller holds.
    #[command(
        name = "top-up",
        after_help = "Example:\n  switchyard credit top-up 0190f0c2-... 25.00 --note 'December'"
    )]
    TopUp {
        id: String,
        /// Dollars, like 25 or 12.50.
        amount: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Take credit back from a child.
    #[command(after_help = "Example:\n  switchyard credit withdraw 0190f0c2-... 5")]
    Withdraw {
        id: String,
        /// Dollars, like 5 or 0.25.
        amount: String,
        #[arg(long, default_value = "")]
        note: String,
    },
}

pub async fn run(ctx: &Ctx, command: CreditCommand) -> Result<()> {
    let client = ctx.client()?;
    let (id, nanos, note) = match command {
        CreditCommand::Show { id } => {
            let id = match id {
                Some(id) => id,
                None => {
                    let me = client.get("/x-self", &[]).await?;
                    cell(&me["account"]["id"])
                }
            };
            let credit = client.get(&format!("/x-users/{id}/credits"), &[]).await?;
            show(ctx, &credit, table);
            return Ok(());
        }
        CreditCommand::TopUp { id, amount, note } => (id, amount_of(&amount)?, note),
        CreditCommand::Withdraw { id, amount, note } => (id, -amount_of(&amount)?, note),
    };
    let mut body = json!({"amount_nanos": nanos});
    if !note.is_empty() {
        body["note"] = json!(note);
    }
    let credit = client.post(&format!("/x-users/{id}/credits"), body).await?;
    show(ctx, &credit, table);
    Ok(())
}

fn amount_of(text: &str) -> Result<i64> {
    match parse_dollars(text) {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(CliError::Usage("the amount must be more than 0".into())),
        Err(e) => Err(CliError::Usage(e)),
    }
}

fn table(v: &Value) -> String {
    let mut out = fields(
        v,
        &[
            "account_id",
            "allocated_nanos",
            "delegated_nanos",
            "available_to_delegate_nanos",
        ],
    );
    out.push('\n');
    let mut t = Table::new(&["WHEN", "AMOUNT", "BY", "NOTE"]);
    for e in v["ledger"].as_array().into_iter().flatten() {
        t.row(vec![
            when(&e["at_unix_ms"]),
            dollars(&e["amount_nanos"]),
            cell(&e["actor"]),
            cell(&e["note"]),
        ]);
    }
    out.push_str(&t.render());
    out
}
