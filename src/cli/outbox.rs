//! `fluidtalk-runner outbox ...`: the persona's text waiting for delivery: list it, ack
//! what a pull consumer delivered, list what webhook delivery parked and send it again.

use super::common::print_json;
use super::store_access::{Open, open_as, store_failure};
use crate::config::Config;
use crate::exit::Exit;
use crate::exit::Failure;
use crate::lead::LeadState;
use anyhow::anyhow;
use chrono::Utc;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Text waiting to be delivered on the platform, with the sender whose call produced it
    /// (`-` when unknown). Text for a lead blocked since it was written is held back
    /// (do-not-contact): --all shows it, and delivered text too.
    List {
        /// Also delivered text, and text held back because its lead is blocked.
        #[arg(long, conflicts_with = "parked")]
        all: bool,
        /// Only messages webhook delivery gave up on after [delivery] max_age (they hold
        /// back the later messages of their lead until `outbox redeliver`).
        #[arg(long)]
        parked: bool,
        /// One JSON array (each row with its lead's state and its sender, null when unknown).
        #[arg(long)]
        json: bool,
        /// Messages shown at most (0: all, read a page at a time); a cut list says so on
        /// stderr, with the `--after` that shows the next ones.
        #[arg(long, default_value_t = 1_000)]
        limit: u32,
        /// Only messages with a greater id (the last one shown): the next page.
        #[arg(long, value_name = "ID")]
        after: Option<i64>,
    },
    /// Mark messages as delivered.
    Ack {
        /// Message ids as `outbox list` shows them: `17`, `#17`, or an inclusive range
        /// `17-25` / `#17-#25` (at most 10,000 ids); several may be given, acked in one
        /// transaction.
        #[arg(required_unless_present = "all", conflicts_with = "all", value_parser = parse_ids)]
        ids: Vec<Ids>,
        /// Every pending message: not those held back for a blocked lead, nor parked ones;
        /// refused when [delivery] is set (the daemon delivers them).
        #[arg(long)]
        all: bool,
    },
    /// Send parked messages to the webhook again: each is due now, with a fresh max_age.
    Redeliver {
        /// Message ids as `outbox list --parked` shows them: `17`, `#17`, or a range `17-25`.
        #[arg(required_unless_present = "all", conflicts_with = "all", value_parser = parse_ids)]
        ids: Vec<Ids>,
        /// Every parked message.
        #[arg(long)]
        all: bool,
    },
}

/// The most ids one range may name: a typo such as `1-10000000` is an error, not a
/// million-row statement (`--all` takes every message).
pub const MAX_RANGE: i64 = 10_000;
/// Messages `outbox list` reads per statement.
const LIST_PAGE: u32 = 1_000;
/// Ids redelivered per statement (acks chunk in the store, in one transaction).
const CHUNK: usize = 1_000;

/// One id, or a range of them, as written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    first: i64,
    last: i64,
}

impl Ids {
    fn each(self) -> impl Iterator<Item = i64> {
        self.first..=self.last
    }
}

/// `17`, `#17`, `17-25` or `#17-#25`.
pub fn parse_ids(text: &str) -> Result<Ids, String> {
    let one = |t: &str| -> Result<i64, String> {
        let t = t.trim();
        let digits = t.strip_prefix('#').unwrap_or(t);
        match digits.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{t:?} is not a message id; expected a number as `outbox list` shows it (17 or #17) or a range (17-25)"
            )),
        }
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let n = one(text)?;
            (n, n)
        }
    };
    if last < first {
        return Err(format!(
            "the range {text:?} runs backwards; expected the lower id first, e.g. {last}-{first}"
        ));
    }
    if last - first >= MAX_RANGE {
        return Err(format!(
            "the range {text:?} names {} ids, more than {MAX_RANGE}; use --all, or several ranges",
            last - first + 1
        ));
    }
    Ok(Ids { first, last })
}

/// The most ids one command names (ranges together).
pub const MAX_IDS: u64 = 100_000;

/// The ids named, in order, each once; more than `MAX_IDS` in all is an error.
fn expand(ids: &[Ids]) -> Result<Vec<i64>, Failure> {
    let named: u64 = ids
        .iter()
        .map(|r| r.last.abs_diff(r.first) + 1)
        .fold(0, u64::saturating_add);
    if named > MAX_IDS {
        return Err(Failure {
            exit: Exit::Usage,
            error: anyhow!(
                "{named} ids named, more than {MAX_IDS}; use --all, or several commands"
            ),
        });
    }
    let mut all: Vec<i64> = ids.iter().flat_map(|r| r.each()).collect();
    all.sort_unstable();
    all.dedup();
    Ok(all)
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
        OutboxCommand::List {
            all,
            json,
            limit,
            after,
            ..
        } => {
            let mut items = Vec::new();
            let mut last = after.unwrap_or(0);
            let mut cut = false;
            // A page at a time; one more than wanted says whether the list goes on.
            loop {
                let left = if limit == 0 {
                    LIST_PAGE
                } else {
                    (u64::from(limit) - items.len() as u64).min(u64::from(LIST_PAGE)) as u32
                };
                let page = store
                    .outbox_list(all, last, left + 1)
                    .await
                    .map_err(store_failure)?;
                let more = page.len() > left as usize;
                items.extend(page.into_iter().take(left as usize));
                last = items.last().map_or(last, |i| i.id);
                if !more {
                    break;
                }
                if limit != 0 && items.len() as u64 >= u64::from(limit) {
                    cut = true;
                    break;
                }
            }
            let held = if all {
                0
            } else {
                store.outbox_held_back().await.map_err(store_failure)?
            };
            let say_cut = || {
                if cut {
                    eprintln!(
                        "cut at {} messages (--limit {limit}); more follow: `--after {last}` shows the next ones, `--limit 0` all",
                        items.len()
                    );
                }
            };
            if json {
                print_json(&items)?;
                say_cut();
                return Ok(());
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
                    "#{:<6} {:<9} {:<24} {:<16} {:<9} {:?}",
                    item.id,
                    state,
                    item.target,
                    item.sender.as_deref().unwrap_or("-"),
                    item.action,
                    item.message
                );
            }
            if items.is_empty() {
                eprintln!("the outbox is empty");
            }
            say_cut();
            if held > 0 && !all {
                eprintln!(
                    "{held} message(s) held back: their lead is blocked (do-not-contact); `outbox list --all` shows them"
                );
            }
            Ok(())
        }
        OutboxCommand::Ack { ids, all } => {
            let now = Utc::now();
            if all {
                // With webhook delivery the daemon delivers: acking everything would drop
                // what it has not sent yet.
                if config.delivery.is_some() {
                    return Err(Failure {
                        exit: Exit::Config,
                        error: anyhow!(
                            "outbox ack --all refused: [delivery] is set, so the daemon delivers pending messages; ack ids by hand, or `outbox list --parked` and `outbox redeliver`"
                        ),
                    });
                }
                // One statement: the outbox is never read into memory.
                let acked = store.ack_all_outbox(now).await.map_err(store_failure)?;
                outln!("acked {acked}");
                return Ok(());
            }
            let asked = expand(&ids)?;
            // One transaction: every id named is acked, or (on an error) none.
            let acked = store.ack_outbox(&asked, now).await.map_err(store_failure)?;
            outln!("acked {}", acked.len());
            not_done(&asked, &acked, "not pending (unknown or already acked)");
            Ok(())
        }
        OutboxCommand::Redeliver { ids, all } => {
            let now = Utc::now();
            let (asked, named) = if all {
                let parked = store.parked().await.map_err(store_failure)?;
                (parked.iter().map(|i| i.id).collect(), false)
            } else {
                (expand(&ids)?, true)
            };
            let mut unparked = Vec::with_capacity(asked.len());
            for chunk in asked.chunks(CHUNK) {
                match store.redeliver(chunk, now).await {
                    Ok(done) => unparked.extend(done),
                    Err(e) => {
                        eprintln!("redelivering {} before the error below", unparked.len());
                        return Err(store_failure(e));
                    }
                }
            }
            outln!("redelivering {}", unparked.len());
            if named {
                not_done(
                    &asked,
                    &unparked,
                    "not parked (unknown, pending or delivered)",
                );
            }
            Ok(())
        }
    }
}

/// Says which of `asked` were not `done`, and why.
fn not_done(asked: &[i64], done: &[i64], why: &str) {
    let done: std::collections::HashSet<i64> = done.iter().copied().collect();
    let missed: Vec<String> = asked
        .iter()
        .filter(|id| !done.contains(id))
        .map(|id| format!("#{id}"))
        .collect();
    if !missed.is_empty() {
        let more = missed.len().saturating_sub(20);
        let mut shown = missed.into_iter().take(20).collect::<Vec<_>>().join(", ");
        if more > 0 {
            shown.push_str(&format!(" and {more} more"));
        }
        eprintln!("{why}: {shown}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_as_outbox_list_shows_them() {
        assert_eq!(
            parse_ids("17"),
            Ok(Ids {
                first: 17,
                last: 17
            })
        );
        assert_eq!(
            parse_ids("#17"),
            Ok(Ids {
                first: 17,
                last: 17
            })
        );
        assert_eq!(parse_ids("#4-#9"), Ok(Ids { first: 4, last: 9 }));
        assert_eq!(parse_ids("4-9"), Ok(Ids { first: 4, last: 9 }));
        assert_eq!(
            expand(&[Ids { first: 4, last: 6 }, Ids { first: 5, last: 7 }]).ok(),
            Some(vec![4, 5, 6, 7])
        );
        let many = vec![
            Ids {
                first: 1,
                last: 10_000
            };
            11
        ];
        assert!(expand(&many).is_err(), "110,000 ids in all");
        for bad in ["", "#", "x", "0", "-3", "4-", "9-4", "1-10001", "##4"] {
            assert!(parse_ids(bad).is_err(), "{bad:?} was taken");
        }
        assert!(parse_ids("1-10000").is_ok());
        let e = parse_ids("9-4").unwrap_err();
        assert!(e.contains("4-9"), "{e}");
    }
}
