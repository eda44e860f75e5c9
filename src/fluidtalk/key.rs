//! The API key: a secret that only the request site may read.
//!
//! `ApiKey` wraps `secrecy::SecretString`, so `Debug` prints a placeholder and the key is
//! zeroed on drop. There is deliberately no `Display` and no `Serialize`: the only way out
//! is `expose()`, which the client calls when it builds the `X-API-Key` header.

use secrecy::{ExposeSecret, SecretString};

/// A FluidTalk API key (`ft_sk_...`), scoped to one persona and engine.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wraps a key; an empty or blank key is refused, as the official client refuses it.
    pub fn new(key: impl Into<String>) -> Result<Self, EmptyKey> {
        let key: String = key.into();
        if key.trim().is_empty() {
            return Err(EmptyKey);
        }
        Ok(Self(SecretString::from(key)))
    }

    /// The key's text, for the request header only.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether `given` is exactly this key (the simulator's check).
    pub fn matches(&self, given: &str) -> bool {
        self.expose() == given
    }

    /// Whether `text` contains this key; used to check that nothing leaks it.
    pub fn appears_in(&self, text: &str) -> bool {
        text.contains(self.expose())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// The variable that holds the API key. Read directly (never a command-line flag, which
/// `ps` and shell history would show, and never through clap, whose `--help` could).
pub const API_KEY_VAR: &str = "FLUIDTALK_API_KEY";

impl ApiKey {
    /// The key from `FLUIDTALK_API_KEY`.
    pub fn from_env() -> Result<Self, KeyMissing> {
        let value = std::env::var(API_KEY_VAR).map_err(|_| KeyMissing::Unset)?;
        ApiKey::new(value).map_err(|_| KeyMissing::Empty)
    }
}

/// Why there is no key in the environment.
#[derive(Debug, thiserror::Error)]
pub enum KeyMissing {
    #[error("FLUIDTALK_API_KEY is not set: export your FluidTalk API key (ft_sk_...) in it")]
    Unset,
    #[error("FLUIDTALK_API_KEY is empty: set it to your FluidTalk API key")]
    Empty,
}

/// The key was empty.
#[derive(Debug, thiserror::Error)]
#[error("the FluidTalk API key is empty")]
pub struct EmptyKey;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_key() {
        let key = ApiKey::new("ft_sk_supersecret").expect("non-empty key");
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn an_empty_or_blank_key_is_refused() {
        assert!(ApiKey::new("").is_err());
        assert!(ApiKey::new("  ").is_err());
    }
}
