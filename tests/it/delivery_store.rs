//! The outbox's delivery statements (`DeliveryStore`), on SQLite and PostgreSQL alike:
//! claims like leads', one message per target in id order, results only under the lease,
//! parking and redelivery, blocked leads' text held.

use crate::common;

use chrono::Duration;
use common::db::TestDb;
use common::webhook::{t0, write_messages};
use fluidtalk_runner::store::{Held, Lease, OutboxCounts, UserAction};

/// A five-minute delivery lease for `lease_token` from `now`.
fn lease(lease_token: &str, now: chrono::DateTime<chrono::Utc>) -> Lease<'_> {
    Lease {
        lease_token,
        now,
        until: now + Duration::minutes(5),
    }
}

/// Message `id` as held under `lease_token`.
fn held(id: i64, lease_token: &str) -> Held<'_> {
    Held { id, lease_token }
}

fn ids(items: &[fluidtalk_runner::store::DeliveryItem]) -> Vec<i64> {
    items.iter().map(|i| i.id).collect()
}

async fn claim(db: &TestDb, token: &str, at: chrono::DateTime<chrono::Utc>) -> Vec<i64> {
    let items = db
        .store
        .claim_deliveries(10, lease(token, at))
        .await
        .expect("claim");
    ids(&items)
}

async fn a_claim_takes_the_first_message_of_each_target_in_id_order(db: TestDb) {
    let m = write_messages(
        &db,
        &[
            ("@a", "opener a"),
            ("@b", "opener b"),
            ("@a", "follow-up a"),
            ("@c", "opener c"),
        ],
    )
    .await;
    let items = db
        .store
        .claim_deliveries(10, lease("d1", t0()))
        .await
        .expect("claim");
    assert_eq!(
        ids(&items),
        vec![m[0], m[1], m[3]],
        "never a follow-up before its opener"
    );
    assert_eq!(
        (
            items[0].target.as_str(),
            items[0].message.as_str(),
            items[0].action.as_str()
        ),
        ("@a", "opener a", "opener")
    );
    assert_eq!((items[0].tries, items[0].first_try_at), (0, t0()));
    assert_eq!(items[0].session_id.as_deref(), Some("sess-@a"));
    // Leased: another daemon gets nothing, not even @a's follow-up.
    assert!(claim(&db, "d2", t0()).await.is_empty());
    // The limit counts messages.
    let one = db
        .store
        .claim_deliveries(1, lease("d1", t0()))
        .await
        .expect("claim");
    assert_eq!(
        ids(&one),
        vec![m[0]],
        "a claim repeated with its token is the same claim"
    );
    assert!(
        db.store
            .delivered(held(m[0], "d1"), t0())
            .await
            .expect("delivered")
    );
    assert!(
        !db.store
            .delivered(held(m[0], "d1"), t0())
            .await
            .expect("delivered"),
        "once"
    );
    assert_eq!(claim(&db, "d1", t0()).await, vec![m[1], m[2], m[3]]);
    let all = db.store.outbox(true).await.expect("outbox");
    assert_eq!(all[0].acked_at, Some(t0()), "delivered is acked");
}

async fn a_failed_try_waits_for_its_next_try_and_holds_the_later_messages(db: TestDb) {
    let m = write_messages(&db, &[("@a", "one"), ("@a", "two")]).await;
    assert_eq!(claim(&db, "d1", t0()).await, vec![m[0]]);
    let later = t0() + Duration::minutes(10);
    assert!(
        db.store
            .delivery_failed(held(m[0], "d1"), "the webhook answered HTTP 500", later)
            .await
            .expect("failed")
    );
    // The lease was given back, but the message is not due, and @a's next waits for it.
    assert!(
        claim(&db, "d2", t0() + Duration::minutes(9))
            .await
            .is_empty()
    );
    let items = db
        .store
        .claim_deliveries(10, lease("d2", later))
        .await
        .expect("claim");
    assert_eq!(ids(&items), vec![m[0]]);
    assert_eq!(items[0].tries, 1);
    assert_eq!(
        items[0].first_try_at,
        t0(),
        "max_age counts from the first try"
    );
}

async fn results_are_written_only_under_the_lease_that_holds_the_message(db: TestDb) {
    let m = write_messages(&db, &[("@a", "one")]).await;
    assert_eq!(claim(&db, "d1", t0()).await, vec![m[0]]);
    // d1's lease runs out; d2 takes the message.
    let expired = t0() + Duration::minutes(5);
    assert_eq!(claim(&db, "d2", expired).await, vec![m[0]]);
    assert!(
        !db.store
            .delivered(held(m[0], "d1"), expired)
            .await
            .expect("write")
    );
    assert!(
        !db.store
            .delivery_failed(held(m[0], "d1"), "late", expired)
            .await
            .expect("write")
    );
    assert!(
        !db.store
            .park_delivery(held(m[0], "d1"), "late", expired)
            .await
            .expect("write")
    );
    assert!(
        db.store
            .delivered(held(m[0], "d2"), expired)
            .await
            .expect("write")
    );
}

async fn a_parked_message_holds_its_target_until_it_is_redelivered(db: TestDb) {
    let m = write_messages(&db, &[("@a", "one"), ("@a", "two"), ("@b", "three")]).await;
    assert_eq!(claim(&db, "d1", t0()).await, vec![m[0], m[2]]);
    let long = "x".repeat(2000);
    assert!(
        db.store
            .park_delivery(held(m[0], "d1"), &long, t0())
            .await
            .expect("park")
    );
    assert!(
        db.store
            .delivered(held(m[2], "d1"), t0())
            .await
            .expect("delivered")
    );
    assert!(
        claim(&db, "d1", t0() + Duration::days(3)).await.is_empty(),
        "@a waits"
    );
    let parked = db.store.parked().await.expect("parked");
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].id, parked[0].tries, parked[0].parked_at),
        (m[0], 1, t0())
    );
    assert!(
        parked[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.chars().count() <= 501)
    );
    assert_eq!(
        db.store.outbox_counts().await.expect("counts"),
        OutboxCounts {
            pending: 1,
            parked: 1
        }
    );
    let now = t0() + Duration::days(3);
    assert_eq!(
        db.store
            .redeliver(&[m[0], m[1], 999_999], now)
            .await
            .expect("redeliver"),
        vec![m[0]],
        "only parked messages"
    );
    assert!(db.store.parked().await.expect("parked").is_empty());
    let items = db
        .store
        .claim_deliveries(
            10,
            fluidtalk_runner::store::Lease {
                lease_token: "d1",
                now,
                until: now + Duration::minutes(5),
            },
        )
        .await
        .expect("claim");
    assert_eq!(ids(&items), vec![m[0]]);
    assert_eq!(
        (items[0].tries, items[0].first_try_at),
        (0, now),
        "a fresh max_age"
    );
}

async fn a_blocked_leads_text_is_held_and_an_ack_by_hand_ends_delivery(db: TestDb) {
    let m = write_messages(&db, &[("@a", "one"), ("@b", "two"), ("@b", "three")]).await;
    db.store
        .apply_user_action("@a", UserAction::Block, t0())
        .await
        .expect("block");
    assert_eq!(claim(&db, "d1", t0()).await, vec![m[1]]);
    // A pull consumer acks the message the webhook is trying: the webhook's result is not
    // written over it, and the next message of @b is free.
    assert_eq!(
        db.store.ack_outbox(&[m[1]], t0()).await.expect("ack"),
        vec![m[1]]
    );
    assert!(
        !db.store
            .delivered(held(m[1], "d1"), t0())
            .await
            .expect("write")
    );
    assert_eq!(claim(&db, "d1", t0()).await, vec![m[2]]);
    db.store
        .apply_user_action("@a", UserAction::Unblock, t0())
        .await
        .expect("unblock");
    assert_eq!(claim(&db, "d1", t0()).await, vec![m[0], m[2]]);
    assert_eq!(
        db.store.outbox_counts().await.expect("counts"),
        OutboxCounts {
            pending: 2,
            parked: 0
        }
    );
}

/// Many daemons claiming at once from separate connections: every message is claimed by
/// exactly one of them, and never two messages of one target at a time.
async fn concurrent_claims_take_each_message_once_and_one_per_target(db: TestDb) {
    let mut messages = Vec::new();
    let targets: Vec<String> = (0..20).map(|i| format!("@t{i}")).collect();
    for round in 0..3 {
        for t in &targets {
            messages.push((t.as_str(), if round == 0 { "opener" } else { "follow-up" }));
        }
    }
    let all = write_messages(&db, &messages).await;
    let mut claims = tokio::task::JoinSet::new();
    for d in 0..8 {
        let store = db.store.clone();
        claims.spawn(async move {
            let items = store
                .claim_deliveries(5, lease(&format!("d{d}"), t0()))
                .await
                .expect("claim");
            items
                .into_iter()
                .map(|i| (i.id, i.target))
                .collect::<Vec<_>>()
        });
    }
    let mut claimed = Vec::new();
    while let Some(done) = claims.join_next().await {
        claimed.extend(done.expect("claim task"));
    }
    let mut seen_ids: Vec<i64> = claimed.iter().map(|(id, _)| *id).collect();
    seen_ids.sort_unstable();
    let unique: std::collections::BTreeSet<i64> = seen_ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seen_ids.len(),
        "a message claimed twice: {claimed:?}"
    );
    let targets_seen: std::collections::BTreeSet<&String> =
        claimed.iter().map(|(_, t)| t).collect();
    assert_eq!(
        targets_seen.len(),
        claimed.len(),
        "two messages of one target at once"
    );
    assert!(
        seen_ids.iter().all(|id| all[..20].contains(id)),
        "only openers: {seen_ids:?}"
    );
    assert_eq!(
        seen_ids.len(),
        20,
        "all 20 openers claimed by 8 daemons of 5"
    );
}

common::conformance!(
    a_claim_takes_the_first_message_of_each_target_in_id_order,
    a_failed_try_waits_for_its_next_try_and_holds_the_later_messages,
    results_are_written_only_under_the_lease_that_holds_the_message,
    a_parked_message_holds_its_target_until_it_is_redelivered,
    a_blocked_leads_text_is_held_and_an_ack_by_hand_ends_delivery,
    concurrent_claims_take_each_message_once_and_one_per_target,
);
