//! Webhook delivery end to end: a receiver on a real port that checks signatures, the
//! store on SQLite and PostgreSQL, time moved by hand. Nothing is lost while the receiver
//! is down, failures are tried again after their back-off, a slow receiver times out,
//! messages of one target arrive in order, `max_age` parks a message until it is
//! redelivered, and two daemons on one database deliver each message once at a time.

use crate::common;

use chrono::Duration as Span;
use common::db::TestDb;
use common::webhook::{Answer, Receiver, t0, write_messages};
use fluidtalk_runner::clock::{Clock, ManualClock};
use fluidtalk_runner::config::Delivery;
use fluidtalk_runner::delivery::{Deliverer, PassReport, Signer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn settings(url: &str) -> Delivery {
    Delivery {
        webhook_url: url.parse().expect("a webhook URL"),
        secret_env: "FLUIDTALK_WEBHOOK_SECRET".into(),
        timeout: Duration::from_secs(2),
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(600),
        max_age: Duration::from_secs(24 * 3600),
        concurrency: 8.try_into().expect("not zero"),
    }
}

fn deliverer(
    db: &TestDb,
    clock: &Arc<ManualClock>,
    settings: &Delivery,
    id: &str,
) -> Arc<Deliverer> {
    let signer = Signer::new(common::webhook::SECRET.to_string().into());
    Arc::new(
        Deliverer::new(settings, signer, db.store.clone(), clock.clone(), id)
            .expect("deliverer")
            .with_default_sender(Some("@persona".into()))
            .with_idle_wait(Duration::from_millis(20)),
    )
}

/// Passes until one claims nothing; their reports added up.
async fn drain(d: &Arc<Deliverer>) -> PassReport {
    let mut total = PassReport::default();
    for _ in 0..100 {
        let r = d.pass().await.expect("pass");
        if r.claimed == 0 {
            return total;
        }
        total.claimed += r.claimed;
        total.delivered += r.delivered;
        total.failed += r.failed;
        total.parked += r.parked;
        total.lost += r.lost;
    }
    panic!("delivery never ran out of messages: {total:?}");
}

/// The accepted ids of each target, in the order the receiver accepted them.
fn per_target(r: &Receiver) -> BTreeMap<String, Vec<i64>> {
    let mut by: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for g in r.got().into_iter().filter(|g| g.status == 200) {
        by.entry(g.target).or_default().push(g.id);
    }
    by
}

async fn every_message_arrives_signed_once_and_in_order_per_target(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t0()));
    let receiver = Receiver::start(clock.clone(), Answer::Ok).await;
    let m = write_messages(
        &db,
        &[
            ("@a", "hi a"),
            ("@b", "hi b"),
            ("@a", "still there?"),
            ("@a", "last one"),
        ],
    )
    .await;
    let d = deliverer(&db, &clock, &settings(&receiver.url), "host-1");
    let report = drain(&d).await;
    assert_eq!((report.delivered, report.failed), (4, 0), "{report:?}");
    assert!(
        receiver.refused().is_empty(),
        "bad signatures: {:?}",
        receiver.refused()
    );
    assert_eq!(per_target(&receiver)["@a"], vec![m[0], m[2], m[3]]);
    let got = receiver.got();
    let first = got
        .iter()
        .find(|g| g.id == m[0])
        .expect("the first message arrived");
    assert_eq!(first.idempotency_key, format!("outbox-{}", m[0]));
    let body = &first.body;
    assert_eq!(body["target"], "@a");
    assert_eq!(body["text"], "hi a");
    assert_eq!(body["action"], "opener");
    assert_eq!(body["own_username"], "@persona", "the campaign's sender");
    assert_eq!(body["session_id"], "sess-@a");
    assert_eq!(body["created_at"], "2026-11-24T09:00:00Z");
    let keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "target",
            "own_username",
            "action",
            "text",
            "session_id",
            "created_at"
        ]
    );
    assert!(db.store.outbox(false).await.expect("outbox").is_empty());
}

async fn a_receiver_down_for_a_while_loses_nothing_and_gets_each_message_once(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t0()));
    let receiver = Receiver::down(clock.clone(), Answer::Ok).await;
    let m = write_messages(&db, &[("@a", "one"), ("@b", "two"), ("@a", "three")]).await;
    let d = deliverer(&db, &clock, &settings(&receiver.url), "host-1");
    for _ in 0..3 {
        let r = drain(&d).await;
        assert_eq!(r.delivered, 0);
        clock.advance(Span::minutes(11));
    }
    let stuck = db.store.outbox(false).await.expect("outbox");
    assert_eq!(stuck.len(), 3, "nothing lost");
    receiver.up().await;
    // @a's second message goes out only after its first: one drain takes both.
    let r = drain(&d).await;
    assert_eq!(r.delivered, 3, "{r:?}");
    let mut accepted = receiver.accepted();
    assert_eq!(per_target(&receiver)["@a"], vec![m[0], m[2]]);
    accepted.sort_unstable();
    assert_eq!(accepted, m, "each message once");
}

async fn a_500_is_tried_again_after_its_back_off_with_the_same_idempotency_key(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t0()));
    let receiver = Receiver::start(clock.clone(), Answer::Status(500)).await;
    let m = write_messages(&db, &[("@a", "one"), ("@a", "two")]).await;
    let d = deliverer(&db, &clock, &settings(&receiver.url), "host-1");
    let r = drain(&d).await;
    assert_eq!((r.failed, r.delivered), (1, 0));
    // Not before its back-off (1 s, jitter within its upper half).
    clock.advance(Span::milliseconds(400));
    assert_eq!(d.pass().await.expect("pass").claimed, 0);
    receiver.answer(Answer::Ok);
    clock.advance(Span::seconds(1));
    drain(&d).await;
    let got: Vec<(i64, u16, String)> = receiver
        .got()
        .into_iter()
        .map(|g| (g.id, g.status, g.idempotency_key))
        .collect();
    let key = |id| format!("outbox-{id}");
    assert_eq!(
        got,
        vec![
            (m[0], 500, key(m[0])),
            (m[0], 200, key(m[0])),
            (m[1], 200, key(m[1]))
        ]
    );
}

async fn a_slow_receiver_times_out_and_the_message_is_tried_again(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t0()));
    let receiver = Receiver::start(clock.clone(), Answer::Slow(Duration::from_secs(3))).await;
    let m = write_messages(&db, &[("@a", "one")]).await;
    let mut s = settings(&receiver.url);
    s.timeout = Duration::from_secs(1);
    let d = deliverer(&db, &clock, &s, "host-1");
    let r = d.pass().await.expect("pass");
    assert_eq!(r.failed, 1, "{r:?}");
    receiver.answer(Answer::Ok);
    clock.advance(Span::seconds(2));
    let r = drain(&d).await;
    assert_eq!(r.delivered, 1, "{r:?}");
    assert_eq!(receiver.accepted(), vec![m[0]]);
    assert!(db.store.outbox(false).await.expect("outbox").is_empty());
}

async fn past_max_age_a_message_is_parked_and_holds_its_target_until_redelivered(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t0()));
    let receiver = Receiver::start(clock.clone(), Answer::Status(503)).await;
    let m = write_messages(&db, &[("@a", "one"), ("@a", "two"), ("@b", "three")]).await;
    let mut s = settings(&receiver.url);
    s.retry_max = Duration::from_secs(60);
    s.max_age = Duration::from_secs(3600);
    let d = deliverer(&db, &clock, &s, "host-1");
    let mut parked = 0;
    for _ in 0..200 {
        parked += drain(&d).await.parked;
        clock.advance(Span::seconds(61));
        if parked == 2 {
            break;
        }
    }
    assert_eq!(parked, 2, "@a's first and @b's message");
    assert!(clock.now() - t0() >= Span::hours(1) && clock.now() - t0() < Span::minutes(63));
    let listed: Vec<i64> = db
        .store
        .parked()
        .await
        .expect("parked")
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, vec![m[0], m[2]]);
    let last = &db.store.parked().await.expect("parked")[0];
    assert_eq!(
        last.last_error.as_deref(),
        Some("the webhook answered HTTP 503")
    );
    assert!(
        receiver.got().iter().all(|g| g.id != m[1]),
        "@a's second waits behind the first"
    );
    receiver.answer(Answer::Ok);
    assert_eq!(drain(&d).await.claimed, 0, "parked messages are not tried");
    db.store
        .redeliver(&[m[0]], clock.now())
        .await
        .expect("redeliver");
    drain(&d).await;
    assert_eq!(per_target(&receiver)["@a"], vec![m[0], m[1]]);
    assert!(!per_target(&receiver).contains_key("@b"), "still parked");
}

/// A stop while a POST is under way: the loop ends only once that try is answered and
/// recorded, and starts no other.
async fn a_stop_lets_the_delivery_in_flight_finish_and_be_recorded(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t0()));
    let receiver = Receiver::start(clock.clone(), Answer::Slow(Duration::from_millis(500))).await;
    let m = write_messages(&db, &[("@a", "one"), ("@a", "two")]).await;
    let stop = CancellationToken::new();
    let running =
        tokio::spawn(deliverer(&db, &clock, &settings(&receiver.url), "host-1").run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !receiver.busy() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no POST got under way"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the loop stops")
        .expect("the loop ends well");
    assert_eq!(
        receiver.accepted(),
        vec![m[0]],
        "the try under way finished; no other began"
    );
    let pending: Vec<i64> = db
        .store
        .outbox(false)
        .await
        .expect("outbox")
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(pending, vec![m[1]], "the first is recorded as delivered");
}

/// Two daemons' delivery loops on one database, a receiver slow enough that their tries
/// overlap: each message accepted exactly once, in order per target, and never two tries
/// of one message at the same time.
async fn two_daemons_deliver_each_message_once_in_order_per_target(db: TestDb) {
    let clock = Arc::new(ManualClock::new(t0()));
    let receiver = Receiver::start(clock.clone(), Answer::Slow(Duration::from_millis(15))).await;
    let mut messages = Vec::new();
    let targets: Vec<String> = (0..12).map(|i| format!("@t{i:02}")).collect();
    for round in ["opener", "follow-up 1", "follow-up 2"] {
        for t in &targets {
            messages.push((t.as_str(), round));
        }
    }
    let all = write_messages(&db, &messages).await;
    let mut s = settings(&receiver.url);
    s.concurrency = 4.try_into().expect("not zero");
    let stop = CancellationToken::new();
    let loops: Vec<_> = ["host-1", "host-2"]
        .iter()
        .map(|id| tokio::spawn(deliverer(&db, &clock, &s, id).run(stop.clone())))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !db.store.outbox(false).await.expect("outbox").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    for l in loops {
        tokio::time::timeout(Duration::from_secs(10), l)
            .await
            .expect("the loop stops")
            .expect("the loop ends well");
    }
    let mut accepted = receiver.accepted();
    accepted.sort_unstable();
    assert_eq!(accepted, all, "each message exactly once");
    assert!(
        receiver.overlaps().is_empty(),
        "tried twice at once: {:?}",
        receiver.overlaps()
    );
    for (target, ids) in per_target(&receiver) {
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted, "{target} out of order");
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(super::common::db::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    if let Some(db) = super::common::db::postgres().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

on_both!(
    every_message_arrives_signed_once_and_in_order_per_target,
    a_receiver_down_for_a_while_loses_nothing_and_gets_each_message_once,
    a_500_is_tried_again_after_its_back_off_with_the_same_idempotency_key,
    a_slow_receiver_times_out_and_the_message_is_tried_again,
    past_max_age_a_message_is_parked_and_holds_its_target_until_redelivered,
    two_daemons_deliver_each_message_once_in_order_per_target,
    a_stop_lets_the_delivery_in_flight_finish_and_be_recorded,
);
