//! `fluidtalk-runner demo`: a whole campaign in seconds, with no key: a sample leads file in
//! a fresh SQLite database, the built-in simulator on a free loopback port, and the real
//! runner. Days pass on an injected clock, so follow-ups happen without waiting.

use crate::clock::{Clock, ManualClock};
use crate::config;
use crate::exit::{Exit, ExitWith, Failure};
use crate::fluidtalk::{ApiKey, Client, ClientConfig};
use crate::import::Rows;
use crate::runner::Runner;
use crate::sim::{SimConfig, Simulator};
use crate::store::NewEvent;
use crate::store::{self, AdminStore};
use anyhow::Context;
use std::sync::Arc;

const LEADS: &str = include_str!("../../examples/demo-leads.csv");

fn jobs(base_url: &str) -> String {
    format!(
        "[fluidtalk]\nbase_url = \"{base_url}\"\n\n\
         [[job]]\nname = \"openers\"\nkind = \"opener\"\nschedule = \"0 */15 * * * *\"\nbatch_size = 3\n\n\
         [[job]]\nname = \"follow-ups\"\nkind = \"follow_up\"\nschedule = \"0 0 * * * *\"\nquiet_after = [\"24h\", \"3d\"]\n\n\
         [[job]]\nname = \"story-reactions\"\nkind = \"event\"\nevent_type = \"story_reaction\"\nschedule = \"*/30 * * * * *\"\n"
    )
}

pub async fn run() -> Result<(), Failure> {
    let dir = tempfile_dir().exit_with(Exit::Failure)?;
    let db_url = format!("sqlite://{}", dir.join("demo.db").display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("while starting the simulator")
        .exit_with(Exit::Failure)?;
    let addr = listener
        .local_addr()
        .context("while reading the simulator's address")
        .exit_with(Exit::Failure)?;
    // Five tokens, so the campaign runs out; conversations seal after one follow-up.
    let sim = Simulator::new(SimConfig {
        tokens: Some(5),
        seal_after: Some(1),
        ignore: ["@taken_by_team".to_string()].into_iter().collect(),
        ..SimConfig::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sim.clone().serve(listener, async {
        let _ = stopped.await;
    }));
    let base_url = format!("http://{addr}");
    let config = Arc::new(
        config::parse(std::path::Path::new("demo-jobs.toml"), &jobs(&base_url))
            .exit_with(Exit::Failure)?,
    );
    outln!("FluidTalk simulator on {base_url} (5 tokens; conversations seal after 1 follow-up)");
    outln!("lead database {db_url}\n");

    let store = store::open(&db_url)
        .await
        .map_err(super::store_access::store_failure)?;
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    import_sample(&*store, clock.now()).await?;
    outln!(
        "imported {} sample leads (examples/demo-leads.csv)",
        LEADS.lines().count() - 1
    );

    // The simulator accepts any non-empty key; this one is not a secret.
    let mut cc = ClientConfig::new(ApiKey::new("ft_sk_demo").exit_with(Exit::Failure)?);
    cc.base_url = base_url;
    let client = Client::new(cc).exit_with(Exit::Failure)?;
    let d = Runner::new(
        store.clone(),
        client,
        config.clone(),
        clock.clone(),
        "demo".into(),
    );
    let job = |name: &str| config.jobs.iter().find(|j| j.name == name).cloned();

    let step = |title: &str| super::out::line(&format!("\n== {title}"));
    let run = async |name: &str| -> Result<(), Failure> {
        let Some(j) = job(name) else { return Ok(()) };
        match d.run_job(&j, None).await {
            Ok(s) => outln!("{name}: {}", s.describe()),
            Err(e) => outln!("{name}: stopped: {e}"),
        }
        Ok(())
    };

    step("day 1: the openers job (one lead is owned by a teammate's account)")?;
    run("openers").await?;
    show_pauses(&*store, clock.now()).await?;
    store
        .queue_event(&NewEvent {
            target: "@finn_photo",
            event_type: "story_reaction",
            context: Some(r#"{"reaction": "🔥"}"#),
            now: clock.now(),
        })
        .await
        .map_err(super::store_access::store_failure)?;
    step("day 1: @finn_photo reacted to a story, but new conversations are paused")?;
    run("story-reactions").await?;

    clock.advance(chrono::Duration::hours(25));
    step("day 2, 25 hours later: follow-up 1 to everyone still quiet")?;
    run("follow-ups").await?;
    store
        .record_reply("@ben.codes", clock.now(), clock.now())
        .await
        .map_err(super::store_access::store_failure)?;
    outln!("(@ben.codes wrote back: his quiet clock and follow-up count reset)");

    clock.advance(chrono::Duration::days(3) + chrono::Duration::hours(1));
    step(
        "day 5: the next follow-ups meet sealed conversations (400); the pause is over, credits are not",
    )?;
    run("follow-ups").await?;
    run("story-reactions").await?;
    show_pauses(&*store, clock.now()).await?;

    step("where the campaign stands")?;
    let counts = store
        .count_by_state()
        .await
        .map_err(super::store_access::store_failure)?;
    let line: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    outln!("leads: {}", line.join(", "));
    for lead in store
        .list_leads(&Default::default())
        .await
        .map_err(super::store_access::store_failure)?
    {
        outln!(
            "  {:<16} {:<10} follow-ups {}",
            lead.target,
            lead.state,
            lead.follow_ups_sent
        );
    }
    let outbox = store
        .outbox(false)
        .await
        .map_err(super::store_access::store_failure)?;
    outln!(
        "outbox: {} message(s) for the platform to deliver, e.g.",
        outbox.len()
    );
    for item in outbox.iter().take(3) {
        outln!(
            "  to {:<16} ({}) {:?}",
            item.target,
            item.action,
            item.message
        );
    }
    outln!(
        "\n{} API calls. Next, a campaign of your own: `fluidtalk-runner init my-campaign` writes one \
         (the README's quickstart runs it against `fluidtalk-runner sim`).",
        sim.snapshot().requests
    );
    outln!(
        "To watch a campaign in the dashboard: export FLUIDTALK_RUNNER_TOKEN=$(openssl rand -hex 32); \
         fluidtalk-runner daemon --http 127.0.0.1:8080; then open http://127.0.0.1:8080/ and log in \
         with the token (docs/http-api.md, \"The dashboard\")."
    );
    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn import_sample(
    store: &dyn AdminStore,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Failure> {
    let dir = tempfile_dir().exit_with(Exit::Failure)?;
    let path = dir.join("demo-leads.csv");
    std::fs::write(&path, LEADS)
        .context("while writing the sample leads")
        .exit_with(Exit::Failure)?;
    let mut rows = Rows::open(&path, |f| Box::new(f)).exit_with(Exit::Failure)?;
    let mut batch = Vec::new();
    while let Some((_, row)) = rows.next_row().exit_with(Exit::Failure)? {
        if let Ok(lead) = row {
            batch.push(lead);
        }
    }
    let mut s = store
        .begin_import(false)
        .await
        .map_err(super::store_access::store_failure)?;
    s.upsert(batch, now - chrono::Duration::minutes(1))
        .await
        .map_err(super::store_access::store_failure)?;
    s.finish(true)
        .await
        .map_err(super::store_access::store_failure)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn show_pauses(
    store: &dyn AdminStore,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Failure> {
    for p in store
        .pauses()
        .await
        .map_err(super::store_access::store_failure)?
    {
        if p.until > now {
            outln!(
                "pause: {} for {} (strike {}), stored so every runner honours it: {}",
                p.scope.as_str(),
                humantime::format_duration(std::time::Duration::from_secs(
                    (p.until - now).num_seconds().max(0) as u64
                )),
                p.strikes,
                p.reason
            );
        }
    }
    Ok(())
}

/// A fresh private directory under the system temp dir.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "fluidtalk-demo-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
    Ok(dir)
}
