//! The dashboard at `/` over real HTTP, both databases: the login form and its session
//! cookie, the funnel's numbers against the database, the pause banner, Retry and Block
//! with their CSRF token, and what a forged cookie or a missing token gets.

mod common;

use common::db::{self, TestDb};
use common::http::{Api, TOKEN, serve};
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

/// Logs in with `password`: the status and the session cookie, if one was set.
async fn log_in(api: &Api, password: &str) -> (u16, Option<String>, String) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(api.url("/login"))
        .form(&[("password", password)])
        .send()
        .await
        .expect("answered");
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, cookie, r.text().await.unwrap_or_default())
}

async fn page(api: &Api, cookie: &str) -> (u16, String) {
    let r = api
        .http
        .get(api.url("/"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("answered");
    (r.status().as_u16(), r.text().await.expect("html"))
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
        let (status, cookie, html) = log_in(&api, "wrong-token-0123456789").await;
        assert_eq!((status, cookie.is_none()), (401, true));
        assert!(html.contains("role=\"alert\""), "{html}");

        let (status, cookie, _) = log_in(&api, TOKEN).await;
        assert_eq!(status, 303, "logged in, sent to the dashboard");
        let set = cookie.expect("a session cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().expect("name=value").to_string();

        let (status, html) = page(&api, &cookie).await;
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
        let (_, html) = page(&api, &cookie).await;
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
            .set_pause(
                PauseScope::NewConversations,
                "FluidTalk 402: insufficient_tokens",
                "r1",
                now,
                &|_| std::time::Duration::from_secs(900),
            )
            .await
            .expect("pause");
        let (_, html) = page(&api, &cookie).await;
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
        let (_, html) = page(&api, &cookie).await;
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
            .claim_deliveries(10, "test-deliverer", now, now + chrono::Duration::hours(1))
            .await
            .expect("claim");
        assert!(!claimed.is_empty(), "the relay's answers wait for delivery");
        let parked = claimed[0].id;
        assert!(
            api.db
                .store
                .park_delivery(parked, "test-deliverer", "HTTP 500 from the webhook", now)
                .await
                .expect("park")
        );
        let (_, html) = page(&api, &cookie).await;
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
        let (_, html) = page(&api, &cookie).await;
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
        let (_, html) = page(
            &api,
            if forged == cookie {
                "ft_session=x"
            } else {
                &forged
            },
        )
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
