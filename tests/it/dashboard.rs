//! The dashboard at `/` over real HTTP, both databases: the login form and its session
//! cookie, the funnel's numbers against the database, the pause banner, Retry and Block
//! with their CSRF token, and what a forged cookie or a missing token gets.

use crate::common;

use common::db::{self, TestDb};
use common::http::{TOKEN, serve};
use common::spawn_sim;
use fluidtalk_runner::clock::Clock;
use fluidtalk_runner::sim::SimConfig;
use fluidtalk_runner::store::PauseScope;
use serde_json::json;

const CAMPAIGN: &str = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\ntimezone = \"Europe/Berlin\"\ndaily_cap = 40\n";

async fn each_backend(test: impl AsyncFn(TestDb)) {
    test(db::sqlite().await).await;
    if let Some(pg) = db::postgres().await {
        test(pg).await;
    }
}

/// The value of the first hidden `csrf` field.
fn csrf(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a csrf field")
        .to_string()
}

/// The count in the funnel's row for `state`.
fn funnel(html: &str, state: &str) -> u64 {
    let row = html
        .split(&format!("data-state=\"{state}\""))
        .nth(1)
        .expect("a row for the state");
    row.split("<td class=\"count\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

#[tokio::test]
async fn the_dashboard_shows_the_database_and_acts_with_its_session() {
    each_backend(async |db| {
        let (sim, _) = spawn_sim(SimConfig::default()).await;
        let api = serve(db, &sim, CAMPAIGN).await;
        api.post(
            "/v1/leads",
            json!({"leads": [{"target": "@a"}, {"target": "@b"}, {"target": "@c"}]}),
        )
        .await;
        api.db
            .exec("UPDATE leads SET state = 'needs_review' WHERE target = '@c'")
            .await;

        // No session: the login form, with a password field.
        let r = api.http.get(api.url("/")).send().await.expect("answered");
        assert_eq!(r.status(), 200);
        let html = r.text().await.expect("html");
        assert!(
            html.contains("type=\"password\"") && html.contains("<label"),
            "{html}"
        );
        let (status, cookie, html) = api.log_in("wrong-token-0123456789").await;
        assert_eq!((status, cookie.is_none()), (401, true));
        assert!(html.contains("role=\"alert\""), "{html}");

        let (status, cookie, _) = api.log_in(TOKEN).await;
        assert_eq!(status, 303, "logged in, sent to the dashboard");
        let set = cookie.expect("a session cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().expect("name=value").to_string();

        let (status, html) = api.page(&cookie).await;
        assert_eq!(status, 200);
        assert_eq!(
            (
                funnel(&html, "new"),
                funnel(&html, "needs_review"),
                funnel(&html, "done")
            ),
            (2, 1, 0)
        );
        assert!(
            html.contains("data-job=\"openers\"") && html.contains("0 / 40"),
            "today's sends against the cap"
        );
        assert!(
            html.contains("data-target=\"@c\""),
            "the lead that needs review is listed"
        );
        assert!(!html.contains("Paused:"));
        assert!(!html.contains(TOKEN), "the token is not in the page");

        // Retry without the form's CSRF token is refused; with it the lead moves.
        let token = csrf(&html);
        let no_redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let r = no_redirect
            .post(api.url("/ui/leads/%40c/retry"))
            .header("cookie", &cookie)
            .form(&[("csrf", "forged")])
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 403);
        let r = no_redirect
            .post(api.url("/ui/leads/%40c/retry"))
            .header("cookie", &cookie)
            .form(&[("csrf", token.as_str())])
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 303);
        let (_, shown) = api.get("/v1/leads/@c").await;
        assert_eq!(shown["lead"]["state"], "new");
        let r = no_redirect
            .post(api.url("/ui/leads/%40b/block"))
            .header("cookie", &cookie)
            .form(&[("csrf", token.as_str())])
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 303);
        let (_, html) = api.page(&cookie).await;
        assert_eq!(
            (
                funnel(&html, "new"),
                funnel(&html, "blocked"),
                funnel(&html, "needs_review")
            ),
            (2, 1, 0)
        );

        // A 402 pause shows as a banner.
        let now = api.clock.now();
        api.db
            .store
            .set_pause(&fluidtalk_runner::store::NewPause {
                scope: PauseScope::NewConversations,
                reason: "FluidTalk 402: insufficient_tokens",
                set_by: "r1",
                now,
                length: &|_| std::time::Duration::from_secs(900),
            })
            .await
            .expect("pause");
        let (_, html) = api.page(&cookie).await;
        assert!(
            html.contains("Paused: new_conversations") && html.contains("insufficient_tokens"),
            "{html}"
        );

        // Recent attempts, filtered by job, outcome and target.
        for t in ["@a", "@c"] {
            let r = api
                .req(reqwest::Method::POST, &format!("/v1/leads/{t}/inbound"))
                .json(&json!({"message": "hi"}))
                .send()
                .await
                .expect("relayed");
            assert!(
                r.status().is_success() || r.status() == 409,
                "{}",
                r.status()
            );
        }
        let rows = |html: &str| html.matches("data-attempt=").count();
        let (_, html) = api.page(&cookie).await;
        let all = rows(&html);
        assert_eq!(all, 2, "{html}");
        let filtered = |q: &'static str| {
            let cookie = cookie.clone();
            let url = api.url(&format!("/?{q}"));
            let http = api.http.clone();
            async move {
                http.get(url)
                    .header("cookie", cookie)
                    .send()
                    .await
                    .expect("answered")
                    .text()
                    .await
                    .expect("html")
            }
        };
        let html = filtered("target=%40a&job=&status=").await;
        assert_eq!(rows(&html), 1, "{html}");
        assert!(
            html.contains("value=\"@a\"") && html.contains("<th scope=\"row\">@a</th>"),
            "{html}"
        );
        let html = filtered("job=%28inbound%29&status=sent&target=").await;
        assert_eq!(
            rows(&html),
            all,
            "every attempt here is a sent inbound call"
        );
        let html = filtered("job=openers&status=&target=").await;
        assert_eq!(rows(&html), 0);
        assert!(html.contains("No attempt matches."));

        // A parked delivery is listed, and Redeliver puts it back in line.
        let now = api.clock.now();
        let claimed = api
            .db
            .store
            .claim_deliveries(
                10,
                fluidtalk_runner::store::Lease {
                    lease_token: "test-deliverer",
                    now,
                    until: now + chrono::Duration::hours(1),
                },
            )
            .await
            .expect("claim");
        assert!(!claimed.is_empty(), "the relay's answers wait for delivery");
        let parked = claimed[0].id;
        assert!(
            api.db
                .store
                .park_delivery(
                    fluidtalk_runner::store::Held {
                        id: parked,
                        lease_token: "test-deliverer"
                    },
                    "HTTP 500 from the webhook",
                    now
                )
                .await
                .expect("park")
        );
        let (_, html) = api.page(&cookie).await;
        assert!(
            html.contains(&format!("data-parked=\"{parked}\""))
                && html.contains("HTTP 500 from the webhook"),
            "{html}"
        );
        let r = no_redirect
            .post(api.url(&format!("/ui/outbox/{parked}/redeliver")))
            .header("cookie", &cookie)
            .form(&[("csrf", token.as_str())])
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 303);
        let (_, html) = api.page(&cookie).await;
        assert!(!html.contains("data-parked="), "nothing parked any more");
        let r = no_redirect
            .post(api.url(&format!("/ui/outbox/{parked}/redeliver")))
            .header("cookie", &cookie)
            .form(&[("csrf", "x")])
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 403);

        // A forged or foreign cookie is no session.
        let forged = format!("{}0", &cookie[..cookie.len() - 1]);
        let (_, html) = api
            .page(if forged == cookie {
                "ft_session=x"
            } else {
                &forged
            })
            .await;
        assert!(html.contains("type=\"password\""), "back to the login form");
        let r = no_redirect
            .post(api.url("/ui/leads/%40a/block"))
            .form(&[("csrf", token.as_str())])
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 401, "no session, no action");
    })
    .await;
}

/// Runs one statement built by the test (its values are the test's own).
async fn exec(db: &TestDb, sql: String) {
    match &db.raw {
        db::Raw::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(p)
            .await
            .map(|_| ()),
        db::Raw::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(p)
            .await
            .map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// One number the database counts.
async fn count(db: &TestDb, sql: &'static str) -> u64 {
    let n: i64 = match &db.raw {
        db::Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        db::Raw::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    u64::try_from(n).expect("a count")
}

/// The chart table's number for `series` on `day` (a series left out of the table is 0).
fn chart(html: &str, day: &str, series: &str) -> u64 {
    let table = html
        .split("<tbody>")
        .find(|t| t.contains("data-series=") || t.contains("data-total"))
        .expect("the chart's table");
    let row = table
        .split(&format!("<tr data-day=\"{day}\">"))
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("a row for {day}"));
    let cell = if series == "total" {
        "data-total>".to_string()
    } else {
        format!("data-series=\"{series}\">")
    };
    row.split(&cell)
        .nth(1)
        .and_then(|r| r.split('<').next())
        .map_or(0, |n| n.parse().expect("a number"))
}

/// The count in the follow-up steps table's row `step`.
fn step(html: &str, step: &str) -> u64 {
    html.split(&format!("data-step=\"{step}\""))
        .nth(1)
        .and_then(|r| r.split("<td class=\"count\">").nth(1))
        .and_then(|r| r.split('<').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a row for step {step}"))
}

#[tokio::test]
async fn the_chart_and_the_follow_up_steps_show_the_database() {
    each_backend(async |db| {
        let (sim, _) = spawn_sim(SimConfig::default()).await;
        let api = serve(db, &sim, CAMPAIGN).await;
        // 11:00 in Berlin (UTC+1): the chart's 14 days are Nov 11 to Nov 24 there, from
        // 2026-11-10T23:00Z.
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        api.clock.set(now);
        let leads: Vec<serde_json::Value> = ["@a", "@b", "@c", "@d", "@e", "@f", "@g"]
            .iter()
            .map(|t| json!({"target": t}))
            .collect();
        api.post("/v1/leads", json!({ "leads": leads })).await;
        for (target, state, sent) in [
            ("@a", "contacted", 0),
            ("@b", "contacted", 1),
            ("@c", "contacted", 1),
            ("@d", "contacted", 2),
            ("@e", "exhausted", 3),
            ("@f", "exhausted", 3),
        ] {
            exec(
                &api.db,
                format!("UPDATE leads SET state = '{state}', follow_ups_sent = {sent} WHERE target = '{target}'"),
            )
            .await;
        }
        // (started, job, status): the first two outside the 14 days.
        let seeded = [
            ("2026-11-09T10:00:00.000000Z", "openers", "sent"), // 15 days ago
            ("2026-11-10T22:50:00.000000Z", "openers", "sent"), // 23:50 on Nov 10 in Berlin
            ("2026-11-10T23:10:00.000000Z", "openers", "sent"), // 00:10 on Nov 11
            ("2026-11-19T22:30:00.000000Z", "openers", "sent"), // 23:30 on Nov 19
            ("2026-11-19T23:30:00.000000Z", "openers", "failed"), // 00:30 on Nov 20
            ("2026-11-24T09:00:00.000000Z", "openers", "sent"),
            ("2026-11-24T09:05:00.000000Z", "(inbound)", "sent"),
            ("2026-11-24T09:59:00.000000Z", "openers", "in_flight"),
        ];
        for (step, (at, job, status)) in seeded.iter().enumerate() {
            exec(
                &api.db,
                format!(
                    "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id)
                     SELECT id, '{job}', 'opener', {step}, '{status}', '{at}', 'seed' FROM leads WHERE target = '@g'"
                ),
            )
            .await;
        }

        let cookie = api.session().await;
        let (status, html) = api.page(&cookie).await;
        assert_eq!(status, 200);
        assert!(
            html.contains("<svg role=\"img\" aria-labelledby=\"calls-chart-title calls-chart-desc\""),
            "{html}"
        );
        assert!(html.contains("Europe/Berlin, the time zone of the first job (openers)"));
        assert!(!html.contains("data-day=\"2026-11-10\""), "not in the 14 days");
        assert!(!html.contains("data-day=\"2026-11-09\""));
        assert_eq!(chart(&html, "2026-11-11", "sent"), 1, "00:10 in Berlin, not the 22:50 before");
        assert_eq!(
            (chart(&html, "2026-11-19", "sent"), chart(&html, "2026-11-19", "failed")),
            (1, 0),
            "23:30 in Berlin is still the 19th"
        );
        assert_eq!(
            (chart(&html, "2026-11-20", "sent"), chart(&html, "2026-11-20", "failed")),
            (0, 1),
            "00:30 in Berlin is the 20th, though the 19th in UTC"
        );
        assert_eq!(
            (chart(&html, "2026-11-24", "sent"), chart(&html, "2026-11-24", "in_flight")),
            (2, 1),
            "the relay's call counts too"
        );
        let shown: u64 = (11..=24)
            .map(|d| chart(&html, &format!("2026-11-{d:02}"), "total"))
            .sum();
        assert_eq!(shown, 6, "8 seeded, 2 before the 14 days");
        // One more call: the chart is kept for a minute on the daemon's clock.
        exec(
            &api.db,
            "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id)
             SELECT id, 'openers', 'opener', 8, 'sent', '2026-11-24T09:30:00.000000Z', 'seed'
             FROM leads WHERE target = '@g'"
                .into(),
        )
        .await;

        // The follow-up steps are the database's.
        let steps = [
            (
                "0",
                count(&api.db, "SELECT COUNT(*) FROM leads WHERE state = 'contacted' AND follow_ups_sent = 0").await,
            ),
            (
                "1",
                count(&api.db, "SELECT COUNT(*) FROM leads WHERE state = 'contacted' AND follow_ups_sent = 1").await,
            ),
            (
                "2",
                count(&api.db, "SELECT COUNT(*) FROM leads WHERE state = 'contacted' AND follow_ups_sent = 2").await,
            ),
            (
                "exhausted",
                count(&api.db, "SELECT COUNT(*) FROM leads WHERE state = 'exhausted'").await,
            ),
        ];
        assert_eq!(
            steps.map(|(_, n)| n),
            [1, 2, 1, 2],
            "the seeding took"
        );
        for (s, n) in steps {
            assert_eq!(step(&html, s), n, "step {s}");
        }
        assert!(!html.contains("data-step=\"3\""), "no contacted lead has 3");
        assert!(html.contains("33.3%"), "2 of 6 at step 1");
        assert_eq!(funnel(&html, "contacted"), 4);

        // Counting reads every lead: the funnel is kept for the refresh interval (10 s on
        // the daemon's clock), then read again.
        exec(&api.db, "UPDATE leads SET state = 'done' WHERE target = '@a'".into()).await;
        let (_, html) = api.page(&cookie).await;
        assert_eq!((funnel(&html, "contacted"), step(&html, "0")), (4, 1), "kept");
        api.clock.advance(chrono::Duration::seconds(9));
        let (_, html) = api.page(&cookie).await;
        assert_eq!(funnel(&html, "contacted"), 4, "still kept after 9 s");
        api.clock.advance(chrono::Duration::seconds(1));
        let (_, html) = api.page(&cookie).await;
        assert_eq!(
            (funnel(&html, "contacted"), funnel(&html, "done"), step(&html, "0")),
            (3, 1, 0),
            "read again after 10 s"
        );
        assert_eq!(chart(&html, "2026-11-24", "sent"), 2, "the chart is kept longer");
        api.clock.advance(chrono::Duration::seconds(49));
        let (_, html) = api.page(&cookie).await;
        assert_eq!(chart(&html, "2026-11-24", "sent"), 2, "kept for 59 s");
        api.clock.advance(chrono::Duration::seconds(1));
        let (_, html) = api.page(&cookie).await;
        assert_eq!(chart(&html, "2026-11-24", "sent"), 3, "read again after a minute");

        // The page updates itself from `/`, uncached; without JavaScript it reloads.
        let r = api
            .http
            .get(api.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("answered");
        assert_eq!(
            r.headers().get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        let html = r.text().await.expect("html");
        assert!(html.contains("<noscript><meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(html.contains("<main id=\"dash\" data-refresh=\"10\">") && html.contains("<script>"));
        // What the script fetches without a session is the login form: no numbers.
        let html = api.http.get(api.url("/")).send().await.expect("answered").text().await.expect("html");
        assert!(!html.contains("id=\"dash\"") && !html.contains("data-day=") && html.contains("type=\"password\""));
    })
    .await;
}
