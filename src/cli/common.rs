//! What several commands share: parsers of command-line values, printing (JSON, a lead's
//! row), and the campaign's API client. A command takes these from here, never from
//! another command's module.

use crate::config::Config;
use crate::exit::{Exit, ExitWith, Failure};
use crate::fluidtalk::{ApiKey, Client};
use crate::store::Lead;
use chrono::{DateTime, Utc};

/// A time given on the command line: RFC 3339, within years 1 to 9999 (what both
/// databases store).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is not an RFC 3339 time (like 2026-11-24T09:00:00Z)"))?;
    crate::lead::fields::time("the time", t).map_err(|e| e.to_string())
}

/// A rate given on the command line: a number from 0 to 1.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

/// Prints `value` as pretty JSON (the `--json` output).
pub fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).exit_with(Exit::Failure)?;
    outln!("{text}");
    Ok(())
}

/// A time in a table's column: to the minute, in UTC; `-` for none.
pub fn show_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_string(),
        |t| t.format("%Y-%m-%d %H:%MZ").to_string(),
    )
}

/// The header of the leads' table (`print_lead` prints its rows).
pub const LEAD_HEADER: &str = "TARGET                   STATE        FU  LAST CONTACT (UTC)  LAST REPLY (UTC)    NEXT ELIGIBLE (UTC) TAGS";

/// One lead as a row of the leads' table.
pub fn print_lead(lead: &Lead) -> Result<(), Failure> {
    outln!(
        "{:<24} {:<12} {:<3} {:<19} {:<19} {:<19} {}",
        lead.target,
        lead.state,
        lead.follow_ups_sent,
        show_time(lead.last_contact_at),
        show_time(lead.last_reply_at),
        show_time(Some(lead.next_eligible_at)),
        lead.tags.join(";"),
    );
    Ok(())
}

/// The API client a campaign uses: the key from `FLUIDTALK_API_KEY`, the base URL, timeout
/// and default sender from the campaign file (`FLUIDTALK_BASE_URL` overriding).
pub fn campaign_client(config: &Config) -> Result<Client, Failure> {
    let key = ApiKey::from_env().exit_with(Exit::Config)?;
    config.client(key).exit_with(Exit::Config)
}
