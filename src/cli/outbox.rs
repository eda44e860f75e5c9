//! `fluidtalk-runner outbox ...`: the persona's text waiting for delivery: list it, ack
//! what a pull consumer delivered, list what webhook delivery parked and send it again.

use super::leads::print_json;
use super::store_access::{Open, open_as, store_failure};
use crate::config::Config;
use crate::exit::Failure;
use crate::lead::LeadState;
use chrono::Utc;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Text waiting to be delivered on the platform. Text for a lead blocked since it was
    /// written is held back (do-not-contact): --all shows it, and delivered text too.
    List {
        /// Also delivered text, and text held back because its lead is blocked.
        #[arg(long, conflicts_with = "parked")]
        all: bool,
        /// Only messages webhook delivery gave up on after [delivery] max_age (they hold
        /// back the later messages of their lead until `outbox redeliver`).
        #[arg(long)]
        parked: bool,
        /// One JSON array (each row with its lead's state).
        #[arg(long)]
        json: bool,
    },
    /// Mark rows as delivered.
    Ack {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Send parked messages to the webhook again: each is due now, with a fresh max_age.
    Redeliver {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

pub async fn run(config: &Config, command: OutboxCommand) -> Result<(), Failure> {
    let how = match command {
        OutboxCommand::List { .. } => Open::ReadOnly,
        _ => Open::Existing,
    };
    let store = open_as(config, how).await?;
    match command {
        OutboxCommand::List {
            parked: true, json, ..
        } => {
            let items = store.parked().await.map_err(store_failure)?;
            if json {
                return print_json(&items);
            }
            for item in &items {
                outln!(
                    "#{:<6} parked    {:<24} {:<9} {} tries, parked {}: {}",
                    item.id,
                    item.target,
                    item.action,
                    item.tries,
                    item.parked_at.format("%Y-%m-%d %H:%MZ"),
                    item.last_error.as_deref().unwrap_or("-")
                );
            }
            if items.is_empty() {
                eprintln!("no message is parked");
            } else {
                eprintln!("`outbox redeliver ID...` sends them again");
            }
            Ok(())
        }
        OutboxCommand::List { all, json, .. } => {
            let mut items = store.outbox(all).await.map_err(store_failure)?;
            let held = items
                .iter()
                .filter(|i| i.acked_at.is_none() && i.lead_state == LeadState::Blocked)
                .count();
            if !all {
                items.retain(|i| i.lead_state != LeadState::Blocked);
            }
            if json {
                return print_json(&items);
            }
            let parked: Vec<i64> = store
                .parked()
                .await
                .map_err(store_failure)?
                .iter()
                .map(|p| p.id)
                .collect();
            for item in &items {
                let state = if item.acked_at.is_some() {
                    "delivered"
                } else if item.lead_state == LeadState::Blocked {
                    "held"
                } else if parked.contains(&item.id) {
                    "parked"
                } else {
                    "pending"
                };
                outln!(
                    "#{:<6} {:<9} {:<24} {:<9} {:?}",
                    item.id,
                    state,
                    item.target,
                    item.action,
                    item.message
                );
            }
            if items.is_empty() {
                eprintln!("the outbox is empty");
            }
            if held > 0 && !all {
                eprintln!(
                    "{held} message(s) held back: their lead is blocked (do-not-contact); `outbox list --all` shows them"
                );
            }
            Ok(())
        }
        OutboxCommand::Ack { ids } => {
            let acked = store
                .ack_outbox(&ids, Utc::now())
                .await
                .map_err(store_failure)?;
            outln!("acked {}", acked.len());
            not_done(&ids, &acked, "not pending (unknown or already acked)");
            Ok(())
        }
        OutboxCommand::Redeliver { ids } => {
            let unparked = store
                .redeliver(&ids, Utc::now())
                .await
                .map_err(store_failure)?;
            outln!("redelivering {}", unparked.len());
            not_done(
                &ids,
                &unparked,
                "not parked (unknown, pending or delivered)",
            );
            Ok(())
        }
    }
}

/// Says which of `asked` were not `done`, and why.
fn not_done(asked: &[i64], done: &[i64], why: &str) {
    let missed: Vec<String> = asked
        .iter()
        .filter(|id| !done.contains(id))
        .map(|id| id.to_string())
        .collect();
    if !missed.is_empty() {
        eprintln!("{why}: {}", missed.join(", "));
    }
}
