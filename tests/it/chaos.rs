//! Chaos: several runner processes on one database (SQLite and PostgreSQL), one killed with
//! SIGKILL and the others stopped with SIGTERM at seeded random moments, round after round,
//! then recovered past their leases.
//! An invariant checker then reads the simulator's request log and the database:
//!
//! - no step twice: the API acted (answered 2xx) at most once per lead;
//! - a lead the API acted on is never `new` again;
//! - a `contacted` lead had its call answered;
//! - `needs_review` holds at most `concurrency` leads per kill;
//! - nothing is left in flight or leased, and every lead ends in a known state.
//!
//! CI runs a few kills per backend; `CHAOS_KILLS=40 cargo test --test it chaos::` runs more,
//! and `CHAOS_SEED=N` repeats a run.

use crate::common;

use common::campaign::{Campaign, finish, signal, text};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::common::HEAVY as SERIAL;

const CONCURRENCY: usize = 4;
const RUNNERS: usize = 3;
/// Leads per kill: enough that every kill finds work under way.
const LEADS_PER_KILL: usize = 400;

/// A small seeded generator (xorshift64*): the same seed, the same kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn chaos(c: Campaign, what: &str) {
    let kills_wanted: usize = setting("CHAOS_KILLS", 4);
    let seed: u64 = setting("CHAOS_SEED", 0x5eed_0009);
    let mut rng = Rng(seed | 1);
    let leads = LEADS_PER_KILL * (kills_wanted + 1);
    c.import((0..leads).map(|i| format!("@c{i:05}"))).await;
    let mut kills = 0;
    let mut rounds = 0;
    while kills < kills_wanted {
        rounds += 1;
        assert!(
            rounds < kills_wanted * 3 + 3,
            "{what}: the kills found no work under way"
        );
        let before = c.sim_log().await.len();
        let mut runners: Vec<tokio::process::Child> = (0..RUNNERS)
            .map(|_| {
                c.command(&["run", "--json"])
                    .spawn()
                    .expect("start a runner")
            })
            .collect();
        // Once calls are going, a random moment: while claiming, recording in flight,
        // calling or writing.
        c.wait_for_calls(before + 1).await;
        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        // One runner dies; the others are stopped cleanly (SIGTERM), so work is left
        // for the next round's kill.
        let victim = rng.below(RUNNERS as u64) as usize;
        if runners[victim].try_wait().expect("poll").is_none() {
            runners[victim].kill().await.expect("SIGKILL");
            kills += 1;
        }
        for (i, r) in runners.iter().enumerate() {
            if i != victim && r.id().is_some() {
                signal(r, libc::SIGTERM);
            }
        }
        for (i, r) in runners.into_iter().enumerate() {
            let out = finish(r, Duration::from_secs(120)).await;
            if i != victim {
                use std::os::unix::process::ExitStatusExt;
                // 7: stopped before the end, every answer recorded; 0: it had finished;
                // SIGTERM: it was still starting (no signal handler yet, nothing claimed).
                assert!(
                    matches!(out.status.code(), Some(0 | 7))
                        || out.status.signal() == Some(libc::SIGTERM),
                    "{what} (seed {seed}): a runner failed ({}): {}",
                    out.status,
                    text(&out.stderr)
                );
            }
        }
    }
    // Past every lease (and every back-off): recovery, then whatever is still due.
    eprintln!(
        "{what}: after {kills} kills in {rounds} rounds: {:?}",
        c.states().await
    );
    for hours in [3, 6, 9, 12] {
        let offset = format!("{hours}h");
        let started = std::time::Instant::now();
        // What the rounds left (most of the leads, when kills come early) is one run's work.
        c.ok_within(
            &["run"],
            &[("FLUIDTALK_CLOCK_OFFSET", offset.as_str())],
            Duration::from_secs(900),
        )
        .await;
        eprintln!(
            "{what}: the run {offset} later took {:?}",
            started.elapsed()
        );
    }
    check_invariants(
        &c,
        leads,
        kills,
        &format!("{what} (seed {seed}, {kills} kills)"),
    )
    .await;
}

async fn check_invariants(c: &Campaign, count: usize, kills: usize, what: &str) {
    let log = c.sim_log().await;
    let leads = c.leads().await;
    assert_eq!(leads.len(), count, "{what}: no lead lost or added");
    let mut acted: HashMap<&str, usize> = HashMap::new();
    let mut answered: HashMap<&str, usize> = HashMap::new();
    for e in &log {
        if (200..300).contains(&e.status) {
            *acted.entry(e.target.as_str()).or_default() += 1;
            if !e.dropped {
                *answered.entry(e.target.as_str()).or_default() += 1;
            }
        }
    }
    let twice: Vec<_> = acted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{what}: a step was sent twice: {twice:?}");
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for (target, lead) in &leads {
        *states.entry(lead.state.as_str()).or_default() += 1;
        let seen = acted.contains_key(target.as_str());
        assert!(
            !(seen && lead.state == "new"),
            "{what}: {target} reached the API but is new again: {:?}",
            lead.attempts
        );
        if lead.state == "contacted" {
            assert!(
                answered.contains_key(target.as_str()),
                "{what}: {target} is contacted without an answered call"
            );
        }
        assert!(
            matches!(lead.state.as_str(), "contacted" | "needs_review" | "failed"),
            "{what}: {target} ended {}: {:?}",
            lead.state,
            lead.attempts
        );
        assert!(
            lead.attempts.iter().all(|a| a.2 != "in_flight"),
            "{what}: {target} left in flight"
        );
    }
    let review = states.get("needs_review").copied().unwrap_or(0);
    assert!(
        review <= CONCURRENCY * kills,
        "{what}: {review} leads to review for {kills} kills of {CONCURRENCY} calls in flight: {states:?}"
    );
    assert_eq!(
        c.count("SELECT COUNT(*) FROM leads WHERE lease_owner IS NOT NULL")
            .await,
        0,
        "{what}: a lease was left behind"
    );
    eprintln!("{what}: {states:?}, {} requests", log.len());
}

async fn campaign(db: common::db::TestDb) -> Campaign {
    Campaign::new(
        db,
        &["--latency", "2ms", "--latency-max", "30ms", "--fail-rate", "0.03", "--seed", "9"],
        "timeout = \"5s\"",
        &format!(
            "[limits]\nconcurrency = {CONCURRENCY}\nper_second = 5000\n\
             [backoff]\nretry_base = \"100ms\"\nretry_max = \"1s\"\nmax_attempts = 3\n\
             [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 * * * *\"\nbatch_size = 25\n"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn runners_killed_at_random_moments_on_sqlite_never_send_a_step_twice() {
    let _one = SERIAL.lock().await;
    chaos(campaign(common::db::sqlite().await).await, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runners_killed_at_random_moments_on_postgresql_never_send_a_step_twice() {
    let _one = SERIAL.lock().await;
    let Some(db) = common::db::postgres().await else {
        return;
    };
    chaos(campaign(db).await, "postgres").await;
}
