//! The dashboard's sessions. Logging in with the API token starts a session held in the
//! database (`ServiceStore::start_session`), so every daemon on the database knows it and
//! a logout ends it everywhere; the browser gets a cookie with the session's secret, signed
//! with the token, so changing the token ends every session too.
//!
//! The cookie is `HttpOnly`, `SameSite=Strict`, `Path=/`, with `Max-Age` the session's
//! lifetime; served over HTTPS (`[http] tls_cert`, or a `public_url` of `https://`) it is
//! also `Secure` and named with the `__Host-` prefix, which a browser only takes from a
//! secure origin for the whole host. The database holds the SHA-256 of the secret, never
//! the secret. Each form carries a CSRF token derived from the session.

use crate::http::Token;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The session cookie's name over plain HTTP.
pub const COOKIE: &str = "ft_session";
/// Its name over HTTPS: a browser takes it only over HTTPS, for the whole host.
pub const SECURE_COOKIE: &str = "__Host-ft_session";
/// How long a session lasts.
pub const LIFETIME: chrono::Duration = chrono::Duration::hours(12);
/// The most sessions kept: the newest stay, older ones end.
pub const MAX_SESSIONS: u32 = 1_000;

/// The cookie's name where the dashboard is served over HTTPS (`https`) or not.
pub fn cookie_name(https: bool) -> &'static str {
    if https { SECURE_COOKIE } else { COOKIE }
}

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

/// A new session: the cookie's value and the id the database holds.
#[derive(Debug)]
pub struct NewSession {
    pub cookie: String,
    pub id: String,
}

/// The operating system has no randomness to give.
#[derive(Debug, thiserror::Error)]
#[error("no random bytes for a session: {0}")]
pub struct NoRandom(String);

/// A new session's secret, from the operating system's randomness (no session at all
/// rather than a guessable one).
pub fn new_session(token: &Token) -> Result<NewSession, NoRandom> {
    use rand::TryRngCore;
    let mut secret = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut secret)
        .map_err(|e| NoRandom(e.to_string()))?;
    let secret = hex::encode(secret);
    let sig = hex::encode(mac(token, &["session", &secret]));
    Ok(NewSession {
        id: id_of(&secret),
        cookie: format!("{secret}.{sig}"),
    })
}

fn id_of(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The session id of a cookie value this token signed (whether the session is alive is
/// the database's to say).
pub fn check(token: &Token, value: &str) -> Option<String> {
    let (secret, sig) = value.split_once('.')?;
    let want = hex::encode(mac(token, &["session", secret]));
    let same: bool = subtle::ConstantTimeEq::ct_eq(want.as_bytes(), sig.as_bytes()).into();
    same.then(|| id_of(secret))
}

/// The CSRF token of the session with this id.
pub fn csrf(token: &Token, id: &str) -> String {
    hex::encode(mac(token, &["csrf", id]))
}

/// Whether `given` is the session's CSRF token.
pub fn csrf_ok(token: &Token, id: &str, given: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(csrf(token, id).as_bytes(), given.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_holds_only_for_its_token_and_the_database_sees_only_its_hash() {
        let t = Token::new("5f0c2a9e81d34b7c-ui-e6a1f0b9c8d7e6f5").expect("token");
        let other = Token::new("5f0c2a9e81d34b7c-other-e6a1f0b9c8d7e6").expect("token");
        let s = new_session(&t).expect("random");
        assert_eq!(check(&t, &s.cookie).as_deref(), Some(s.id.as_str()));
        assert!(check(&other, &s.cookie).is_none(), "another token's");
        let forged = format!("{}0", &s.cookie[..s.cookie.len() - 1]);
        assert!(check(&t, &forged).is_none() || forged == s.cookie);
        assert!(!s.cookie.contains(&s.id), "the stored id is not the cookie");
        assert!(csrf_ok(&t, &s.id, &csrf(&t, &s.id)));
        assert!(!csrf_ok(&t, &s.id, "00"));
        assert_ne!(new_session(&t).expect("random").id, s.id);
    }
}
