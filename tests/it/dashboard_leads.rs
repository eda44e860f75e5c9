//! The dashboard's leads and attempts tables over real HTTP, both databases: keyset pages
//! of 50 whose links keep the filters (no lead twice, none missed), the target prefix
//! (`%` and `_` are plain characters), the state, tag and last-job filters, the count
//! that stops at 10,000, and the bulk Retry / Block: asked with the count, refused when
//! more leads match than were confirmed, refused past 10,000, and only from the
//! dashboard's own session and origin.

use crate::common;

use common::db::{self, TestDb};
use common::http::{Api, serve};
use common::spawn_sim;
use fluidtalk_runner::sim::SimConfig;
use serde_json::json;

const CAMPAIGN: &str = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\ntimezone = \"UTC\"\n";

async fn each_backend(test: impl AsyncFn(TestDb)) {
    test(db::sqlite().await).await;
    if let Some(pg) = db::postgres().await {
        test(pg).await;
    }
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
async fn count(db: &TestDb, sql: &str) -> u64 {
    let n: i64 = match &db.raw {
        db::Raw::Sqlite(p) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_one(p)
                .await
        }
        db::Raw::Postgres(p) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_one(p)
                .await
        }
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    u64::try_from(n).expect("a count")
}

/// Adds leads `targets` through the API, 10,000 at most per request.
async fn add(api: &Api, targets: &[String], tags: &[&str]) {
    for chunk in targets.chunks(10_000) {
        let leads: Vec<serde_json::Value> = chunk
            .iter()
            .map(|t| json!({"target": t, "tags": tags}))
            .collect();
        let (status, body) = api.post("/v1/leads", json!({ "leads": leads })).await;
        assert_eq!(status, 200, "{body}");
    }
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// The targets of the leads table's rows, in the page's order.
fn leads_on(html: &str) -> Vec<String> {
    html.split("<tr data-lead=\"")
        .skip(1)
        .map(|r| unescape(r.split('"').next().expect("a target")))
        .collect()
}

/// The `href` of the element with `id`, unescaped, if the page has it.
fn href(html: &str, id: &str) -> Option<String> {
    html.split(&format!("id=\"{id}\" href=\""))
        .nth(1)
        .map(|r| unescape(r.split('"').next().expect("an href")))
}

/// The leads count shown above the table.
fn shown_count(html: &str) -> String {
    html.split("id=\"leads-count\"><span class=\"count\"")
        .nth(1)
        .and_then(|r| r.split('>').nth(1))
        .and_then(|r| r.split('<').next())
        .unwrap_or_else(|| panic!("a count in {html}"))
        .to_string()
}

async fn get(api: &Api, cookie: &str, path_and_query: &str) -> String {
    let r = api
        .http
        .get(api.url(path_and_query))
        .header("cookie", cookie)
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 200, "{path_and_query}");
    r.text().await.expect("html")
}

/// The value of the first hidden `csrf` field.
fn csrf(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a csrf field")
        .to_string()
}

/// POSTs the bulk form `fields` with the session: the status and the page.
async fn bulk(api: &Api, cookie: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(api.url("/ui/leads/bulk"))
        .header("cookie", cookie)
        .form(fields)
        .send()
        .await
        .expect("answered");
    (r.status().as_u16(), r.text().await.expect("html"))
}

#[tokio::test]
async fn the_leads_table_pages_along_the_targets_and_filters() {
    each_backend(async |db| {
        let (sim, _) = spawn_sim(SimConfig::default()).await;
        let api = serve(db, &sim, CAMPAIGN).await;
        // 120 failed leads, every third tagged vip; others around them in target order.
        let failed: Vec<String> = (0..120).map(|i| format!("@p{i:03}")).collect();
        add(&api, &failed, &[]).await;
        let vip: Vec<String> = failed.iter().step_by(3).cloned().collect();
        add(&api, &vip, &["vip"]).await;
        let others: Vec<String> = ["@a", "@p", "@pz", "@q1", "@x%1", "@x_1", "@xa1", "@xb%"]
            .map(String::from)
            .to_vec();
        add(&api, &others, &[]).await;
        exec(&api.db, "UPDATE leads SET state = 'failed' WHERE target LIKE '@p0%' OR target LIKE '@p1%'".into()).await;
        let cookie = api.session().await;

        // Pages of 50, 50 and 20; each next link keeps the filter.
        let mut seen = Vec::new();
        let mut url = "/?lstate=failed".to_string();
        let mut sizes = Vec::new();
        loop {
            let html = get(&api, &cookie, &url).await;
            assert_eq!(shown_count(&html), "120", "{url}");
            let rows = leads_on(&html);
            sizes.push(rows.len());
            seen.extend(rows);
            match href(&html, "leads-next") {
                Some(next) => {
                    assert!(next.contains("lstate=failed"), "the link keeps the filter: {next}");
                    url = next;
                }
                None => break,
            }
            assert!(sizes.len() < 5, "more pages than leads");
        }
        assert_eq!(sizes, [50, 50, 20]);
        assert_eq!(seen, failed, "every failed lead once, in target order, none else");
        // A later page links back to the first, with the filter.
        let html = get(&api, &cookie, "/?lstate=failed&lafter=%40p049").await;
        assert_eq!(leads_on(&html).first().map(String::as_str), Some("@p050"));
        assert_eq!(href(&html, "leads-first").as_deref(), Some("/?lstate=failed#leads"));

        // The prefix, case and characters as stored: `%` and `_` are not wildcards.
        let html = get(&api, &cookie, "/?lq=%40x%25").await;
        assert_eq!(leads_on(&html), ["@x%1"]);
        let html = get(&api, &cookie, "/?lq=%40x_").await;
        assert_eq!(leads_on(&html), ["@x_1"]);
        let html = get(&api, &cookie, "/?lq=%40x").await;
        assert_eq!(leads_on(&html), ["@x%1", "@x_1", "@xa1", "@xb%"]);
        let html = get(&api, &cookie, "/?lq=%40X").await;
        assert!(leads_on(&html).is_empty(), "case as stored");
        let html = get(&api, &cookie, "/?lq=%40p1&lstate=failed").await;
        assert_eq!(leads_on(&html).len(), 20);
        assert_eq!(shown_count(&html), "20");

        // Tags.
        let html = get(&api, &cookie, "/?ltag=vip").await;
        assert_eq!(shown_count(&html), "40");
        assert_eq!(leads_on(&html)[..3], ["@p000", "@p003", "@p006"]);
        assert!(html.contains("<td>vip</td>"), "the row shows its tags");

        // The job of the last attempt: @p001 was called by openers, then by the relay.
        for (target, job, step, at) in [
            ("@p000", "openers", 0, "2026-11-01T09:00:00.000000Z"),
            ("@p001", "openers", 0, "2026-11-01T09:00:00.000000Z"),
            ("@p001", "(inbound)", 1, "2026-11-02T09:00:00.000000Z"),
        ] {
            exec(
                &api.db,
                format!(
                    "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id)
                     SELECT id, '{job}', 'opener', {step}, 'failed', '{at}', 'seed' FROM leads WHERE target = '{target}'"
                ),
            )
            .await;
        }
        let html = get(&api, &cookie, "/?ljob=openers").await;
        assert_eq!(leads_on(&html), ["@p000"]);
        assert!(html.contains("openers: opener step 0, failed, 2026-11-01 09:00 UTC"), "{html}");
        let html = get(&api, &cookie, "/?ljob=%28inbound%29&lstate=failed").await;
        assert_eq!(leads_on(&html), ["@p001"]);

        // A filter that is no filter is said, not ignored.
        let html = get(&api, &cookie, "/?lstate=sleeping").await;
        assert!(
            html.contains("id=\"leads-error\"")
                && html.contains("lstate: &quot;sleeping&quot; is no lead state; expected one of new,"),
            "{html}"
        );
        assert!(leads_on(&html).is_empty());
    })
    .await;
}

#[tokio::test]
async fn the_attempts_table_pages_by_id_with_its_filters() {
    each_backend(async |db| {
        let (sim, _) = spawn_sim(SimConfig::default()).await;
        let api = serve(db, &sim, CAMPAIGN).await;
        add(&api, &["@t_1".to_string(), "@tx1".to_string()], &[]).await;
        // 120 failed calls of @t_1 and 5 of @tx1, interleaved.
        for i in 0..125 {
            let (target, step) = if i % 25 == 24 { ("@tx1", i) } else { ("@t_1", i) };
            exec(
                &api.db,
                format!(
                    "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id)
                     SELECT id, 'openers', 'opener', {step}, 'failed', '2026-11-01T09:00:00.000000Z', 'seed'
                     FROM leads WHERE target = '{target}'"
                ),
            )
            .await;
        }
        let cookie = api.session().await;
        let ids = |html: &str| -> Vec<i64> {
            html.split("data-attempt=\"")
                .skip(1)
                .map(|r| r.split('"').next().expect("id").parse().expect("an id"))
                .collect()
        };
        let mut url = "/?target=%40t_&status=failed".to_string();
        let mut sizes = Vec::new();
        let mut seen: Vec<i64> = Vec::new();
        loop {
            let html = get(&api, &cookie, &url).await;
            let page = ids(&html);
            sizes.push(page.len());
            seen.extend(page);
            match href(&html, "recent-next") {
                Some(next) => {
                    assert!(
                        next.contains("target=%40t_") && next.contains("status=failed"),
                        "{next}"
                    );
                    url = next;
                }
                None => break,
            }
            assert!(sizes.len() < 5);
        }
        assert_eq!(sizes, [50, 50, 20], "@t_ is a prefix of @t_1 only, not of @tx1");
        let mut sorted = seen.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(seen, sorted, "newest first, none twice");
        let all = count(&api.db, "SELECT COUNT(*) FROM attempts a JOIN leads l ON l.id = a.lead_id WHERE l.target = '@t_1'").await;
        assert_eq!(seen.len() as u64, all, "none missed");
        // The attempts' links keep the leads table's filter, and the other way round.
        let html = get(&api, &cookie, "/?target=%40t_&lstate=new").await;
        let next = href(&html, "recent-next").expect("a next page");
        assert!(next.contains("lstate=new"), "{next}");
        assert!(html.contains("<input type=\"hidden\" name=\"target\" value=\"@t_\">"), "{html}");
    })
    .await;
}

#[tokio::test]
async fn a_bulk_block_asks_with_the_count_and_never_acts_on_more() {
    each_backend(async |db| {
        let (sim, _) = spawn_sim(SimConfig::default()).await;
        let api = serve(db, &sim, CAMPAIGN).await;
        let vip: Vec<String> = (0..10).map(|i| format!("@b{i:02}")).collect();
        add(&api, &vip, &["vip"]).await;
        add(&api, &["@c0".to_string(), "@b99".to_string()], &[]).await;
        exec(&api.db, "UPDATE leads SET state = 'failed'".into()).await;
        let cookie = api.session().await;
        let html = get(&api, &cookie, "/?lstate=failed&ltag=vip").await;
        let token = csrf(&html);
        assert!(
            html.contains("action=\"/ui/leads/bulk\""),
            "bulk buttons for the filter"
        );
        let blocked = async || {
            count(
                &api.db,
                "SELECT COUNT(*) FROM leads WHERE state = 'blocked'",
            )
            .await
        };

        // Refused without the session's token, from another origin, without a session.
        let (status, _) = bulk(
            &api,
            &cookie,
            &[
                ("csrf", "forged"),
                ("action", "block"),
                ("lstate", "failed"),
                ("confirmed", "12"),
            ],
        )
        .await;
        assert_eq!(status, 403);
        let r = reqwest::Client::new()
            .post(api.url("/ui/leads/bulk"))
            .header("cookie", &cookie)
            .header("origin", "http://evil.example")
            .form(&[
                ("csrf", token.as_str()),
                ("action", "block"),
                ("confirmed", "12"),
            ])
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 403);
        let (status, _) = bulk(
            &api,
            "ft_session=x",
            &[("csrf", &token), ("action", "block"), ("confirmed", "12")],
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(blocked().await, 0, "nothing done");

        // Bad input names its field.
        let (status, html) = bulk(&api, &cookie, &[("csrf", &token), ("action", "delete")]).await;
        assert!(
            status == 400 && html.contains("action: &quot;delete&quot; is not a bulk action"),
            "{status} {html}"
        );
        let (status, html) = bulk(
            &api,
            &cookie,
            &[("csrf", &token), ("action", "block"), ("lstate", "asleep")],
        )
        .await;
        assert!(status == 400 && html.contains("lstate:"), "{status} {html}");
        let (status, html) = bulk(
            &api,
            &cookie,
            &[("csrf", &token), ("action", "block"), ("confirmed", "ten")],
        )
        .await;
        assert!(
            status == 400 && html.contains("confirmed:"),
            "{status} {html}"
        );

        // The first POST asks, with the count and the filter.
        let filter = [
            ("csrf", token.as_str()),
            ("action", "block"),
            ("lstate", "failed"),
            ("ltag", "vip"),
        ];
        let (status, html) = bulk(&api, &cookie, &filter).await;
        assert_eq!(status, 200);
        assert!(
            html.contains("Block 10 lead(s) matching state=failed, tag=vip?"),
            "{html}"
        );
        assert!(html.contains("name=\"confirmed\" value=\"10\""), "{html}");
        assert_eq!(blocked().await, 0, "asking does nothing");

        // One more lead matches before the confirmation: nothing is done, it asks again.
        add(&api, &["@b10".to_string()], &["vip"]).await;
        exec(
            &api.db,
            "UPDATE leads SET state = 'failed' WHERE target = '@b10'".into(),
        )
        .await;
        let confirm = |n: &'static str| {
            let mut f = filter.to_vec();
            f.push(("confirmed", n));
            f
        };
        let (status, html) = bulk(&api, &cookie, &confirm("10")).await;
        assert_eq!(status, 409, "{html}");
        assert!(
            html.contains("the filter now matches 11 leads, more than the 10 you confirmed"),
            "{html}"
        );
        assert!(html.contains("name=\"confirmed\" value=\"11\""), "{html}");
        assert_eq!(blocked().await, 0);

        // Confirmed with the new count: the 11 are blocked, nothing else.
        let (status, html) = bulk(&api, &cookie, &confirm("11")).await;
        assert_eq!(status, 200, "{html}");
        assert!(html.contains("Blocked 11 lead(s)"), "{html}");
        assert_eq!(blocked().await, 11);
        assert_eq!(
            count(
                &api.db,
                "SELECT COUNT(*) FROM leads WHERE target IN ('@c0', '@b99') AND state = 'failed'"
            )
            .await,
            2
        );

        // Fewer than confirmed is fine: a lead unblocked meanwhile (back to failed) has left
        // the filter and is not touched; a lead the action does not apply to (a retry of a
        // blocked lead) is skipped and counted.
        let retry = [
            ("csrf", token.as_str()),
            ("action", "retry"),
            ("lstate", "blocked"),
            ("ltag", "vip"),
        ];
        let (_, html) = bulk(&api, &cookie, &retry).await;
        assert!(
            html.contains("Retry 11 lead(s) matching state=blocked, tag=vip?"),
            "{html}"
        );
        let now = chrono::Utc::now();
        api.db
            .store
            .set_blocked(&["@b00".to_string()], false, now)
            .await
            .expect("unblock @b00");
        let mut f = retry.to_vec();
        f.push(("confirmed", "11"));
        let (status, html) = bulk(&api, &cookie, &f).await;
        assert_eq!(status, 200, "{html}");
        assert!(
            html.contains("Retried 0 lead(s)"),
            "a blocked lead is not retried: {html}"
        );
        assert!(
            html.contains("<li id=\"bulk-skipped\">10 skipped"),
            "{html}"
        );
        assert_eq!(blocked().await, 10);
        let (_, b00) = api.get("/v1/leads/@b00").await;
        assert_eq!(b00["lead"]["state"], "failed", "left the filter: untouched");
        // A retry where it applies moves the lead on.
        let retry = [
            ("csrf", token.as_str()),
            ("action", "retry"),
            ("lstate", "failed"),
            ("lq", "@b9"),
        ];
        let (_, html) = bulk(&api, &cookie, &retry).await;
        assert!(
            html.contains(
                "Retry 1 lead(s) matching target starts with &quot;@b9&quot;, state=failed?"
            ),
            "{html}"
        );
        let mut f = retry.to_vec();
        f.push(("confirmed", "1"));
        let (_, html) = bulk(&api, &cookie, &f).await;
        assert!(html.contains("Retried 1 lead(s)"), "{html}");
        let (_, b99) = api.get("/v1/leads/@b99").await;
        assert_eq!(b99["lead"]["state"], "new");
    })
    .await;
}

#[tokio::test]
async fn the_count_stops_at_ten_thousand_and_so_does_a_bulk_action() {
    each_backend(async |db| {
        let (sim, _) = spawn_sim(SimConfig::default()).await;
        let api = serve(db, &sim, CAMPAIGN).await;
        let fill = match &api.db.raw {
            db::Raw::Sqlite(_) => {
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10001)
                 INSERT INTO leads (target, state, created_at, updated_at, next_eligible_at)
                 SELECT '@m' || printf('%05d', i), 'failed', '2026-11-01T09:00:00.000000Z',
                        '2026-11-01T09:00:00.000000Z', '2026-11-01T09:00:00.000000Z' FROM n"
            }
            db::Raw::Postgres(_) => {
                "INSERT INTO leads (target, state, created_at, updated_at, next_eligible_at)
                 SELECT '@m' || lpad(i::text, 5, '0'), 'failed', TIMESTAMPTZ '2026-11-01 09:00Z',
                        TIMESTAMPTZ '2026-11-01 09:00Z', TIMESTAMPTZ '2026-11-01 09:00Z'
                 FROM generate_series(1, 10001) i"
            }
        };
        exec(&api.db, fill.into()).await;
        let cookie = api.session().await;
        let html = get(&api, &cookie, "/?lstate=failed").await;
        assert_eq!(shown_count(&html), "10,000+");
        assert_eq!(leads_on(&html).len(), 50);
        let html = get(&api, &cookie, "/?lq=%40m0999").await;
        assert_eq!(shown_count(&html), "10", "a count under the cap is exact");
        let token = csrf(&html);

        // 10,001 leads: refused, asked or confirmed.
        let (status, html) = bulk(
            &api,
            &cookie,
            &[("csrf", &token), ("action", "block"), ("lstate", "failed")],
        )
        .await;
        assert_eq!(status, 422, "{html}");
        assert!(
            html.contains("More than 10,000 leads match state=failed"),
            "{html}"
        );
        let (status, _) = bulk(
            &api,
            &cookie,
            &[
                ("csrf", &token),
                ("action", "block"),
                ("lstate", "failed"),
                ("confirmed", "10001"),
            ],
        )
        .await;
        assert_eq!(status, 422);
        let (status, html) = bulk(
            &api,
            &cookie,
            &[
                ("csrf", &token),
                ("action", "block"),
                ("lstate", "failed"),
                ("confirmed", "10000"),
            ],
        )
        .await;
        assert_eq!(status, 422, "the store refuses past the limit too: {html}");
        assert_eq!(
            count(
                &api.db,
                "SELECT COUNT(*) FROM leads WHERE state = 'blocked'"
            )
            .await,
            0
        );
        // One lead fewer is within the limit.
        exec(
            &api.db,
            "UPDATE leads SET state = 'done' WHERE target = '@m00001'".into(),
        )
        .await;
        let (status, html) = bulk(
            &api,
            &cookie,
            &[("csrf", &token), ("action", "block"), ("lstate", "failed")],
        )
        .await;
        assert_eq!(status, 200, "{html}");
        assert!(
            html.contains("Block 10,000 lead(s) matching state=failed?"),
            "{html}"
        );
    })
    .await;
}
