//! Checking one lead row: every field in its expected form, or why not, in words.

use super::COLUMNS;
use crate::lead::LeadState;
use crate::lead::fields::{self, FieldError, shown};
use crate::store::LeadInput;
use chrono::{DateTime, Utc};

/// A row as read, before it is checked: text values, `None` where absent or empty.
#[derive(Debug, Default)]
pub(super) struct RawRow {
    pub(super) fields: [Option<String>; 9],
    /// Tags from JSONL arrive as a list already.
    pub(super) tag_list: Option<Vec<String>>,
}

/// Why a row of a lead file was rejected; each names the field or key and says what was
/// expected (a value is quoted, cut short, by `fields::shown`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// A value `lead::fields` refused (also a row too long to read).
    #[error(transparent)]
    Field(#[from] FieldError),
    /// CSV: the field in `column` is not UTF-8.
    #[error("unreadable row: {column} is not valid UTF-8")]
    FieldNotUtf8 { column: String },
    #[error("expected {expected} fields as in the header, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("the line is not valid UTF-8")]
    LineNotUtf8,
    /// JSONL: serde_json's words.
    #[error("not a JSON object: {0}")]
    NotAnObject(String),
    #[error("key {} appears twice; give each key once", shown(.0))]
    KeyTwice(String),
    #[error("the \"target\" key is missing (every line needs the lead's handle)")]
    NoTarget,
    #[error("unknown key {} (expected: {})", shown(.0), COLUMNS.join(", "))]
    UnknownKey(String),
    #[error("tags must be an array of strings")]
    TagsNotStrings,
    /// `value`: the JSON given instead.
    #[error("{key} must be a string, not {}", shown(.value))]
    NotAString { key: String, value: String },
    #[error(
        "{name} {} is not an RFC 3339 time (like 2026-11-24T09:00:00Z)",
        shown(.value)
    )]
    NotATime { name: &'static str, value: String },
    #[error("{name} {} is in the future; give the time it happened", shown(.value))]
    InTheFuture { name: &'static str, value: String },
    #[error(
        "follow_ups_sent {} is not a whole number from 0 to 1000",
        shown(.0)
    )]
    FollowUps(String),
    #[error("state {} cannot be imported (expected new or contacted)", shown(.0))]
    State(String),
    #[error("state contacted needs last_contact_at (when the lead was contacted)")]
    ContactedUnknown,
    #[error("state new cannot have last_contact_at or follow-ups sent: use state contacted")]
    NewButContacted,
    #[error("follow_ups_sent needs state contacted and last_contact_at")]
    FollowUpsUncontacted,
}

fn time(name: &'static str, value: &str) -> Result<DateTime<Utc>, RowError> {
    let t = DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| RowError::NotATime {
            name,
            value: value.to_string(),
        })?;
    let t = fields::time(name, t)?;
    // A time in the future would stall the lead until then.
    if t > Utc::now() + crate::store::FUTURE_SKEW {
        return Err(RowError::InTheFuture {
            name,
            value: value.to_string(),
        });
    }
    Ok(t)
}

/// Checks one field that names an IANA time zone.
pub fn check_timezone(value: &str) -> Result<String, FieldError> {
    fields::timezone(value)
}

/// Checks a target: not empty, not over-long, no control or invisible characters
/// (`lead::fields::target`).
pub fn check_target(value: &str) -> Result<String, FieldError> {
    fields::target(value)
}

pub(super) fn check(raw: RawRow) -> Result<LeadInput, RowError> {
    let [
        target,
        own_username,
        timezone,
        profile_image,
        tags,
        state,
        last_contact,
        last_reply,
        follow_ups,
    ] = raw.fields;
    let target = fields::target(target.as_deref().unwrap_or(""))?;
    let own_username = own_username
        .as_deref()
        .map(fields::own_username)
        .transpose()?;
    let profile_image = profile_image
        .as_deref()
        .map(fields::profile_image)
        .transpose()?;
    let timezone = timezone.as_deref().map(fields::timezone).transpose()?;
    let tags = match (raw.tag_list, tags) {
        (Some(list), _) => Some(list),
        (None, Some(text)) => Some(text.split(';').map(str::to_string).collect()),
        (None, None) => None,
    }
    .map(fields::tags)
    .transpose()?;
    let last_contact_at = last_contact
        .as_deref()
        .map(|v| time("last_contact_at", v))
        .transpose()?;
    let last_reply_at = last_reply
        .as_deref()
        .map(|v| time("last_reply_at", v))
        .transpose()?;
    let follow_ups_sent = follow_ups
        .as_deref()
        .map(|v| {
            v.parse::<i32>()
                .ok()
                .filter(|n| (0..=1000).contains(n))
                .ok_or_else(|| RowError::FollowUps(v.to_string()))
        })
        .transpose()?;
    let state = match state.as_deref() {
        None if last_contact_at.is_some() => Some(LeadState::Contacted),
        None => None,
        Some("new") => Some(LeadState::New),
        Some("contacted") => Some(LeadState::Contacted),
        Some(other) => {
            return Err(RowError::State(other.to_string()));
        }
    };
    match state {
        Some(LeadState::Contacted) if last_contact_at.is_none() => {
            return Err(RowError::ContactedUnknown);
        }
        Some(LeadState::New) if last_contact_at.is_some() || follow_ups_sent.unwrap_or(0) > 0 => {
            return Err(RowError::NewButContacted);
        }
        None if follow_ups_sent.unwrap_or(0) > 0 => {
            return Err(RowError::FollowUpsUncontacted);
        }
        _ => {}
    }
    Ok(LeadInput {
        target,
        own_username,
        timezone,
        profile_image,
        tags,
        state,
        last_contact_at,
        last_reply_at,
        follow_ups_sent,
    })
}

/// Checks the fields of one lead given outside a file (`leads add`, `POST /v1/leads`), by
/// the same rules as an import row; empty values count as not given.
pub fn check_input(
    target: &str,
    own_username: Option<String>,
    timezone: Option<String>,
    profile_image: Option<String>,
    tags: Vec<String>,
) -> Result<LeadInput, FieldError> {
    let given = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    Ok(LeadInput {
        target: fields::target(target)?,
        own_username: given(own_username)
            .as_deref()
            .map(fields::own_username)
            .transpose()?,
        timezone: given(timezone)
            .as_deref()
            .map(fields::timezone)
            .transpose()?,
        profile_image: given(profile_image)
            .as_deref()
            .map(fields::profile_image)
            .transpose()?,
        tags: Some(fields::tags(tags)?).filter(|t| !t.is_empty()),
        ..LeadInput::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::COLUMNS;

    fn row(pairs: &[(&str, &str)]) -> Result<LeadInput, String> {
        let mut raw = RawRow::default();
        for (k, v) in pairs {
            let col = COLUMNS.iter().position(|c| c == k).expect("known column");
            raw.fields[col] = Some(v.to_string());
        }
        check(raw).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_row_becomes_a_checked_lead() {
        let lead = row(&[
            ("target", " @ana "),
            ("timezone", "America/New_York"),
            ("tags", "vip; spring ;;"),
            ("state", "contacted"),
            ("last_contact_at", "2026-11-20T10:00:00+01:00"),
            ("follow_ups_sent", "1"),
        ])
        .expect("valid");
        assert_eq!(lead.target, "@ana");
        assert_eq!(
            lead.tags,
            Some(vec!["vip".to_string(), "spring".to_string()])
        );
        assert_eq!(
            lead.last_contact_at.map(|t| t.to_rfc3339()),
            Some("2026-11-20T09:00:00+00:00".to_string())
        );
        assert_eq!(lead.follow_ups_sent, Some(1));
    }

    #[test]
    fn each_kind_of_bad_value_is_rejected_with_its_reason() {
        let long = "x".repeat(fields::TARGET_CHARS + 1);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("target", "  ")], "target is empty"),
            (
                vec![("target", long.as_str())],
                "target is 256 characters long; the limit is 255",
            ),
            (vec![("target", "@a\u{7}b")], "control character (U+0007)"),
            (
                vec![("target", "@a"), ("timezone", "Mars/Olympus")],
                "unknown time zone \"Mars/Olympus\"",
            ),
            (
                vec![("target", "@a"), ("last_reply_at", "yesterday")],
                "not an RFC 3339 time",
            ),
            (
                vec![("target", "@a"), ("state", "done")],
                "state \"done\" cannot be imported",
            ),
            (
                vec![("target", "@a"), ("state", "contacted")],
                "needs last_contact_at",
            ),
            (
                vec![("target", "@a"), ("follow_ups_sent", "-1")],
                "whole number",
            ),
            (
                vec![("target", "@a"), ("follow_ups_sent", "2")],
                "needs state contacted",
            ),
            // Issue 9: invisible characters and times in the future.
            (
                vec![("target", "@a\u{202E}nim")],
                "invisible format character (U+202E)",
            ),
            (
                vec![("target", "@ad\u{200B}min")],
                "invisible format character (U+200B)",
            ),
            (
                vec![("target", "@a"), ("own_username", "@me\u{2066}")],
                "own_username contains an invisible format character (U+2066)",
            ),
            (
                vec![("target", "@a"), ("last_reply_at", "2062-01-01T00:00:00Z")],
                "last_reply_at \"2062-01-01T00:00:00Z\" is in the future",
            ),
            (
                vec![
                    ("target", "@a"),
                    ("last_contact_at", "2099-05-01T00:00:00Z"),
                ],
                "last_contact_at \"2099-05-01T00:00:00Z\" is in the future",
            ),
        ];
        for (pairs, want) in cases {
            let err = row(&pairs).expect_err(&format!("{pairs:?} is rejected"));
            assert!(
                err.contains(want),
                "{pairs:?}: {err:?} should contain {want:?}"
            );
        }
    }

    #[test]
    fn last_contact_alone_means_contacted() {
        let lead = row(&[
            ("target", "@a"),
            ("last_contact_at", "2026-11-20T10:00:00Z"),
        ])
        .expect("valid");
        assert_eq!(lead.state, Some(LeadState::Contacted));
    }
}
