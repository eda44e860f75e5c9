//! `fluidtalk-runner sim`: the simulator on a socket until Ctrl-C or SIGTERM.

use super::common::parse_rate;
use crate::exit::{Exit, ExitWith, Failure};
use crate::fluidtalk::ApiKey;
use crate::sim::{SimConfig, Simulator};
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on (HOST:PORT); port 0 picks a free port. The bound URL is the
    /// first line printed.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: String,
    /// Tokens for new conversations (default: unlimited); then 402.
    #[arg(long)]
    tokens: Option<u64>,
    /// Seal a conversation after N follow-ups; the next call gets 400.
    #[arg(long, value_name = "N")]
    seal_after: Option<u32>,
    /// Answer `ignored` for this target (repeatable).
    #[arg(long, value_name = "TARGET")]
    ignore: Vec<String>,
    /// Delay every API request by this much (e.g. 50ms).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// With this, each request's delay is drawn between --latency and this (e.g. 20ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    latency_max: Option<Duration>,
    /// Answer this share of API requests (0 to 1) with a 500.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    fail_rate: f64,
    /// Drop the connection of this share of API requests (0 to 1), after acting on them.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    drop_rate: f64,
    /// Answer this share of calls `ignored` (0 to 1), drawn per call from --seed.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    ignore_rate: f64,
    /// Answer this share of calls 400 "session DONE" and seal the conversation (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    seal_rate: f64,
    /// 429 bursts: of every EVERY requests the first BURST get a 429 with
    /// `Retry-After: SECONDS` (e.g. 20/200:1).
    #[arg(long, value_name = "BURST/EVERY:SECONDS")]
    rate_limit: Option<crate::sim::RateLimitBursts>,
    /// Seed for --fail-rate, --drop-rate and --latency-max, so runs repeat.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Require exactly this key (default: any non-empty key). Also FLUIDTALK_SIM_API_KEY.
    #[arg(long, env = "FLUIDTALK_SIM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub async fn run(args: SimArgs) -> Result<(), Failure> {
    let api_key = args
        .api_key
        .map(ApiKey::new)
        .transpose()
        .context("--api-key")
        .exit_with(Exit::Config)?;
    let config = SimConfig {
        tokens: args.tokens,
        seal_after: args.seal_after,
        ignore: args.ignore.into_iter().collect(),
        latency: args.latency,
        latency_max: args.latency_max,
        fail_rate: args.fail_rate,
        drop_rate: args.drop_rate,
        ignore_rate: args.ignore_rate,
        seal_rate: args.seal_rate,
        rate_limit: args.rate_limit,
        seed: args.seed,
        api_key,
        keep_log: true,
    };
    let listener = tokio::net::TcpListener::bind(args.listen.as_str())
        .await
        .with_context(|| format!("while binding the simulator to {}", args.listen))
        .exit_with(Exit::Config)?;
    let addr = listener
        .local_addr()
        .context("while reading the bound address")
        .exit_with(Exit::Failure)?;
    // The first line is the base URL, so scripts can read it even with --listen ...:0.
    let mut out = std::io::stdout().lock();
    writeln!(out, "http://{addr}")
        .and_then(|()| out.flush())
        .context("while printing the bound address")
        .exit_with(Exit::Failure)?;
    drop(out);
    tracing::info!(%addr, "simulator listening");
    Simulator::new(config)
        .serve(listener, shutdown_signal())
        .await
        .context("while serving")
        .exit_with(Exit::Failure)?;
    tracing::info!("simulator stopped");
    Ok(())
}

pub use super::signals::shutdown_signal;
