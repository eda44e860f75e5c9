//! `fluidtalk-runner pause list|clear`: the account pauses every runner honours.
//!
//! A 402 pauses new conversations (and follow-ups, for a follow-up's 402) for a while,
//! doubling on each strike; a 401 pauses every call for an hour at a time. After buying
//! tokens or fixing `FLUIDTALK_API_KEY`, `pause clear` lifts them at once.

use super::store_access::{Open, open_as, store_failure};
use crate::config::Config;
use crate::exit::{Exit, ExitWith, Failure};
use crate::store::PauseScope;
use chrono::Utc;
use clap::{Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum PauseCommand {
    /// Stored pauses, in force or ended.
    List {
        /// The pauses as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift stored pauses now (after buying tokens or fixing the key): every pause, or the
    /// one named.
    Clear {
        /// new_conversations or follow_ups (402), or all (the 401 pause of every call).
        scope: Option<Scope>,
        /// The pauses lifted, as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Scope {
    NewConversations,
    FollowUps,
    All,
}

impl From<Scope> for PauseScope {
    fn from(s: Scope) -> Self {
        match s {
            Scope::NewConversations => PauseScope::NewConversations,
            Scope::FollowUps => PauseScope::FollowUps,
            Scope::All => PauseScope::All,
        }
    }
}

pub async fn run(config: &Config, command: PauseCommand) -> Result<(), Failure> {
    let store = open_as(config, Open::Existing).await?;
    let now = Utc::now();
    match command {
        PauseCommand::List { json } => {
            let pauses = store.pauses().await.map_err(store_failure)?;
            if json {
                let text = serde_json::to_string_pretty(&pauses).exit_with(Exit::Failure)?;
                outln!("{text}");
                return Ok(());
            }
            if pauses.is_empty() {
                outln!("no pauses stored");
            }
            for p in &pauses {
                let state = if p.until > now { "in force" } else { "ended" };
                outln!(
                    "{} {state} until {} (strike {}, set by {}): {}",
                    p.scope.as_str(),
                    p.until.format("%Y-%m-%d %H:%M UTC"),
                    p.strikes,
                    p.set_by.as_deref().unwrap_or("-"),
                    p.reason
                );
            }
            Ok(())
        }
        PauseCommand::Clear { scope, json } => {
            let scopes: Vec<PauseScope> = match scope {
                Some(s) => vec![s.into()],
                None => vec![
                    PauseScope::NewConversations,
                    PauseScope::FollowUps,
                    PauseScope::All,
                ],
            };
            let lifted = store.lift_pauses(&scopes).await.map_err(store_failure)?;
            if json {
                let text = serde_json::to_string_pretty(&lifted).exit_with(Exit::Failure)?;
                outln!("{text}");
                return Ok(());
            }
            if lifted.is_empty() {
                outln!("no pause to lift");
            }
            for p in &lifted {
                outln!(
                    "lifted {} (was until {}); runners call again at their next batch",
                    p.scope.as_str(),
                    p.until.format("%Y-%m-%d %H:%M UTC")
                );
            }
            Ok(())
        }
    }
}
