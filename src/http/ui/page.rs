//! The dashboard's HTML (maud: escaped by construction), with its styles inline: nothing is
//! fetched from elsewhere. Semantic markup: headings, tables with captions and header
//! cells, labelled forms; readable on a phone (one column) and a laptop.
//!
//! The page's one `<style>` and one `<script>` are constants, allowed by their SHA-256 in
//! the Content-Security-Policy (`content_security_policy`); nothing else may run or style
//! it, so no element carries a `style` attribute (bars and swatches are SVG shapes). Text
//! from the database is clipped where shown (`clip`), so a huge field cannot make a huge
//! page.

use super::View;
use crate::lead::LeadState;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use std::borrow::Cow;

const STYLE: &str = "
:root { font-family: system-ui, sans-serif; color: #1b1b1b; background: #fafafa; }
body { margin: 0 auto; max-width: 72rem; padding: 1rem; }
header { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: baseline; gap: .5rem; }
h1 { font-size: 1.4rem; margin: .2rem 0; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: .35rem .5rem; text-align: left; vertical-align: top; }
td.count, td.share { text-align: right; font-variant-numeric: tabular-nums; }
.banner { background: #fde2e1; border: 2px solid #b3261e; padding: .6rem .8rem; margin: .8rem 0; }
.muted { color: #666; } svg.bar { display: block; width: 100%; height: .6rem; } svg.bar rect { fill: #3b6ea8; }
td.barcell { width: 40%; }
form.inline { display: inline; } button { font: inherit; padding: .2rem .6rem; }
.scroll { overflow-x: auto; }
figure.chart { margin: .6rem 0; background: #fff; padding: .5rem; }
figure.chart .plot { overflow-x: auto; }
figure.chart svg { display: block; width: 100%; min-width: 34rem; max-width: 56rem; height: auto; }
ul.legend { list-style: none; display: flex; flex-wrap: wrap; gap: .3rem 1rem; padding: 0; margin: .4rem 0; font-size: .9rem; }
.swatch { display: inline-block; width: .8rem; height: .8rem; vertical-align: -.1rem; } .swatch polygon { stroke: #0003; }
details summary { cursor: pointer; }
@media (max-width: 40rem) { th, td { padding: .3rem; font-size: .9rem; } }
";

/// The most characters of one database text shown on the page.
pub const SHOWN_CHARS: usize = 200;

/// `text`, cut to `SHOWN_CHARS` characters with an ellipsis.
pub fn clip(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(SHOWN_CHARS) {
        None => Cow::Borrowed(text),
        Some((at, _)) => Cow::Owned(format!("{}…", &text[..at])),
    }
}

/// `sha256-<base64>` of `text`, as a Content-Security-Policy source.
fn hash_source(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

/// Every page's policy: its own script (the live updates) and style, by hash; fetches and
/// forms only to the dashboard itself; no frames, no `<base>`, nothing else.
pub fn content_security_policy() -> &'static str {
    static POLICY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "default-src 'none'; script-src {}; style-src {}; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            hash_source(super::live::SCRIPT),
            hash_source(STYLE)
        )
    });
    POLICY.as_str()
}

fn frame(title: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // With JavaScript the page updates itself (`live`); without, it reloads.
                @if refresh { noscript { meta http-equiv="refresh" content="30"; } }
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                (body)
                @if refresh { script { (PreEscaped(super::live::SCRIPT)) } }
            }
        }
    }
}

/// The login form; `error` says why the last try failed.
pub fn login(error: Option<&str>) -> Markup {
    frame(
        "fluidtalk-runner: log in",
        false,
        html! {
            main {
                h1 { "fluidtalk-runner" }
                @if let Some(e) = error { p.banner role="alert" { (e) } }
                form method="post" action="/login" {
                    p {
                        label for="password" { "Token (FLUIDTALK_RUNNER_TOKEN)" } br;
                        input #password type="password" name="password" autocomplete="current-password" required autofocus;
                    }
                    p { button type="submit" { "Log in" } }
                }
            }
        },
    )
}

/// A short page with a heading and a sentence.
pub fn message(heading: &str, text: &str) -> Markup {
    frame(
        heading,
        false,
        html! {
            main { h1 { (heading) } p { (text) } p { a href="/" { "Back to the dashboard" } } }
        },
    )
}

/// A page of its own (no live updates) with `title` and `body`.
pub fn page(title: &str, body: Markup) -> Markup {
    frame(title, false, body)
}

pub fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

fn action_form(target: &str, action: &str, label: &str, csrf: &str) -> Markup {
    let path = format!(
        "/ui/leads/{}/{action}",
        percent_encoding::utf8_percent_encode(target, percent_encoding::NON_ALPHANUMERIC)
    );
    html! {
        form.inline method="post" action=(path) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" aria-label=(format!("{label} {}", clip(target))) { (label) }
        }
    }
}

/// A job's pause state and the button that changes it: Pause (until resumed) while it is
/// active, Resume while a person's pause holds it.
fn job_state(name: &str, paused: Option<&crate::store::JobPause>, csrf: &str) -> Markup {
    let name_in_path =
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string();
    let (path, label) = match paused {
        Some(_) => (format!("/ui/jobs/{name_in_path}/resume"), "Resume"),
        None => (format!("/ui/jobs/{name_in_path}/pause"), "Pause"),
    };
    html! {
        @match paused {
            Some(p) => { strong { "Paused" } " " span.muted { (clip(&p.describe())) } " " }
            None => { "Active " }
        }
        form.inline method="post" action=(path) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" aria-label=(format!("{label} job {}", clip(name))) { (label) }
        }
    }
}

/// The dashboard.
pub fn dashboard(v: &View) -> Markup {
    let r = &v.report;
    let total: u64 = r.leads.values().sum();
    frame(
        "fluidtalk-runner",
        true,
        html! {
            header {
                h1 { "fluidtalk-runner" }
                p.muted #asof { "As of " (when(Some(r.now))) "; updates every " (super::live::REFRESH_SECS) " s." }
                form.inline method="post" action="/logout" {
                    input type="hidden" name="csrf" value=(v.csrf);
                    button type="submit" { "Log out" }
                }
            }
            main #dash data-refresh=(super::live::REFRESH_SECS) {
                @for p in &r.pauses {
                    section.banner role="alert" aria-label="Pause in force" {
                        strong { "Paused: " (p.scope.as_str()) }
                        " until " (when(Some(p.until))) ". " (p.reason.trim_end_matches('.')) ". "
                        "After buying tokens or fixing the key, `fluidtalk-runner pause clear` lifts it."
                    }
                }
                section aria-labelledby="funnel" {
                    h2 #funnel { "Leads" }
                    div.scroll { table {
                        caption { (total) " leads by state" }
                        thead { tr { th scope="col" { "State" } th scope="col" { "Leads" } th scope="col" { "Share" } th scope="col" { "" } } }
                        tbody {
                            @for st in LeadState::ALL {
                                @let n = r.leads.get(&st).copied().unwrap_or(0);
                                @let share = if total == 0 { 0.0 } else { n as f64 * 100.0 / total as f64 };
                                tr data-state=(st.as_str()) {
                                    th scope="row" { (st.as_str()) }
                                    td.count { (n) }
                                    td.share { (format!("{share:.1}%")) }
                                    td.barcell { (super::chart::bar(share)) }
                                }
                            }
                        }
                    } }
                    (super::funnel::table(&v.steps))
                }
                (calls(v))
                (super::forecast::section(&v.forecast))
                section aria-labelledby="jobs" {
                    h2 #jobs { "Jobs" }
                    div.scroll { table {
                        caption { "Schedules, last runs and today's sends" }
                        thead { tr {
                            th scope="col" { "Job" } th scope="col" { "Schedule" } th scope="col" { "Next fire" }
                            th scope="col" { "Last run" } th scope="col" { "Sent today" } th scope="col" { "Window" }
                            th scope="col" { "State" }
                        } }
                        tbody {
                            @for j in &v.jobs {
                                @let paused = r.job_pauses.iter().find(|p| p.job == j.job.name);
                                tr data-job=(j.job.name) data-paused=(paused.is_some()) {
                                    th scope="row" { (j.job.name) " " span.muted { "(" (j.job.kind.name()) ")" } }
                                    td { code { (j.job.schedule.text()) } " " span.muted { (j.job.timezone.name()) } }
                                    td { (when(j.job.schedule.next_after(r.now))) }
                                    td { (last_run(j)) }
                                    td.count { (j.sent_today) @if let Some(cap) = daily_cap(&j.job) { " / " (cap) } }
                                    td { (window(&j.job)) }
                                    td { (job_state(&j.job.name, paused, &v.csrf)) }
                                }
                            }
                        }
                    } }
                }
                (senders(v))
                (rates(v))
                section aria-labelledby="outbox" {
                    h2 #outbox { "Outbox" }
                    p { (r.outbox.pending) " message(s) waiting to be delivered, " (r.outbox.parked) " parked."
                        @if v.parked_total > v.parked.len() as u64 { " The oldest " (v.parked.len()) " are listed (`outbox list --parked` lists them all)." } }
                    @if !v.parked.is_empty() {
                        div.scroll { table {
                            caption { "Parked webhook deliveries: past max_age, holding back their lead's later messages" }
                            thead { tr {
                                th scope="col" { "Message" } th scope="col" { "Lead" } th scope="col" { "Tries" }
                                th scope="col" { "Last error" } th scope="col" { "Parked" } th scope="col" { "Action" }
                            } }
                            tbody {
                                @for m in &v.parked {
                                    tr data-parked=(m.id) {
                                        th scope="row" { "#" (m.id) " " span.muted { (m.action) } }
                                        td { (clip(&m.target)) }
                                        td.count { (m.tries) }
                                        td.muted { (clip(m.last_error.as_deref().unwrap_or(""))) }
                                        td { (when(Some(m.parked_at))) }
                                        td {
                                            form.inline method="post" action=(format!("/ui/outbox/{}/redeliver", m.id)) {
                                                input type="hidden" name="csrf" value=(v.csrf);
                                                button type="submit" aria-label=(format!("Redeliver message {}", m.id)) { "Redeliver" }
                                            }
                                        }
                                    }
                                }
                            }
                        } }
                    }
                }
                section aria-labelledby="review" {
                    h2 #review { "Needs a person" }
                    @if v.review.is_empty() { p { "No lead needs review or has failed." } }
                    @else {
                        div.scroll { table {
                            caption { "Leads in needs_review or failed, with their last attempt" }
                            thead { tr { th scope="col" { "Lead" } th scope="col" { "State" } th scope="col" { "Last attempt" } th scope="col" { "Actions" } } }
                            tbody {
                                @for (lead, last) in &v.review {
                                    tr data-target=(lead.target) {
                                        th scope="row" { (clip(&lead.target)) }
                                        td { (lead.state.as_str()) }
                                        td { @if let Some(a) = last {
                                            (a.action.as_str()) " step " (a.step) ": " (a.status.as_str()) " " (when(Some(a.started_at)))
                                            @if let Some(d) = &a.error_detail { br; span.muted { (clip(d)) } }
                                        } @else { "-" } }
                                        td {
                                            (action_form(&lead.target, "retry", "Retry", &v.csrf)) " "
                                            (action_form(&lead.target, "block", "Block", &v.csrf))
                                        }
                                    }
                                }
                            }
                        } }
                    }
                }
                (super::leads::section(&v.leads, &jobs(v), &v.query.attempt_pairs(), &v.csrf))
                (recent(v))
            }
        },
    )
}

/// Each sender account's use today against its cap (the warm-up's if lower), its gap and
/// its last call.
fn senders(v: &View) -> Markup {
    let now = v.report.now;
    html! {
        @if !v.senders.is_empty() {
            section aria-labelledby="senders" {
                h2 #senders { "Senders" }
                div.scroll { table {
                    caption { "Each [[sender]]: openers today against its cap, in its own day" }
                    thead { tr {
                        th scope="col" { "Sender" } th scope="col" { "Openers today" } th scope="col" { "Cap today" }
                        th scope="col" { "Min gap" } th scope="col" { "Last call" } th scope="col" { "Now" }
                    } }
                    tbody {
                        @for room in &v.senders {
                            tr data-sender=(room.rule.username) {
                                th scope="row" { (clip(&room.rule.username)) }
                                td.count.used { (room.used) }
                                td.count.cap { @match room.cap {
                                    Some(c) => { (c) @if room.rule.warmup.is_some() && Some(c) != room.rule.daily_cap {
                                        " " span.muted { "(warm-up day " (room.rule.ramp_day(room.first_opener_at, now)) ")" } } },
                                    None => { "none" },
                                } }
                                td { @if room.rule.min_gap.is_zero() { "-" } @else { (humantime::format_duration(room.rule.min_gap)) } }
                                td { (when(room.last_call_at)) }
                                td.held { @match room.hold(true, now) {
                                    Some(h) => { (h.reason()) },
                                    None => { "free" },
                                } }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// A share as a percentage with one decimal.
fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The reply rates per job, step and sender (senders past `rates::MAX_SENDERS` summed
/// under `(other)`, as on `/metrics`).
fn rates(v: &View) -> Markup {
    let rows = crate::rates::fold_senders(&v.report.rates, crate::rates::MAX_SENDERS);
    html! {
        section aria-labelledby="rates" {
            h2 #rates { "Reply rates" }
            @if rows.is_empty() { p { "No step has been sent yet." } }
            @else {
                div.scroll { table {
                    caption { "Steps sent, replied to, sealed and ignored, per job, step and sender" }
                    thead { tr {
                        th scope="col" { "Job" } th scope="col" { "Step" } th scope="col" { "Sender" }
                        th scope="col" { "Sent" } th scope="col" { "Replied" } th scope="col" { "Sealed" }
                        th scope="col" { "Ignored" } th scope="col" { "Reply rate" } th scope="col" { "95% interval" }
                    } }
                    tbody {
                        @for r in &rows {
                            tr data-rate=(format!("{}/{}/{}", r.job, r.step_name(), r.sender_name())) {
                                th scope="row" { (r.job) }
                                td { (r.step_name()) }
                                td { (clip(r.sender_name())) }
                                td.count.sent { (r.sent) }
                                td.count.replied { (r.replied) }
                                td.count.sealed { (r.sealed) }
                                td.count.ignored { (r.ignored) }
                                td.share.rate { (r.reply_rate().map_or_else(|| "-".to_string(), percent)) }
                                td.interval { (r.interval().map_or_else(|| "-".to_string(), |(lo, hi)| format!("{} to {}", percent(lo), percent(hi)))) }
                            }
                        }
                    }
                } }
            }
            p.muted {
                "Sent: answered sent or continued. A reply counts for the last step sent before it, "
                "once. Sealed: refused, the conversation is sealed; ignored: the lead belongs to another "
                "account. The interval is the reply rate's 95% Wilson score interval. Over the attempts "
                "kept by retention; counted at most once a minute."
            }
        }
    }
}

fn calls(v: &View) -> Markup {
    let c = &v.calls;
    let title = format!(
        "Calls per day by outcome, the last {} days ({})",
        super::calls::DAYS,
        c.zone.name()
    );
    html! {
        section aria-labelledby="calls" {
            h2 #calls { "Calls" }
            (super::chart::stacked_bars("calls-chart", &title, &c.days, &super::calls::series()))
            p.muted {
                "Every call the jobs and the inbound relay started, by the day it started in "
                (c.zone.name())
                @if let Some(job) = &c.zone_job { ", the time zone of the first job (" (job) ")" }
                @else { " (no job is configured)" }
                "; in_flight calls have not answered yet. Counted at most once a minute."
            }
        }
    }
}

/// The configured jobs' names and the relay's.
fn jobs(v: &View) -> Vec<&str> {
    v.jobs
        .iter()
        .map(|j| j.job.name.as_str())
        .chain([crate::http::inbound::INBOUND_JOB])
        .collect()
}

fn recent(v: &View) -> Markup {
    let q = &v.query;
    let jobs = jobs(v);
    // The leads table's filters and page are kept by this table's form and links.
    let mut keep: Vec<(&str, &str)> = q.leads.pairs();
    if !q.lafter.is_empty() {
        keep.push(("lafter", q.lafter.as_str()));
    }
    let link = |before: Option<String>| {
        let mut pairs: Vec<(&str, &str)> = keep.clone();
        pairs.extend(q.attempt_pairs());
        let before = before.unwrap_or_default();
        if !before.is_empty() {
            pairs.push(("before", before.as_str()));
        }
        format!("/?{}#recent", super::leads::query_string(pairs))
    };
    html! {
        section aria-labelledby="recent" {
            h2 #recent { "Recent attempts" }
            form method="get" action="/#recent" {
                @for (k, val) in &keep { input type="hidden" name=(k) value=(val); }
                label for="f-job" { "Job " }
                select #f-job name="job" {
                    option value="" { "any" }
                    @for j in &jobs { option value=(j) selected[q.job == *j] { (j) } }
                }
                " "
                label for="f-status" { "Outcome " }
                select #f-status name="status" {
                    option value="" { "any" }
                    @for s in crate::store::AttemptStatus::ALL {
                        option value=(s.as_str()) selected[q.status == s.as_str()] { (s.as_str()) }
                    }
                }
                " "
                label for="f-target" { "Target starts with " }
                input #f-target type="text" name="target" value=(q.target) size="14";
                " "
                button type="submit" { "Filter" }
            }
            div.scroll { table {
                caption { "Attempts, newest first, 50 a page" }
                thead { tr {
                    th scope="col" { "Started" } th scope="col" { "Lead" } th scope="col" { "Job" }
                    th scope="col" { "Call" } th scope="col" { "Outcome" } th scope="col" { "Detail" }
                } }
                tbody {
                    @for (a, target) in &v.recent {
                        tr data-attempt=(a.id) {
                            td { (when(Some(a.started_at))) }
                            th scope="row" { (clip(target)) }
                            td { (a.job) }
                            td { (a.action.as_str()) " step " (a.step) }
                            td { (a.status.as_str()) @if let Some(h) = a.http_status { " (" (h) ")" } }
                            td.muted { (clip(a.error_detail.as_deref().unwrap_or(""))) }
                        }
                    }
                }
            } }
            @if v.recent.is_empty() { p { "No attempt matches." } }
            nav aria-label="Pages of attempts" {
                @if !q.before.is_empty() { a #recent-first href=(link(None)) { "Newest" } " " }
                @if let Some(n) = v.recent_next { a #recent-next href=(link(Some(n.to_string()))) { "Older 50 →" } }
            }
        }
    }
}

fn last_run(j: &super::JobRow) -> String {
    match &j.last {
        None => "never".into(),
        Some(run) => {
            let summary = run
                .summary
                .as_ref()
                .and_then(|s| serde_json::from_value::<crate::runner::Summary>(s.clone()).ok())
                .map_or_else(|| "running or stopped".into(), |s| s.describe());
            let took = run
                .finished_at
                .map(|f| format!(" in {}s", (f - run.started_at).num_seconds().max(0)))
                .unwrap_or_default();
            format!("{}{took}: {summary}", when(Some(run.started_at)))
        }
    }
}

fn daily_cap(job: &crate::config::Job) -> Option<u32> {
    match &job.kind {
        crate::config::JobKind::Opener { daily_cap, .. } => *daily_cap,
        _ => None,
    }
}

fn window(job: &crate::config::Job) -> String {
    let hours = match job.kind.send_window() {
        None => "any time".into(),
        Some(w) => {
            const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
            let days: Vec<&str> = DAYS
                .iter()
                .zip(w.days)
                .filter(|(_, on)| *on)
                .map(|(d, _)| *d)
                .collect();
            format!(
                "{} {} (lead's zone)",
                days.join(" "),
                w.hours().replace('-', "–")
            )
        }
    };
    if job.calendars.is_empty() {
        return hours;
    }
    let names: Vec<&str> = job.calendars.iter().map(|c| c.name.as_str()).collect();
    format!("{hours}; not on days off of {}", names.join(", "))
}
