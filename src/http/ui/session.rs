//! The dashboard's login: the API token typed into a password field becomes a session
//! cookie (HttpOnly, SameSite=Strict), signed with the token itself, so any daemon on the
//! database accepts it and changing the token ends every session. Each form carries a
//! CSRF token derived from the session.

use crate::http::Token;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The session cookie's name.
pub const COOKIE: &str = "ft_session";
/// How long a session lasts.
pub const LIFETIME: chrono::Duration = chrono::Duration::hours(12);

fn mac(token: &Token, parts: &[&str]) -> Vec<u8> {
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(token.secret_bytes()) else {
        return Vec::new();
    };
    for p in parts {
        m.update(p.as_bytes());
        m.update(b"\n");
    }
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new session's cookie value: `<expiry>.<nonce>.<mac>`.
pub fn new_session(token: &Token, now: DateTime<Utc>) -> String {
    use rand::TryRngCore;
    let nonce = rand::rngs::OsRng.try_next_u64().unwrap_or_else(|_| {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(now)
    });
    let expiry = (now + LIFETIME).timestamp().to_string();
    let nonce = format!("{nonce:016x}");
    let sig = hex(&mac(token, &["session", &expiry, &nonce]));
    format!("{expiry}.{nonce}.{sig}")
}

/// The session's nonce if `value` is a session this token signed that has not expired.
pub fn check(token: &Token, value: &str, now: DateTime<Utc>) -> Option<String> {
    let mut parts = value.splitn(3, '.');
    let (expiry, nonce, sig) = (parts.next()?, parts.next()?, parts.next()?);
    let want = hex(&mac(token, &["session", expiry, nonce]));
    let same: bool = subtle::ConstantTimeEq::ct_eq(want.as_bytes(), sig.as_bytes()).into();
    let alive = expiry.parse::<i64>().ok()? > now.timestamp();
    (same && alive).then(|| nonce.to_string())
}

/// The CSRF token of the session with this nonce.
pub fn csrf(token: &Token, nonce: &str) -> String {
    hex(&mac(token, &["csrf", nonce]))
}

/// Whether `given` is the session's CSRF token.
pub fn csrf_ok(token: &Token, nonce: &str, given: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(csrf(token, nonce).as_bytes(), given.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_until_it_expires_and_only_for_its_token() {
        let t = Token::new("0123456789abcdef-ui").expect("token");
        let other = Token::new("0123456789abcdef-other").expect("token");
        let now = Utc::now();
        let s = new_session(&t, now);
        let nonce = check(&t, &s, now).expect("valid");
        assert!(check(&other, &s, now).is_none(), "another token's");
        assert!(check(&t, &s, now + LIFETIME).is_none(), "expired");
        let forged = format!("{}0", &s[..s.len() - 1]);
        assert!(check(&t, &forged, now).is_none() || forged == s);
        assert!(csrf_ok(&t, &nonce, &csrf(&t, &nonce)));
        assert!(!csrf_ok(&t, &nonce, "00"));
    }
}
