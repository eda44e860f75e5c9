//! One conformance suite for the `Store` trait, run against SQLite and PostgreSQL alike.
//! Each test gets a fresh database (a SQLite file, or a PostgreSQL schema of its own).

use crate::common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::db::TestDb;
use fluidtalk_runner::lead::LeadState;
use fluidtalk_runner::store::{
    Action, AttemptEnd, AttemptStatus, DailyCap, LeadFilter, LeadInput, NewAttempt, Recorded,
    StoreError, UserAction,
};
use fluidtalk_runner::store::{Due, DueLead, DueQuery, Lease, NewEvent};

fn t(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, h, 0, 0)
        .single()
        .expect("valid time")
}

fn lead(target: &str) -> LeadInput {
    LeadInput {
        target: target.into(),
        ..Default::default()
    }
}

async fn import(db: &TestDb, rows: Vec<LeadInput>, now: DateTime<Utc>) -> (u64, u64) {
    let mut s = db.store.begin_import(false).await.expect("begin import");
    let c = s.upsert(rows, now).await.expect("upsert");
    s.finish(true).await.expect("finish");
    (c.imported, c.updated)
}

async fn get(db: &TestDb, target: &str) -> fluidtalk_runner::store::Lead {
    db.store
        .get_lead(target)
        .await
        .expect("get lead")
        .unwrap_or_else(|| panic!("lead {target} exists"))
}

fn attempt(lead_id: i64, action: Action, step: i64) -> NewAttempt {
    NewAttempt {
        lead_id,
        job: "openers".into(),
        action,
        step,
        lease_token: "runner-a".into(),
        claimed: None,
        started_at: t(10),
        sender: None,
    }
}

/// The ids of the attempts recorded (not over the cap, lead not changed).
fn started(recorded: Vec<Recorded>) -> Vec<i64> {
    recorded
        .into_iter()
        .filter_map(|r| match r {
            Recorded::Started(id) => Some(id),
            _ => None,
        })
        .collect()
}

fn end(attempt_id: i64, status: AttemptStatus, message: Option<&str>) -> AttemptEnd {
    AttemptEnd {
        attempt_id,
        status,
        http_status: Some(200),
        error_kind: None,
        error_detail: None,
        session_id: Some("sess-1".into()),
        finished_at: t(11),
        message: message.map(str::to_string),
        release: None,
    }
}

async fn a_new_lead_takes_the_defaults_and_an_update_changes_only_given_fields(db: TestDb) {
    let first = LeadInput {
        target: "@ana".into(),
        own_username: Some("@me".into()),
        timezone: Some("Europe/Berlin".into()),
        tags: Some(vec!["vip".into(), "spring".into()]),
        ..Default::default()
    };
    assert_eq!(import(&db, vec![first], t(9)).await, (1, 0));
    let ana = get(&db, "@ana").await;
    assert_eq!(ana.state, LeadState::New);
    assert_eq!(ana.follow_ups_sent, 0);
    assert_eq!(ana.created_at, t(9));
    assert_eq!(ana.next_eligible_at, t(9));
    assert_eq!(ana.tags, vec!["vip", "spring"]);

    let update = LeadInput {
        target: "@ana".into(),
        profile_image: Some("https://cdn/p.jpg".into()),
        ..Default::default()
    };
    assert_eq!(import(&db, vec![update], t(10)).await, (0, 1));
    let ana = get(&db, "@ana").await;
    assert_eq!(ana.profile_image.as_deref(), Some("https://cdn/p.jpg"));
    assert_eq!(ana.own_username.as_deref(), Some("@me"), "kept");
    assert_eq!(ana.timezone.as_deref(), Some("Europe/Berlin"), "kept");
    assert_eq!(ana.tags, vec!["vip", "spring"], "kept");
    assert_eq!(ana.created_at, t(9));
    assert_eq!(ana.updated_at, t(10));
}

async fn duplicate_targets_in_one_batch_merge_and_count_as_updates(db: TestDb) {
    let rows = vec![
        LeadInput {
            tags: Some(vec!["a".into()]),
            ..lead("@x")
        },
        lead("@y"),
        LeadInput {
            timezone: Some("Asia/Tokyo".into()),
            ..lead("@x")
        },
    ];
    assert_eq!(import(&db, rows, t(9)).await, (2, 1));
    let x = get(&db, "@x").await;
    assert_eq!(x.tags, vec!["a"]);
    assert_eq!(x.timezone.as_deref(), Some("Asia/Tokyo"));
}

/// A batch whose new and existing targets interleave: the new ones are inserted (and not
/// updated over again), the existing ones updated, and the counts say which is which.
/// (SQLite tells the rows it inserted by their rowids: a deleted lead with the largest id
/// before the batch must not shift them.)
async fn a_batch_of_new_and_existing_leads_inserts_the_new_and_updates_only_the_rest(db: TestDb) {
    let old = |target: &str| LeadInput {
        tags: Some(vec!["old".into()]),
        own_username: Some("@me".into()),
        ..lead(target)
    };
    assert_eq!(
        import(
            &db,
            vec![old("@e1"), old("@e2"), old("@e3"), lead("@gone")],
            t(9)
        )
        .await,
        (4, 0)
    );
    let gone = get(&db, "@gone").await.id;
    // No store method removes a lead; a person might, by hand.
    db.exec("DELETE FROM leads WHERE target = '@gone'").await;
    let rows = vec![
        LeadInput {
            tags: Some(vec!["new".into()]),
            ..lead("@n1")
        },
        LeadInput {
            timezone: Some("Asia/Tokyo".into()),
            ..lead("@e1")
        },
        LeadInput {
            state: Some(LeadState::Contacted),
            last_contact_at: Some(t(8)),
            follow_ups_sent: Some(2),
            ..lead("@n2")
        },
        // Given empty, the tags are replaced; not given (@e1), kept.
        LeadInput {
            tags: Some(vec![]),
            ..lead("@e3")
        },
        lead("@n3"),
        LeadInput {
            profile_image: Some("p.jpg".into()),
            ..lead("@n1")
        },
    ];
    assert_eq!(
        import(&db, rows, t(10)).await,
        (3, 3),
        "@n1, @n2, @n3 new; @e1, @e3 and the second @n1 updates"
    );
    let e1 = get(&db, "@e1").await;
    assert_eq!(e1.timezone.as_deref(), Some("Asia/Tokyo"));
    assert_eq!(e1.tags, vec!["old"], "not given: kept");
    assert_eq!(e1.own_username.as_deref(), Some("@me"));
    assert_eq!((e1.created_at, e1.updated_at), (t(9), t(10)));
    let e2 = get(&db, "@e2").await;
    assert_eq!(e2.updated_at, t(9), "not in the batch: untouched");
    assert!(
        get(&db, "@e3").await.tags.is_empty(),
        "given empty: replaced"
    );
    let n1 = get(&db, "@n1").await;
    assert_eq!(n1.tags, vec!["new"]);
    assert_eq!(n1.profile_image.as_deref(), Some("p.jpg"));
    assert_eq!((n1.created_at, n1.updated_at), (t(10), t(10)));
    let n2 = get(&db, "@n2").await;
    assert_eq!(n2.state, LeadState::Contacted);
    assert_eq!((n2.follow_ups_sent, n2.last_contact_at), (2, Some(t(8))));
    let n3 = get(&db, "@n3").await;
    assert!(n1.id < n2.id && n2.id < n3.id, "new leads in file order");
    assert!(n1.id >= gone, "ids are never below a deleted one's");
}

async fn an_import_moves_an_existing_campaign_in_but_never_moves_a_worked_lead_back(db: TestDb) {
    let contacted = LeadInput {
        state: Some(LeadState::Contacted),
        last_contact_at: Some(
            Utc.with_ymd_and_hms(2026, 11, 20, 9, 30, 0)
                .single()
                .expect("t"),
        ),
        follow_ups_sent: Some(1),
        ..lead("@old")
    };
    import(&db, vec![contacted], t(9)).await;
    let old = get(&db, "@old").await;
    assert_eq!(old.state, LeadState::Contacted);
    assert_eq!(old.follow_ups_sent, 1);
    assert_eq!(
        old.last_contact_at.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-11-20T09:30:00+00:00")
    );

    let back = LeadInput {
        state: Some(LeadState::New),
        follow_ups_sent: Some(0),
        ..lead("@old")
    };
    import(&db, vec![back], t(10)).await;
    let old = get(&db, "@old").await;
    assert_eq!(
        old.state,
        LeadState::Contacted,
        "a contacted lead is not reset by an import"
    );
    assert_eq!(old.follow_ups_sent, 1);
}

async fn an_atomic_import_that_is_not_kept_leaves_nothing(db: TestDb) {
    import(&db, vec![lead("@kept")], t(9)).await;
    let mut s = db.store.begin_import(true).await.expect("begin");
    s.upsert(vec![lead("@a"), lead("@b")], t(10))
        .await
        .expect("batch 1");
    s.upsert(
        vec![LeadInput {
            tags: Some(vec!["t".into()]),
            ..lead("@kept")
        }],
        t(10),
    )
    .await
    .expect("batch 2");
    s.finish(false).await.expect("roll back");
    let all = db
        .store
        .list_leads(&LeadFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 1);
    assert!(all[0].tags.is_empty());
    assert_eq!(all[0].updated_at, t(9));
}

async fn list_filters_by_state_and_tag_in_id_order_with_a_limit(db: TestDb) {
    let rows = (0..5)
        .map(|i| LeadInput {
            tags: Some(if i % 2 == 0 {
                vec!["even".into()]
            } else {
                vec!["odd".into(), "x".into()]
            }),
            ..lead(&format!("@l{i}"))
        })
        .collect();
    import(&db, rows, t(9)).await;
    db.store
        .apply_user_action("@l2", UserAction::Block, t(10))
        .await
        .expect("block");
    let f = |state, tag: Option<&str>, limit| LeadFilter {
        state,
        tag: tag.map(str::to_string),
        limit,
        after: None,
    };
    let targets =
        |v: Vec<fluidtalk_runner::store::Lead>| v.into_iter().map(|l| l.target).collect::<Vec<_>>();
    assert_eq!(
        targets(
            db.store
                .list_leads(&f(None, Some("even"), None))
                .await
                .expect("list")
        ),
        ["@l0", "@l2", "@l4"]
    );
    assert_eq!(
        targets(
            db.store
                .list_leads(&f(Some(LeadState::New), Some("even"), None))
                .await
                .expect("list")
        ),
        ["@l0", "@l4"]
    );
    assert_eq!(
        targets(
            db.store
                .list_leads(&f(Some(LeadState::Blocked), None, None))
                .await
                .expect("list")
        ),
        ["@l2"]
    );
    assert_eq!(
        targets(
            db.store
                .list_leads(&f(None, None, Some(2)))
                .await
                .expect("list")
        ),
        ["@l0", "@l1"]
    );
    assert!(
        db.store
            .list_leads(&f(None, Some("nope"), None))
            .await
            .expect("list")
            .is_empty()
    );
}

async fn a_reply_resets_the_quiet_clock_and_the_follow_up_count(db: TestDb) {
    let c = LeadInput {
        state: Some(LeadState::Contacted),
        last_contact_at: Some(t(1)),
        follow_ups_sent: Some(2),
        ..lead("@c")
    };
    import(&db, vec![c, lead("@e")], t(2)).await;
    let c = db
        .store
        .record_reply("@c", t(5), t(6))
        .await
        .expect("reply");
    assert_eq!(c.state, LeadState::Contacted);
    assert_eq!(c.follow_ups_sent, 0);
    assert_eq!(c.last_reply_at, Some(t(5)));
    // An older reply does not move the clock back.
    let c = db
        .store
        .record_reply("@c", t(3), t(7))
        .await
        .expect("reply");
    assert_eq!(c.last_reply_at, Some(t(5)));

    db.exec("UPDATE leads SET state = 'exhausted', follow_ups_sent = 3 WHERE target = '@e'")
        .await;
    let e = db
        .store
        .record_reply("@e", t(8), t(8))
        .await
        .expect("reply");
    assert_eq!(
        e.state,
        LeadState::Contacted,
        "an exhausted lead is worked again"
    );
    assert_eq!(e.follow_ups_sent, 0);

    let err = db
        .store
        .record_reply("@nobody", t(8), t(8))
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

async fn block_and_unblock_follow_the_lifecycle(db: TestDb) {
    let c = LeadInput {
        state: Some(LeadState::Contacted),
        last_contact_at: Some(t(1)),
        ..lead("@c")
    };
    import(&db, vec![lead("@n"), c], t(2)).await;
    assert_eq!(
        db.store
            .apply_user_action("@n", UserAction::Block, t(3))
            .await
            .expect("block")
            .state,
        LeadState::Blocked
    );
    let err = db
        .store
        .apply_user_action("@n", UserAction::Block, t(3))
        .await
        .expect_err("twice");
    assert!(matches!(err, StoreError::Refused(_)), "{err}");
    assert_eq!(
        db.store
            .apply_user_action("@n", UserAction::Unblock, t(4))
            .await
            .expect("unblock")
            .state,
        LeadState::New
    );
    let err = db
        .store
        .apply_user_action("@n", UserAction::Unblock, t(4))
        .await
        .expect_err("not blocked");
    assert!(err.to_string().contains("it is not blocked"), "{err}");

    db.store
        .apply_user_action("@c", UserAction::Block, t(5))
        .await
        .expect("block");
    let c = db
        .store
        .apply_user_action("@c", UserAction::Unblock, t(6))
        .await
        .expect("unblock");
    assert_eq!(
        c.state,
        LeadState::Contacted,
        "a contacted lead goes back to contacted"
    );
    assert_eq!(c.next_eligible_at, t(6));
    let err = db
        .store
        .apply_user_action("@c", UserAction::Retry, t(6))
        .await
        .expect_err("not failed");
    assert!(matches!(err, StoreError::Refused(_)), "{err}");
}

async fn the_database_refuses_a_second_send_of_the_same_step(db: TestDb) {
    import(&db, vec![lead("@a"), lead("@b")], t(9)).await;
    let a = get(&db, "@a").await.id;
    let b = get(&db, "@b").await.id;
    let ids = db
        .store
        .start_attempts(&[attempt(a, Action::Opener, 0), attempt(b, Action::Opener, 0)])
        .await
        .expect("start");
    assert_eq!(ids.len(), 2);
    let err = db
        .store
        .start_attempts(&[attempt(a, Action::Opener, 0)])
        .await
        .expect_err("in flight");
    assert!(matches!(err, StoreError::AlreadySent { .. }), "{err}");
    // All or none: a batch with one refused attempt writes none.
    let c = {
        import(&db, vec![lead("@c")], t(9)).await;
        get(&db, "@c").await.id
    };
    let err = db
        .store
        .start_attempts(&[attempt(c, Action::Opener, 0), attempt(b, Action::Opener, 0)])
        .await
        .expect_err("b in flight");
    assert!(
        matches!(err, StoreError::AlreadySent { lead_id, .. } if lead_id == b),
        "the error names the lead whose step is taken: {err}"
    );
    assert!(db.store.attempts_for(c).await.expect("attempts").is_empty());

    db.store
        .finish_attempts(&[
            end(ids[0], AttemptStatus::Sent, Some("hi")),
            end(ids[1], AttemptStatus::TransientError, None),
        ])
        .await
        .expect("finish");
    let err = db
        .store
        .start_attempts(&[attempt(a, Action::Opener, 0)])
        .await
        .expect_err("sent");
    assert!(matches!(err, StoreError::AlreadySent { .. }));
    // A step that failed transiently may be tried again; another step is another send.
    db.store
        .start_attempts(&[attempt(b, Action::Opener, 0)])
        .await
        .expect("retry after a transient failure");
    db.store
        .start_attempts(&[attempt(a, Action::FollowUp, 1)])
        .await
        .expect("the next step");
    let history = db.store.attempts_for(a).await.expect("attempts");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].action, Action::FollowUp, "newest first");
    assert_eq!(history[1].status, AttemptStatus::Sent);
    assert_eq!(history[1].session_id.as_deref(), Some("sess-1"));
}

async fn retry_of_a_needs_review_lead_frees_its_unknown_step(db: TestDb) {
    import(&db, vec![lead("@r")], t(9)).await;
    let r = get(&db, "@r").await.id;
    db.store
        .start_attempts(&[attempt(r, Action::Opener, 0)])
        .await
        .expect("start");
    db.exec("UPDATE leads SET state = 'needs_review' WHERE target = '@r'")
        .await;
    let lead = db
        .store
        .apply_user_action("@r", UserAction::Retry, t(12))
        .await
        .expect("retry");
    assert_eq!(lead.state, LeadState::New);
    assert_eq!(lead.next_eligible_at, t(12));
    assert_eq!(
        db.store.attempts_for(r).await.expect("attempts")[0].status,
        AttemptStatus::Unknown
    );
    db.store
        .start_attempts(&[attempt(r, Action::Opener, 0)])
        .await
        .expect("the step may be sent again");
}

async fn text_from_finished_attempts_waits_in_the_outbox_until_acked(db: TestDb) {
    import(&db, vec![lead("@a"), lead("@b")], t(9)).await;
    let a = get(&db, "@a").await.id;
    let b = get(&db, "@b").await.id;
    let ids = db
        .store
        .start_attempts(&[attempt(a, Action::Opener, 0), attempt(b, Action::Opener, 0)])
        .await
        .expect("start");
    db.store
        .finish_attempts(&[
            end(ids[0], AttemptStatus::Sent, Some("Hi @a!")),
            end(ids[1], AttemptStatus::Continued, Some("")),
        ])
        .await
        .expect("finish");
    let pending = db.store.outbox(false).await.expect("outbox");
    assert_eq!(pending.len(), 1, "empty text is nothing to deliver");
    assert_eq!(
        (
            pending[0].target.as_str(),
            pending[0].message.as_str(),
            pending[0].action.as_str()
        ),
        ("@a", "Hi @a!", "opener")
    );
    assert_eq!(pending[0].attempt_id, ids[0]);
    let acked = db
        .store
        .ack_outbox(&[pending[0].id, 999_999], t(12))
        .await
        .expect("ack");
    assert_eq!(acked, vec![pending[0].id]);
    assert!(
        db.store
            .ack_outbox(&[pending[0].id], t(13))
            .await
            .expect("ack")
            .is_empty(),
        "acked once"
    );
    assert!(db.store.outbox(false).await.expect("outbox").is_empty());
    let all = db.store.outbox(true).await.expect("outbox");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].acked_at, Some(t(12)));
}

async fn a_queued_event_adds_an_unknown_lead_and_keeps_its_context_text(db: TestDb) {
    let ctx = r#"{"zeta":1,"alpha":"🔥"}"#;
    let ev = db
        .store
        .queue_event(&NewEvent {
            target: "@fan",
            event_type: "story_reaction",
            context: Some(ctx),
            now: t(9),
        })
        .await
        .expect("queue");
    assert_eq!(ev.target, "@fan");
    assert_eq!(ev.state, "queued");
    assert_eq!(get(&db, "@fan").await.state, LeadState::New);
    db.store
        .queue_event(&NewEvent {
            target: "@fan",
            event_type: "follow",
            context: None,
            now: t(10),
        })
        .await
        .expect("queue");
    let queued = db
        .store
        .queued_events(Some("story_reaction"))
        .await
        .expect("queued");
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].context.as_deref(),
        Some(ctx),
        "key order and text kept"
    );
    assert_eq!(db.store.queued_events(None).await.expect("queued").len(), 2);
}

async fn counts_cover_every_state(db: TestDb) {
    import(&db, vec![lead("@a"), lead("@b")], t(9)).await;
    db.store
        .apply_user_action("@b", UserAction::Block, t(9))
        .await
        .expect("block");
    let counts = db.store.count_by_state().await.expect("counts");
    assert_eq!(counts.len(), LeadState::ALL.len());
    assert_eq!(counts[&LeadState::New], 1);
    assert_eq!(counts[&LeadState::Blocked], 1);
    assert_eq!(counts[&LeadState::Done], 0);
}

async fn times_are_stored_as_the_same_instant_in_utc(db: TestDb) {
    let local =
        chrono::DateTime::parse_from_rfc3339("2026-03-29T02:30:00.123456+05:30").expect("t");
    let c = LeadInput {
        state: Some(LeadState::Contacted),
        last_contact_at: Some(local.with_timezone(&Utc)),
        ..lead("@tz")
    };
    import(&db, vec![c], t(9) + Duration::microseconds(7)).await;
    let got = get(&db, "@tz").await;
    assert_eq!(got.last_contact_at, Some(local.with_timezone(&Utc)));
    assert_eq!(got.created_at, t(9) + Duration::microseconds(7));
}

async fn unblocking_a_lead_does_not_free_a_step_still_in_flight(db: TestDb) {
    import(&db, vec![lead("@u")], t(9)).await;
    let u = get(&db, "@u").await.id;
    let ids = db
        .store
        .start_attempts(&[attempt(u, Action::Opener, 0)])
        .await
        .expect("start");
    db.store
        .apply_user_action("@u", UserAction::Block, t(10))
        .await
        .expect("block");
    db.store
        .apply_user_action("@u", UserAction::Unblock, t(10))
        .await
        .expect("unblock");
    let err = db
        .store
        .start_attempts(&[attempt(u, Action::Opener, 0)])
        .await
        .expect_err("still in flight");
    assert!(matches!(err, StoreError::AlreadySent { .. }), "{err}");
    // The call in flight still lands.
    let finished = db
        .store
        .finish_attempts(&[end(ids[0], AttemptStatus::Sent, Some("hi"))])
        .await
        .expect("finish");
    assert_eq!(finished, ids);
}

async fn a_late_or_repeated_answer_changes_nothing(db: TestDb) {
    import(&db, vec![lead("@l"), lead("@m")], t(9)).await;
    let l = get(&db, "@l").await.id;
    let m = get(&db, "@m").await.id;
    let ids = db
        .store
        .start_attempts(&[attempt(l, Action::Opener, 0), attempt(m, Action::Opener, 0)])
        .await
        .expect("start");
    // @l's outcome is given up on and retried by a person; then its answer arrives late.
    db.exec("UPDATE leads SET state = 'needs_review' WHERE target = '@l'")
        .await;
    db.store
        .apply_user_action("@l", UserAction::Retry, t(10))
        .await
        .expect("retry");
    let batch = [
        end(ids[0], AttemptStatus::Sent, Some("late")),
        end(ids[1], AttemptStatus::Sent, Some("on time")),
    ];
    let finished = db.store.finish_attempts(&batch).await.expect("finish");
    assert_eq!(
        finished,
        vec![ids[1]],
        "only the attempt still in flight is finished"
    );
    assert_eq!(
        db.store.attempts_for(l).await.expect("attempts")[0].status,
        AttemptStatus::Unknown
    );
    // The same answers again: nothing finished, nothing added, no error.
    assert!(
        db.store
            .finish_attempts(&batch)
            .await
            .expect("finish again")
            .is_empty()
    );
    let outbox = db.store.outbox(true).await.expect("outbox");
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].message, "on time");
}

async fn an_import_leaves_a_lead_that_has_attempts_as_it_is(db: TestDb) {
    import(&db, vec![lead("@w")], t(9)).await;
    let w = get(&db, "@w").await.id;
    db.store
        .start_attempts(&[attempt(w, Action::Opener, 0)])
        .await
        .expect("start");
    let row = LeadInput {
        state: Some(LeadState::Contacted),
        last_contact_at: Some(t(1)),
        follow_ups_sent: Some(2),
        tags: Some(vec!["re-imported".into()]),
        ..lead("@w")
    };
    import(&db, vec![row], t(10)).await;
    let w = get(&db, "@w").await;
    assert_eq!(w.state, LeadState::New, "the runner owns this lead now");
    assert_eq!(w.last_contact_at, None);
    assert_eq!(w.follow_ups_sent, 0);
    assert_eq!(
        w.tags,
        vec!["re-imported"],
        "descriptive fields still update"
    );
}

async fn nul_characters_in_answers_are_stored_the_same_on_both_backends(db: TestDb) {
    import(&db, vec![lead("@z")], t(9)).await;
    let z = get(&db, "@z").await.id;
    let ids = db
        .store
        .start_attempts(&[attempt(z, Action::Opener, 0)])
        .await
        .expect("start");
    let mut e = end(ids[0], AttemptStatus::Sent, Some("hi\0there"));
    e.error_detail = Some("odd\0detail".into());
    db.store.finish_attempts(&[e]).await.expect("finish");
    assert_eq!(
        db.store.outbox(false).await.expect("outbox")[0].message,
        "hi\u{fffd}there"
    );
    assert_eq!(
        db.store.attempts_for(z).await.expect("attempts")[0]
            .error_detail
            .as_deref(),
        Some("odd\u{fffd}detail")
    );
}

/// Daemons on one database race for each tick: six store handles (each its own pool, as
/// six processes would have) claim the same 20 ticks at once; each tick goes to exactly
/// one of them, none fails, and a handle asking again for its own tick is told yes.
async fn several_runners_claiming_the_same_ticks_at_once_get_each_exactly_once(db: TestDb) {
    let mut stores = Vec::new();
    for _ in 0..6 {
        stores.push(fluidtalk_runner::store::open(&db.url).await.expect("open"));
    }
    let ticks: Vec<DateTime<Utc>> = (0..20).map(|m| t(9) + Duration::minutes(m)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, store) in stores.into_iter().enumerate() {
        let ticks = ticks.clone();
        tasks.spawn(async move {
            let runner = format!("runner-{i}");
            let mut won = Vec::new();
            for tick in &ticks {
                if store
                    .claim_tick(&fluidtalk_runner::store::Tick {
                        job: "openers",
                        scheduled_at: *tick,
                        runner_id: &runner,
                        now: t(9),
                    })
                    .await
                    .expect("claim a tick")
                {
                    won.push(*tick);
                }
            }
            // Asking again (an answer lost on the way) finds the tick still ours.
            for tick in &won {
                assert!(
                    store
                        .claim_tick(&fluidtalk_runner::store::Tick {
                            job: "openers",
                            scheduled_at: *tick,
                            runner_id: &runner,
                            now: t(9)
                        })
                        .await
                        .expect("claim again")
                );
            }
            won
        });
    }
    let mut all = Vec::new();
    while let Some(won) = tasks.join_next().await {
        all.extend(won.expect("a claiming task"));
    }
    all.sort();
    assert_eq!(all, ticks, "every tick claimed exactly once");
}

common::conformance!(
    several_runners_claiming_the_same_ticks_at_once_get_each_exactly_once,
    a_new_lead_takes_the_defaults_and_an_update_changes_only_given_fields,
    duplicate_targets_in_one_batch_merge_and_count_as_updates,
    a_batch_of_new_and_existing_leads_inserts_the_new_and_updates_only_the_rest,
    an_import_moves_an_existing_campaign_in_but_never_moves_a_worked_lead_back,
    an_atomic_import_that_is_not_kept_leaves_nothing,
    list_filters_by_state_and_tag_in_id_order_with_a_limit,
    a_reply_resets_the_quiet_clock_and_the_follow_up_count,
    block_and_unblock_follow_the_lifecycle,
    the_database_refuses_a_second_send_of_the_same_step,
    retry_of_a_needs_review_lead_frees_its_unknown_step,
    text_from_finished_attempts_waits_in_the_outbox_until_acked,
    a_queued_event_adds_an_unknown_lead_and_keeps_its_context_text,
    counts_cover_every_state,
    times_are_stored_as_the_same_instant_in_utc,
    a_schema_newer_than_the_binary_is_refused,
    unblocking_a_lead_does_not_free_a_step_still_in_flight,
    a_late_or_repeated_answer_changes_nothing,
    an_import_leaves_a_lead_that_has_attempts_as_it_is,
    nul_characters_in_answers_are_stored_the_same_on_both_backends,
    the_daily_cap_is_counted_and_taken_in_one_transaction,
    concurrent_capped_starts_from_separate_connections_never_pass_the_cap,
    a_claim_repeated_with_its_token_is_the_same_claim,
    a_page_of_due_leads_carries_each_lead_as_it_is_stored,
);

async fn the_daily_cap_is_counted_and_taken_in_one_transaction(db: TestDb) {
    let targets: Vec<String> = (0..5).map(|i| format!("@cap{i}")).collect();
    import(&db, targets.iter().map(|t| lead(t)).collect(), t(9)).await;
    let mut ids = Vec::new();
    for t in &targets {
        ids.push(get(&db, t).await.id);
    }
    let cap = Some(DailyCap {
        since: t(0),
        limit: 3,
    });
    let first = db
        .store
        .start_attempts_within(
            &[
                attempt(ids[0], Action::Opener, 0),
                attempt(ids[1], Action::Opener, 0),
            ],
            cap,
        )
        .await
        .expect("start");
    let first = started(first);
    assert_eq!(first.len(), 2);
    // Only one more fits: the front of the batch goes in, the rest is not recorded.
    let second = db
        .store
        .start_attempts_within(
            &[
                attempt(ids[2], Action::Opener, 0),
                attempt(ids[3], Action::Opener, 0),
            ],
            cap,
        )
        .await
        .expect("start");
    let second = started(second);
    assert_eq!(second.len(), 1);
    assert_eq!(db.store.attempts_for(ids[2]).await.expect("a").len(), 1);
    assert!(db.store.attempts_for(ids[3]).await.expect("a").is_empty());
    // A failed attempt frees its place; one from before `since` never counted.
    db.store
        .finish_attempts(&[end(first[0], AttemptStatus::TransientError, None)])
        .await
        .expect("finish");
    let third = db
        .store
        .start_attempts_within(
            &[
                attempt(ids[4], Action::Opener, 0),
                attempt(ids[3], Action::Opener, 0),
            ],
            cap,
        )
        .await
        .expect("start");
    let third = started(third);
    assert_eq!(third.len(), 1, "one place was freed");
    let next_day = Some(DailyCap {
        since: t(11),
        limit: 3,
    });
    let fourth = db
        .store
        .start_attempts_within(&[attempt(ids[3], Action::Opener, 0)], next_day)
        .await
        .expect("start");
    let fourth = started(fourth);
    assert_eq!(fourth.len(), 1, "a new day starts empty");
    // Another job's attempts do not count.
    let mut other = attempt(ids[0], Action::Opener, 1);
    other.job = "other".into();
    assert_eq!(
        started(
            db.store
                .start_attempts_within(&[other], cap)
                .await
                .expect("start")
        )
        .len(),
        1
    );
}

async fn concurrent_capped_starts_from_separate_connections_never_pass_the_cap(db: TestDb) {
    let targets: Vec<String> = (0..60).map(|i| format!("@race{i}")).collect();
    import(&db, targets.iter().map(|t| lead(t)).collect(), t(9)).await;
    let mut ids = Vec::new();
    for t in &targets {
        ids.push(get(&db, t).await.id);
    }
    let cap = Some(DailyCap {
        since: t(0),
        limit: 25,
    });
    // Six store handles (six pools, as six runners would have), each starting ten at the
    // same moment, in two rounds so each round's count can race the others' inserts.
    let mut stores = Vec::new();
    for _ in 0..6 {
        stores.push(fluidtalk_runner::store::open(&db.url).await.expect("open"));
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(6));
    let mut tasks = tokio::task::JoinSet::new();
    for (chunk, store) in ids.chunks(10).zip(stores) {
        let batches: Vec<Vec<NewAttempt>> = chunk
            .chunks(5)
            .map(|c| c.iter().map(|id| attempt(*id, Action::Opener, 0)).collect())
            .collect();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let mut n = 0;
            for batch in batches {
                barrier.wait().await;
                n += started(
                    store
                        .start_attempts_within(&batch, cap)
                        .await
                        .expect("start"),
                )
                .len();
            }
            n
        });
    }
    let mut started = 0;
    while let Some(n) = tasks.join_next().await {
        started += n.expect("task");
    }
    assert_eq!(started, 25);
    let mut recorded = 0;
    for id in &ids {
        recorded += db.store.attempts_for(*id).await.expect("a").len();
    }
    assert_eq!(recorded, 25);
}

async fn a_claim_repeated_with_its_token_is_the_same_claim(db: TestDb) {
    import(&db, vec![lead("@x"), lead("@y")], t(9)).await;
    let x = get(&db, "@x").await.id;
    let y = get(&db, "@y").await.id;
    let until = t(10) + Duration::minutes(5);
    let first = db
        .store
        .claim_leads(
            &[x],
            Lease {
                lease_token: "host-1/1",
                now: t(10),
                until,
            },
        )
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    // The same token again (a retry after a lost answer) gets the same lead back ...
    let again = db
        .store
        .claim_leads(
            &[x, y],
            Lease {
                lease_token: "host-1/1",
                now: t(10),
                until,
            },
        )
        .await
        .expect("claim");
    assert_eq!(again.iter().map(|l| l.id).collect::<Vec<_>>(), vec![x, y]);
    // ... another token, even of the same process, does not.
    let other = db
        .store
        .claim_leads(
            &[x, y],
            Lease {
                lease_token: "host-1/2",
                now: t(10),
                until,
            },
        )
        .await
        .expect("claim");
    assert!(other.is_empty());
    // Until the lease runs out.
    let late = db
        .store
        .claim_leads(
            &[x],
            Lease {
                lease_token: "host-2/1",
                now: until,
                until: until + Duration::minutes(5),
            },
        )
        .await
        .expect("claim");
    assert_eq!(late.len(), 1);
}

async fn a_schema_newer_than_the_binary_is_refused(db: TestDb) {
    db.exec(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from the future', TRUE, '', 0)",
    )
    .await;
    let err = fluidtalk_runner::store::open(&db.url)
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99990101000000,
                known,
            } if (2..99990101000000).contains(&known)

        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("upgrade fluidtalk-runner"),
        "{err}"
    );
}

/// Every due lead of `due` at `now`, read in pages of `limit` from the start.
async fn due_pages(db: &TestDb, due: &Due, now: DateTime<Utc>, limit: u32) -> Vec<DueLead> {
    let mut after = None;
    let mut all = Vec::new();
    loop {
        let page = db
            .store
            .due_leads(&DueQuery {
                due: due.clone(),
                now,
                limit,
                after,
                segment: Default::default(),
            })
            .await
            .expect("a page of due leads");
        assert!(
            page.len() <= limit as usize,
            "a page holds at most its limit"
        );
        let Some(last) = page.last() else {
            return all;
        };
        after = Some((last.since, last.lead.id));
        all.extend(page);
    }
}

/// A page of due leads (on SQLite read as one row of JSON) carries each lead exactly as
/// the store reads it elsewhere, whatever characters its text holds, in order, each once,
/// across pages that split leads sharing one eligibility time.
async fn a_page_of_due_leads_carries_each_lead_as_it_is_stored(db: TestDb) {
    let odd = [
        "@plain",
        "@quote\"d",
        "@back\\slash",
        "@new\nline",
        "@tab\there",
        "@\u{1}ctrl",
        "@ünïcödé",
        "@crab\u{1f980}",
        "@</script>",
        "@[1,\"x\"]",
    ];
    let rows = odd
        .iter()
        .enumerate()
        .map(|(i, target)| LeadInput {
            own_username: (i % 2 == 0).then(|| format!("me \"{i}\" \\")),
            timezone: (i % 3 == 0).then(|| "America/Santiago".into()),
            profile_image: (i % 2 == 1).then(|| format!("https://img.example/{i}?q=\\u0041")),
            tags: Some(if i % 4 == 0 {
                Vec::new()
            } else {
                vec![format!("t\"{i}"), "ß\\".into(), "[]".into()]
            }),
            ..lead(target)
        })
        .collect();
    import(&db, rows, t(9)).await;
    db.exec(
        "UPDATE leads SET session_id = 's\"1', last_error = 'e \\ \"x\" ''y''',
                          pending_event = 'reply', reopens = 2, transient_failures = 3
         WHERE target = '@plain'",
    )
    .await;
    // Two contacted leads, quiet since different times.
    let contacted = [("@quiet2", t(2)), ("@quiet1", t(1))].map(|(target, at)| LeadInput {
        state: Some(LeadState::Contacted),
        last_contact_at: Some(at + Duration::microseconds(123_456)),
        tags: Some(vec!["\u{7f}\\\"".into()]),
        ..lead(target)
    });
    import(&db, contacted.to_vec(), t(9)).await;
    let plain = get(&db, "@plain").await;
    assert_eq!(plain.last_error.as_deref(), Some("e \\ \"x\" 'y'"));
    assert_eq!((plain.reopens, plain.transient_failures), (2, 3));

    for limit in [1, 3, 500] {
        let got = due_pages(&db, &Due::Opener, t(10), limit).await;
        let targets: Vec<&str> = got.iter().map(|d| d.lead.target.as_str()).collect();
        assert_eq!(
            targets, odd,
            "pages of {limit}: every new lead once, in id order"
        );
        for d in &got {
            let stored = get(&db, &d.lead.target).await;
            assert_eq!(d.lead, stored, "pages of {limit}");
            assert_eq!(d.since, stored.next_eligible_at);
        }
    }

    let follow_ups = Due::FollowUp {
        cutoffs: vec![t(9)],
        max: 1,
    };
    for limit in [1, 500] {
        let got = due_pages(&db, &follow_ups, t(10), limit).await;
        let targets: Vec<&str> = got.iter().map(|d| d.lead.target.as_str()).collect();
        assert_eq!(targets, ["@quiet1", "@quiet2"], "quiet longest first");
        for d in &got {
            let stored = get(&db, &d.lead.target).await;
            assert_eq!(d.lead, stored);
            assert_eq!(Some(d.since), stored.last_contact_at);
        }
    }
}
