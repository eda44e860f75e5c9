//! The dashboard's leads table and its bulk actions.
//!
//! The table lists the leads a filter matches (target prefix, state, tag, the job of the
//! last attempt), 50 a page, in target order (byte order, as stored): each page starts
//! after the last target of the one before (keyset paging along the target index, never
//! an offset), and its links carry the filters. The count above it stops at `COUNT_CAP`
//! ("10,000+"), so a million leads do not slow the page.
//!
//! Retry and Block act on every lead the filter matches, not only the page shown, in two
//! steps: the first POST shows how many leads match and asks; the confirmation carries
//! the filter and that count, and the store re-applies the filter in one transaction and
//! writes nothing if more leads match now than were confirmed (the page asks again with
//! the new count). Fewer is fine: those that left the filter are simply not touched. So an
//! action never reaches more leads than the person confirmed. At most `BULK_MAX` leads
//! per action. Each lead goes through the same rule as its own Retry or Block
//! (`AdminStore::apply_user_action`): a lead the action does not apply to is skipped and
//! counted.

use super::{AppState, page};
use crate::lead::LeadState;
use crate::store::{Attempt, Bulk, BulkDone, Lead, LeadSearch, UserAction};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use maud::{Markup, html};
use serde::Deserialize;

/// Leads per page.
pub const PAGE: u32 = 50;
/// The count shown stops here ("10,000+").
pub const COUNT_CAP: u64 = 10_000;
/// The most leads one bulk action changes. Each lead is locked, checked and written as
/// its own Retry or Block is, in one transaction: 100,000 took 49 s on SQLite and 222 s
/// on PostgreSQL on a loaded 2-core machine, past the request timeout; 10,000 took 2 s
/// and 5 s.
pub const BULK_MAX: u64 = 10_000;
/// The longest job name a filter takes.
const JOB_CHARS: usize = 200;

/// The leads table's filters, as the page's forms send them ("" is any).
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
pub struct Filter {
    /// Target prefix.
    #[serde(default)]
    pub lq: String,
    #[serde(default)]
    pub lstate: String,
    #[serde(default)]
    pub ltag: String,
    /// The job of the lead's last attempt.
    #[serde(default)]
    pub ljob: String,
}

impl Filter {
    /// What the store is asked, or what is wrong with a field (named as in the form).
    pub fn search(&self) -> Result<LeadSearch, String> {
        let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let prefix = Some(self.lq.trim_start().to_string()).filter(|s| !s.is_empty());
        if let Some(p) = &prefix {
            if p.chars().count() > crate::lead::fields::TARGET_CHARS {
                return Err(format!(
                    "lq: a target prefix is at most {} characters",
                    crate::lead::fields::TARGET_CHARS
                ));
            }
            if p.contains('\0') {
                return Err("lq: a target prefix cannot hold a NUL character".into());
            }
        }
        let state = match given(&self.lstate) {
            None => None,
            Some(s) => Some(s.parse::<LeadState>().map_err(|_| {
                format!(
                    "lstate: {:?} is no lead state; expected one of {}",
                    page::clip(&s),
                    LeadState::ALL.map(LeadState::as_str).join(", ")
                )
            })?),
        };
        let tag = given(&self.ltag);
        if tag
            .as_ref()
            .is_some_and(|t| t.chars().count() > crate::lead::fields::TAG_CHARS || t.contains('\0'))
        {
            return Err(format!(
                "ltag: a tag is at most {} characters, without NUL",
                crate::lead::fields::TAG_CHARS
            ));
        }
        let job = given(&self.ljob);
        if job
            .as_ref()
            .is_some_and(|j| j.chars().count() > JOB_CHARS || j.contains('\0'))
        {
            return Err(format!(
                "ljob: a job name is at most {JOB_CHARS} characters, without NUL"
            ));
        }
        Ok(LeadSearch {
            prefix,
            state,
            tag,
            job,
        })
    }

    /// The filter in words: `state=failed, tag=vip`, or `no filter` (every lead).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.lq.trim_start().is_empty() {
            parts.push(format!("target starts with {:?}", self.lq.trim_start()));
        }
        for (name, v) in [
            ("state", &self.lstate),
            ("tag", &self.ltag),
            ("job", &self.ljob),
        ] {
            if !v.trim().is_empty() {
                parts.push(format!("{name}={}", v.trim()));
            }
        }
        if parts.is_empty() {
            "no filter (every lead)".into()
        } else {
            page::clip(&parts.join(", ")).into_owned()
        }
    }

    /// The non-empty fields, as query or form pairs.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("lq", self.lq.as_str()),
            ("lstate", self.lstate.as_str()),
            ("ltag", self.ltag.as_str()),
            ("ljob", self.ljob.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }
}

/// `n` with thousands separated by commas: 1,234.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count that stopped at `cap`: "10,000+" past it.
pub fn capped(n: u64, cap: u64) -> String {
    if n > cap {
        format!("{}+", thousands(cap))
    } else {
        thousands(n)
    }
}

/// `pairs` as a query string.
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// What the leads table shows.
pub struct Table {
    pub filter: Filter,
    pub rows: Vec<(Lead, Option<Attempt>)>,
    /// How many leads match, counted up to `COUNT_CAP + 1`.
    pub count: u64,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
    /// The cursor this page started after.
    pub after: Option<String>,
    /// What is wrong with the filter (then nothing is listed).
    pub error: Option<String>,
}

impl Table {
    pub async fn read(
        state: &AppState,
        filter: Filter,
        after: &str,
    ) -> Result<Self, crate::store::StoreError> {
        let after = Some(after.to_string()).filter(|a| !a.is_empty());
        let mut table = Table {
            filter,
            rows: Vec::new(),
            count: 0,
            next: None,
            after: after.clone(),
            error: None,
        };
        let search = match table.filter.search() {
            Ok(s) => s,
            Err(e) => {
                table.error = Some(e);
                return Ok(table);
            }
        };
        if after.as_ref().is_some_and(|a| {
            a.chars().count() > crate::lead::fields::TARGET_CHARS || a.contains('\0')
        }) {
            table.error = Some("lafter: not a page of this table; start from the first".into());
            return Ok(table);
        }
        let mut rows = state
            .store
            .leads_page(&search, after.as_deref(), PAGE + 1)
            .await?;
        if rows.len() > PAGE as usize {
            rows.truncate(PAGE as usize);
            table.next = rows.last().map(|(l, _)| l.target.clone());
        }
        table.rows = rows;
        table.count = state.store.count_leads(&search, COUNT_CAP + 1).await?;
        Ok(table)
    }
}

/// The leads section of the page. `keep` are the other table's query pairs (kept by this
/// table's links and form).
pub fn section(t: &Table, jobs: &[&str], keep: &[(&'static str, &str)], csrf: &str) -> Markup {
    let f = &t.filter;
    let link = |after: Option<&str>| {
        let mut pairs: Vec<(&str, &str)> = keep.to_vec();
        pairs.extend(f.pairs());
        if let Some(a) = after {
            pairs.push(("lafter", a));
        }
        format!("/?{}#leads", query_string(pairs))
    };
    html! {
        section aria-labelledby="leads" {
            h2 #leads { "All leads" }
            form method="get" action="/#leads" {
                @for (k, v) in keep { input type="hidden" name=(k) value=(v); }
                label for="l-q" { "Target starts with " }
                input #l-q type="text" name="lq" value=(f.lq) size="14";
                " "
                label for="l-state" { "State " }
                select #l-state name="lstate" {
                    option value="" { "any" }
                    @for s in LeadState::ALL {
                        option value=(s.as_str()) selected[f.lstate == s.as_str()] { (s.as_str()) }
                    }
                }
                " "
                label for="l-tag" { "Tag " }
                input #l-tag type="text" name="ltag" value=(f.ltag) size="10";
                " "
                label for="l-job" { "Last attempt's job " }
                select #l-job name="ljob" {
                    option value="" { "any" }
                    @for j in jobs { option value=(j) selected[f.ljob == *j] { (j) } }
                }
                " "
                button type="submit" { "Search" }
            }
            @if let Some(e) = &t.error {
                p.banner role="alert" #leads-error { (e) }
            } @else {
                p #leads-count {
                    span.count data-count=(t.count) { (capped(t.count, COUNT_CAP)) }
                    " lead(s) match " (f.describe()) "."
                }
                @if t.count > 0 {
                    form.inline method="post" action="/ui/leads/bulk" {
                        input type="hidden" name="csrf" value=(csrf);
                        @for (k, v) in f.pairs() { input type="hidden" name=(k) value=(v); }
                        button type="submit" name="action" value="retry" { "Retry all matching…" }
                        " "
                        button type="submit" name="action" value="block" { "Block all matching…" }
                    }
                }
                div.scroll { table {
                    caption { "Leads in target order, " (PAGE) " a page" }
                    thead { tr {
                        th scope="col" { "Target" } th scope="col" { "State" } th scope="col" { "Tags" }
                        th scope="col" { "Sender" } th scope="col" { "Last attempt" }
                    } }
                    tbody {
                        @for (lead, last) in &t.rows {
                            tr data-lead=(lead.target) {
                                th scope="row" { (page::clip(&lead.target)) }
                                td { (lead.state.as_str()) }
                                td { (page::clip(&lead.tags.join(", "))) }
                                td { (page::clip(lead.own_username.as_deref().unwrap_or("-"))) }
                                td { @if let Some(a) = last {
                                    (a.job) ": " (a.action.as_str()) " step " (a.step) ", " (a.status.as_str())
                                    ", " (page::when(Some(a.started_at)))
                                } @else { "-" } }
                            }
                        }
                    }
                } }
                @if t.rows.is_empty() { p { "No lead matches." } }
                nav aria-label="Pages of leads" {
                    @if t.after.is_some() { a #leads-first href=(link(None)) { "First page" } " " }
                    @if let Some(n) = &t.next { a #leads-next href=(link(Some(n))) { "Next " (PAGE) " →" } }
                }
            }
        }
    }
}

/// A bulk action's form: the filter, the action and, once asked, the count confirmed.
#[derive(Debug, Default, Deserialize)]
pub struct BulkForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub action: String,
    #[serde(flatten)]
    pub filter: Filter,
    #[serde(default)]
    pub confirmed: String,
}

fn say(status: StatusCode, heading: &str, text: &str) -> Response {
    (status, page::message(heading, text)).into_response()
}

/// `POST /ui/leads/bulk`: asks, then (with `confirmed`) acts on every lead the filter
/// matches.
pub async fn bulk(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    form: Result<Form<BulkForm>, FormRejection>,
) -> Response {
    let csrf = form.as_ref().map(|Form(f)| f.csrf.as_str());
    if let Err(refused) = super::checked(&state, &headers, &jar, csrf).await {
        return refused;
    }
    let Ok(Form(form)) = form else {
        return say(
            StatusCode::BAD_REQUEST,
            "Not understood",
            "The form could not be read.",
        );
    };
    let (action, verb, done) = match form.action.as_str() {
        "retry" => (UserAction::Retry, "Retry", "Retried"),
        "block" => (UserAction::Block, "Block", "Blocked"),
        other => {
            return say(
                StatusCode::BAD_REQUEST,
                "Not done",
                &format!(
                    "action: {:?} is not a bulk action; expected retry or block",
                    page::clip(other)
                ),
            );
        }
    };
    let search = match form.filter.search() {
        Ok(s) => s,
        Err(e) => return say(StatusCode::BAD_REQUEST, "Not done", &e),
    };
    let what = form.filter.describe();
    let too_many = || {
        say(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Too many leads",
            &format!(
                "More than {} leads match {what}: one bulk action changes at most {}. Narrow the filter (a target prefix, a tag) and act in parts.",
                thousands(BULK_MAX),
                thousands(BULK_MAX)
            ),
        )
    };
    let confirmed = match form.confirmed.trim() {
        "" => None,
        n => match n.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return say(
                    StatusCode::BAD_REQUEST,
                    "Not done",
                    "confirmed: expected the number of leads the confirmation showed",
                );
            }
        },
    };
    let Some(confirmed) = confirmed else {
        let n = match state.store.count_leads(&search, BULK_MAX + 1).await {
            Ok(n) => n,
            Err(e) => return super::unavailable(&e),
        };
        if n > BULK_MAX {
            return too_many();
        }
        if n == 0 {
            return say(
                StatusCode::OK,
                "No lead matches",
                &format!("No lead matches {what}: nothing to {}.", form.action),
            );
        }
        return (StatusCode::OK, confirm(&form, verb, n, None)).into_response();
    };
    if confirmed > BULK_MAX {
        return too_many();
    }
    state.dashboard.funnel.forget();
    let bulk = Bulk {
        action,
        confirmed,
        max: BULK_MAX,
        now: state.clock.now(),
    };
    match state.store.bulk_leads(&search, bulk).await {
        Ok(BulkDone::TooMany { .. }) => too_many(),
        Ok(BulkDone::Changed { now }) => (
            StatusCode::CONFLICT,
            confirm(&form, verb, now, Some(confirmed)),
        )
            .into_response(),
        Ok(BulkDone::Done(c)) => {
            let back = format!("/?{}#leads", query_string(form.filter.pairs()));
            let title = format!("{done} {} lead(s)", thousands(c.changed));
            (
                StatusCode::OK,
                page::page(
                    &title,
                    html! {
                        main {
                            h1 #bulk-done { (title) }
                            p { "Of the leads matching " (what) ":" }
                            ul {
                                li #bulk-changed { (thousands(c.changed)) " changed" }
                                li #bulk-skipped { (thousands(c.skipped)) " skipped: their state does not allow it" }
                                li #bulk-busy { (thousands(c.busy)) " skipped: a call is in flight (try again once it is answered)" }
                                li #bulk-moved { (thousands(c.moved)) " left the filter meanwhile" }
                            }
                            p { a #bulk-back href=(back) { "Back to the leads" } }
                        }
                    },
                ),
            )
                .into_response()
        }
        Err(e @ crate::store::StoreError::Db(_)) => super::unavailable(&e),
        Err(e) => say(StatusCode::CONFLICT, "Not done", &e.to_string()),
    }
}

/// The confirmation: the count, the filter, and a form that carries both. `before` is the
/// count confirmed earlier when the filter now matches more.
fn confirm(form: &BulkForm, verb: &str, n: u64, before: Option<u64>) -> Markup {
    let question = format!(
        "{verb} {} lead(s) matching {}?",
        thousands(n),
        form.filter.describe()
    );
    let back = format!("/?{}#leads", query_string(form.filter.pairs()));
    page::page(
        &question,
        html! {
            main {
                h1 #bulk-question { (question) }
                @if let Some(b) = before {
                    p.banner role="alert" #bulk-changed-count {
                        "Nothing was done: the filter now matches " (thousands(n)) " leads, more than the "
                        (thousands(b)) " you confirmed. Confirm again to act on them."
                    }
                }
                p { "This acts on every lead the filter matches, not only the page shown. "
                    "Leads whose state does not allow it are skipped and counted." }
                form method="post" action="/ui/leads/bulk" {
                    input type="hidden" name="csrf" value=(form.csrf);
                    input type="hidden" name="action" value=(form.action);
                    @for (k, v) in form.filter.pairs() { input type="hidden" name=(k) value=(v); }
                    input type="hidden" name="confirmed" value=(n);
                    button #bulk-confirm type="submit" { "Confirm: " (verb) " " (thousands(n)) " lead(s)" }
                    " "
                    a href=(back) { "Cancel" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_filters_read_as_a_person_expects() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234), "1,234");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(capped(10_000, COUNT_CAP), "10,000");
        assert_eq!(capped(10_001, COUNT_CAP), "10,000+");
        let f = Filter {
            lstate: "failed".into(),
            ltag: "vip".into(),
            ..Default::default()
        };
        assert_eq!(f.describe(), "state=failed, tag=vip");
        assert_eq!(Filter::default().describe(), "no filter (every lead)");
        let bad = Filter {
            lstate: "sleeping".into(),
            ..Default::default()
        };
        let e = bad.search().expect_err("no such state");
        assert!(
            e.starts_with("lstate:") && e.contains("needs_review"),
            "{e}"
        );
        let long = Filter {
            lq: "x".repeat(crate::lead::fields::TARGET_CHARS + 1),
            ..Default::default()
        };
        assert!(long.search().expect_err("too long").starts_with("lq:"));
    }
}
