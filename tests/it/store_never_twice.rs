//! Never twice, in the store, on SQLite and PostgreSQL alike (issue 9): which attempts hold
//! their step, answers that arrive while a person changed the lead, late answers after a
//! runner was presumed lost, deliberate releases, reply times, and pauses a person lifts.

use crate::common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::db::TestDb;
use fluidtalk_runner::lead::{LeadEvent, LeadState};
use fluidtalk_runner::store::{
    Action, AttemptEnd, AttemptStatus, DailyCap, Lead, LeadInput, LeadResult, NewAttempt,
    PauseScope, RUNNER_LOST, Recorded, StoreError, UserAction,
};
use fluidtalk_runner::store::{Lease, NewEvent, NewPause};

fn t(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, h, 0, 0)
        .single()
        .expect("valid time")
}

async fn add(db: &TestDb, target: &str) -> Lead {
    let mut s = db.store.begin_import(false).await.expect("begin import");
    s.upsert(
        vec![LeadInput {
            target: target.into(),
            ..Default::default()
        }],
        t(9),
    )
    .await
    .expect("upsert");
    s.finish(true).await.expect("finish");
    get(db, target).await
}

async fn get(db: &TestDb, target: &str) -> Lead {
    db.store
        .get_lead(target)
        .await
        .expect("get lead")
        .unwrap_or_else(|| panic!("lead {target} exists"))
}

fn attempt(lead: &Lead, token: &str) -> NewAttempt {
    NewAttempt {
        lead_id: lead.id,
        job: "openers".into(),
        action: Action::Opener,
        step: 0,
        lease_token: token.into(),
        claimed: None,
        started_at: t(10),
        sender: None,
    }
}

fn end(id: i64, status: AttemptStatus, message: Option<&str>) -> AttemptEnd {
    AttemptEnd {
        attempt_id: id,
        status,
        http_status: None,
        error_kind: None,
        error_detail: None,
        session_id: None,
        finished_at: t(11),
        message: message.map(str::to_string),
        release: None,
    }
}

/// Claims `lead` for `token` and records its opener in flight; returns the attempt id.
async fn in_flight(db: &TestDb, lead: &Lead, token: &str) -> i64 {
    let claimed = db
        .store
        .claim_leads(
            &[lead.id],
            Lease {
                lease_token: token,
                now: t(10),
                until: t(12),
            },
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    db.store
        .start_attempts(&[attempt(lead, token)])
        .await
        .expect("start")[0]
}

/// A runner's result for `lead`'s attempt `id`.
fn result(lead: &Lead, token: &str, end: AttemptEnd, event: Option<LeadEvent>) -> LeadResult {
    let mut r = LeadResult::new(lead, token);
    r.contacted = matches!(event, Some(LeadEvent::OpenerSent | LeadEvent::EventSent));
    r.attempt = Some(end);
    r.event = event;
    r
}

async fn refused_again(db: &TestDb, lead: &Lead) -> bool {
    match db.store.start_attempts(&[attempt(lead, "r/9")]).await {
        Ok(ids) => {
            // Taken: give it back so the caller's next check starts clean.
            db.store
                .finish_attempts(&[end(ids[0], AttemptStatus::Cancelled, None)])
                .await
                .expect("cancel");
            false
        }
        Err(StoreError::AlreadySent { .. }) => true,
        Err(e) => panic!("unexpected: {e}"),
    }
}

async fn every_attempt_that_may_have_reached_the_api_holds_its_step(db: TestDb) {
    for status in AttemptStatus::ALL {
        let lead = add(&db, &format!("@{}", status.as_str())).await;
        let id = db
            .store
            .start_attempts(&[attempt(&lead, "r/1")])
            .await
            .expect("start")[0];
        if status != AttemptStatus::InFlight {
            db.store
                .finish_attempts(&[end(id, status, None)])
                .await
                .expect("finish");
        }
        assert_eq!(
            refused_again(&db, &lead).await,
            status.holds_step(),
            "{status:?}"
        );
    }
    // The ones that may have reached the API, by name: never sent twice.
    for s in [
        "in_flight",
        "sent",
        "continued",
        "ignored",
        "sealed",
        "failed",
        "unknown",
    ] {
        let status = AttemptStatus::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .expect("a status");
        assert!(status.holds_step(), "{s}");
    }
}

async fn an_answer_lost_while_the_lead_was_blocked_makes_it_needs_review_when_unblocked(
    db: TestDb,
) {
    let ana = add(&db, "@ana").await;
    let id = in_flight(&db, &ana, "r/1").await;
    db.store
        .apply_user_action("@ana", UserAction::Block, t(10))
        .await
        .expect("block");
    let mut lost = end(id, AttemptStatus::Unknown, None);
    lost.error_kind = Some("network".into());
    db.store
        .record_results(
            &[result(&ana, "r/1", lost, Some(LeadEvent::OutcomeUnknown))],
            t(11),
        )
        .await
        .expect("record");
    let blocked = get(&db, "@ana").await;
    assert_eq!(blocked.state, LeadState::Blocked, "a block is never undone");
    assert_eq!(blocked.pending_event.as_deref(), Some("outcome_unknown"));
    assert_eq!(blocked.lease_owner, None, "the lease is given back");
    let back = db
        .store
        .apply_user_action("@ana", UserAction::Unblock, t(12))
        .await
        .expect("unblock");
    assert_eq!(back.state, LeadState::NeedsReview);
    assert_eq!(back.pending_event, None);
    assert!(refused_again(&db, &ana).await, "step 0 is never sent again");
}

async fn a_seal_or_an_answer_that_arrived_while_blocked_waits_for_the_unblock(db: TestDb) {
    let done = add(&db, "@done").await;
    let sent = add(&db, "@sent").await;
    let d = in_flight(&db, &done, "r/1").await;
    let s = in_flight(&db, &sent, "r/1").await;
    for target in ["@done", "@sent"] {
        db.store
            .apply_user_action(target, UserAction::Block, t(10))
            .await
            .expect("block");
    }
    db.store
        .record_results(
            &[
                result(
                    &done,
                    "r/1",
                    end(d, AttemptStatus::Sealed, None),
                    Some(LeadEvent::Sealed),
                ),
                result(
                    &sent,
                    "r/1",
                    end(s, AttemptStatus::Sent, Some("Hi!")),
                    Some(LeadEvent::OpenerSent),
                ),
            ],
            t(11),
        )
        .await
        .expect("record");
    // Recorded as it is: the attempt, the text, the contact.
    let outbox = db.store.outbox(false).await.expect("outbox");
    assert_eq!(outbox.len(), 1);
    assert_eq!(
        (outbox[0].target.as_str(), outbox[0].message.as_str()),
        ("@sent", "Hi!")
    );
    assert_eq!(get(&db, "@sent").await.last_contact_at, Some(t(11)));
    let unblock = |target: &'static str| {
        let store = db.store.clone();
        async move {
            store
                .apply_user_action(target, UserAction::Unblock, t(12))
                .await
                .expect("unblock")
                .state
        }
    };
    assert_eq!(unblock("@done").await, LeadState::Done);
    assert_eq!(unblock("@sent").await, LeadState::Contacted);
}

async fn blocking_a_lead_under_review_returns_it_to_review(db: TestDb) {
    add(&db, "@r").await;
    db.exec("UPDATE leads SET state = 'needs_review' WHERE target = '@r'")
        .await;
    db.store
        .apply_user_action("@r", UserAction::Block, t(10))
        .await
        .expect("block");
    let back = db
        .store
        .apply_user_action("@r", UserAction::Unblock, t(11))
        .await
        .expect("unblock");
    assert_eq!(back.state, LeadState::NeedsReview);
}

async fn a_late_answer_after_recovery_is_recorded_over_the_lost_attempt(db: TestDb) {
    let fan = add(&db, "@fan").await;
    let event = db
        .store
        .queue_event(&NewEvent {
            target: "@fan",
            event_type: "story_reaction",
            context: None,
            now: t(9),
        })
        .await
        .expect("queue");
    let id = in_flight(&db, &fan, "dead/1").await;
    // Another runner found the lease run out: the outcome is unknown.
    let mut lost = end(id, AttemptStatus::Unknown, None);
    lost.error_kind = Some(RUNNER_LOST.into());
    db.store
        .record_results(
            &[result(
                &fan,
                "dead/1",
                lost,
                Some(LeadEvent::OutcomeUnknown),
            )],
            t(11),
        )
        .await
        .expect("recover");
    assert_eq!(get(&db, "@fan").await.state, LeadState::NeedsReview);
    // The presumed-dead runner's answer comes after all: recorded, not dropped.
    let mut late = result(
        &fan,
        "dead/1",
        end(id, AttemptStatus::Sent, Some("Saw your story!")),
        Some(LeadEvent::EventSent),
    );
    late.queued_event = Some((event.id, "sent"));
    let finished = db
        .store
        .record_results(&[late.clone()], t(12))
        .await
        .expect("late");
    assert_eq!(finished, vec![id]);
    let a = &db.store.attempts_for(fan.id).await.expect("attempts")[0];
    assert_eq!(a.status, AttemptStatus::Sent);
    assert_eq!(
        a.error_detail.as_deref(),
        Some("answered after its runner was presumed lost")
    );
    assert_eq!(db.store.outbox(false).await.expect("outbox").len(), 1);
    assert!(
        db.store
            .queued_events(None)
            .await
            .expect("events")
            .is_empty()
    );
    let l = get(&db, "@fan").await;
    assert_eq!(l.state, LeadState::NeedsReview, "a person still decides");
    assert_eq!(l.last_contact_at, Some(t(11)));
    // The same answer again changes nothing.
    assert!(
        db.store
            .record_results(&[late], t(13))
            .await
            .expect("again")
            .is_empty()
    );
    assert_eq!(db.store.outbox(false).await.expect("outbox").len(), 1);
}

async fn a_late_answer_for_a_released_attempt_changes_nothing(db: TestDb) {
    let l = add(&db, "@l").await;
    let event = db
        .store
        .queue_event(&NewEvent {
            target: "@l",
            event_type: "story_reaction",
            context: None,
            now: t(9),
        })
        .await
        .expect("queue");
    let id = in_flight(&db, &l, "dead/1").await;
    let mut lost = end(id, AttemptStatus::Unknown, None);
    lost.error_kind = Some(RUNNER_LOST.into());
    db.store
        .record_results(
            &[result(&l, "dead/1", lost, Some(LeadEvent::OutcomeUnknown))],
            t(11),
        )
        .await
        .expect("recover");
    // A person retries: the step is released, deliberately, and says so.
    db.store
        .apply_user_action("@l", UserAction::Retry, t(12))
        .await
        .expect("retry");
    let a = &db.store.attempts_for(l.id).await.expect("attempts")[0];
    assert_eq!(a.released_by.as_deref(), Some("leads retry"));
    assert_eq!(a.released_at, Some(t(12)));
    assert!(!refused_again(&db, &l).await, "the retry frees the step");
    let mut late = result(
        &l,
        "dead/1",
        end(id, AttemptStatus::Sent, Some("late")),
        Some(LeadEvent::EventSent),
    );
    late.queued_event = Some((event.id, "sent"));
    assert!(
        db.store
            .record_results(&[late], t(13))
            .await
            .expect("late")
            .is_empty()
    );
    assert_eq!(
        db.store.queued_events(None).await.expect("events").len(),
        1,
        "the event waits for the retried call, not marked sent by a late write"
    );
    assert!(db.store.outbox(false).await.expect("outbox").is_empty());
    assert_eq!(get(&db, "@l").await.state, LeadState::New);
}

async fn a_reply_time_in_the_future_is_refused_and_a_stored_one_is_corrected(db: TestDb) {
    add(&db, "@r").await;
    let err = db
        .store
        .record_reply("@r", t(9) + Duration::days(365 * 36), t(9))
        .await
        .expect_err("in the future");
    assert!(matches!(err, StoreError::InTheFuture { .. }), "{err}");
    assert!(err.to_string().contains("in the future"), "{err}");
    // A time stored by an older version, or by hand, far in the future ...
    match &db.raw {
        common::db::Raw::Sqlite(p) => sqlx::query(
            "UPDATE leads SET state = 'contacted', last_reply_at = '2062-01-01T00:00:00.000000Z'",
        )
        .execute(p)
        .await
        .map(|_| ()),
        common::db::Raw::Postgres(p) => sqlx::query(
            "UPDATE leads SET state = 'contacted', last_reply_at = '2062-01-01T00:00:00Z'",
        )
        .execute(p)
        .await
        .map(|_| ()),
    }
    .expect("stall the lead");
    // ... is replaced by a correct one, though earlier.
    let lead = db
        .store
        .record_reply("@r", t(8), t(9))
        .await
        .expect("reply");
    assert_eq!(lead.last_reply_at, Some(t(8)));
    // A later true reply still wins over an earlier one.
    let lead = db
        .store
        .record_reply("@r", t(7), t(9))
        .await
        .expect("reply");
    assert_eq!(lead.last_reply_at, Some(t(8)));
}

async fn a_person_lifts_pauses_and_sees_events_no_job_sends(db: TestDb) {
    let hour = |_| std::time::Duration::from_secs(3600);
    db.store
        .set_pause(&NewPause {
            scope: PauseScope::All,
            reason: "401",
            set_by: "r",
            now: t(9),
            length: &hour,
        })
        .await
        .expect("pause");
    db.store
        .set_pause(&NewPause {
            scope: PauseScope::NewConversations,
            reason: "402",
            set_by: "r",
            now: t(9),
            length: &hour,
        })
        .await
        .expect("pause");
    let lifted = db
        .store
        .lift_pauses(&[PauseScope::All])
        .await
        .expect("lift");
    assert_eq!(
        lifted.iter().map(|p| p.scope).collect::<Vec<_>>(),
        [PauseScope::All]
    );
    assert_eq!(db.store.pauses().await.expect("pauses").len(), 1);
    assert!(
        db.store
            .lift_pauses(&[PauseScope::All])
            .await
            .expect("again")
            .is_empty()
    );
    for (target, kind) in [
        ("@a", "story_reaction"),
        ("@b", "story_reactoin"),
        ("@c", "story_reaction"),
    ] {
        db.store
            .queue_event(&NewEvent {
                target,
                event_type: kind,
                context: None,
                now: t(9),
            })
            .await
            .expect("queue");
    }
    assert_eq!(
        db.store.queued_event_types().await.expect("types"),
        vec![
            ("story_reaction".to_string(), 2),
            ("story_reactoin".to_string(), 1)
        ]
    );
}

async fn a_lead_blocked_after_its_claim_is_not_recorded_in_flight(db: TestDb) {
    let a = add(&db, "@a").await;
    let b = add(&db, "@b").await;
    let c = add(&db, "@c").await;
    let claimed = db
        .store
        .claim_leads(
            &[a.id, b.id, c.id],
            Lease {
                lease_token: "r/1",
                now: t(10),
                until: t(12),
            },
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    // A person blocks @a while it waits for a slot; @c's lease runs out and another runner
    // takes it.
    db.store
        .apply_user_action("@a", UserAction::Block, t(10))
        .await
        .expect("block");
    assert_eq!(
        db.store
            .claim_leads(
                &[c.id],
                Lease {
                    lease_token: "r2/1",
                    now: t(12),
                    until: t(13)
                }
            )
            .await
            .expect("claim")
            .len(),
        1
    );
    let claimed_new = |l: &Lead| NewAttempt {
        claimed: Some(LeadState::New),
        ..attempt(l, "r/1")
    };
    for cap in [
        None,
        Some(DailyCap {
            since: t(0),
            limit: 10,
        }),
    ] {
        let recorded = db
            .store
            .start_attempts_within(&[claimed_new(&a), claimed_new(&b), claimed_new(&c)], cap)
            .await
            .expect("start");
        assert!(
            matches!(recorded[0], Recorded::Changed),
            "{cap:?}: {recorded:?}"
        );
        assert!(
            matches!(recorded[1], Recorded::Started(_)),
            "{cap:?}: {recorded:?}"
        );
        assert!(
            matches!(recorded[2], Recorded::Changed),
            "{cap:?}: {recorded:?}"
        );
        assert!(
            db.store.attempts_for(a.id).await.expect("a").is_empty(),
            "@a is never called"
        );
        // Clean up for the capped round.
        if let Recorded::Started(id) = recorded[1] {
            db.store
                .finish_attempts(&[end(id, AttemptStatus::Cancelled, None)])
                .await
                .expect("cancel");
        }
    }
    // Over the cap is told apart from changed.
    let cap = Some(DailyCap {
        since: t(0),
        limit: 0,
    });
    let recorded = db
        .store
        .start_attempts_within(&[claimed_new(&a), claimed_new(&b)], cap)
        .await
        .expect("start");
    assert_eq!(recorded, vec![Recorded::Changed, Recorded::OverCap]);
}

async fn an_attempt_committed_after_its_lease_was_given_back_is_found_and_reviewed(db: TestDb) {
    let lead = add(&db, "@late").await;
    db.store
        .claim_leads(
            &[lead.id],
            Lease {
                lease_token: "r/1",
                now: t(10),
                until: t(20),
            },
        )
        .await
        .expect("claim");
    // The runner's insert timed out; it gave the lease back; then the insert committed.
    db.store
        .release_leads(&[lead.id], "r/1", t(10))
        .await
        .expect("release");
    db.store
        .start_attempts(&[attempt(&lead, "r/1")])
        .await
        .expect("the late commit");
    // Long before any lease would have run out, it is found: nobody holds its lead.
    let orphans = db.store.orphans(t(11)).await.expect("orphans");
    assert_eq!(
        orphans.len(),
        1,
        "an attempt in flight nobody holds is never stuck"
    );
    // ... while one under a live lease of its own token is not.
    let live = add(&db, "@live").await;
    in_flight(&db, &live, "r/2").await;
    let orphans = db.store.orphans(t(11)).await.expect("orphans");
    assert_eq!(
        orphans.iter().map(|o| o.lead.id).collect::<Vec<_>>(),
        [lead.id]
    );
}

async fn text_for_a_lead_blocked_since_it_was_written_says_so(db: TestDb) {
    let lead = add(&db, "@o").await;
    let id = in_flight(&db, &lead, "r/1").await;
    db.store
        .record_results(
            &[result(
                &lead,
                "r/1",
                end(id, AttemptStatus::Sent, Some("Hi")),
                Some(LeadEvent::OpenerSent),
            )],
            t(11),
        )
        .await
        .expect("record");
    assert_eq!(
        db.store.outbox(false).await.expect("outbox")[0].lead_state,
        LeadState::Contacted
    );
    db.store
        .apply_user_action("@o", UserAction::Block, t(12))
        .await
        .expect("block");
    assert_eq!(
        db.store.outbox(false).await.expect("outbox")[0].lead_state,
        LeadState::Blocked
    );
    let held = db.store.lease_summary(t(12)).await.expect("leases");
    assert_eq!((held.leased, held.in_flight), (0, 0));
    let other = add(&db, "@held").await;
    in_flight(&db, &other, "r/2").await;
    let held = db.store.lease_summary(t(11)).await.expect("leases");
    assert_eq!(
        (held.leased, held.in_flight, held.until),
        (1, 1, Some(t(12)))
    );
}

/// Group commit (`settle_and_start`): a group of answers and the next group's attempts in
/// flight are one transaction. Both are written, or, when the database refuses one of the
/// attempts (its step may already have been sent), neither: the answers are still in flight,
/// to be written again apart, and no call of the next group may start.
async fn answers_and_the_next_group_are_written_together_or_not_at_all(db: TestDb) {
    let ana = add(&db, "@ana").await;
    let ben = add(&db, "@ben").await;
    let a = in_flight(&db, &ana, "r/1").await;
    db.store
        .claim_leads(
            &[ben.id],
            Lease {
                lease_token: "r/2",
                now: t(10),
                until: t(12),
            },
        )
        .await
        .expect("claim");
    let next = NewAttempt {
        claimed: Some(LeadState::New),
        ..attempt(&ben, "r/2")
    };
    let answer = |id| {
        result(
            &ana,
            "r/1",
            end(id, AttemptStatus::Sent, Some("Hi Ana!")),
            Some(LeadEvent::OpenerSent),
        )
    };
    let (finished, recorded) = db
        .store
        .settle_and_start(&[answer(a)], t(11), std::slice::from_ref(&next), None)
        .await
        .expect("both written");
    assert_eq!(finished, vec![a]);
    let [Recorded::Started(b)] = recorded[..] else {
        panic!("ben's call recorded in flight: {recorded:?}");
    };
    assert_eq!(get(&db, "@ana").await.state, LeadState::Contacted);
    assert!(
        db.store
            .outbox_of_attempt(a)
            .await
            .expect("outbox")
            .is_some(),
        "ana's text waits in the outbox"
    );
    let bens = db.store.attempts_for(ben.id).await.expect("ben's attempts");
    assert_eq!(bens.len(), 1);
    assert_eq!((bens[0].id, bens[0].status), (b, AttemptStatus::InFlight));

    // Carl's opener may already have been sent (ben's attempt above holds ben's step;
    // carl's here): the whole transaction is refused, dan's answer included.
    let carl = add(&db, "@carl").await;
    let dan = add(&db, "@dan").await;
    let c = in_flight(&db, &carl, "r/3").await;
    db.store
        .finish_attempts(&[end(c, AttemptStatus::Unknown, None)])
        .await
        .expect("carl's outcome is unknown");
    let d = in_flight(&db, &dan, "r/4").await;
    let dans_answer = result(
        &dan,
        "r/4",
        end(d, AttemptStatus::Sent, Some("Hi Dan!")),
        Some(LeadEvent::OpenerSent),
    );
    let again = attempt(&carl, "r/5");
    match db
        .store
        .settle_and_start(std::slice::from_ref(&dans_answer), t(11), &[again], None)
        .await
    {
        Err(StoreError::AlreadySent { lead_id, .. }) => assert_eq!(lead_id, carl.id),
        other => panic!("carl's step is refused: {other:?}"),
    }
    let dan_now = get(&db, "@dan").await;
    assert_eq!(
        dan_now.state,
        LeadState::New,
        "dan's answer was not written"
    );
    assert_eq!(dan_now.lease_owner.as_deref(), Some("r/4"));
    assert!(
        db.store
            .outbox_of_attempt(d)
            .await
            .expect("outbox")
            .is_none()
    );
    let dans = db.store.attempts_for(dan.id).await.expect("dan's attempts");
    assert_eq!(dans[0].status, AttemptStatus::InFlight);
    assert_eq!(
        db.store.attempts_for(carl.id).await.expect("carl").len(),
        1,
        "no second attempt for carl"
    );
    // Written apart, as the runner then does, the answer is taken.
    db.store
        .record_results(&[dans_answer], t(11))
        .await
        .expect("record apart");
    assert_eq!(get(&db, "@dan").await.state, LeadState::Contacted);

    // Under a daily cap already used up, the answers are written and the next group is
    // told it is over the cap.
    let eve = add(&db, "@eve").await;
    let fay = add(&db, "@fay").await;
    let e = in_flight(&db, &eve, "r/6").await;
    db.store
        .claim_leads(
            &[fay.id],
            Lease {
                lease_token: "r/7",
                now: t(10),
                until: t(12),
            },
        )
        .await
        .expect("claim");
    let cap = Some(DailyCap {
        since: t(0),
        limit: 3,
    });
    let (_, recorded) = db
        .store
        .settle_and_start(
            &[result(
                &eve,
                "r/6",
                end(e, AttemptStatus::Sent, None),
                Some(LeadEvent::OpenerSent),
            )],
            t(11),
            &[NewAttempt {
                claimed: Some(LeadState::New),
                ..attempt(&fay, "r/7")
            }],
            cap,
        )
        .await
        .expect("written");
    assert_eq!(
        recorded,
        vec![Recorded::OverCap],
        "five openers started today already"
    );
    assert_eq!(get(&db, "@eve").await.state, LeadState::Contacted);
    assert!(db.store.attempts_for(fay.id).await.expect("fay").is_empty());
}

common::conformance!(
    every_attempt_that_may_have_reached_the_api_holds_its_step,
    an_answer_lost_while_the_lead_was_blocked_makes_it_needs_review_when_unblocked,
    a_seal_or_an_answer_that_arrived_while_blocked_waits_for_the_unblock,
    blocking_a_lead_under_review_returns_it_to_review,
    a_late_answer_after_recovery_is_recorded_over_the_lost_attempt,
    a_late_answer_for_a_released_attempt_changes_nothing,
    a_reply_time_in_the_future_is_refused_and_a_stored_one_is_corrected,
    a_person_lifts_pauses_and_sees_events_no_job_sends,
    a_lead_blocked_after_its_claim_is_not_recorded_in_flight,
    an_attempt_committed_after_its_lease_was_given_back_is_found_and_reviewed,
    text_for_a_lead_blocked_since_it_was_written_says_so,
    answers_and_the_next_group_are_written_together_or_not_at_all,
);

/// PostgreSQL reads a statement's rows as of its start: a runner's attempt insert that
/// waits on a lead a person (or the HTTP relay) is changing must see the change once it is
/// committed, not the claim it started from, or the call goes out to a lead that was just
/// blocked or taken over.
#[tokio::test]
async fn an_attempt_waits_for_a_concurrent_change_of_its_lead_and_sees_it() {
    let Some(db) = common::db::postgres().await else {
        return;
    };
    let common::db::Raw::Postgres(pool) = &db.raw else {
        panic!("a PostgreSQL test database");
    };
    let lead = add(&db, "@ana").await;
    let claimed = db
        .store
        .claim_leads(
            &[lead.id],
            Lease {
                lease_token: "runner-a/1",
                now: t(10),
                until: t(11),
            },
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    // Someone else takes the lead, and has not committed yet.
    let mut other = pool.begin().await.expect("begin");
    sqlx::query("SELECT id FROM leads WHERE id = $1 FOR UPDATE")
        .bind(lead.id)
        .execute(&mut *other)
        .await
        .expect("lock");
    sqlx::query("UPDATE leads SET lease_owner = 'relay/1' WHERE id = $1")
        .bind(lead.id)
        .execute(&mut *other)
        .await
        .expect("take the lease");
    let store = db.store.clone();
    let insert = tokio::spawn(async move {
        store
            .start_attempts_within(
                &[NewAttempt {
                    lead_id: lead.id,
                    job: "openers".into(),
                    action: Action::Opener,
                    step: 0,
                    lease_token: "runner-a/1".into(),
                    started_at: t(10),
                    claimed: Some(LeadState::New),
                    sender: None,
                }],
                None,
            )
            .await
    });
    // The change commits only once the insert waits on the locked row (PostgreSQL says so).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO attempts%'",
        )
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the insert never waited on the lead"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        !insert.is_finished(),
        "the insert waits for the locked lead"
    );
    other.commit().await.expect("commit");
    let recorded = insert.await.expect("joined").expect("asked");
    assert_eq!(recorded, vec![Recorded::Changed], "the call is not made");
}
