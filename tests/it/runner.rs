//! The runner against the simulator and a real SQLite file, with the clock injected: every
//! outcome of the policy, caps, windows, quiet times, pauses, retries and crashes.

use crate::common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{TEST_KEY, spawn_sim};
use fluidtalk_runner::clock::{Clock, ManualClock};
use fluidtalk_runner::config::{self, Config};
use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::lead::LeadState;
use fluidtalk_runner::runner::{RunError, Runner, Summary};
use fluidtalk_runner::sim::{SimConfig, Simulator};
use fluidtalk_runner::store::{AttemptStatus, LeadInput, PauseScope, Store};
use fluidtalk_runner::store::{Lease, NewEvent};
use std::sync::Arc;

/// Monday 2026-11-23 10:00 UTC.
pub(crate) fn monday_10() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .single()
        .expect("valid")
}

pub(crate) struct World {
    _db: common::db::TestDb,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sim: Simulator,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) config: Arc<Config>,
    pub(crate) client: Client,
}

async fn world(sim: SimConfig, jobs_toml: &str) -> World {
    world_on(common::db::sqlite().await, sim, jobs_toml).await
}

pub(crate) async fn world_on(db: common::db::TestDb, sim: SimConfig, jobs_toml: &str) -> World {
    world_with(db, sim, 4, "", jobs_toml).await
}

/// A world whose runner makes `concurrency` calls at once, with `fluidtalk` added to the
/// `[fluidtalk]` table.
pub(crate) async fn world_with(
    db: common::db::TestDb,
    sim: SimConfig,
    concurrency: u32,
    fluidtalk: &str,
    jobs_toml: &str,
) -> World {
    let (url, sim) = spawn_sim(sim).await;
    let text = format!(
        "[fluidtalk]\nbase_url = \"{url}\"\ntimeout = \"2s\"\n{fluidtalk}\n[limits]\nconcurrency = {concurrency}\nper_second = 1000.0\n{jobs_toml}"
    );
    let config =
        Arc::new(config::parse(std::path::Path::new("jobs.toml"), &text).expect("config parses"));
    let mut cc = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
    cc.base_url = url;
    cc.timeout = config.fluidtalk.timeout;
    World {
        store: db.store.clone(),
        _db: db,
        sim,
        clock: Arc::new(ManualClock::new(monday_10())),
        config,
        client: Client::new(cc).expect("client"),
    }
}

impl World {
    pub(crate) fn runner(&self) -> Runner {
        Runner::new(
            self.store.clone(),
            self.client.clone(),
            self.config.clone(),
            self.clock.clone(),
            "runner-test".into(),
        )
    }

    pub(crate) async fn run(&self, job: &str) -> Result<Summary, RunError> {
        let job = self
            .config
            .jobs
            .iter()
            .find(|j| j.name == job)
            .expect("job exists");
        self.runner().run_job(job, None).await
    }

    pub(crate) async fn add(&self, leads: Vec<LeadInput>) {
        let mut s = self.store.begin_import(false).await.expect("import");
        s.upsert(leads, self.clock.now() - Duration::minutes(1))
            .await
            .expect("upsert");
        s.finish(true).await.expect("finish");
    }

    pub(crate) async fn state(&self, target: &str) -> LeadState {
        self.store
            .get_lead(target)
            .await
            .expect("get")
            .expect("exists")
            .state
    }

    /// Leads contacted so far.
    pub(crate) async fn contacted(&self) -> u64 {
        self.store
            .count_by_state()
            .await
            .expect("count")
            .get(&LeadState::Contacted)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn calls(&self, action: &str) -> Vec<(String, u16)> {
        self.sim
            .log()
            .into_iter()
            .filter(|e| e.action == action)
            .map(|e| (e.target, e.status))
            .collect()
    }
}

pub(crate) fn lead(t: &str) -> LeadInput {
    LeadInput {
        target: t.into(),
        ..Default::default()
    }
}

const OPENERS: &str = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\nbatch_size = 3\n";
const FOLLOW_UPS: &str = "[[job]]\nname = \"follow-ups\"\nkind = \"follow_up\"\nschedule = \"0 0 * * * *\"\nquiet_after = [\"24h\", \"3d\"]\n";

#[tokio::test(flavor = "multi_thread")]
async fn openers_are_sent_once_each_and_their_text_lands_in_the_outbox() {
    let w = world(SimConfig::default(), OPENERS).await;
    w.add((0..7).map(|i| lead(&format!("@l{i}"))).collect())
        .await;
    let s = w.run("openers").await.expect("run");
    assert_eq!((s.calls, s.sent), (7, 7));
    assert_eq!(w.calls("OUTREACH").len(), 7);
    for i in 0..7 {
        assert_eq!(w.state(&format!("@l{i}")).await, LeadState::Contacted);
    }
    assert_eq!(w.store.outbox(false).await.expect("outbox").len(), 7);
    // Nothing is due any more: a second run sends nothing.
    let again = w.run("openers").await.expect("run");
    assert_eq!(again.calls, 0);
    assert_eq!(w.calls("OUTREACH").len(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_continued_and_sealed_answers_end_where_the_policy_says() {
    let w = world(
        SimConfig {
            ignore: ["@owned".to_string()].into_iter().collect(),
            seal_after: Some(1),
            ..Default::default()
        },
        &format!("{OPENERS}{FOLLOW_UPS}"),
    )
    .await;
    // @talking already has a conversation with the engine: its opener comes back continued.
    w.client
        .inbound_chat(&fluidtalk_runner::fluidtalk::ChatRequest {
            target: "@talking".into(),
            message: "hi".into(),
            ..Default::default()
        })
        .await
        .expect("chat");
    w.add(vec![lead("@owned"), lead("@talking"), lead("@fresh")])
        .await;
    let s = w.run("openers").await.expect("run");
    assert_eq!((s.sent, s.continued, s.ignored), (1, 1, 1), "{s:?}");
    assert_eq!(w.state("@owned").await, LeadState::Ignored);
    assert_eq!(w.state("@talking").await, LeadState::Contacted);
    let outbox = w.store.outbox(false).await.expect("outbox");
    assert_eq!(outbox.len(), 1, "a continued opener has nothing to send");
    assert_eq!(outbox[0].target, "@fresh");

    // Follow-up 1 seals the simulator's conversations (seal_after 1); follow-up 2 gets 400.
    w.clock.advance(Duration::hours(25));
    let s = w.run("follow-ups").await.expect("run");
    assert_eq!(s.sent, 2, "{s:?}");
    w.clock.advance(Duration::days(4));
    let s = w.run("follow-ups").await.expect("run");
    assert_eq!(s.sealed, 2, "{s:?}");
    assert_eq!(w.state("@fresh").await, LeadState::Done);
    assert_eq!(w.state("@talking").await, LeadState::Done);
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_ups_wait_for_each_quiet_threshold_and_quiet_leads_end_exhausted() {
    let w = world(SimConfig::default(), &format!("{OPENERS}{FOLLOW_UPS}")).await;
    w.add(vec![lead("@q")]).await;
    w.run("openers").await.expect("opener");
    w.clock.advance(Duration::hours(23));
    assert_eq!(
        w.run("follow-ups").await.expect("run").calls,
        0,
        "not before 24h"
    );
    w.clock.advance(Duration::hours(2));
    assert_eq!(
        w.run("follow-ups").await.expect("run").sent,
        1,
        "follow-up 1 after 24h"
    );
    w.clock.advance(Duration::days(2));
    assert_eq!(
        w.run("follow-ups").await.expect("run").calls,
        0,
        "follow-up 2 waits 3d"
    );
    // A reply resets the quiet clock and the count.
    w.store
        .record_reply("@q", w.clock.now(), w.clock.now())
        .await
        .expect("reply");
    w.clock.advance(Duration::hours(25));
    let s = w.run("follow-ups").await.expect("run");
    assert_eq!(s.sent, 1, "after a reply, follow-up 1 again: {s:?}");
    let q = w.store.get_lead("@q").await.expect("get").expect("exists");
    assert_eq!(q.follow_ups_sent, 1);
    w.clock.advance(Duration::days(3) + Duration::hours(1));
    assert_eq!(
        w.run("follow-ups").await.expect("run").sent,
        1,
        "follow-up 2"
    );
    w.clock.advance(Duration::days(3) + Duration::hours(1));
    let s = w.run("follow-ups").await.expect("run");
    assert_eq!(
        (s.calls, s.exhausted),
        (0, 1),
        "quiet past the last step: {s:?}"
    );
    assert_eq!(w.state("@q").await, LeadState::Exhausted);
    let steps: Vec<i64> = w
        .store
        .attempts_for(q.id)
        .await
        .expect("attempts")
        .iter()
        .map(|a| a.step)
        .collect();
    // Steps count follow-ups over the lead's life (a reply restarts the quiet schedule, not
    // the step), so the never-send-twice index tells each follow-up apart.
    assert_eq!(steps, [3, 2, 1, 0], "newest first");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_without_a_conversation_sends_the_lead_back_to_the_opener_job() {
    let w = world(SimConfig::default(), &format!("{OPENERS}{FOLLOW_UPS}")).await;
    w.add(vec![LeadInput {
        state: Some(LeadState::Contacted),
        last_contact_at: Some(monday_10() - Duration::days(2)),
        ..lead("@moved")
    }])
    .await;
    let s = w.run("follow-ups").await.expect("run");
    assert_eq!(s.reopened, 1, "{s:?}");
    assert_eq!(w.state("@moved").await, LeadState::New);
    let s = w.run("openers").await.expect("run");
    assert_eq!(s.sent, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_402_mid_batch_stops_new_conversations_with_at_most_the_calls_in_flight_extra() {
    let w = world(
        SimConfig { tokens: Some(5), latency: std::time::Duration::from_millis(20), ..Default::default() },
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\nbatch_size = 20\n",
    )
    .await;
    w.add((0..40).map(|i| lead(&format!("@t{i:02}"))).collect())
        .await;
    let s = w.run("openers").await.expect("run");
    let calls = w.calls("OUTREACH");
    let refused = calls.iter().filter(|(_, st)| *st == 402).count();
    assert_eq!(s.sent, 5);
    assert!(
        (1..=4).contains(&refused),
        "at most the 4 calls in flight get a 402: {refused}"
    );
    assert_eq!(calls.len(), 5 + refused, "no call after the 402 was seen");
    assert_eq!(s.paused as usize, refused);
    // The leads not called stay new and due, not charged an attempt.
    let new = w.store.count_by_state().await.expect("counts")[&LeadState::New];
    assert_eq!(new, 35);
    // The pause is stored: the next run, and any other runner, starts no conversation.
    let pauses = w.store.pauses().await.expect("pauses");
    let p = pauses
        .iter()
        .find(|p| p.scope == PauseScope::NewConversations)
        .expect("paused");
    assert_eq!(p.until, w.clock.now() + Duration::minutes(15));
    assert_eq!(w.run("openers").await.expect("run").calls, 0);
    assert_eq!(w.calls("OUTREACH").len(), calls.len());
    // A second 402 after the pause doubles it.
    w.clock.advance(Duration::minutes(16));
    w.run("openers").await.expect("run");
    let p = w
        .store
        .pauses()
        .await
        .expect("pauses")
        .into_iter()
        .find(|p| p.scope == PauseScope::NewConversations)
        .expect("paused");
    assert_eq!(
        (p.strikes, p.until),
        (2, w.clock.now() + Duration::minutes(30))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_stops_every_call_and_pauses_for_an_hour() {
    let w = world(
        SimConfig {
            api_key: Some(ApiKey::new("ft_sk_other").expect("key")),
            ..Default::default()
        },
        OPENERS,
    )
    .await;
    w.add((0..6).map(|i| lead(&format!("@k{i}"))).collect())
        .await;
    let err = w.run("openers").await.expect_err("unauthorized");
    assert!(matches!(err, RunError::Unauthorized { .. }), "{err}");
    assert!(
        w.calls("OUTREACH").len() <= 3,
        "at most one batch's calls in flight"
    );
    let p = w
        .store
        .pauses()
        .await
        .expect("pauses")
        .into_iter()
        .find(|p| p.scope == PauseScope::All)
        .expect("paused");
    assert_eq!(p.until, w.clock.now() + Duration::hours(1));
    assert_eq!(
        w.store.count_by_state().await.expect("counts")[&LeadState::New],
        6,
        "nobody charged"
    );
    let before = w.calls("OUTREACH").len();
    assert!(matches!(
        w.run("openers").await,
        Err(RunError::Unauthorized { .. })
    ));
    assert_eq!(
        w.calls("OUTREACH").len(),
        before,
        "no probe within the hour"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_retry_with_back_off_and_fail_after_max_attempts() {
    let w = world(
        SimConfig {
            fail_rate: 1.0,
            ..Default::default()
        },
        &format!(
            "[backoff]\nmax_attempts = 3\nretry_base = \"30s\"\nretry_max = \"10m\"\n{OPENERS}"
        ),
    )
    .await;
    w.add(vec![lead("@flaky")]).await;
    let s = w.run("openers").await.expect("run");
    assert_eq!(s.retried, 1);
    let l = w
        .store
        .get_lead("@flaky")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((l.state, l.transient_failures), (LeadState::New, 1));
    assert!(l.next_eligible_at >= w.clock.now() + Duration::seconds(30));
    assert_eq!(
        w.run("openers").await.expect("run").calls,
        0,
        "not before the back-off"
    );
    w.clock.advance(Duration::minutes(2));
    assert_eq!(w.run("openers").await.expect("run").retried, 1);
    w.clock.advance(Duration::minutes(5));
    let s = w.run("openers").await.expect("run");
    assert_eq!(
        s.failed, 1,
        "the third transient failure fails the lead: {s:?}"
    );
    assert_eq!(w.state("@flaky").await, LeadState::Failed);
    let failures = w.sim.log().iter().filter(|e| e.status == 500).count();
    assert_eq!(failures, 3, "three calls, no retry storm");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_is_an_unknown_outcome_and_the_lead_waits_for_review() {
    let w = world(
        SimConfig {
            latency: std::time::Duration::from_secs(4),
            ..Default::default()
        },
        OPENERS,
    )
    .await;
    w.add(vec![lead("@slow")]).await;
    let s = w.run("openers").await.expect("run");
    assert_eq!(s.review, 1, "{s:?}");
    assert_eq!(w.state("@slow").await, LeadState::NeedsReview);
    let l = w
        .store
        .get_lead("@slow")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        w.store.attempts_for(l.id).await.expect("attempts")[0].status,
        AttemptStatus::Unknown
    );
    assert_eq!(
        w.run("openers").await.expect("run").calls,
        0,
        "never re-sent on its own"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_cap_counts_per_day_in_the_jobs_zone() {
    let w = world(
        SimConfig::default(),
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\ntimezone = \"Asia/Tokyo\"\ndaily_cap = 3\nbatch_size = 2\n",
    )
    .await;
    w.add((0..10).map(|i| lead(&format!("@c{i}"))).collect())
        .await;
    assert_eq!(w.run("openers").await.expect("run").sent, 3);
    assert_eq!(
        w.run("openers").await.expect("run").calls,
        0,
        "the cap holds for the day"
    );
    // Monday 10:00 UTC is 19:00 in Tokyo; five hours later it is Tuesday there.
    w.clock.advance(Duration::hours(5));
    assert_eq!(w.run("openers").await.expect("run").sent, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_send_window_is_read_in_each_leads_own_zone() {
    let w = world(
        SimConfig::default(),
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 * * * * *\"\ntimezone = \"Europe/Berlin\"\nsend_window = { days = \"mon-fri\", from = \"09:00\", to = \"18:00\" }\n",
    )
    .await;
    // Monday 10:00 UTC: 11:00 Berlin (in), 05:00 New York (out), 19:00 Tokyo (out).
    w.add(vec![
        lead("@berlin_default"),
        LeadInput {
            timezone: Some("America/New_York".into()),
            ..lead("@ny")
        },
        LeadInput {
            timezone: Some("Asia/Tokyo".into()),
            ..lead("@tokyo")
        },
    ])
    .await;
    let s = w.run("openers").await.expect("run");
    assert_eq!((s.sent, s.outside_window), (1, 2), "{s:?}");
    assert_eq!(
        w.calls("OUTREACH"),
        vec![("@berlin_default".to_string(), 200)]
    );
    w.clock.advance(Duration::hours(5)); // 10:00 in New York
    let s = w.run("openers").await.expect("run");
    assert_eq!(s.sent, 1);
    assert_eq!(w.state("@ny").await, LeadState::Contacted);
    assert_eq!(w.state("@tokyo").await, LeadState::New);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_sent_oldest_first_with_their_context() {
    let w = world(SimConfig::default(), "[[job]]\nname = \"reactions\"\nkind = \"event\"\nevent_type = \"story_reaction\"\nschedule = \"*/30 * * * * *\"\n").await;
    let now = w.clock.now();
    w.store
        .queue_event(&NewEvent {
            target: "@fan",
            event_type: "story_reaction",
            context: Some(r#"{"reaction":"🔥"}"#),
            now,
        })
        .await
        .expect("queue");
    w.store
        .queue_event(&NewEvent {
            target: "@fan",
            event_type: "story_reaction",
            context: None,
            now,
        })
        .await
        .expect("queue");
    w.store
        .queue_event(&NewEvent {
            target: "@other",
            event_type: "follow",
            context: None,
            now,
        })
        .await
        .expect("queue");
    let s = w.run("reactions").await.expect("run");
    assert_eq!(
        (s.sent, s.continued),
        (1, 1),
        "the first opens, the second continues: {s:?}"
    );
    let fan = w
        .store
        .get_lead("@fan")
        .await
        .expect("get")
        .expect("exists");
    let steps: Vec<i64> = w
        .store
        .attempts_for(fan.id)
        .await
        .expect("attempts")
        .iter()
        .rev()
        .map(|a| a.step)
        .collect();
    assert_eq!(steps.len(), 2);
    assert!(steps[0] < steps[1], "oldest event first: {steps:?}");
    assert_eq!(
        w.run("reactions").await.expect("run").calls,
        0,
        "each event once"
    );
    assert_eq!(w.calls("ENTRY_POINT").len(), 2);
    assert!(
        w.store
            .queued_events(Some("story_reaction"))
            .await
            .expect("queued")
            .is_empty()
    );
    assert_eq!(
        w.store
            .queued_events(Some("follow"))
            .await
            .expect("queued")
            .len(),
        1,
        "other types wait for their job"
    );
    assert_eq!(w.state("@fan").await, LeadState::Contacted);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_left_in_flight_by_a_dead_runner_is_never_resent_on_its_own() {
    let w = world(SimConfig::default(), OPENERS).await;
    w.add(vec![lead("@orphan")]).await;
    // A runner claimed the lead and recorded its attempt, then died mid-call.
    let l = w
        .store
        .get_lead("@orphan")
        .await
        .expect("get")
        .expect("exists");
    let now = w.clock.now();
    w.store
        .claim_leads(
            &[l.id],
            Lease {
                lease_token: "dead-runner",
                now,
                until: now + Duration::minutes(5),
            },
        )
        .await
        .expect("claim");
    w.store
        .start_attempts(&[fluidtalk_runner::store::NewAttempt {
            lead_id: l.id,
            job: "openers".into(),
            action: fluidtalk_runner::store::Action::Opener,
            step: 0,
            lease_token: "dead-runner".into(),
            claimed: None,
            started_at: now,
            sender: None,
        }])
        .await
        .expect("start");
    // While the lease holds, nobody touches it.
    assert_eq!(w.run("openers").await.expect("run").calls, 0);
    w.clock.advance(Duration::minutes(6));
    let s = w.run("openers").await.expect("run");
    assert_eq!((s.recovered, s.calls), (1, 0), "{s:?}");
    assert_eq!(w.state("@orphan").await, LeadState::NeedsReview);
    assert!(w.calls("OUTREACH").is_empty(), "not re-sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lead_sent_back_to_new_gets_a_fresh_opener_step_and_blocks_no_one() {
    let w = world(SimConfig::default(), &format!("{OPENERS}{FOLLOW_UPS}")).await;
    // @back was opened long ago (its opener attempt is on record), but the engine has no
    // conversation any more: its follow-up will answer 404.
    w.add(vec![
        LeadInput {
            state: Some(LeadState::Contacted),
            last_contact_at: Some(monday_10() - Duration::days(2)),
            ..lead("@back")
        },
        lead("@n1"),
        lead("@n2"),
    ])
    .await;
    let back = w
        .store
        .get_lead("@back")
        .await
        .expect("get")
        .expect("exists");
    let old = w
        .store
        .start_attempts(&[fluidtalk_runner::store::NewAttempt {
            lead_id: back.id,
            job: "openers".into(),
            action: fluidtalk_runner::store::Action::Opener,
            step: 0,
            lease_token: "long-ago".into(),
            claimed: None,
            started_at: monday_10() - Duration::days(2),
            sender: None,
        }])
        .await
        .expect("start");
    w.store
        .finish_attempts(&[fluidtalk_runner::store::AttemptEnd {
            attempt_id: old[0],
            status: AttemptStatus::Sent,
            http_status: Some(200),
            error_kind: None,
            error_detail: None,
            session_id: None,
            finished_at: monday_10() - Duration::days(2),
            message: None,
            release: None,
        }])
        .await
        .expect("finish");
    assert_eq!(w.run("follow-ups").await.expect("run").reopened, 1);
    let s = w.run("openers").await.expect("run");
    assert_eq!(
        s.sent, 3,
        "@back gets its second opener, and @n1, @n2 are not held up: {s:?}"
    );
    let steps: Vec<i64> = w
        .store
        .attempts_for(back.id)
        .await
        .expect("attempts")
        .iter()
        .filter(|a| a.action == fluidtalk_runner::store::Action::Opener)
        .map(|a| a.step)
        .collect();
    assert_eq!(steps, [1, 0], "the new opener is step 1");
}

/// A runner pointed at a wiremock server instead of the simulator, for answers the
/// simulator does not give (429) and to see exactly what was sent.
async fn against(
    server: &wiremock::MockServer,
    jobs: &str,
) -> (common::db::TestDb, Runner, Arc<Config>, Arc<ManualClock>) {
    against_with(server, "", jobs).await
}

/// `against`, with more `[fluidtalk]` settings.
async fn against_with(
    server: &wiremock::MockServer,
    fluidtalk: &str,
    jobs: &str,
) -> (common::db::TestDb, Runner, Arc<Config>, Arc<ManualClock>) {
    let db = common::db::sqlite().await;
    let text = format!(
        "[fluidtalk]\nbase_url = \"{}\"\n{fluidtalk}\n[limits]\nconcurrency = 2\nper_second = 1000.0\n{jobs}",
        server.uri()
    );
    let config = Arc::new(config::parse(std::path::Path::new("jobs.toml"), &text).expect("config"));
    let mut cc = ClientConfig::new(ApiKey::new(TEST_KEY).expect("key"));
    cc.base_url = server.uri();
    let clock = Arc::new(ManualClock::new(monday_10()));
    let d = Runner::new(
        db.store.clone(),
        Client::new(cc).expect("client"),
        config.clone(),
        clock.clone(),
        "r".into(),
    );
    (db, d, config, clock)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leads_profile_image_goes_with_its_opener_by_url_or_as_the_file_part() {
    let server = common::recorder(
        wiremock::ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"session_id": "s", "message": "hi"})),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let face = dir.path().join("face.jpg");
    std::fs::write(&face, b"jpeg!").expect("write");
    let images = format!("image_dir = \"{}\"", dir.path().display());
    let (db, d, config, _clock) = against_with(&server, &images, OPENERS).await;
    let mut s = db.store.begin_import(false).await.expect("import");
    s.upsert(
        vec![
            LeadInput {
                profile_image: Some("https://cdn.example/u.jpg".into()),
                ..lead("@by_url")
            },
            LeadInput {
                profile_image: Some("face.jpg".into()),
                ..lead("@by_file")
            },
        ],
        monday_10() - Duration::minutes(1),
    )
    .await
    .expect("upsert");
    s.finish(true).await.expect("finish");
    assert_eq!(d.run_job(&config.jobs[0], None).await.expect("run").sent, 2);
    let seen = common::seen(&server).await;
    let by_url = seen
        .iter()
        .find(|r| r.field("target").as_deref() == Some("@by_url"))
        .expect("called");
    assert_eq!(
        by_url.field("image_url").as_deref(),
        Some("https://cdn.example/u.jpg")
    );
    assert_eq!(by_url.content_type, "application/x-www-form-urlencoded");
    let by_file = seen
        .iter()
        .find(|r| r.field("target").as_deref() == Some("@by_file"))
        .expect("called");
    assert_eq!(by_file.content_type, "multipart/form-data");
    assert_eq!(by_file.files()[0].filename.as_deref(), Some("face.jpg"));
    assert_eq!(by_file.files()[0].data, b"jpeg!");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_holds_the_job_for_retry_after_and_charges_no_lead() {
    let server = common::recorder(
        wiremock::ResponseTemplate::new(429)
            .set_body_json(serde_json::json!({"detail": "slow down"}))
            .insert_header("Retry-After", "1"),
    )
    .await;
    let (db, d, config, clock) = against(&server, OPENERS).await;
    let mut s = db.store.begin_import(false).await.expect("import");
    s.upsert(
        (0..3).map(|i| lead(&format!("@r{i}"))).collect(),
        monday_10() - Duration::minutes(1),
    )
    .await
    .expect("upsert");
    s.finish(true).await.expect("finish");
    let started = clock.now();
    let summary = d.run_job(&config.jobs[0], None).await.expect("run");
    assert!(summary.rate_limited >= 1, "{summary:?}");
    assert!(
        clock.now() - started >= Duration::seconds(1),
        "the job waited Retry-After on the injected clock"
    );
    let counts = db.store.count_by_state().await.expect("counts");
    assert_eq!(counts[&LeadState::New], 3, "nobody charged or failed");
    let l = db
        .store
        .get_lead("@r0")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(l.transient_failures, 0);
    assert!(l.lease_owner.is_none(), "released");
}

/// Group commit (PostgreSQL) hands the slots a run's answers free straight to its next
/// calls, but never while anything else waits for a slot: a call made outside the job (the
/// HTTP relay's) gets one while the run goes on, not when it ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_outside_the_job_gets_a_slot_while_a_long_run_goes_on() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    let w = world_on(
        db,
        SimConfig {
            latency: std::time::Duration::from_millis(10),
            ..SimConfig::default()
        },
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\nbatch_size = 500\n",
    )
    .await;
    w.add((0..400).map(|i| lead(&format!("@l{i:03}"))).collect())
        .await;
    let runner = w.runner();
    let job = w.config.jobs[0].clone();
    let run = {
        let runner = runner.clone();
        tokio::spawn(async move { runner.run_job(&job, None).await })
    };
    // The run is under way: answers written, their slots taken again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while w.contacted().await < 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let slot = tokio::time::timeout(std::time::Duration::from_secs(30), runner.call_slot())
        .await
        .expect("a slot within 30 s")
        .expect("the slots are open");
    let sent_by_then = w.contacted().await;
    drop(slot);
    let s = run.await.expect("joined").expect("the run");
    assert_eq!(s.sent, 400);
    assert!(
        sent_by_then < 300,
        "the slot came only as the run ended ({sent_by_then} of 400 sent by then)"
    );
}
