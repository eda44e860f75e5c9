//! The planner against a simple reference model of due-ness (proptest): random leads in
//! every state, with eligibility, contact and reply times, follow-up counts, leases,
//! calls in flight and queued events, in a real SQLite file; random opener and follow-up
//! jobs. The dry-run plan must name exactly the leads the model calls due, oldest first.

use crate::common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use fluidtalk_runner::config;
use fluidtalk_runner::plan;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Lease {
    None,
    Expired,
    Active,
}

#[derive(Debug, Clone)]
struct Lead {
    state: &'static str,
    /// Minutes from now.
    eligible: i64,
    /// Minutes before now.
    contact: Option<i64>,
    reply: Option<i64>,
    follow_ups_sent: i32,
    lease: Lease,
    in_flight: bool,
    queued_event: bool,
}

#[derive(Debug, Clone)]
enum Job {
    Opener,
    FollowUp { quiet_hours: Vec<i64>, max: u32 },
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .expect("a time")
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn lead() -> impl Strategy<Value = Lead> {
    (
        prop::sample::select(vec![
            "new",
            "contacted",
            "exhausted",
            "blocked",
            "needs_review",
        ]),
        -600i64..600,
        prop::option::of(0i64..20_000),
        prop::option::of(0i64..20_000),
        0i32..4,
        prop::sample::select(vec![Lease::None, Lease::Expired, Lease::Active]),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(state, eligible, contact, reply, follow_ups_sent, lease, in_flight, queued_event)| {
                Lead {
                    state,
                    eligible,
                    contact,
                    reply,
                    follow_ups_sent,
                    lease,
                    in_flight,
                    queued_event,
                }
            },
        )
}

fn job() -> impl Strategy<Value = Job> {
    prop_oneof![
        Just(Job::Opener),
        (prop::collection::vec(1i64..200, 1..4), 1u32..5)
            .prop_map(|(quiet_hours, max)| Job::FollowUp { quiet_hours, max }),
    ]
}

/// The model: when (the sort key) a lead is due for `job` at `now`, or `None`.
fn due(l: &Lead, job: &Job) -> Option<DateTime<Utc>> {
    let now = now();
    let free = l.lease != Lease::Active && !l.in_flight && l.eligible <= 0;
    match job {
        Job::Opener => (free && l.state == "new" && !l.queued_event)
            .then(|| now + Duration::minutes(l.eligible)),
        Job::FollowUp { quiet_hours, max } => {
            if !(free && l.state == "contacted" && l.follow_ups_sent < *max as i32) {
                return None;
            }
            let since = match (l.contact, l.reply) {
                (None, None) => return None,
                (a, b) => now - Duration::minutes(a.unwrap_or(i64::MAX).min(b.unwrap_or(i64::MAX))),
            };
            let step = (l.follow_ups_sent as usize).min(quiet_hours.len() - 1);
            (since <= now - Duration::hours(quiet_hours[step])).then_some(since)
        }
    }
}

fn campaign(job: &Job, batch: u32) -> config::Config {
    let kind = match job {
        Job::Opener => "kind = \"opener\"".to_string(),
        Job::FollowUp { quiet_hours, max } => format!(
            "kind = \"follow_up\"\nmax_follow_ups = {max}\nquiet_after = [{}]",
            quiet_hours
                .iter()
                .map(|h| format!("\"{h}h\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let text = format!(
        "[[job]]\nname = \"j\"\n{kind}\nschedule = \"0 0 * * * *\"\nbatch_size = {batch}\n"
    );
    config::parse(std::path::Path::new("jobs.toml"), &text).expect("a valid campaign")
}

async fn check(leads: Vec<Lead>, job: Job, batch: u32) -> Result<(), TestCaseError> {
    let db = common::db::sqlite().await;
    let common::db::Raw::Sqlite(pool) = &db.raw else {
        unreachable!("a SQLite test database")
    };
    let now = now();
    for (i, l) in leads.iter().enumerate() {
        let lease = match l.lease {
            Lease::None => None,
            Lease::Expired => Some(now - Duration::minutes(1)),
            Lease::Active => Some(now + Duration::minutes(10)),
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO leads (target, state, created_at, updated_at, next_eligible_at,
                                last_contact_at, last_reply_at, follow_ups_sent, follow_ups_total,
                                lease_owner, lease_expires_at)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9) RETURNING id",
        )
        .bind(format!("@p{i:03}"))
        .bind(l.state)
        .bind(ts(now - Duration::days(30)))
        .bind(ts(now + Duration::minutes(l.eligible)))
        .bind(l.contact.map(|m| ts(now - Duration::minutes(m))))
        .bind(l.reply.map(|m| ts(now - Duration::minutes(m))))
        .bind(l.follow_ups_sent)
        .bind(lease.map(|_| "someone/1"))
        .bind(lease.map(ts))
        .fetch_one(pool)
        .await
        .expect("insert a lead");
        if l.in_flight {
            sqlx::query(
                "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id)
                 VALUES (?1, 'j', 'event', ?1, 'in_flight', ?2, 'someone/1')",
            )
            .bind(id)
            .bind(ts(now))
            .execute(pool)
            .await
            .expect("insert an attempt");
        }
        if l.queued_event {
            sqlx::query(
                "INSERT INTO events (lead_id, event_type, created_at) VALUES (?1, 'x', ?2)",
            )
            .bind(id)
            .bind(ts(now))
            .execute(pool)
            .await
            .expect("insert an event");
        }
    }
    let config = campaign(&job, batch);
    let planned = plan::preview(&*db.store, &config.jobs[0], now)
        .await
        .expect("plan");
    let got: Vec<String> = planned.calls.iter().map(|c| c.target.clone()).collect();
    let mut want: Vec<(DateTime<Utc>, usize)> = leads
        .iter()
        .enumerate()
        .filter_map(|(i, l)| due(l, &job).map(|since| (since, i)))
        .collect();
    want.sort();
    let want: Vec<String> = want.iter().map(|(_, i)| format!("@p{i:03}")).collect();
    prop_assert_eq!(got, want, "{:?}", job);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn the_plan_names_exactly_the_leads_the_model_calls_due_oldest_first(
        leads in prop::collection::vec(lead(), 0..40),
        job in job(),
        batch in 1u32..8,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(check(leads, job, batch))?;
    }
}

/// A preview reads due leads in pages of its own (`plan::PREVIEW_PAGE`) and the next page
/// while it plans one; its calls and notes are still those of the batches a run plans
/// (`next_batch` with the limit `remaining` gives, until it returns none), with
/// `max_per_run` and the daily cap reached mid-batch and mid-page, and leads outside their
/// send window passed over: on 11,000 leads sharing one eligibility time (so pages split
/// them on the id), in batches that do not divide a page.
async fn a_preview_plans_the_calls_of_the_batches_a_run_plans(db: common::db::TestDb) {
    // A Wednesday, noon UTC: 21:00 in Tokyo, outside the window.
    let now = Utc
        .with_ymd_and_hms(2026, 6, 3, 12, 0, 0)
        .single()
        .expect("valid time");
    let total = (plan::PREVIEW_PAGE as usize) * 2 + 1_000;
    let mut import = db.store.begin_import(false).await.expect("begin import");
    for chunk in (0..total).collect::<Vec<_>>().chunks(1_000) {
        let rows = chunk
            .iter()
            .map(|i| fluidtalk_runner::store::LeadInput {
                target: format!("@w{i:05}"),
                timezone: (i % 3 == 0).then(|| "Asia/Tokyo".to_string()),
                ..Default::default()
            })
            .collect();
        import
            .upsert(rows, now - Duration::days(1))
            .await
            .expect("import");
    }
    import.finish(true).await.expect("finish the import");
    let in_window = total - total.div_ceil(3);
    for (extra, calls) in [
        ("", in_window),
        ("max_per_run = 5003\n", 5_003),
        ("daily_cap = 5001\n", 5_001),
        ("max_per_run = 74\n", 74),
    ] {
        let text = format!(
            "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\n\
             timezone = \"UTC\"\nbatch_size = 37\n\
             send_window = {{ days = \"mon-fri\", from = \"09:00\", to = \"17:00\" }}\n{extra}"
        );
        let config = config::parse(std::path::Path::new("jobs.toml"), &text).expect("campaign");
        let job = &config.jobs[0];
        let mut cursor = plan::dry_cursor();
        let mut want = Vec::new();
        let at_cap = loop {
            let left = plan::remaining(&*db.store, job, now, &cursor)
                .await
                .expect("remaining");
            let batch =
                plan::next_batch(&*db.store, job, now, left.min(job.batch_size), &mut cursor)
                    .await
                    .expect("a batch");
            if batch.is_empty() {
                break left == 0;
            }
            want.extend(batch.into_iter().map(|c| (c.target, c.step, c.reason)));
        };
        let mut notes = Vec::new();
        if at_cap {
            notes.push("stops at the daily cap or max_per_run".to_string());
        }
        if cursor.outside_window > 0 {
            notes.push(format!(
                "{} due lead(s) outside their send window now",
                cursor.outside_window
            ));
        }
        let preview = plan::preview(&*db.store, job, now).await.expect("preview");
        let got: Vec<_> = preview
            .calls
            .into_iter()
            .map(|c| (c.target, c.step, c.reason))
            .collect();
        assert_eq!(want.len(), calls, "{extra}: the run's batches");
        assert_eq!(got.len(), want.len(), "{extra}");
        assert!(
            got == want,
            "{extra}: the preview's calls differ from the run's"
        );
        assert_eq!(preview.notes, notes, "{extra}");
    }
}

#[tokio::test]
async fn a_preview_plans_the_calls_of_the_batches_a_run_plans_on_sqlite() {
    a_preview_plans_the_calls_of_the_batches_a_run_plans(common::db::sqlite().await).await;
}

#[tokio::test]
async fn a_preview_plans_the_calls_of_the_batches_a_run_plans_on_postgres() {
    if let Some(db) = common::db::postgres().await {
        a_preview_plans_the_calls_of_the_batches_a_run_plans(db).await;
    }
}
