//! The bearer token every private route needs, compared in constant time; wrong tokens
//! count against their client address (`throttle`).

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
/// The shortest token accepted: a guessable token is no lock (`strength`).
pub const MIN_TOKEN_LEN: usize = crate::strength::MIN_LEN;

/// Why the API's token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "{TOKEN_ENV} is empty; set it to at least {MIN_TOKEN_LEN} random characters: {}",
        crate::strength::HOW
    )]
    Empty,
    #[error(
        "{TOKEN_ENV} holds a space, a control character or a non-ASCII character: a bearer token is printable ASCII; {}",
        crate::strength::HOW
    )]
    NotPrintable,
    #[error(transparent)]
    Weak(#[from] crate::strength::WeakSecret),
    #[error(
        "the HTTP API needs a token: set {TOKEN_ENV} (at least {MIN_TOKEN_LEN} characters, e.g. `export {TOKEN_ENV}=$(openssl rand -hex 32)`)"
    )]
    Unset,
    #[error("{TOKEN_ENV} is not valid UTF-8")]
    NotUnicode,
}

/// The API's bearer token. Its `Debug` shows no part of it.
#[derive(Clone)]
pub struct Token(SecretString);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([hidden])")
    }
}

impl Token {
    /// A token as given: printable ASCII, and hard to guess (`strength::check`: at least
    /// `MIN_TOKEN_LEN` characters, no repeated pattern).
    pub fn new(value: &str) -> Result<Token, TokenError> {
        if value.is_empty() {
            return Err(TokenError::Empty);
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable);
        }
        crate::strength::check(TOKEN_ENV, value)?;
        Ok(Token(SecretString::from(value.to_string())))
    }

    /// The token's bytes, to key the dashboard's session signatures.
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }

    /// The token from `FLUIDTALK_RUNNER_TOKEN`.
    pub fn from_env() -> Result<Token, TokenError> {
        match std::env::var(TOKEN_ENV) {
            Ok(v) => Token::new(&v),
            Err(std::env::VarError::NotPresent) => Err(TokenError::Unset),
            Err(std::env::VarError::NotUnicode(_)) => Err(TokenError::NotUnicode),
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

/// Lets the request through only with `Authorization: Bearer <token>`. A client address
/// that sent too many wrong tokens (or dashboard passwords) lately is answered 429 with
/// `Retry-After`, its token not even compared, until its time is up.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let client = super::throttle::client_of(&request);
    if let Some(wait) = state.throttle.waiting(client, "bearer") {
        return super::throttle::too_many(wait);
    }
    // The scheme's name is case-insensitive (RFC 9110).
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .map(|v| v[7..].trim_ascii());
    match given {
        Some(token) if state.token.matches(token) => next.run(request).await,
        Some(_) => match state.throttle.failed(client, "bearer") {
            Some(wait) => super::throttle::too_many(wait),
            None => refuse("the bearer token is wrong"),
        },
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

    const GOOD: &str = "7c1e5b2d9f3a4e8f-secret-a6c70d9e8f7a6b5c";

    #[test]
    fn a_token_matches_only_itself_and_never_shows() {
        let t = Token::new(GOOD).expect("valid");
        assert!(t.matches(GOOD.as_bytes()));
        assert!(!t.matches(GOOD.to_uppercase().as_bytes()));
        assert!(!t.matches(&GOOD.as_bytes()[1..]));
        assert!(!t.matches(b""));
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn short_unprintable_or_repetitive_tokens_are_refused_with_the_variable_named() {
        let e = Token::new("short").expect_err("too short").to_string();
        assert!(
            e.contains("FLUIDTALK_RUNNER_TOKEN") && e.contains("at least 32"),
            "{e}"
        );
        assert!(e.contains("openssl rand -hex 32"), "{e}");
        let e = Token::new(&format!("{GOOD} 012"))
            .expect_err("space")
            .to_string();
        assert!(e.contains("printable ASCII"), "{e}");
        let e = Token::new(&"ab".repeat(20))
            .expect_err("a pattern")
            .to_string();
        assert!(e.contains("repeats a pattern"), "{e}");
        Token::new("aaaaaaaaaaaaaaaa").expect_err("the issue's token");
    }
}
