//! The bearer token every private route needs, compared in constant time.

use super::AppState;
use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The environment variable that holds the token.
pub const TOKEN_ENV: &str = "FLUIDTALK_RUNNER_TOKEN";
/// The shortest token accepted: a guessable token is no lock.
pub const MIN_TOKEN_LEN: usize = 16;

/// The API's bearer token. Its `Debug` shows no part of it.
#[derive(Clone)]
pub struct Token(SecretString);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([hidden])")
    }
}

impl Token {
    /// A token as given; at least `MIN_TOKEN_LEN` characters, printable ASCII.
    pub fn new(value: &str) -> Result<Token, String> {
        if value.is_empty() {
            return Err(format!(
                "{TOKEN_ENV} is empty; set it to at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)"
            ));
        }
        if value.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "{TOKEN_ENV} is {} characters long; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)",
                value.len()
            ));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{TOKEN_ENV} holds a space, a control character or a non-ASCII character: a bearer token is printable ASCII"
            ));
        }
        Ok(Token(SecretString::from(value.to_string())))
    }

    /// The token's bytes, to key the dashboard's session signatures.
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }

    /// The token from `FLUIDTALK_RUNNER_TOKEN`.
    pub fn from_env() -> Result<Token, String> {
        match std::env::var(TOKEN_ENV) {
            Ok(v) => Token::new(&v),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "the HTTP API needs a token: set {TOKEN_ENV} (at least {MIN_TOKEN_LEN} characters, e.g. `export {TOKEN_ENV}=$(openssl rand -hex 32)`)"
            )),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("{TOKEN_ENV} is not valid UTF-8"))
            }
        }
    }

    /// Whether `given` is the token, in time that depends neither on where they differ
    /// nor on their lengths (the digests, of one length, are compared).
    pub fn matches(&self, given: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        let want = Sha256::digest(self.0.expose_secret().as_bytes());
        let got = Sha256::digest(given);
        want.as_slice().ct_eq(got.as_slice()).into()
    }
}

/// Lets the request through only with `Authorization: Bearer <token>`.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // The scheme's name is case-insensitive (RFC 9110).
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .map(|v| v[7..].trim_ascii());
    match given {
        Some(token) if state.token.matches(token) => next.run(request).await,
        Some(_) => refuse("the bearer token is wrong"),
        None => {
            refuse("send `Authorization: Bearer <token>` (the token in FLUIDTALK_RUNNER_TOKEN)")
        }
    }
}

fn refuse(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_itself_and_never_shows() {
        let t = Token::new("0123456789abcdef-secret").expect("valid");
        assert!(t.matches(b"0123456789abcdef-secret"));
        assert!(!t.matches(b"0123456789abcdef-secreT"));
        assert!(!t.matches(b"0123456789abcdef-secre"));
        assert!(!t.matches(b""));
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn short_or_unprintable_tokens_are_refused_with_the_variable_named() {
        let e = Token::new("short").expect_err("too short");
        assert!(
            e.contains("FLUIDTALK_RUNNER_TOKEN") && e.contains("at least 16"),
            "{e}"
        );
        let e = Token::new("0123456789abcdef 012").expect_err("space");
        assert!(e.contains("printable ASCII"), "{e}");
    }
}
