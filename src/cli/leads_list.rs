//! `leads list`: a page of leads at a time, and a cut list says how to see the next one.

use super::common::{LEAD_HEADER, print_lead};
use super::store_access::store_failure;
use crate::exit::{Exit, ExitWith, Failure};
use crate::lead::LeadState;
use crate::store::{AdminStore, LeadFilter};

/// Leads read from the database per statement by `leads list`.
const LIST_PAGE: u32 = 1_000;

/// `leads list`: printed a page at a time (memory stays bounded whatever `--limit`), and
/// a list cut by `limit` says so, with the `--after` that shows the next ones.
pub(super) async fn list(
    store: &dyn AdminStore,
    state: Option<LeadState>,
    tag: Option<String>,
    limit: u32,
    after: Option<i64>,
    json: bool,
) -> Result<(), Failure> {
    let mut filter = LeadFilter {
        state,
        tag,
        limit: None,
        after,
    };
    let mut shown: u64 = 0;
    let mut last: Option<i64> = None;
    let mut cut = false;
    if json {
        outln!("[");
    }
    loop {
        let left = if limit == 0 {
            LIST_PAGE
        } else {
            (u64::from(limit) - shown).min(u64::from(LIST_PAGE)) as u32
        };
        // One more than wanted: whether the list goes on past the limit.
        filter.limit = Some(left + 1);
        filter.after = last.or(after);
        let page = store.list_leads(&filter).await.map_err(store_failure)?;
        let more = page.len() > left as usize;
        for lead in page.iter().take(left as usize) {
            if json {
                let text = serde_json::to_string_pretty(lead).exit_with(Exit::Failure)?;
                let comma = if shown > 0 { "," } else { "" };
                outln!("{comma}{text}");
            } else {
                if shown == 0 {
                    outln!("{LEAD_HEADER}");
                }
                print_lead(lead)?;
            }
            shown += 1;
            last = Some(lead.id);
        }
        if !more {
            break;
        }
        if limit != 0 && shown >= u64::from(limit) {
            cut = true;
            break;
        }
    }
    if json {
        outln!("]");
    }
    if cut && let Some(last) = last {
        eprintln!(
            "cut at {shown} leads (--limit {limit}); more match: `--after {last}` shows the next ones, `--limit 0` all, `leads export` writes them all to a file"
        );
    } else if shown == 0 && !json {
        eprintln!("no leads match");
    }
    Ok(())
}
