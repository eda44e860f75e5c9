//! Every lead field's limit and check, defined once. An import row (`import`), the HTTP
//! API (`http::leads`, `http::inbound`), the dashboard (`http::ui`) and the command line
//! (`cli::leads`) all check a value here, so what one door refuses no other door lets in.
//! The "Limits" table of docs/guide.md lists the same numbers.
//!
//! Limits are in characters (Unicode scalar values) for text, in bytes for the event
//! context's JSON and for a lead file's row; times are instants from the first day of year
//! 1 to the last of year 9999, the range both databases store (and a common "empty date"
//! of CRM exports, `0001-01-01`, is inside it).
//!
//! A `FieldError` says which field, what was wrong and, for a limit, the limit. Values are
//! echoed in errors only shortened (`shown`): an error about a megabyte value must not be
//! a megabyte itself.

use chrono::{DateTime, TimeZone, Utc};

/// A target (the lead's handle on the platform, e.g. `@ana`): platform handles are far
/// shorter.
pub const TARGET_CHARS: usize = 255;
/// The persona account a lead is written from.
pub const OWN_USERNAME_CHARS: usize = 255;
/// An IANA time zone name (the longest in the database is 32).
pub const TIMEZONE_CHARS: usize = 64;
/// A profile image: a URL or a path under `[fluidtalk] image_dir`.
pub const PROFILE_IMAGE_CHARS: usize = 2048;
/// Tags per lead.
pub const TAGS: usize = 50;
/// One tag.
pub const TAG_CHARS: usize = 100;
/// An event's context, as JSON text (sent as the trigger's `entry_context`).
pub const CONTEXT_BYTES: usize = 16 * 1024;
/// How deep an event's context nests (the object itself is level 1).
pub const CONTEXT_DEPTH: usize = 8;
/// A message a lead wrote, relayed to the persona (`/inbound`).
pub const MESSAGE_CHARS: usize = 10_000;
/// An image URL sent with a relayed message.
pub const IMAGE_URL_CHARS: usize = 2048;
/// One row of a lead file: a CSV record or a JSON line, in bytes. Far above what a row
/// within every field limit can take (50 tags of 100 four-byte characters, escaped in
/// JSON, is about 60 KB); a longer row is rejected without being held in memory.
pub const ROW_BYTES: usize = 256 * 1024;

/// The earliest time a lead field may hold: 0001-01-01T00:00:00Z.
pub fn earliest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The latest time a lead field may hold: the last microsecond of 9999-12-31.
pub fn latest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .map_or(DateTime::<Utc>::MAX_UTC, |t| {
            t + chrono::Duration::microseconds(999_999)
        })
}

/// What is wrong with one field's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{field} is {found} {unit} long; the limit is {limit}")]
    TooLong {
        field: &'static str,
        found: usize,
        limit: usize,
        unit: &'static str,
    },
    /// A value too long to be read at all (a lead file's row over `ROW_BYTES`): its
    /// length is not known, only that it is over.
    #[error("{field} is over {bytes} bytes (the row was not read further); the limit is {limit}")]
    Unread {
        field: String,
        bytes: usize,
        limit: String,
    },
    #[error("a tag is {found} characters long; the limit is {limit} per tag")]
    TagTooLong { found: usize, limit: usize },
    #[error("{found} {field}; the limit is {limit}")]
    TooMany {
        field: &'static str,
        found: usize,
        limit: usize,
    },
    #[error("{field} nests deeper than {limit} levels")]
    TooDeep { field: &'static str, limit: usize },
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} contains a control character (U+{code:04X})")]
    Control { field: &'static str, code: u32 },
    #[error(
        "{field} contains an invisible format character (U+{code:04X}), such as a bidi control or zero-width space"
    )]
    Format { field: &'static str, code: u32 },
    #[error("unknown time zone {shown} (expected an IANA name such as Europe/Berlin)")]
    UnknownZone { shown: String },
    #[error("{field} {shown} {why}")]
    Invalid {
        field: &'static str,
        shown: String,
        why: &'static str,
    },
    #[error("{field} {at} is outside the supported range 0001-01-01 to 9999-12-31")]
    OutOfRange { field: &'static str, at: String },
}

impl FieldError {
    /// The field the error is about.
    pub fn field(&self) -> &str {
        match self {
            FieldError::Unread { field, .. } => field,
            FieldError::TagTooLong { .. } => "tags",
            FieldError::UnknownZone { .. } => "timezone",
            FieldError::TooLong { field, .. }
            | FieldError::TooMany { field, .. }
            | FieldError::TooDeep { field, .. }
            | FieldError::Empty { field }
            | FieldError::Control { field, .. }
            | FieldError::Format { field, .. }
            | FieldError::Invalid { field, .. }
            | FieldError::OutOfRange { field, .. } => field,
        }
    }

    /// Whether the value is over a limit or outside a range (the HTTP API answers 422),
    /// rather than malformed (400).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            FieldError::TooLong { .. }
                | FieldError::Unread { .. }
                | FieldError::TagTooLong { .. }
                | FieldError::TooMany { .. }
                | FieldError::TooDeep { .. }
                | FieldError::OutOfRange { .. }
        )
    }
}

/// `value` for an error message: quoted, at most 40 characters of it.
pub fn shown(value: &str) -> String {
    const SHOWN: usize = 40;
    match value.char_indices().nth(SHOWN) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!(
            "{:?}... ({} characters)",
            &value[..cut],
            value.chars().count()
        ),
    }
}

/// The limit of the column or key `name` of a lead file, in words: what a row error
/// about a row too long to read names.
pub fn limit_of(name: &str) -> String {
    match name {
        "target" => format!("{TARGET_CHARS} characters"),
        "own_username" => format!("{OWN_USERNAME_CHARS} characters"),
        "timezone" => format!("{TIMEZONE_CHARS} characters"),
        "profile_image" => format!("{PROFILE_IMAGE_CHARS} characters"),
        "tags" => format!("{TAGS} tags of {TAG_CHARS} characters"),
        _ => format!("{ROW_BYTES} bytes for a whole row"),
    }
}

fn at_most(field: &'static str, value: &str, limit: usize) -> Result<(), FieldError> {
    // Counting stops just past the limit: a huge value costs no more than a long one.
    let found = value.chars().take(limit + 1).count();
    if found > limit {
        return Err(FieldError::TooLong {
            field,
            found: value.chars().count(),
            limit,
            unit: "characters",
        });
    }
    Ok(())
}

fn no_control(field: &'static str, value: &str) -> Result<(), FieldError> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(FieldError::Control {
            field,
            code: c as u32,
        }),
        None => Ok(()),
    }
}

/// Unicode format characters (general category Cf): bidi controls, zero-width spaces and
/// joiners, the BOM, invisible operators, tags. In a handle they make two handles look
/// the same while differing, or one look like another.
fn is_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

fn no_format(field: &'static str, value: &str) -> Result<(), FieldError> {
    match value.chars().find(|c| is_format(*c)) {
        Some(c) => Err(FieldError::Format {
            field,
            code: c as u32,
        }),
        None => Ok(()),
    }
}

/// A target: trimmed, not empty, at most `TARGET_CHARS`, no control or invisible format
/// characters.
pub fn target(value: &str) -> Result<String, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::Empty { field: "target" });
    }
    at_most("target", value, TARGET_CHARS)?;
    no_control("target", value)?;
    no_format("target", value)?;
    Ok(value.to_string())
}

/// The persona account: at most `OWN_USERNAME_CHARS`, no control or format characters.
pub fn own_username(value: &str) -> Result<String, FieldError> {
    let value = value.trim();
    at_most("own_username", value, OWN_USERNAME_CHARS)?;
    no_control("own_username", value)?;
    no_format("own_username", value)?;
    Ok(value.to_string())
}

/// An IANA time zone, in its canonical spelling.
pub fn timezone(value: &str) -> Result<String, FieldError> {
    let value = value.trim();
    at_most("timezone", value, TIMEZONE_CHARS)?;
    value
        .parse::<chrono_tz::Tz>()
        .map(|tz| tz.name().to_string())
        .map_err(|_| FieldError::UnknownZone {
            shown: shown(value),
        })
}

/// A profile image URL or path: at most `PROFILE_IMAGE_CHARS`, no control characters.
pub fn profile_image(value: &str) -> Result<String, FieldError> {
    let value = value.trim();
    at_most("profile_image", value, PROFILE_IMAGE_CHARS)?;
    no_control("profile_image", value)?;
    Ok(value.to_string())
}

/// Tags: each trimmed, empty ones dropped; at most `TAGS` of at most `TAG_CHARS` each, no
/// control characters.
pub fn tags(values: Vec<String>) -> Result<Vec<String>, FieldError> {
    let mut out = Vec::new();
    for tag in values {
        let tag = tag.trim();
        if tag.is_empty() {
            continue;
        }
        if tag.chars().take(TAG_CHARS + 1).count() > TAG_CHARS {
            return Err(FieldError::TagTooLong {
                found: tag.chars().count(),
                limit: TAG_CHARS,
            });
        }
        no_control("tags", tag)?;
        out.push(tag.to_string());
        if out.len() > TAGS {
            return Err(FieldError::TooMany {
                field: "tags",
                found: out.len(),
                limit: TAGS,
            });
        }
    }
    Ok(out)
}

/// An event's context: a JSON object of at most `CONTEXT_BYTES` as text, nesting at most
/// `CONTEXT_DEPTH` levels. Returns its JSON text, key order kept.
pub fn event_context(
    context: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, FieldError> {
    fn depth(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let levels = 1 + context.values().map(depth).max().unwrap_or(0);
    if levels > CONTEXT_DEPTH {
        return Err(FieldError::TooDeep {
            field: "context",
            limit: CONTEXT_DEPTH,
        });
    }
    let text = serde_json::Value::Object(context.clone()).to_string();
    if text.len() > CONTEXT_BYTES {
        return Err(FieldError::TooLong {
            field: "context",
            found: text.len(),
            limit: CONTEXT_BYTES,
            unit: "bytes",
        });
    }
    Ok(text)
}

/// An event's context given as JSON text (`leads event --context`).
pub fn event_context_text(text: &str) -> Result<String, FieldError> {
    if text.len() > CONTEXT_BYTES {
        return Err(FieldError::TooLong {
            field: "context",
            found: text.len(),
            limit: CONTEXT_BYTES,
            unit: "bytes",
        });
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => event_context(&map),
        // serde_json gives up at 128 levels, which is deeper than allowed anyway.
        Err(e) if e.to_string().contains("recursion limit") => Err(FieldError::TooDeep {
            field: "context",
            limit: CONTEXT_DEPTH,
        }),
        _ => Err(FieldError::Invalid {
            field: "context",
            shown: shown(text),
            why: "is not a JSON object (like '{\"reaction\": \"🔥\"}')",
        }),
    }
}

/// A message a lead wrote: not blank, at most `MESSAGE_CHARS`.
pub fn message(value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::Empty { field: "message" });
    }
    at_most("message", value, MESSAGE_CHARS)
}

/// An image URL sent with a message: http(s), at most `IMAGE_URL_CHARS`.
pub fn image_url(value: &str) -> Result<(), FieldError> {
    at_most("image_url", value, IMAGE_URL_CHARS)?;
    if url::Url::parse(value).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        Ok(())
    } else {
        Err(FieldError::Invalid {
            field: "image_url",
            shown: shown(value),
            why: "is not an http(s) URL",
        })
    }
}

/// A time a lead field holds (last contact, last reply): within `earliest()` and
/// `latest()`.
pub fn time(field: &'static str, at: DateTime<Utc>) -> Result<DateTime<Utc>, FieldError> {
    if at < earliest() || at > latest() {
        return Err(FieldError::OutOfRange {
            field,
            at: at.to_rfc3339(),
        });
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_text_field_takes_its_limit_and_refuses_one_more_character() {
        type Check = fn(&str) -> Result<String, FieldError>;
        let cases: [(&str, Check, usize); 4] = [
            ("target", target, TARGET_CHARS),
            ("own_username", own_username, OWN_USERNAME_CHARS),
            ("profile_image", profile_image, PROFILE_IMAGE_CHARS),
            ("timezone", timezone, TIMEZONE_CHARS),
        ];
        for (field, check, limit) in cases {
            let over = "é".repeat(limit + 1);
            let err = check(&over).expect_err(field);
            assert!(err.is_limit(), "{err}");
            assert_eq!(err.field(), field);
            assert_eq!(
                err.to_string(),
                format!(
                    "{field} is {} characters long; the limit is {limit}",
                    limit + 1
                )
            );
            if field != "timezone" {
                assert!(check(&"é".repeat(limit)).is_ok(), "{field} at its limit");
            }
        }
    }

    #[test]
    fn tags_are_counted_and_measured() {
        let ok: Vec<String> = (0..TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(tags(ok.clone()).map(|t| t.len()), Ok(TAGS));
        let mut many = ok;
        many.push("one-more".into());
        assert_eq!(
            tags(many).map_err(|e| e.to_string()),
            Err(format!("{} tags; the limit is {TAGS}", TAGS + 1))
        );
        let long = tags(vec!["x".repeat(TAG_CHARS + 1)]).expect_err("long");
        assert!(long.is_limit() && long.to_string().contains("the limit is 100 per tag"));
        assert_eq!(long.field(), "tags");
        assert_eq!(
            tags(vec![" a ".into(), "".into(), "b".into()]),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn an_event_context_is_bounded_in_size_and_depth() {
        let nested = |levels: usize| match (0..levels)
            .fold(serde_json::json!(1), |v, _| serde_json::json!({"a": v}))
        {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        assert!(
            event_context(&nested(CONTEXT_DEPTH)).is_ok(),
            "at the limit"
        );
        assert!(
            event_context(&nested(CONTEXT_DEPTH + 1)).is_err(),
            "one level too deep"
        );
        let text = "{\"a\":".repeat(200) + "1" + &"}".repeat(200);
        assert!(matches!(
            event_context_text(&text),
            Err(FieldError::TooDeep { .. })
        ));
        let big = format!("{{\"a\": \"{}\"}}", "x".repeat(CONTEXT_BYTES));
        assert!(matches!(
            event_context_text(&big),
            Err(FieldError::TooLong { unit: "bytes", .. })
        ));
        assert_eq!(
            event_context_text(r#"{"reaction": "🔥", "n": [1, {"b": 2}]}"#).as_deref(),
            Ok(r#"{"reaction":"🔥","n":[1,{"b":2}]}"#)
        );
        assert!(event_context_text("[1]").is_err());
    }

    #[test]
    fn times_from_year_1_to_9999_are_taken_and_others_refused() {
        assert!(time("t", earliest()).is_ok());
        assert!(time("t", latest()).is_ok());
        let year0 = earliest() - chrono::Duration::seconds(1);
        let err = time("last_contact_at", year0).expect_err("year 0");
        assert!(err.is_limit());
        assert!(
            err.to_string().contains("outside the supported range"),
            "{err}"
        );
        assert!(time("t", DateTime::<Utc>::MAX_UTC).is_err());
    }

    #[test]
    fn values_are_shown_shortened_in_errors() {
        assert_eq!(shown("ab"), "\"ab\"");
        let long = shown(&"x".repeat(1_000_000));
        assert!(
            long.len() < 80 && long.ends_with("(1000000 characters)"),
            "{long}"
        );
    }
}
