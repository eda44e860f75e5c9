//! The API key never appears in logs (at any level, including the HTTP stack's own),
//! error messages, `Debug` output or the CLI's output.

use crate::common;

use common::*;
use fluidtalk_runner::fluidtalk::{
    ChatRequest, EventRequest, FollowUpRequest, ImageFile, OpenerRequest,
};
use fluidtalk_runner::sim::SimConfig;
use std::time::Duration;
use wiremock::ResponseTemplate;

#[tokio::test(flavor = "current_thread")]
async fn the_key_is_in_no_log_line_error_or_debug_output() {
    let logs = common::logs::Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (sim_url, _sim) = spawn_sim(SimConfig {
        tokens: Some(1),
        seal_after: Some(1),
        ..SimConfig::default()
    })
    .await;
    let c = client(&sim_url);
    let mut texts = vec![format!("{c:?}")];
    let target = |t: &str| t.to_string();
    // Successes and every error the simulator can produce.
    for _ in 0..2 {
        match c
            .ai_opener(&OpenerRequest {
                target: target("@a"),
                ..Default::default()
            })
            .await
        {
            Ok(r) => texts.push(format!("{r:?}")),
            Err(e) => texts.extend([e.to_string(), format!("{e:?}"), e.body().to_string()]),
        }
    }
    let results = [
        c.ai_opener(&OpenerRequest {
            target: target("@b"),
            ..Default::default()
        })
        .await, // 402
        c.follow_up(&FollowUpRequest {
            target: target("@a"),
            own_username: None,
        })
        .await,
        c.follow_up(&FollowUpRequest {
            target: target("@a"),
            own_username: None,
        })
        .await, // 400
        c.follow_up(&FollowUpRequest {
            target: target("@zz"),
            own_username: None,
        })
        .await, // 404
        c.event_trigger(&EventRequest {
            target: target("@a"),
            event_type: "x".into(),
            image_file: Some(ImageFile::Bytes {
                filename: "a.png".into(),
                data: vec![1, 2],
            }),
            ..Default::default()
        })
        .await,
    ];
    for r in results {
        match r {
            Ok(r) => texts.push(format!("{r:?}")),
            Err(e) => texts.extend([e.to_string(), format!("{e:?}"), e.body().to_string()]),
        }
    }
    let chat = c
        .inbound_chat(&ChatRequest {
            target: target("@a"),
            message: "hi".into(),
            ..Default::default()
        })
        .await;
    texts.push(format!("{chat:?}"));
    // Transport failures: a timeout and a refused connection.
    let slow = recorder(ResponseTemplate::new(200).set_delay(Duration::from_secs(3))).await;
    let e = client_with(&slow.uri(), None, Duration::from_millis(200))
        .follow_up(&FollowUpRequest {
            target: target("@a"),
            own_username: None,
        })
        .await
        .expect_err("times out");
    texts.extend([e.to_string(), format!("{e:?}")]);
    let refused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = refused.local_addr().expect("addr");
    drop(refused);
    let e = client(&format!("http://{addr}"))
        .follow_up(&FollowUpRequest {
            target: target("@a"),
            own_username: None,
        })
        .await
        .expect_err("refused");
    texts.extend([e.to_string(), format!("{e:?}")]);

    let logged = logs.text();
    // The capture must really have seen the calls, or this test could pass vacuously.
    assert!(
        logged.contains("FluidTalk call"),
        "no client log lines captured"
    );
    assert!(logged.contains("/api/v1/bot/action"));
    assert!(!logged.contains(TEST_KEY), "the key leaked into the logs");
    for text in &texts {
        assert!(!text.contains(TEST_KEY), "the key leaked into: {text}");
    }
    assert!(texts.iter().any(|t| t.contains("FluidTalk 402")));
}

#[test]
fn the_cli_never_prints_the_key_even_at_trace_level() {
    let (_sim, url) = spawn_sim_process(&["--tokens", "0"]);
    let runs: [&[&str]; 4] = [
        &["api", "follow-up", "@nobody"],
        &["api", "opener", "@a"],
        &["api", "chat", "@a", "hello"],
        &["api", "--help"],
    ];
    for args in runs {
        let out = bin()
            .args(args)
            .env("FLUIDTALK_API_KEY", TEST_KEY)
            .env("FLUIDTALK_BASE_URL", &url)
            .env("FLUIDTALK_LOG", "trace")
            .output()
            .expect("run the cli");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.is_empty(), "{args:?} printed nothing");
        assert!(!all.contains(TEST_KEY), "{args:?} printed the key: {all}");
    }
}
