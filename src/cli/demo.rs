//! `fluidtalk-runner demo`: the built-in simulator on a free loopback port and the real
//! client over HTTP, walking through every operation and every outcome a campaign meets.
//! Needs no key and touches no database.

use crate::exit::{Exit, ExitWith, Failure};
use crate::fluidtalk::{
    ActionResult, ApiKey, ChatRequest, Client, ClientConfig, Error, EventRequest, FollowUpRequest,
    ImageFile, OpenerRequest,
};
use crate::sim::{SimConfig, Simulator};
use anyhow::Context;

pub async fn run() -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("while starting the simulator")
        .exit_with(Exit::Failure)?;
    let addr = listener
        .local_addr()
        .context("while reading the simulator's address")
        .exit_with(Exit::Failure)?;
    let sim = Simulator::new(SimConfig {
        tokens: Some(2),
        seal_after: Some(1),
        ignore: ["@taken".to_string()].into_iter().collect(),
        ..SimConfig::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sim.clone().serve(listener, async {
        let _ = stopped.await;
    }));
    println!(
        "simulator on http://{addr} (2 tokens, seals after 1 follow-up, @taken owned elsewhere)\n"
    );

    // The simulator accepts any non-empty key; this one is not a secret.
    let key = ApiKey::new("ft_sk_demo").exit_with(Exit::Failure)?;
    let mut config = ClientConfig::new(key);
    config.base_url = format!("http://{addr}");
    config.own_username = Some("@my_account".into());
    let c = Client::new(config).exit_with(Exit::Failure)?;
    let opener = |t: &str| OpenerRequest {
        target: t.into(),
        ..Default::default()
    };
    let follow = |t: &str| FollowUpRequest {
        target: t.into(),
        own_username: None,
    };

    show("opener", "@alice", c.ai_opener(&opener("@alice")).await);
    show("opener", "@alice", c.ai_opener(&opener("@alice")).await);
    show("opener", "@taken", c.ai_opener(&opener("@taken")).await);
    let event = EventRequest {
        target: "@carol".into(),
        event_type: "story_reaction".into(),
        context: serde_json::json!({"reaction": "🔥"}).as_object().cloned(),
        ..Default::default()
    };
    show("event", "@carol", c.event_trigger(&event).await);
    show("opener", "@dave", c.ai_opener(&opener("@dave")).await);
    show("follow-up", "@bob", c.follow_up(&follow("@bob")).await);
    show("follow-up", "@alice", c.follow_up(&follow("@alice")).await);
    show("follow-up", "@alice", c.follow_up(&follow("@alice")).await);
    let chat = ChatRequest {
        target: "@carol".into(),
        message: "haha thanks, who are you?".into(),
        ..Default::default()
    };
    match c.inbound_chat(&chat).await {
        Ok(r) => println!("{:<10} {:<8} -> replies {:?}", "chat", "@carol", r.replies),
        Err(e) => println!("{:<10} {:<8} -> {e}", "chat", "@carol"),
    }
    let image = ImageFile::Bytes {
        filename: "profile.jpg".into(),
        data: b"demo".to_vec(),
    };
    match c.upload_image(&image).await {
        Ok(r) => println!(
            "{:<10} {:<8} -> hosted at {}",
            "upload",
            "",
            r.url.unwrap_or_default()
        ),
        Err(e) => println!("{:<10} {:<8} -> {e}", "upload", ""),
    }
    println!(
        "\n{} requests; try it by hand: fluidtalk-runner sim, then fluidtalk-runner api --help",
        sim.snapshot().requests
    );
    let _ = stop.send(());
    server
        .await
        .context("while stopping the simulator")
        .exit_with(Exit::Failure)?
        .context("while serving")
        .exit_with(Exit::Failure)?;
    Ok(())
}

fn show(op: &str, target: &str, result: Result<ActionResult, Error>) {
    let what = match result {
        Ok(r) if r.ignored => format!(
            "ignored ({}): owned by another account, send nothing",
            r.ignore_reason.unwrap_or_default()
        ),
        Ok(r) if r.continued && r.message.is_empty() => format!(
            "continued ({}): already in conversation, nothing to send",
            r.continued_reason.unwrap_or_default()
        ),
        Ok(r) => format!("send {:?}", r.message),
        Err(e) => format!("{e} [{:?}]", e.kind()),
    };
    println!("{op:<10} {target:<8} -> {what}");
}
