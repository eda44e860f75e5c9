//! The dashboard in a real headless Chromium, driven over WebDriver (chromedriver and
//! fantoccini) against a server on port 0 with a seeded database: a wrong token is
//! refused, the login lands on the dashboard, the funnel shows the database's numbers and
//! the calls chart is drawn, the page updates itself when the database changes (no
//! navigation), Retry moves a lead, a 402 pause shows its banner, and when the session
//! ends the page's own update turns into the login form. Each step leaves a screenshot under
//! `target/tmp/browser/` for a person to look at.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without
//! them the test says so and passes, unless `FLUIDTALK_BROWSER_TESTS=1` (CI sets it) makes
//! their absence a failure.

use crate::common;

use common::http::{Api, TOKEN, serve};
use common::{KillOnDrop, spawn_sim};
use fantoccini::{Client, ClientBuilder, Locator};
use fluidtalk_runner::clock::Clock;
use fluidtalk_runner::sim::SimConfig;
use fluidtalk_runner::store::PauseScope;
use serde_json::json;
use std::time::Duration;

const REQUIRED: &str = "FLUIDTALK_BROWSER_TESTS";

/// chromedriver on a free port, or `None` (said on stderr) where it is not installed and
/// not required.
async fn chromedriver() -> Option<(KillOnDrop, String)> {
    let found = std::process::Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os(REQUIRED).is_none(),
            "{REQUIRED} is set but chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "NOTE: chromedriver is not installed: the browser test was skipped ({REQUIRED}=1 makes that a failure)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((KillOnDrop(child), url))
}

async fn browser(webdriver: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1000"]}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a headless Chromium session")
}

async fn shot(c: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// The text of the first element matching `css`, once the page shows one (a click's
/// navigation may still be loading). The page swaps its content by itself: an element
/// replaced between finding and reading it is found again.
async fn text(c: &Client, css: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = c
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .expect(css);
        match found.text().await {
            Ok(t) => return t,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "{css}: {e}"),
        }
    }
}

async fn log_in(c: &Client, api: &Api, password: &str) {
    c.goto(&api.url("/")).await.expect("open the dashboard");
    let field = c
        .find(Locator::Css("input#password"))
        .await
        .expect("a password field");
    field.send_keys(password).await.expect("type");
    c.find(Locator::Css("button[type=submit]"))
        .await
        .expect("a button")
        .click()
        .await
        .expect("submit");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_a_real_browser() {
    let Some((_driver, webdriver)) = chromedriver().await else {
        return;
    };
    let (sim, _) = spawn_sim(SimConfig::default()).await;
    // One opener a day, in UTC (so the calls chart's days are UTC days).
    let campaign = "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\ntimezone = \"UTC\"\ndaily_cap = 1\n";
    let api = serve(common::db::sqlite().await, &sim, campaign).await;
    api.post(
        "/v1/leads",
        json!({"leads": [{"target": "@a"}, {"target": "@b"}, {"target": "@c"}]}),
    )
    .await;
    api.db
        .exec("UPDATE leads SET state = 'needs_review' WHERE target = '@c'")
        .await;
    // Calls on three of the last days, for the chart (UTC days: no job, no zone).
    api.db
        .exec(
            "INSERT INTO attempts (lead_id, job, action, step, status, started_at, runner_id)
             SELECT l.id, '(inbound)', 'inbound', d.n, d.status,
                    strftime('%Y-%m-%dT%H:%M:%S', 'now', '-' || d.days || ' days') || '.000000Z', 'seed'
             FROM leads l, (SELECT 1 AS n, 'sent' AS status, 1 AS days
                            UNION ALL SELECT 2, 'sent', 1 UNION ALL SELECT 3, 'failed', 1
                            UNION ALL SELECT 4, 'sent', 3 UNION ALL SELECT 5, 'out_of_tokens', 3
                            UNION ALL SELECT 6, 'sent', 6) d
             WHERE l.target = '@a'",
        )
        .await;
    let c = browser(&webdriver).await;

    log_in(&c, &api, "not-the-token-0123456789").await;
    assert!(text(&c, "[role=alert]").await.contains("not the token"));
    shot(&c, "1-wrong-token").await;

    log_in(&c, &api, TOKEN).await;
    assert_eq!(text(&c, "tr[data-state=new] td.count").await, "2");
    assert_eq!(text(&c, "tr[data-state=needs_review] td.count").await, "1");
    let svg = c
        .find(Locator::Css("figure#calls-chart svg[role=img]"))
        .await
        .expect("the calls chart");
    assert!(
        svg.is_displayed().await.expect("displayed?"),
        "the chart shows"
    );
    let size = svg.rectangle().await.expect("its box");
    assert!(
        size.2 > 300.0 && size.3 > 100.0,
        "drawn at a readable size: {size:?}"
    );
    let bars = c
        .find_all(Locator::Css("figure#calls-chart svg rect"))
        .await
        .expect("bars");
    assert_eq!(
        bars.len(),
        5,
        "sent and failed, sent and out_of_tokens, sent"
    );
    c.execute(
        "document.getElementById('calls').scrollIntoView(); return 0;",
        vec![],
    )
    .await
    .expect("scroll to the chart");
    shot(&c, "2a-chart").await;
    c.set_window_size(390, 844).await.expect("a phone's width");
    c.execute(
        "document.getElementById('calls').scrollIntoView(); return 0;",
        vec![],
    )
    .await
    .expect("scroll to the chart");
    shot(&c, "2a-chart-phone").await;
    c.set_window_size(1200, 1000)
        .await
        .expect("a laptop's width");
    // The forecast: the two new leads, one a day (the cap), drawn and in its table.
    let forecast = c
        .find(Locator::Css("figure#forecast-chart svg[role=img]"))
        .await
        .expect("the forecast chart");
    assert!(forecast.is_displayed().await.expect("displayed?"));
    let openers = c
        .execute(
            "return Array.from(document.querySelectorAll(\
             '#forecast-chart-numbers td[data-series=openers]'))\
             .reduce(function (s, td) { return s + parseInt(td.textContent, 10); }, 0);",
            vec![],
        )
        .await
        .expect("the forecast's numbers");
    assert_eq!(openers, json!(2));
    let bars = c
        .find_all(Locator::Css("figure#forecast-chart svg rect"))
        .await
        .expect("bars");
    assert_eq!(bars.len(), 2, "one opener on each of two days");
    c.execute(
        "document.getElementById('forecast').scrollIntoView(); return 0;",
        vec![],
    )
    .await
    .expect("scroll to the forecast");
    shot(&c, "2c-forecast").await;
    c.set_window_size(1200, 1000)
        .await
        .expect("a laptop's width");
    shot(&c, "2-dashboard").await;

    // The page updates itself: a lead blocked behind its back shows up without a reload
    // (the mark set on this page survives: no navigation happened).
    c.execute(
        "window.stayed = 42; \
         var d = document.getElementById('calls-chart-numbers'); d.open = true; \
         d.querySelector('summary').focus(); return 0;",
        vec![],
    )
    .await
    .expect("mark the page, open the chart's numbers, focus their summary");
    assert_eq!(text(&c, "tr[data-state=blocked] td.count").await, "0");
    let now = api.clock.now();
    fluidtalk_runner::store::block_adding(&*api.db.store, "@a", now)
        .await
        .expect("block @a");
    // The dashboard counts the funnel at most once per refresh interval (on the daemon's
    // clock): move that clock past it.
    api.clock.advance(chrono::Duration::seconds(11));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if text(&c, "tr[data-state=blocked] td.count").await == "1" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page did not update itself within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(text(&c, "tr[data-state=new] td.count").await, "1");
    let stayed = c
        .execute("return window.stayed;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(stayed, json!(42), "updated in place, not reloaded");
    let kept = c
        .execute(
            "var d = document.getElementById('calls-chart-numbers'); \
             return [d.open, document.activeElement === d.querySelector('summary')];",
            vec![],
        )
        .await
        .expect("read the numbers' state");
    assert_eq!(kept, json!([true, true]), "still open, focus still on it");
    shot(&c, "2b-updated-by-itself").await;

    let retry = c
        .find(Locator::Css(
            "tr[data-target='@c'] button[aria-label='Retry @c']",
        ))
        .await
        .expect("a Retry button for @c");
    retry.click().await.expect("press Retry");
    // The form posts, then lands back on the dashboard at its review section.
    let back = url::Url::parse(&api.url("/#review")).expect("url");
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_url(&back)
        .await
        .expect("back on the dashboard after Retry");
    assert_eq!(text(&c, "tr[data-state=needs_review] td.count").await, "0");
    assert_eq!(text(&c, "tr[data-state=new] td.count").await, "2");
    let (_, shown) = api.get("/v1/leads/@c").await;
    assert_eq!(shown["lead"]["state"], "new");
    shot(&c, "3-after-retry").await;

    let now = api.clock.now();
    api.db
        .store
        .set_pause(&fluidtalk_runner::store::NewPause {
            scope: PauseScope::NewConversations,
            reason: "FluidTalk 402: insufficient_tokens",
            set_by: "r1",
            now,
            length: &|_| Duration::from_secs(900),
        })
        .await
        .expect("pause");
    c.refresh().await.expect("reload");
    assert!(
        text(&c, "section.banner")
            .await
            .contains("Paused: new_conversations")
    );
    shot(&c, "4-pause-banner").await;

    // When the session ends, the page's next update shows the login form, not data.
    api.clock.advance(chrono::Duration::hours(13));
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css("input#password"))
        .await
        .expect("the login form once the session ended");
    assert!(
        c.find(Locator::Css("main#dash")).await.is_err(),
        "no dashboard left on the page"
    );
    shot(&c, "5-session-ended").await;
    c.close().await.expect("close the browser");
}

/// Issue 20: a lead whose fields hold markup (`<script>`, an `<img onerror>`) is shown as
/// text, nothing of theirs runs; and the page's Content-Security-Policy is enforced by the
/// browser itself: the page's own style applies, while a script or a style that anything
/// slips into the page is refused (a `securitypolicyviolation` event), so even markup that
/// got through would not run.
#[tokio::test(flavor = "multi_thread")]
async fn a_lead_holding_markup_runs_nothing_and_the_policy_holds() {
    let Some((_driver, webdriver)) = chromedriver().await else {
        return;
    };
    let (sim, _) = spawn_sim(SimConfig::default()).await;
    let api = serve(
        common::db::sqlite().await,
        &sim,
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\n",
    )
    .await;
    let target = "<script>window.pwned='target'</script>";
    let (status, body) = api
        .post(
            "/v1/leads",
            json!({"leads": [{"target": target, "tags": ["<img src=x onerror=\"window.pwned='tag'\">"]}]}),
        )
        .await;
    assert_eq!(
        (status, body["imported"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    api.db.exec("UPDATE leads SET state = 'needs_review'").await;
    api.db
        .exec(
            "INSERT INTO attempts (lead_id, job, action, step, status, error_detail, started_at, runner_id)
             SELECT id, 'openers', 'opener', 0, 'failed',
                    '<img src=x onerror=\"window.pwned=''detail''\"><script>window.pwned=''detail''</script>',
                    strftime('%Y-%m-%dT%H:%M:%S', 'now') || '.000000Z', 'seed' FROM leads",
        )
        .await;
    let c = browser(&webdriver).await;
    log_in(&c, &api, TOKEN).await;
    let shown = text(&c, "tr[data-target] th").await;
    assert_eq!(shown, target, "the target is shown as text");
    shot(&c, "6-markup-as-text").await;
    let found = c
        .execute(
            "return [typeof window.pwned, document.querySelectorAll('main img').length, \
             getComputedStyle(document.body).maxWidth];",
            vec![],
        )
        .await
        .expect("look at the page");
    assert_eq!(
        found,
        json!(["undefined", 0, "1152px"]),
        "nothing of the lead's ran or became an element; the page's own style applies"
    );
    // What the browser does with a script and a style slipped in after the page loaded.
    let verdict = c
        .execute_async(
            "var done = arguments[arguments.length - 1]; var seen = [];\
             document.addEventListener('securitypolicyviolation', function (e) {\
               seen.push(e.effectiveDirective); });\
             var s = document.createElement('script'); s.textContent = 'window.slipped = 1;';\
             document.body.appendChild(s);\
             var st = document.createElement('style'); st.textContent = 'body { max-width: 1px; }';\
             document.head.appendChild(st);\
             var d = document.createElement('div'); d.setAttribute('style', 'width: 7px');\
             document.body.appendChild(d);\
             setTimeout(function () {\
               done([typeof window.slipped, getComputedStyle(document.body).maxWidth,\
                     getComputedStyle(d).width === '7px', seen.sort()]);\
             }, 500);",
            vec![],
        )
        .await
        .expect("slip a script and styles in");
    assert_eq!(
        verdict,
        json!([
            "undefined",
            "1152px",
            false,
            ["script-src-elem", "style-src-attr", "style-src-elem"]
        ]),
        "the browser refused them, by the policy"
    );
    c.close().await.expect("close the browser");
}

/// The leads table in the browser: 50 a page and the next page by its link, a target
/// prefix and a state searched with the form, then Block on everything the filter matches:
/// the confirmation states the count, Confirm blocks exactly those leads.
#[tokio::test(flavor = "multi_thread")]
async fn the_leads_table_pages_searches_and_blocks_in_a_real_browser() {
    let Some((_driver, webdriver)) = chromedriver().await else {
        return;
    };
    let (sim, _) = spawn_sim(SimConfig::default()).await;
    let api = serve(
        common::db::sqlite().await,
        &sim,
        "[[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 0 9 * * *\"\n",
    )
    .await;
    let mut leads: Vec<serde_json::Value> = (0..60)
        .map(|i| json!({"target": format!("@r{i:02}")}))
        .collect();
    leads.push(json!({"target": "@keep"}));
    let (status, body) = api.post("/v1/leads", json!({ "leads": leads })).await;
    assert_eq!(status, 200, "{body}");
    api.db
        .exec("UPDATE leads SET state = 'failed' WHERE target LIKE '@r%'")
        .await;
    let c = browser(&webdriver).await;
    log_in(&c, &api, TOKEN).await;
    assert_eq!(text(&c, "#leads-count span.count").await, "61");
    let rows = |c: Client| async move {
        c.find_all(Locator::Css("tr[data-lead]"))
            .await
            .expect("rows")
            .len()
    };
    assert_eq!(rows(c.clone()).await, 50, "a page of 50");
    c.execute(
        "document.getElementById('leads').scrollIntoView(); return 0;",
        vec![],
    )
    .await
    .expect("scroll to the leads");
    shot(&c, "7-leads-first-page").await;

    c.find(Locator::Css("a#leads-next"))
        .await
        .expect("a next page link")
        .click()
        .await
        .expect("next page");
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("a#leads-first"))
        .await
        .expect("the second page, with a link to the first");
    assert_eq!(rows(c.clone()).await, 11, "the other 11");
    assert_eq!(
        text(&c, "tr[data-lead] th").await,
        "@r49",
        "after @keep and @r00 to @r48"
    );
    shot(&c, "8-leads-second-page").await;

    // Search: a prefix and a state, with the form.
    let q = c
        .find(Locator::Css("input#l-q"))
        .await
        .expect("the prefix field");
    q.clear().await.expect("clear");
    q.send_keys("@r1").await.expect("type");
    c.find(Locator::Css("select#l-state option[value=failed]"))
        .await
        .expect("the failed option")
        .click()
        .await
        .expect("choose failed");
    c.find(Locator::Css(
        "section[aria-labelledby=leads] form[method=get] button[type=submit]",
    ))
    .await
    .expect("the Search button")
    .click()
    .await
    .expect("search");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while text(&c, "#leads-count span.count").await != "10" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the search did not show 10 leads"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows(c.clone()).await, 10);
    assert_eq!(text(&c, "tr[data-lead] th").await, "@r10");
    shot(&c, "9-leads-searched").await;

    // Block everything the filter matches: asked with the count, then done.
    c.find(Locator::Css("button[name=action][value=block]"))
        .await
        .expect("Block all matching")
        .click()
        .await
        .expect("press Block");
    assert_eq!(
        text(&c, "h1#bulk-question").await,
        "Block 10 lead(s) matching target starts with \"@r1\", state=failed?"
    );
    shot(&c, "10-bulk-confirmation").await;
    c.find(Locator::Css("button#bulk-confirm"))
        .await
        .expect("Confirm")
        .click()
        .await
        .expect("confirm");
    assert_eq!(text(&c, "h1#bulk-done").await, "Blocked 10 lead(s)");
    shot(&c, "11-bulk-done").await;
    let counts = api.db.store.count_by_state().await.expect("count");
    assert_eq!(
        (
            counts[&fluidtalk_runner::lead::LeadState::Blocked],
            counts[&fluidtalk_runner::lead::LeadState::Failed]
        ),
        (10, 50),
        "exactly the ten matching leads"
    );
    for t in ["@r10", "@r19"] {
        let (_, shown) = api.get(&format!("/v1/leads/{t}")).await;
        assert_eq!(shown["lead"]["state"], "blocked", "{t}");
    }
    // Back to the leads with the filter: the blocked leads no longer match it.
    c.find(Locator::Css("a#bulk-back"))
        .await
        .expect("back")
        .click()
        .await
        .expect("go back");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while text(&c, "#leads-count span.count").await != "0" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the filter still matches leads"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shot(&c, "12-leads-after-block").await;
    c.close().await.expect("close the browser");
}
