//! The HTTP API's errors: `{"error": {"kind", "message", "field"?, "index"?}}` with a fitting
//! status, and a JSON body extractor whose rejections take the same shape, as path and
//! query rejections do (`path_rejection`, `query_rejection`).

use crate::store::StoreError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable word to branch on: `unauthorized`, `bad_request`, `not_found`, `conflict`,
    /// `too_large`, `over_limit` (a field over its limit, 422), `api_error`, `unavailable`,
    /// `internal`, ...
    pub kind: &'static str,
    pub message: String,
    /// The request field the error is about, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The list item the error is about, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The FluidTalk API's HTTP status, for `api_error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_status: Option<u16>,
    /// The FluidTalk API error's class, for `api_error` (`sealed`, `out_of_tokens`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_error: Option<String>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: ErrorDetail {
                kind,
                message: message.into(),
                field: None,
                index: None,
                api_status: None,
                api_error: None,
            },
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn field(mut self, field: &str) -> Self {
        self.detail.field = Some(field.to_string());
        self
    }
    pub fn index(mut self, index: usize) -> Self {
        self.detail.index = Some(index);
        self
    }
}

/// A lead field's value refused (`lead::fields`): 422 `over_limit` when it is over a limit
/// or outside a range, else 400; the field named either way.
impl From<crate::lead::fields::FieldError> for ApiError {
    fn from(e: crate::lead::fields::FieldError) -> Self {
        let err = if e.is_limit() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "over_limit",
                e.to_string(),
            )
        } else {
            ApiError::bad_request(e.to_string())
        };
        err.field(e.field())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(ErrorBody { error: self.detail })).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound(_) => ApiError::not_found(e.to_string()),
            StoreError::Refused(_) | StoreError::Conflict(_) | StoreError::AlreadySent { .. } => {
                ApiError::conflict(e.to_string())
            }
            StoreError::InTheFuture { .. } => ApiError::bad_request(e.to_string()),
            StoreError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
            StoreError::Full(_) => ApiError::new(StatusCode::CONFLICT, "full", e.to_string()),
            _ if e.is_transient() => {
                tracing::warn!(error = %e, "the database is unreachable; answering 503");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unreachable; try again",
                )
            }
            _ => {
                tracing::error!(error = %e, "a request failed in the store");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request failed in the database; the daemon's log says why",
                )
            }
        }
    }
}

/// `axum::Json`, whose rejections are answered in the API's error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(status, "too_large", "the request body is over 1 MiB");
    }
    let e = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            return ApiError::new(
                status,
                "unsupported_media_type",
                "send the body as JSON, with `Content-Type: application/json`",
            );
        }
        // Where serde_json stopped reading says more than a path into half-read data.
        JsonRejection::JsonSyntaxError(e) => {
            let text = source_text(e);
            let (_, why) = split_path(&text);
            return ApiError::bad_request(format!("the body is not JSON: {why}"));
        }
        JsonRejection::JsonDataError(e) => source_text(e),
        _ => return ApiError::bad_request(rejection.body_text()),
    };
    // Missing fields and wrong types are bad input like any other (400, not 422).
    let (path, why) = split_path(&e);
    match path {
        Some(p) if p.starts_with('[') => ApiError::bad_request(
            "the body must be a JSON object, e.g. {\"leads\": [...]}, not a list",
        ),
        Some(p) => ApiError::bad_request(format!("{p}: {why}")).field(p),
        None => {
            // "missing field `message` at line 1 column 2": the field is in the words.
            let named = why
                .split('`')
                .nth(1)
                .filter(|_| why.starts_with("missing field"));
            let err = ApiError::bad_request(why.to_string());
            match named {
                Some(f) => err.field(f),
                None => err,
            }
        }
    }
}

/// A query string's rejection, in the API's shape with the parameter named.
pub fn query_rejection(e: axum::extract::rejection::QueryRejection) -> ApiError {
    let text = e.body_text();
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    match split_path(text) {
        (Some(p), why) => ApiError::bad_request(format!("query parameter {p}: {why}")).field(p),
        (None, why) => ApiError::bad_request(format!("the query string: {why}")),
    }
}

/// serde_path_to_error's `path: message`, as (path, message); `.` (the whole body) and
/// paths into a half-read value (`?`) are no path.
fn split_path(text: &str) -> (Option<&str>, &str) {
    match text.split_once(": ") {
        Some((p, why)) if !p.contains(' ') && p != "." && !p.contains('?') => (Some(p), why),
        Some((p, why)) if !p.contains(' ') => (None, why),
        _ => (None, text),
    }
}

/// The innermost error's words.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        last = s.to_string();
        cur = s.source();
    }
    last
}

/// A path parameter's rejection (`%FF` is no text, `abc` no id), in the API's shape.
pub fn path_rejection(e: axum::extract::rejection::PathRejection) -> ApiError {
    use axum::extract::rejection::PathRejection;
    match e {
        PathRejection::FailedToDeserializePathParams(e) => {
            let text = e.body_text();
            let why = text
                .strip_prefix("Invalid URL: ")
                .unwrap_or(&text)
                .to_string();
            ApiError::bad_request(format!("the path: {why}"))
        }
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the path could not be read: {}", other.body_text()),
        ),
    }
}
