//! Checking one lead row: every field in its expected form, or why not, in words.

use super::rows::RawRow;
use crate::lead::LeadState;
use crate::store::{LeadInput, MAX_TARGET_LEN};
use chrono::{DateTime, Utc};

fn no_control(name: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{name} contains a control character (U+{:04X})",
            c as u32
        )),
        None => Ok(()),
    }
}

/// Unicode format characters (general category Cf): bidi controls, zero-width spaces and
/// joiners, the BOM, invisible operators, tags. In a target they make two handles look
/// the same while differing, or one look like another.
fn is_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

fn no_format(name: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|c| is_format(*c)) {
        Some(c) => Err(format!(
            "{name} contains an invisible format character (U+{:04X}), such as a bidi control or zero-width space",
            c as u32
        )),
        None => Ok(()),
    }
}

fn time(name: &str, value: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!("{name} {value:?} is not an RFC 3339 time (like 2026-11-24T09:00:00Z)")
        })?;
    // A time in the future would stall the lead until then.
    if t > Utc::now() + crate::store::FUTURE_SKEW {
        return Err(format!(
            "{name} {value:?} is in the future; give the time it happened"
        ));
    }
    Ok(t)
}

/// Checks one field that names an IANA time zone.
pub fn check_timezone(value: &str) -> Result<String, String> {
    value
        .parse::<chrono_tz::Tz>()
        .map(|tz| tz.name().to_string())
        .map_err(|_| {
            format!("unknown time zone {value:?} (expected an IANA name such as Europe/Berlin)")
        })
}

/// Checks a target: not empty, not over-long, no control characters.
pub fn check_target(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("target is empty".into());
    }
    if value.chars().count() > MAX_TARGET_LEN {
        return Err(format!("target is longer than {MAX_TARGET_LEN} characters"));
    }
    no_control("target", value)?;
    no_format("target", value)?;
    Ok(value.to_string())
}

pub(super) fn check(raw: RawRow) -> Result<LeadInput, String> {
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
    let target = check_target(target.as_deref().unwrap_or(""))?;
    if let Some(v) = &own_username {
        no_control("own_username", v)?;
        no_format("own_username", v)?;
    }
    if let Some(v) = &profile_image {
        no_control("profile_image", v)?;
    }
    let timezone = timezone.as_deref().map(check_timezone).transpose()?;
    let tags = match (raw.tag_list, tags) {
        (Some(list), _) => Some(list),
        (None, Some(text)) => Some(text.split(';').map(str::to_string).collect()),
        (None, None) => None,
    }
    .map(|list| {
        list.into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(|t| no_control("tags", &t).map(|()| t))
            .collect::<Result<Vec<_>, _>>()
    })
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
                .ok_or_else(|| {
                    format!("follow_ups_sent {v:?} is not a whole number from 0 to 1000")
                })
        })
        .transpose()?;
    let state = match state.as_deref() {
        None if last_contact_at.is_some() => Some(LeadState::Contacted),
        None => None,
        Some("new") => Some(LeadState::New),
        Some("contacted") => Some(LeadState::Contacted),
        Some(other) => {
            return Err(format!(
                "state {other:?} cannot be imported (expected new or contacted)"
            ));
        }
    };
    match state {
        Some(LeadState::Contacted) if last_contact_at.is_none() => {
            return Err(
                "state contacted needs last_contact_at (when the lead was contacted)".into(),
            );
        }
        Some(LeadState::New) if last_contact_at.is_some() || follow_ups_sent.unwrap_or(0) > 0 => {
            return Err(
                "state new cannot have last_contact_at or follow-ups sent: use state contacted"
                    .into(),
            );
        }
        None if follow_ups_sent.unwrap_or(0) > 0 => {
            return Err("follow_ups_sent needs state contacted and last_contact_at".into());
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

/// Checks the fields of `leads add`, as an import row would be checked.
pub fn check_input(
    target: &str,
    own_username: Option<String>,
    timezone: Option<String>,
    profile_image: Option<String>,
    tags: Vec<String>,
) -> Result<LeadInput, String> {
    let mut raw = RawRow::default();
    raw.fields[0] = Some(target.to_string());
    raw.fields[1] = own_username.filter(|s| !s.is_empty());
    raw.fields[2] = timezone.filter(|s| !s.is_empty());
    raw.fields[3] = profile_image.filter(|s| !s.is_empty());
    raw.tag_list = (!tags.is_empty()).then_some(tags);
    check(raw)
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
        check(raw)
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
        let long = "x".repeat(MAX_TARGET_LEN + 1);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("target", "  ")], "target is empty"),
            (vec![("target", long.as_str())], "longer than 255"),
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
