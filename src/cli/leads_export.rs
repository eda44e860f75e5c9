//! `leads export`: every lead a filter selects, as a lead file `leads import` reads back
//! (the same columns, names and formats), written to stdout a page at a time.

use super::store_access::store_failure;
use crate::exit::{Exit, ExitWith, Failure};
use crate::lead::LeadState;
use crate::store::{AdminStore, Lead, LeadFilter};
use chrono::{DateTime, SecondsFormat, Utc};

/// Leads read from the database per statement (and written per write).
const EXPORT_PAGE: u32 = 1_000;

/// The file format of `leads export`: the two `leads import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// A header row, then one lead a line; tags `;`-separated.
    Csv,
    /// One JSON object a line; tags an array.
    Jsonl,
}

/// `leads export`: every matching lead, oldest first, read and written a page at a time
/// (memory stays bounded however many match).
pub(super) async fn export(
    store: &dyn AdminStore,
    state: Option<LeadState>,
    tag: Option<String>,
    after: Option<i64>,
    format: ExportFormat,
) -> Result<(), Failure> {
    let mut filter = LeadFilter {
        state,
        tag,
        limit: Some(EXPORT_PAGE),
        after,
    };
    if format == ExportFormat::Csv {
        super::out::line(&crate::import::COLUMNS.join(","))?;
    }
    loop {
        let page = store.list_leads(&filter).await.map_err(store_failure)?;
        let mut text = String::new();
        for lead in &page {
            match format {
                ExportFormat::Csv => csv_row(&mut text, lead),
                ExportFormat::Jsonl => {
                    text.push_str(
                        &serde_json::to_string(&json_row(lead)).exit_with(Exit::Failure)?,
                    );
                    text.push('\n');
                }
            }
        }
        super::out::text(&text)?;
        match page.last() {
            Some(last) if page.len() == EXPORT_PAGE as usize => filter.after = Some(last.id),
            _ => return Ok(()),
        }
    }
}

/// A time as import reads it: RFC 3339 in UTC (`2026-11-20T10:00:00Z`, with the fraction
/// of a second stored, if any).
fn time(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// The fields of `crate::import::COLUMNS`, in its order (`None` where the lead has none).
fn fields(lead: &Lead) -> [Option<String>; 9] {
    [
        Some(lead.target.clone()),
        lead.own_username.clone(),
        lead.timezone.clone(),
        lead.profile_image.clone(),
        (!lead.tags.is_empty()).then(|| lead.tags.join(";")),
        Some(lead.state.as_str().to_string()),
        time(lead.last_contact_at),
        time(lead.last_reply_at),
        Some(lead.follow_ups_sent.to_string()),
    ]
}

/// One CSV record (RFC 4180: a field holding a comma, a quote or a line end is quoted).
fn csv_row(out: &mut String, lead: &Lead) {
    for (i, field) in fields(lead).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let field = field.as_deref().unwrap_or("");
        if field.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push('\n');
}

/// One JSONL object, with import's keys (absent values are `null`; tags an array,
/// `follow_ups_sent` a number).
fn json_row(lead: &Lead) -> serde_json::Value {
    let mut row = serde_json::Map::new();
    for (name, value) in crate::import::COLUMNS.iter().zip(fields(lead)) {
        row.insert(name.to_string(), value.into());
    }
    row.insert("tags".into(), lead.tags.clone().into());
    row.insert("follow_ups_sent".into(), lead.follow_ups_sent.into());
    serde_json::Value::Object(row)
}
