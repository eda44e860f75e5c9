//! The FluidTalk Handshake API client: wire format, typed results, typed errors.
//!
//! Wire-identical to the official Python client 1.0.3 (checked against it by
//! `tests/it/python_crosscheck.rs`): every call is a `POST` with `X-API-Key`; fields that
//! are absent or empty are left out; the body is urlencoded (byte for byte as Python's
//! `urlencode` writes it) or, with an image file, multipart with the file in part `file`
//! after the other fields. This module knows nothing of leads or campaigns.

mod error;
mod key;
pub mod python_json;
mod types;

pub use error::{Error, ErrorClass, ErrorKind};
pub use key::{API_KEY_VAR, ApiKey, EmptyKey, KeyMissing};
pub use types::{
    ActionResult, ChatRequest, ChatResult, EventRequest, FollowUpRequest, ImageFile, OpenerRequest,
    UploadResult,
};

use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

/// The production API.
pub const DEFAULT_BASE_URL: &str = "https://api-talk.fluidvip.com";
/// The official client's default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

pub const PATH_CHAT: &str = "/api/v1/bot/chat";
pub const PATH_ACTION: &str = "/api/v1/bot/action";
pub const PATH_UPLOAD: &str = "/api/v1/bot/upload";

/// The `action` field's wire values.
pub const ACTION_OUTREACH: &str = "OUTREACH";
pub const ACTION_ENTRY_POINT: &str = "ENTRY_POINT";
pub const ACTION_FOLLOW_UP: &str = "FOLLOW_UP";

/// How to reach the API.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub api_key: ApiKey,
    /// A trailing `/` is stripped.
    pub base_url: String,
    /// Sent when a request names no `own_username` of its own.
    pub own_username: Option<String>,
    pub timeout: Duration,
}

impl ClientConfig {
    pub fn new(api_key: ApiKey) -> Self {
        Self {
            api_key,
            base_url: DEFAULT_BASE_URL.to_string(),
            own_username: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A FluidTalk API client. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    key_header: reqwest::header::HeaderValue,
    base_url: String,
    own_username: Option<String>,
}

/// The body of one call before it is encoded.
struct Body<'a> {
    fields: Vec<(&'static str, String)>,
    file: Option<&'a ImageFile>,
}

impl Client {
    /// Builds a client. Fails only if the key cannot be a header value or the TLS stack
    /// cannot start.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        install_crypto_provider();
        let base_url = config.base_url.trim_end_matches('/').to_string();
        match url::Url::parse(&base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
            Ok(_) => return Err(Error::invalid_base_url(&base_url, "is not an http(s) URL")),
            Err(e) => {
                return Err(Error::invalid_base_url(
                    &base_url,
                    &format!("is not a URL ({e})"),
                ));
            }
        }
        let mut key_header = reqwest::header::HeaderValue::from_str(config.api_key.expose())
            .map_err(|_| Error::invalid_key())?;
        // Keeps the value out of `Debug` output of the header map, here and in hyper.
        key_header.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(15)))
            .user_agent(concat!("fluidtalk-runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::from_transport(&e, "client setup"))?;
        Ok(Self {
            http,
            key_header,
            base_url,
            own_username: config.own_username.filter(|u| !u.is_empty()),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Inbound Chat: the lead messaged first, or an ongoing conversation continues.
    pub async fn inbound_chat(&self, req: &ChatRequest) -> Result<ChatResult, Error> {
        let mut fields = vec![
            ("target", req.target.clone()),
            ("message", req.message.clone()),
        ];
        self.push_common(
            &mut fields,
            req.own_username.as_deref(),
            req.image_url.as_deref(),
        );
        self.post(
            PATH_CHAT,
            Body {
                fields,
                file: req.image_file.as_ref(),
            },
        )
        .await
    }

    /// AI Opener: the persona sends the first message to a new lead.
    pub async fn ai_opener(&self, req: &OpenerRequest) -> Result<ActionResult, Error> {
        let mut fields = vec![
            ("target", req.target.clone()),
            ("action", ACTION_OUTREACH.to_string()),
        ];
        self.push_common(
            &mut fields,
            req.own_username.as_deref(),
            req.image_url.as_deref(),
        );
        self.post(
            PATH_ACTION,
            Body {
                fields,
                file: req.image_file.as_ref(),
            },
        )
        .await
    }

    /// Event Trigger: a platform event fired for this lead.
    pub async fn event_trigger(&self, req: &EventRequest) -> Result<ActionResult, Error> {
        let mut fields = vec![
            ("target", req.target.clone()),
            ("action", ACTION_ENTRY_POINT.to_string()),
            ("entry_type", req.event_type.clone()),
        ];
        if let Some(ctx) = req.context.as_ref().filter(|c| !c.is_empty()) {
            fields.push((
                "entry_context",
                python_json::dumps(&serde_json::Value::Object(ctx.clone())),
            ));
        }
        self.push_common(
            &mut fields,
            req.own_username.as_deref(),
            req.image_url.as_deref(),
        );
        self.post(
            PATH_ACTION,
            Body {
                fields,
                file: req.image_file.as_ref(),
            },
        )
        .await
    }

    /// Follow-up: re-engage a quiet lead; the conversation must exist (else 404).
    pub async fn follow_up(&self, req: &FollowUpRequest) -> Result<ActionResult, Error> {
        let mut fields = vec![
            ("target", req.target.clone()),
            ("action", ACTION_FOLLOW_UP.to_string()),
        ];
        self.push_common(&mut fields, req.own_username.as_deref(), None);
        self.post(PATH_ACTION, Body { fields, file: None }).await
    }

    /// Hosts an image and returns its URL, for `image_url` in later calls.
    pub async fn upload_image(&self, file: &ImageFile) -> Result<UploadResult, Error> {
        self.post(
            PATH_UPLOAD,
            Body {
                fields: Vec::new(),
                file: Some(file),
            },
        )
        .await
    }

    fn push_common(
        &self,
        fields: &mut Vec<(&'static str, String)>,
        own_username: Option<&str>,
        image_url: Option<&str>,
    ) {
        // `own_username or self.own_username`: an empty per-call value falls back too.
        let own = own_username
            .filter(|u| !u.is_empty())
            .or(self.own_username.as_deref());
        if let Some(own) = own {
            fields.push(("own_username", own.to_string()));
        }
        if let Some(url) = image_url {
            fields.push(("image_url", url.to_string()));
        }
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: Body<'_>) -> Result<T, Error> {
        let fields: Vec<(&str, String)> = body
            .fields
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let url = format!("{}{}", self.base_url, path);
        let mut request = self
            .http
            .post(&url)
            .header("X-API-Key", self.key_header.clone());
        request = match body.file {
            None => request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(urlencode(&fields)),
            Some(file) => {
                let (filename, data) = read_image(file).await?;
                let mut form = reqwest::multipart::Form::new();
                for (name, value) in fields {
                    form = form.text(name, value);
                }
                form = form.part(
                    "file",
                    reqwest::multipart::Part::bytes(data).file_name(filename),
                );
                request.multipart(form)
            }
        };
        let started = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| Error::from_transport(&e, path))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::from_transport(&e, path))?;
        tracing::debug!(
            path,
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "FluidTalk call"
        );
        decode_answer(path, status, retry_after.as_deref(), &bytes)
    }
}

/// Reads an API answer: a 2xx body as the operation's result, anything else as an `Error`
/// with its status, parsed body and `Retry-After`. Pure (the fuzz target `api_answer`
/// feeds it arbitrary bytes): never panics, whatever the server sends.
pub fn decode_answer<T: DeserializeOwned>(
    path: &str,
    status: u16,
    retry_after: Option<&str>,
    bytes: &[u8],
) -> Result<T, Error> {
    let retry_after = retry_after.and_then(error::parse_retry_after);
    let text = String::from_utf8_lossy(bytes);
    let parsed: Option<serde_json::Value> = serde_json::from_slice(bytes).ok();
    if !(200..300).contains(&status) {
        let body = parsed.unwrap_or_else(|| serde_json::json!({ "detail": text }));
        return Err(Error::from_response(status, body, retry_after));
    }
    match parsed {
        Some(value @ serde_json::Value::Object(_)) => serde_json::from_value(value)
            .map_err(|e| Error::decode(status, path, &e.to_string(), &text)),
        Some(_) => Err(Error::decode(status, path, "not a JSON object", &text)),
        None => Err(Error::decode(status, path, "not JSON", &text)),
    }
}

async fn read_image(file: &ImageFile) -> Result<(String, Vec<u8>), Error> {
    match file {
        ImageFile::Bytes { filename, data } => Ok((filename.clone(), data.clone())),
        ImageFile::Path(path) => {
            let data = tokio::fs::read(path)
                .await
                .map_err(|e| Error::local_file(path, &e))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image.jpg".to_string());
            Ok((name, data))
        }
    }
}

/// `urllib.parse.urlencode(fields)` as Python's requests writes a form body: `quote_plus`
/// with nothing safe, so only ASCII letters, digits and `_.-~` stay as they are, and a
/// space becomes `+`.
pub fn urlencode(fields: &[(&str, String)]) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    /// Everything but `A-Za-z0-9_.-~` (Python's `quote_plus` default `safe=''`).
    const QUOTE_PLUS: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'_')
        .remove(b'.')
        .remove(b'-')
        .remove(b'~');
    let encode = |s: &str| {
        // Spaces are `+`, as `quote_plus` writes them; a literal `+` is `%2B` already.
        s.split(' ')
            .map(|part| utf8_percent_encode(part, QUOTE_PLUS).to_string())
            .collect::<Vec<_>>()
            .join("+")
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// rustls needs a process-wide crypto provider; this project uses ring. Installing twice
/// is harmless (the second attempt reports the first and changes nothing).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencode_matches_python_quote_plus() {
        let body = urlencode(&[
            ("target", "@john doe".to_string()),
            ("x", "a*b~c/é&=+".to_string()),
        ]);
        // python3 -c 'from urllib.parse import urlencode; print(urlencode({"target":"@john doe","x":"a*b~c/é&=+"}))'
        assert_eq!(body, "target=%40john+doe&x=a%2Ab~c%2F%C3%A9%26%3D%2B");
    }
}
