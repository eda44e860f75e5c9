//! The outbox's delivery by webhook: a message claimed for delivery, a parked message, and
//! their rows. The statements are in `sql/delivery.rs`; the worker is `crate::delivery`.

use super::StoreError;
use super::values::Ts;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How many characters of a failed try's error are kept (a receiver's 500 page may be long).
pub const LAST_ERROR_MAX: usize = 500;

/// A message claimed for delivery by one daemon, under its lease token.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryItem {
    pub id: i64,
    pub lead_id: i64,
    pub target: String,
    /// The lead's own sender, if it names one (the campaign's default applies otherwise).
    pub own_username: Option<String>,
    pub action: String,
    pub message: String,
    pub session_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Tries before this one.
    pub tries: u32,
    /// When the first try was made (this one, if it is the first): `max_age` counts from it.
    pub first_try_at: DateTime<Utc>,
}

/// A message whose delivery gave up after `[delivery] max_age`: it waits for
/// `outbox redeliver`, and holds back the later messages of its lead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkedItem {
    pub id: i64,
    pub target: String,
    pub action: String,
    pub message: String,
    pub created_at: DateTime<Utc>,
    pub tries: u32,
    pub last_error: Option<String>,
    pub parked_at: DateTime<Utc>,
}

/// Undelivered messages, for the metrics: waiting to go out (held ones included), and parked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub parked: u64,
}

/// `error`, cut to `LAST_ERROR_MAX` characters.
pub(crate) fn short_error(error: &str) -> String {
    match error.char_indices().nth(LAST_ERROR_MAX) {
        Some((at, _)) => format!("{}…", &error[..at]),
        None => error.to_string(),
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    id: i64,
    lead_id: i64,
    target: String,
    own_username: Option<String>,
    action: String,
    message: String,
    session_id: Option<String>,
    created_at: Ts,
    delivery_tries: i32,
    first_try_at: Ts,
}

impl TryFrom<DeliveryRow> for DeliveryItem {
    type Error = StoreError;
    fn try_from(r: DeliveryRow) -> Result<DeliveryItem, StoreError> {
        Ok(DeliveryItem {
            id: r.id,
            lead_id: r.lead_id,
            target: r.target,
            own_username: r.own_username,
            action: r.action,
            message: r.message,
            session_id: r.session_id,
            created_at: r.created_at.0,
            tries: tries(r.id, r.delivery_tries)?,
            first_try_at: r.first_try_at.0,
        })
    }
}

/// A stored try count, which cannot be negative.
fn tries(id: i64, stored: i32) -> Result<u32, StoreError> {
    u32::try_from(stored)
        .map_err(|_| StoreError::Corrupt(format!("outbox {id}: delivery_tries {stored}")))
}

#[derive(sqlx::FromRow)]
pub(crate) struct ParkedRow {
    id: i64,
    target: String,
    action: String,
    message: String,
    created_at: Ts,
    delivery_tries: i32,
    last_error: Option<String>,
    parked_at: Ts,
}

impl TryFrom<ParkedRow> for ParkedItem {
    type Error = StoreError;
    fn try_from(r: ParkedRow) -> Result<ParkedItem, StoreError> {
        Ok(ParkedItem {
            id: r.id,
            target: r.target,
            action: r.action,
            message: r.message,
            created_at: r.created_at.0,
            tries: tries(r.id, r.delivery_tries)?,
            last_error: r.last_error,
            parked_at: r.parked_at.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(LAST_ERROR_MAX + 10);
        let short = short_error(&long);
        assert_eq!(short.chars().count(), LAST_ERROR_MAX + 1);
        assert!(short.ends_with('…'));
        assert_eq!(short_error("HTTP 500"), "HTTP 500");
    }
}
