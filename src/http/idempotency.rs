//! `Idempotency-Key` (the inbound relay and events): a retried request with the same key
//! gets the first one's answer, not a second API call or a second event. The key is claimed in the database before the call (so two daemons
//! answering the same retry cannot both call) and the answer stored after it; an answer
//! that says the API did not act is forgotten instead, so a retry may call again.

use super::error::ApiError;
use crate::store::KeyOf;
use crate::store::{KeyClaim, ServiceStore};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub const HEADER: &str = "idempotency-key";
/// Set on an answer replayed from the first request.
pub const REPLAYED: &str = "idempotent-replayed";
/// The longest key accepted.
pub const MAX_KEY: usize = 255;

/// The request's key, if it sent one: 1 to 255 printable ASCII characters.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_string()))
        }
        _ => Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters without spaces"
        ))
        .field("Idempotency-Key")),
    }
}

/// The hex SHA-256 of a request's parts.
pub fn request_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What to do with a request that carries a key.
pub enum Claimed {
    /// Answer it, then `finish` or `forget` the key.
    First,
    /// Send this answer instead.
    Answer(Response),
}

/// Claims `key` in `scope`; a stale claim (its request died mid-call) answers that the
/// outcome is unknown (`stale_message` says what is unknown), as the attempt it left is.
pub async fn claim(
    store: &dyn ServiceStore,
    scope: &str,
    key: &str,
    hash: &str,
    now: DateTime<Utc>,
    stale_after: chrono::Duration,
    stale_message: &str,
) -> Result<Claimed, ApiError> {
    Ok(match store.claim_key(KeyOf { scope, key }, hash, now).await? {
        KeyClaim::New => Claimed::First,
        KeyClaim::Done { status, response } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                response,
            )
                .into_response();
            r.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
            Claimed::Answer(r)
        }
        KeyClaim::Mismatch => Claimed::Answer(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_mismatch",
                "this Idempotency-Key was used with another request; use a new key for a new request",
            )
            .field("Idempotency-Key")
            .into_response(),
        ),
        KeyClaim::InProgress { since } if now - since > stale_after => Claimed::Answer(
            ApiError::new(StatusCode::BAD_GATEWAY, "outcome_unknown", stale_message).into_response(),
        ),
        KeyClaim::InProgress { .. } => Claimed::Answer(
            ApiError::new(
                StatusCode::CONFLICT,
                "in_progress",
                "a request with this Idempotency-Key is still being answered; try again in a few seconds",
            )
            .into_response(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_hashes_separate_their_parts() {
        let mut h = HeaderMap::new();
        assert!(key(&h).expect("no key").is_none());
        h.insert(HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(key(&h).expect("valid").as_deref(), Some("abc-123"));
        h.insert(HEADER, HeaderValue::from_static("has space"));
        assert!(key(&h).is_err());
        assert_ne!(request_hash(&[b"ab", b"c"]), request_hash(&[b"a", b"bc"]));
        assert_eq!(request_hash(&[b"x"]).len(), 64);
    }
}
