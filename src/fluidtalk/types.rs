//! The typed requests and results of the five operations.
//!
//! Results take the documented defaults for missing fields and ignore unknown ones, so a
//! newer server that adds fields does not break this client.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// An image sent as the multipart `file` part.
#[derive(Clone)]
pub enum ImageFile {
    /// A local file; the part's filename is its base name.
    Path(PathBuf),
    /// Bytes in memory, with the filename to send.
    Bytes { filename: String, data: Vec<u8> },
}

impl std::fmt::Debug for ImageFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageFile::Path(p) => f.debug_tuple("Path").field(p).finish(),
            ImageFile::Bytes { filename, data } => f
                .debug_struct("Bytes")
                .field("filename", filename)
                .field("len", &data.len())
                .finish(),
        }
    }
}

/// Inbound Chat: the lead wrote `message`; get the persona's reply.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub target: String,
    pub message: String,
    pub own_username: Option<String>,
    pub image_url: Option<String>,
    pub image_file: Option<ImageFile>,
}

/// AI Opener: the persona writes first (`action=OUTREACH`).
#[derive(Debug, Clone, Default)]
pub struct OpenerRequest {
    pub target: String,
    pub own_username: Option<String>,
    pub image_url: Option<String>,
    pub image_file: Option<ImageFile>,
}

/// Event Trigger: a platform event fired (`action=ENTRY_POINT`).
#[derive(Debug, Clone, Default)]
pub struct EventRequest {
    pub target: String,
    /// Must match an Event Trigger node's event id in the engine.
    pub event_type: String,
    /// Sent as `entry_context`, JSON text; an empty object is left out, as the official
    /// client leaves it out.
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
    pub own_username: Option<String>,
    pub image_url: Option<String>,
    pub image_file: Option<ImageFile>,
}

/// Follow-up: re-engage a quiet lead (`action=FOLLOW_UP`); takes no image.
#[derive(Debug, Clone, Default)]
pub struct FollowUpRequest {
    pub target: String,
    pub own_username: Option<String>,
}

/// The persona's reply to an inbound chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResult {
    #[serde(default)]
    pub reply: String,
    /// Send each as its own bubble.
    #[serde(default)]
    pub replies: Vec<String>,
    #[serde(default, deserialize_with = "truthy")]
    pub should_send_photo: bool,
    #[serde(default)]
    pub photo_url: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default, deserialize_with = "truthy")]
    pub ignored: bool,
    #[serde(default)]
    pub ignore_reason: Option<String>,
}

/// The result of an opener, event trigger or follow-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResult {
    #[serde(default)]
    pub session_id: Option<String>,
    /// The text the persona produced; "" when there is nothing to send.
    #[serde(default, deserialize_with = "string_or_null")]
    pub message: String,
    /// The lead is owned by another account of the persona: send nothing.
    #[serde(default, deserialize_with = "truthy")]
    pub ignored: bool,
    #[serde(default)]
    pub ignore_reason: Option<String>,
    /// The lead already had an active conversation, which this action continued (since
    /// 1.0.3); for an opener `message` is then "".
    #[serde(default, deserialize_with = "truthy")]
    pub continued: bool,
    #[serde(default)]
    pub continued_reason: Option<String>,
}

/// A hosted image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadResult {
    #[serde(default)]
    pub url: Option<String>,
}

/// Python's `bool(x)`: the official client reads these flags with `bool(body.get(..))`,
/// so `null`, `0` and `""` are false and any other value is true.
fn truthy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    use serde_json::Value;
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Null => false,
        Value::Bool(b) => b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    })
}

fn string_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_the_documented_defaults() {
        let r: ActionResult = serde_json::from_str("{}").expect("parses");
        assert_eq!(r.message, "");
        assert!(!r.ignored && !r.continued);
        assert_eq!(r.session_id, None);
        let c: ChatResult = serde_json::from_str("{}").expect("parses");
        assert_eq!(c.reply, "");
        assert!(c.replies.is_empty());
        assert!(!c.should_send_photo);
    }

    #[test]
    fn unknown_fields_are_ignored_and_flags_read_like_python_bool() {
        let r: ActionResult = serde_json::from_str(
            r#"{"session_id":"s1","message":"hi","ignored":0,"continued":1,
                "continued_reason":"conversation_already_active","brand_new":{"x":1}}"#,
        )
        .expect("parses");
        assert_eq!(r.session_id.as_deref(), Some("s1"));
        assert!(!r.ignored);
        assert!(r.continued);
        assert_eq!(
            r.continued_reason.as_deref(),
            Some("conversation_already_active")
        );
    }
}
