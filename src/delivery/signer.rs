//! The webhook's signature: `v1=` and the hex HMAC-SHA256, under the shared secret, of
//! `"<unix seconds>.<raw body>"`. The secret is a `SecretString`, read only here.

use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The header with the signing time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "FluidTalk-Runner-Timestamp";
/// The header with the signature: `v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "FluidTalk-Runner-Signature";
/// The header a receiver can deduplicate on: `outbox-<id>`.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Why the signer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "[delivery] webhook_url is set, but the environment variable {var} (named by \
         [delivery] secret_env) {why}: set it to the secret the webhook's receiver shares"
    )]
    Missing { var: String, why: &'static str },
    #[error("[delivery] webhook_url is set, but its signing secret is weak: {0}")]
    Weak(crate::strength::WeakSecret),
}

/// Signs bodies with the webhook's secret.
#[derive(Clone)]
pub struct Signer {
    secret: SecretString,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer { secret: [redacted] }")
    }
}

impl Signer {
    pub fn new(secret: SecretString) -> Self {
        Signer { secret }
    }

    /// The secret from the environment variable `var`, which must be set and hard to
    /// guess (`strength::check`: at least 32 characters, no repeated pattern): whoever
    /// knows it can sign messages the receiver takes for the runner's.
    pub fn from_env(var: &str) -> Result<Signer, SecretError> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => {
                crate::strength::check(var, &v).map_err(SecretError::Weak)?;
                Ok(Signer::new(SecretString::from(v)))
            }
            Ok(_) => Err(SecretError::Missing {
                var: var.to_string(),
                why: "is empty",
            }),
            Err(_) => Err(SecretError::Missing {
                var: var.to_string(),
                why: "is not set",
            }),
        }
    }

    fn mac(&self, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(self.secret.expose_secret().as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `FluidTalk-Runner-Signature` value for `body` sent at `timestamp`.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1={}",
            hex::encode(self.mac(timestamp, body).finalize().into_bytes())
        )
    }

    /// Whether `signature` (a header value, `v1=<hex>`) signs `body` sent at `timestamp`;
    /// compared in constant time. What a receiver does (tests use it as one).
    pub fn verify(&self, timestamp: i64, body: &[u8], signature: &str) -> bool {
        let Some(hex_sig) = signature.trim().strip_prefix("v1=") else {
            return false;
        };
        let Ok(bytes) = hex::decode(hex_sig) else {
            return false;
        };
        self.mac(timestamp, body).verify_slice(&bytes).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        let s = Signer::new(SecretString::from("whsec_test"));
        let sig = s.sign(1_700_000_000, br#"{"id":1}"#);
        // Computed independently: printf '1700000000.{"id":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sig,
            "v1=2f441ba4b3b2d50d28a9ab9d9fd8880376ecd1eb5d0435401553f5d8d0a5dcf8"
        );
    }

    #[test]
    fn verify_accepts_its_own_signature_and_nothing_else() {
        let s = Signer::new(SecretString::from("whsec_test"));
        let sig = s.sign(1_700_000_000, b"body");
        assert!(s.verify(1_700_000_000, b"body", &sig));
        assert!(!s.verify(1_700_000_001, b"body", &sig));
        assert!(!s.verify(1_700_000_000, b"bodY", &sig));
        assert!(!s.verify(1_700_000_000, b"body", sig.trim_start_matches("v1=")));
        assert!(!Signer::new(SecretString::from("other")).verify(1_700_000_000, b"body", &sig));
        assert_eq!(format!("{s:?}"), "Signer { secret: [redacted] }");
    }
}
