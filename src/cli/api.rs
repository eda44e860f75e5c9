//! `fluidtalk-runner api ...`: one API call from the command line.

use crate::exit::{Exit, ExitWith, Failure};
use crate::fluidtalk::{
    self, ApiKey, ChatRequest, Client, ClientConfig, ErrorKind, EventRequest, FollowUpRequest,
    ImageFile, OpenerRequest,
};
use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The API's base URL [default: [fluidtalk] base_url in the campaign file, else
    /// https://api-talk.fluidvip.com].
    #[arg(long, env = "FLUIDTALK_BASE_URL")]
    base_url: Option<String>,
    /// Give up on a call after this long, e.g. 60s or 2m [default: [fluidtalk] timeout, else 60s].
    #[arg(long, value_parser = positive_duration)]
    timeout: Option<Duration>,
    #[command(subcommand)]
    op: ApiOp,
}

#[derive(Debug, Args)]
struct Sender {
    /// The account that talks to the lead (takes part in multi-account dedup).
    #[arg(long)]
    own_username: Option<String>,
}

#[derive(Debug, Args)]
struct Image {
    /// An image the engine should see, by URL.
    #[arg(long)]
    image_url: Option<String>,
    /// An image the engine should see, from a local file (sent as the `file` part).
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ApiOp {
    /// AI Opener: the persona writes first to TARGET (action=OUTREACH).
    Opener {
        /// The lead: an Instagram-style handle, e.g. @jane.doe.
        target: String,
        #[command(flatten)]
        sender: Sender,
        #[command(flatten)]
        image: Image,
    },
    /// Follow-up: re-engage a quiet TARGET (action=FOLLOW_UP).
    FollowUp {
        /// The lead: an Instagram-style handle, e.g. @jane.doe.
        target: String,
        #[command(flatten)]
        sender: Sender,
    },
    /// Event Trigger: event TYPE fired for TARGET (action=ENTRY_POINT).
    Event {
        /// The lead: an Instagram-style handle, e.g. @jane.doe.
        target: String,
        /// The event's type, as the persona's event triggers name it (e.g. story_reaction).
        #[arg(value_name = "TYPE")]
        event_type: String,
        /// The event's context, a JSON object (sent as entry_context).
        #[arg(long, value_name = "JSON")]
        context: Option<String>,
        #[command(flatten)]
        sender: Sender,
        #[command(flatten)]
        image: Image,
    },
    /// Inbound Chat: TARGET wrote MESSAGE; print the persona's reply.
    Chat {
        /// The lead: an Instagram-style handle, e.g. @jane.doe.
        target: String,
        /// What the lead wrote.
        message: String,
        #[command(flatten)]
        sender: Sender,
        #[command(flatten)]
        image: Image,
    },
    /// Upload a local image and print its hosted URL.
    Upload {
        /// The local image file to upload.
        path: PathBuf,
    },
}

/// A duration longer than zero.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    let (min, max) = crate::config::TIMEOUT_RANGE;
    match humantime::parse_duration(s) {
        Ok(d) if d >= min && d <= max => Ok(d),
        Ok(_) => Err(format!(
            "out of range; expected from {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )),
        Err(e) => Err(format!("{e}; expected e.g. 30s, 2m")),
    }
}

pub async fn run(args: ApiArgs, campaign: &crate::config::Config) -> Result<(), Failure> {
    let key = ApiKey::from_env().exit_with(Exit::Config)?;
    let mut config = ClientConfig::new(key);
    config.base_url = match args.base_url {
        Some(url) => crate::config::check_base_url(&url)
            .map_err(|why| anyhow::anyhow!("--base-url (or FLUIDTALK_BASE_URL): {why}"))
            .exit_with(Exit::Config)?,
        None => campaign.checked_base_url().exit_with(Exit::Config)?,
    };
    config.timeout = args.timeout.unwrap_or(campaign.fluidtalk.timeout);
    config.own_username = campaign.fluidtalk.own_username.clone();
    let client = Client::new(config).exit_with(Exit::Config)?;
    let printed = match args.op {
        ApiOp::Opener {
            target,
            sender,
            image,
        } => {
            let req = OpenerRequest {
                target,
                own_username: sender.own_username,
                image_url: image.image_url,
                image_file: image.image.map(ImageFile::Path),
            };
            to_json(client.ai_opener(&req).await)
        }
        ApiOp::FollowUp { target, sender } => {
            let req = FollowUpRequest {
                target,
                own_username: sender.own_username,
            };
            to_json(client.follow_up(&req).await)
        }
        ApiOp::Event {
            target,
            event_type,
            context,
            sender,
            image,
        } => {
            let context = context
                .map(|text| parse_context(&text))
                .transpose()
                .exit_with(Exit::Config)?;
            let req = EventRequest {
                target,
                event_type,
                context,
                own_username: sender.own_username,
                image_url: image.image_url,
                image_file: image.image.map(ImageFile::Path),
            };
            to_json(client.event_trigger(&req).await)
        }
        ApiOp::Chat {
            target,
            message,
            sender,
            image,
        } => {
            let req = ChatRequest {
                target,
                message,
                own_username: sender.own_username,
                image_url: image.image_url,
                image_file: image.image.map(ImageFile::Path),
            };
            to_json(client.inbound_chat(&req).await)
        }
        ApiOp::Upload { path } => to_json(client.upload_image(&ImageFile::Path(path)).await),
    };
    match printed {
        Ok(json) => {
            outln!("{json}");
            Ok(())
        }
        Err(CallError::Api(e)) => {
            // The error on stdout as JSON for scripts; the one-line message goes to stderr
            // through `main`.
            let shown = serde_json::json!({"error": {
                "kind": e.kind(), "status": e.status(), "detail": e.detail(), "body": e.body(),
            }});
            outln!(
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            );
            let exit = match e.kind() {
                ErrorKind::Unauthorized => Exit::Unauthorized,
                ErrorKind::LocalFile | ErrorKind::Setup => Exit::Config,
                _ => Exit::Api,
            };
            Err(Failure {
                exit,
                error: anyhow::Error::new(e),
            })
        }
        Err(CallError::Encode(e)) => Err(Failure {
            exit: Exit::Failure,
            error: e,
        }),
    }
}

enum CallError {
    Api(fluidtalk::Error),
    Encode(anyhow::Error),
}

fn to_json<T: serde::Serialize>(result: Result<T, fluidtalk::Error>) -> Result<String, CallError> {
    let value = result.map_err(CallError::Api)?;
    serde_json::to_string_pretty(&value)
        .context("while printing the result")
        .map_err(CallError::Encode)
}

fn parse_context(text: &str) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(anyhow!(
            "--context must be a JSON object like '{{\"reaction\": \"🔥\"}}', got {}",
            json_kind(&other)
        )),
        Err(e) => Err(anyhow!("--context is not valid JSON: {e}")),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
