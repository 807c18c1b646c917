//! `bill`, `logs` (with `--follow`) and `audit`.

use std::collections::HashSet;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::show;
use crate::Ctx;
use crate::client::Client;
use crate::error::Result;
use crate::output::print;
use crate::output::{self, Format, Table, cell, dollars, when};

#[derive(Args, Debug)]
pub struct BillArgs {
    /// First day, YYYY-MM-DD (default: 30 days before --to).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long, value_parser = ["day", "month"])]
    pub granularity: Option<String>,
    /// A descendant's subtree.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// Rows per account (default), provider key or endpoint.
    #[arg(long, value_parser = ["account", "provider_key", "endpoint"])]
    pub by: Option<String>,
}

pub async fn bill(ctx: &Ctx, args: BillArgs) -> Result<()> {
    let client = ctx.client()?;
    let query: Vec<(&str, String)> = [
        ("from", args.from),
        ("to", args.to),
        ("granularity", args.granularity),
        ("account", args.account),
        ("model", args.model),
        ("by", args.by),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let bill = client.get("/x-bill", &query).await?;
    show(ctx, &bill, |v| {
        let by = v["by"].as_str().unwrap_or("account");
        let head = match by {
            "provider_key" => "PROVIDER KEY",
            "endpoint" => "ENDPOINT",
            _ => "ACCOUNT",
        };
        let mut t = Table::new(&[
            "PERIOD", head, "MODEL", "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "CACHED", "COST",
            "BILLED",
        ]);
        for r in v["rows"].as_array().into_iter().flatten() {
            let who = match by {
                "provider_key" => &r["provider_key_id"],
                "endpoint" => &r["endpoint"],
                _ => &r["account_id"],
            };
            t.row(vec![
                cell(&r["period"]),
                cell(who),
                cell(&r["model"]),
                cell(&r["requests"]),
                cell(&r["errors"]),
                cell(&r["input_tokens"]),
                cell(&r["output_tokens"]),
                cell(&r["cached_tokens"]),
                dollars(&r["cost_nanos"]),
                dollars(&r["billed_nanos"]),
            ]);
        }
        format!(
            "{} to {}, by {}\n{}",
            cell(&v["from"]),
            cell(&v["to"]),
            by,
            t.render()
        )
    });
    Ok(())
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// A descendant's subtree.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// One HTTP status.
    #[arg(long)]
    pub status: Option<u16>,
    /// One client session.
    #[arg(long)]
    pub session: Option<String>,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Keep printing new calls as they come (polls the server).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Seconds between polls with --follow.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
}

pub async fn logs(ctx: &Ctx, args: LogsArgs) -> Result<()> {
    let client = ctx.client()?;
    let mut query: Vec<(&str, String)> = [
        ("account", args.account.clone()),
        ("model", args.model.clone()),
        ("status", args.status.map(|s| s.to_string())),
        ("session", args.session.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    query.push(("limit", args.limit.to_string()));
    let page = client.get("/dashboard/logs", &query).await?;
    let mut events: Vec<Value> = page["events"].as_array().cloned().unwrap_or_default();
    if !args.follow {
        show(ctx, &Value::Array(events), |v| {
            log_table(v.as_array().map(Vec::as_slice).unwrap_or(&[]))
        });
        return Ok(());
    }
    // Following: oldest first, one line (or one JSON document) per call.
    events.reverse();
    // Calls already printed at the newest millisecond seen (`from` includes it).
    let mut seen: HashSet<String> = HashSet::new();
    let mut newest = i64::MIN;
    let mut header = true;
    loop {
        let fresh: Vec<Value> = events
            .into_iter()
            .filter(|e| !seen.contains(&cell(&e["id"])))
            .collect();
        if let Some(latest) = fresh.iter().filter_map(|e| e["at_unix_ms"].as_i64()).max()
            && latest > newest
        {
            newest = latest;
            seen.clear();
        }
        for e in &fresh {
            if e["at_unix_ms"].as_i64() == Some(newest) {
                seen.insert(cell(&e["id"]));
            }
        }
        if !fresh.is_empty() || header {
            print(&follow_lines(ctx.global.output, &fresh, header));
            header = false;
        }
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
        events = since(&client, &query, newest).await?;
    }
}

/// Every call from `from` on, oldest first: pages followed back (bounded) so a
/// burst between two polls is not cut to one page.
async fn since(client: &Client, query: &[(&str, String)], from: i64) -> Result<Vec<Value>> {
    const MAX_PAGES: usize = 20;
    let mut out = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut q = query.to_vec();
        if from > i64::MIN {
            q.push(("from", from.to_string()));
        }
        if let Some(b) = &before {
            q.push(("before", b.clone()));
        }
        let page = client.get("/dashboard/logs", &q).await?;
        out.extend(page["events"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) if from > i64::MIN => before = Some(next.to_owned()),
            _ => break,
        }
    }
    out.reverse();
    Ok(out)
}

fn follow_lines(format: Format, events: &[Value], header: bool) -> String {
    match format {
        Format::Table => {
            let table = log_table(events);
            if header {
                table
            } else {
                table.lines().skip(1).map(|l| format!("{l}\n")).collect()
            }
        }
        Format::Json => events
            .iter()
            .map(|e| format!("{}\n", serde_json::to_string(e).unwrap_or_default()))
            .collect(),
        Format::Yaml => events
            .iter()
            .map(|e| {
                format!(
                    "---\n{}",
                    output::render(Format::Yaml, e, |_| String::new())
                )
            })
            .collect(),
    }
}

fn log_table(events: &[Value]) -> String {
    let mut t = Table::new(&[
        "WHEN", "ACCOUNT", "MODEL", "STATUS", "LATENCY", "INPUT", "OUTPUT", "COST", "PATH",
    ]);
    for e in events {
        t.row(vec![
            when(&e["at_unix_ms"]),
            cell(&e["account_id"]),
            cell(&e["model_served"]),
            cell(&e["status"]),
            format!("{}ms", cell(&e["latency_ms"])),
            cell(&e["input_tokens"]),
            cell(&e["output_tokens"]),
            dollars(&e["billed_nanos"]),
            cell(&e["path"]),
        ]);
    }
    t.render()
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// At most this many (the newest).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Entries older than this sequence number.
    #[arg(long)]
    pub before: Option<i64>,
}

pub async fn audit(ctx: &Ctx, args: AuditArgs) -> Result<()> {
    let client = ctx.client()?;
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(b) = args.before {
        query.push(("before", b.to_string()));
    }
    let entries = client.get("/x-audit", &query).await?;
    show(ctx, &entries, |v| {
        let mut t = Table::new(&["SEQ", "WHEN", "ACTOR", "ACTION", "TARGET"]);
        for e in v.as_array().into_iter().flatten() {
            t.row(vec![
                cell(&e["seq"]),
                when(&e["at_unix_ms"]),
                cell(&e["actor"]),
                cell(&e["action"]),
                cell(&e["target"]),
            ]);
        }
        t.render()
    });
    Ok(())
}
