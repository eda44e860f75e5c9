//! What can go wrong in one API call, classified for the caller's back-off.
//!
//! An `Error` keeps the HTTP status and the parsed body, as the official client's
//! `FluidTalkError` does, and adds a `kind` that says what the outcome means: final for one
//! lead, a pause for the whole account, or transient. It never holds the API key: the
//! request that failed is described by its path, and reqwest's own error text names only
//! the URL, which carries no key.

use serde_json::Value;
use std::time::Duration;

/// What kind of outcome an error is. New kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// 401 or 403: the key is missing, invalid or not allowed; no call can succeed.
    Unauthorized,
    /// 402: out of tokens (`insufficient_tokens`); starting a conversation costs one.
    OutOfTokens,
    /// 400: the conversation is DONE (sealed); stop messaging this lead.
    Sealed,
    /// 404: no conversation yet (a follow-up before any contact).
    NoConversation,
    /// 429: too many requests; `retry_after` holds the server's `Retry-After`, if sent.
    RateLimited,
    /// 5xx other than 502 and 504: the API itself failed; it did not act.
    Server,
    /// 502 or 504: a gateway in front of the API answered. The API behind it may have acted
    /// before the gateway gave up (504 is a timeout; 502 may cut an answer short), so the
    /// outcome is unknown, like a timeout's.
    Gateway,
    /// The connection could not be made: the request was certainly not processed.
    Connect,
    /// No response within the timeout: the request may or may not have been processed.
    Timeout,
    /// The connection failed after the request started: it may have been processed.
    Network,
    /// A 2xx answer whose body is not the JSON object the operation returns.
    Decode,
    /// A local image file could not be read; nothing was sent.
    LocalFile,
    /// Any other status (422 validation errors, 405, ...).
    Other,
    /// The client could not be set up (a base URL that is not http(s), a key that cannot be
    /// sent): nothing was sent, and nothing will work until the setting is fixed.
    Setup,
}

/// How a caller should react to an error; see `ErrorKind::class`. The runner's outcome
/// table (`policy::decide`) refines it per action and is tested to agree with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The API did not act: try again later, with back-off.
    Transient,
    /// Stop a whole class of calls for the account (401 all calls, 402 new conversations,
    /// 429 for a while).
    AccountPause,
    /// Final for this lead: do not repeat this call for it.
    FinalForLead,
    /// The API may have acted although no usable answer came back: do not repeat the call
    /// without a person's (or a policy's) say-so, or it may be sent twice.
    OutcomeUnknown,
}

impl ErrorKind {
    /// The reaction the API contract asks for.
    pub fn class(self) -> ErrorClass {
        match self {
            ErrorKind::Unauthorized
            | ErrorKind::OutOfTokens
            | ErrorKind::RateLimited
            | ErrorKind::Setup => ErrorClass::AccountPause,
            ErrorKind::Sealed
            | ErrorKind::NoConversation
            | ErrorKind::LocalFile
            | ErrorKind::Other => ErrorClass::FinalForLead,
            ErrorKind::Server | ErrorKind::Connect => ErrorClass::Transient,
            ErrorKind::Timeout | ErrorKind::Network | ErrorKind::Decode | ErrorKind::Gateway => {
                ErrorClass::OutcomeUnknown
            }
        }
    }

    /// The kind's name: its serialized form, stored in `attempts.error_kind`, a metric's
    /// `outcome` label and the HTTP API's `api_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::OutOfTokens => "out_of_tokens",
            ErrorKind::Sealed => "sealed",
            ErrorKind::NoConversation => "no_conversation",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Server => "server",
            ErrorKind::Gateway => "gateway",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Network => "network",
            ErrorKind::Decode => "decode",
            ErrorKind::LocalFile => "local_file",
            ErrorKind::Other => "other",
            ErrorKind::Setup => "setup",
        }
    }

    /// Whether the server may have acted on the request although we got no usable answer.
    /// A retry of such a call may repeat its effect (a second opener, a second token).
    pub fn outcome_unknown(self) -> bool {
        self.class() == ErrorClass::OutcomeUnknown
    }

    fn from_status(status: u16) -> Self {
        match status {
            400 => ErrorKind::Sealed,
            401 | 403 => ErrorKind::Unauthorized,
            402 => ErrorKind::OutOfTokens,
            404 => ErrorKind::NoConversation,
            429 => ErrorKind::RateLimited,
            502 | 504 => ErrorKind::Gateway,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::Other,
        }
    }
}

/// A failed API call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    /// The HTTP status; `None` when no response arrived (the Python client says 0).
    status: Option<u16>,
    /// The parsed body: the JSON the server sent, or `{"detail": <text>}` for a non-JSON body.
    body: Value,
    retry_after: Option<Duration>,
    message: String,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn class(&self) -> ErrorClass {
        self.kind.class()
    }

    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The parsed body, as the official client's `FluidTalkError.detail`.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// The body's `detail` as text (a string as is, anything else as JSON); for a failure
    /// with no such body (network, local file), what went wrong.
    pub fn detail(&self) -> String {
        match self.body.get("detail") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => self.message.clone(),
        }
    }

    /// The server's `Retry-After`, on a 429 (or a 503) that carried one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    pub(crate) fn from_response(status: u16, body: Value, retry_after: Option<Duration>) -> Self {
        let kind = ErrorKind::from_status(status);
        let detail = match body.get("detail") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => body.to_string(),
        };
        Self {
            kind,
            status: Some(status),
            body,
            retry_after,
            message: format!("FluidTalk {status}: {detail}"),
        }
    }

    pub(crate) fn from_transport(err: &reqwest::Error, path: &str) -> Self {
        let kind = if err.is_timeout() {
            ErrorKind::Timeout
        } else if err.is_connect() {
            ErrorKind::Connect
        } else {
            ErrorKind::Network
        };
        // The error chain names the URL and the cause; never the headers.
        let mut cause = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(err);
        while let Some(e) = source {
            if !cause.is_empty() {
                cause.push_str(": ");
            }
            cause.push_str(&e.to_string());
            source = e.source();
        }
        let what = match kind {
            ErrorKind::Timeout => "timed out waiting for FluidTalk",
            ErrorKind::Connect => "could not connect to FluidTalk",
            _ => "network error reaching FluidTalk",
        };
        Self {
            kind,
            status: None,
            body: serde_json::json!({"error": "network_error"}),
            retry_after: None,
            message: format!("{what} ({path}): {cause}"),
        }
    }

    pub(crate) fn decode(status: u16, path: &str, why: &str, text: &str) -> Self {
        let shown: String = text.chars().take(200).collect();
        Self {
            kind: ErrorKind::Decode,
            status: Some(status),
            body: serde_json::json!({ "detail": text }),
            retry_after: None,
            message: format!(
                "FluidTalk {status}: could not read the answer to {path} ({why}): {shown:?}"
            ),
        }
    }

    /// A local image that may not or cannot be sent (outside the image folder, not a
    /// regular file, too large, too slow to read): nothing was sent.
    pub fn local_image(message: String) -> Self {
        Self {
            kind: ErrorKind::LocalFile,
            status: None,
            body: Value::Null,
            retry_after: None,
            message,
        }
    }

    /// A call refused before it was sent, for a reason of this program's: nothing was sent.
    pub fn not_sent(message: String) -> Self {
        Self::local_image(message)
    }

    pub(crate) fn local_file(path: &std::path::Path, err: &std::io::Error) -> Self {
        Self {
            kind: ErrorKind::LocalFile,
            status: None,
            body: Value::Null,
            retry_after: None,
            message: format!("cannot read image file {}: {err}", path.display()),
        }
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate_parse(value)?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    // A server may say anything; no wait is taken longer than a day.
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The longest `Retry-After` taken as given.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

fn httpdate_parse(value: &str) -> Option<std::time::SystemTime> {
    // RFC 3339 as some servers send it, else an HTTP date (IMF-fixdate and the obsolete
    // forms), as the `httpdate` crate reads them.
    humantime::parse_rfc3339_weak(value)
        .ok()
        .or_else(|| httpdate::parse_http_date(value).ok())
}

impl Error {
    pub(crate) fn invalid_base_url(url: &str, why: &str) -> Self {
        Self {
            kind: ErrorKind::Setup,
            status: None,
            body: Value::Null,
            retry_after: None,
            message: format!("the base URL {url:?} {why}"),
        }
    }

    pub(crate) fn invalid_key() -> Self {
        Self {
            kind: ErrorKind::Setup,
            status: None,
            body: Value::Null,
            retry_after: None,
            // Never quote the key back: say what is wrong with it instead.
            message: "the API key contains characters that cannot be sent in an HTTP header"
                .to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let cases = [
            (400, ErrorKind::Sealed),
            (401, ErrorKind::Unauthorized),
            (403, ErrorKind::Unauthorized),
            (402, ErrorKind::OutOfTokens),
            (404, ErrorKind::NoConversation),
            (429, ErrorKind::RateLimited),
            (500, ErrorKind::Server),
            (502, ErrorKind::Gateway),
            (503, ErrorKind::Server),
            (504, ErrorKind::Gateway),
            (422, ErrorKind::Other),
        ];
        for (status, kind) in cases {
            assert_eq!(ErrorKind::from_status(status), kind, "status {status}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT").expect("a date");
        assert_eq!(later, MAX_RETRY_AFTER, "capped at a day");
        assert_eq!(
            parse_retry_after("99999999999999999"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn message_reads_like_the_official_client() {
        let e = Error::from_response(
            402,
            serde_json::json!({"detail": "insufficient_tokens"}),
            None,
        );
        assert_eq!(e.to_string(), "FluidTalk 402: insufficient_tokens");
        assert_eq!(e.class(), ErrorClass::AccountPause);
    }
}
