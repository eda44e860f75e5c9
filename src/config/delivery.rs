//! `[delivery]`: where and how the daemon POSTs the outbox (the webhook), as written and
//! checked. The secret itself is never in the file: `secret_env` names the environment
//! variable that holds it.

use super::fields::{BackoffDur, Count, EnvName, MaxAgeDur, TimeoutDur, WebhookUrl};
use super::{ConfigError, defaults, locate};
use serde::Deserialize;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// `[delivery]`, checked. Its `Debug` shows the webhook's origin only (`WebhookUrl`).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Where each message is POSTed (may hold a token: shown as its origin only).
    pub webhook_url: WebhookUrl,
    /// The environment variable holding the signing secret.
    pub secret_env: String,
    /// One POST's whole time, connecting included.
    pub timeout: Duration,
    /// Back-off after a failed try: `retry_base` doubling per try, up to `retry_max`,
    /// with jitter ...
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// ... until this long after the first try; then the message is parked.
    pub max_age: Duration,
    /// POSTs in flight at once (one per target at most, whatever this says).
    pub concurrency: NonZeroU32,
}

impl Delivery {
    /// Delivery to `webhook_url` with every other setting at its default (`defaults`).
    pub fn new(webhook_url: WebhookUrl) -> Self {
        Delivery {
            webhook_url,
            secret_env: defaults::DELIVERY_SECRET_ENV.to_string(),
            timeout: defaults::DELIVERY_TIMEOUT,
            retry_base: defaults::DELIVERY_RETRY_BASE,
            retry_max: defaults::DELIVERY_RETRY_MAX,
            max_age: defaults::DELIVERY_MAX_AGE,
            concurrency: defaults::DELIVERY_CONCURRENCY,
        }
    }
}

/// `[delivery]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    webhook_url: Option<WebhookUrl>,
    secret_env: Option<EnvName>,
    timeout: Option<TimeoutDur>,
    retry_base: Option<Spanned<BackoffDur>>,
    retry_max: Option<Spanned<BackoffDur>>,
    max_age: Option<MaxAgeDur>,
    concurrency: Option<Count<1, 256>>,
}

/// Checks `[delivery]` (at `raw`'s span of `text`, read from `path`).
pub(super) fn check(
    path: &Path,
    text: &str,
    raw: &Spanned<RawDelivery>,
) -> Result<Delivery, ConfigError> {
    let err = |span: std::ops::Range<usize>, key: &str, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        line: locate::line_column(text, span.start).0,
        key: format!("[delivery] {key}"),
        message,
    };
    let r = raw.get_ref();
    let Some(url) = &r.webhook_url else {
        return Err(err(
            raw.span(),
            "webhook_url",
            "is required in [delivery], e.g. \"https://hooks.example.com/fluidtalk\"".into(),
        ));
    };
    let d = Delivery::new(url.clone());
    let dur = |v: &Option<Spanned<BackoffDur>>, default: Duration| {
        v.as_ref().map_or(default, |d| d.get_ref().0)
    };
    let retry_base = dur(&r.retry_base, d.retry_base);
    let retry_max = dur(&r.retry_max, d.retry_max);
    if retry_max < retry_base {
        let shown = |d| humantime::format_duration(d).to_string();
        return Err(match (&r.retry_max, &r.retry_base) {
            (Some(m), _) => err(
                m.span(),
                "retry_max",
                format!(
                    "must not be shorter than retry_base ({})",
                    shown(retry_base)
                ),
            ),
            (None, Some(b)) => err(
                b.span(),
                "retry_base",
                format!(
                    "must not be longer than retry_max ({} when not set)",
                    shown(retry_max)
                ),
            ),
            (None, None) => err(raw.span(), "retry_max", "is shorter than retry_base".into()),
        });
    }
    Ok(Delivery {
        secret_env: r.secret_env.as_ref().map_or(d.secret_env, |e| e.0.clone()),
        timeout: r.timeout.map_or(d.timeout, |t| t.0),
        retry_base,
        retry_max,
        max_age: r.max_age.map_or(d.max_age, |a| a.0),
        concurrency: r.concurrency.map_or(d.concurrency, Count::non_zero),
        webhook_url: d.webhook_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<crate::config::Config, ConfigError> {
        crate::config::parse(Path::new("jobs.toml"), text)
    }

    #[test]
    fn defaults_apply_and_the_url_is_shown_without_its_path() {
        let c = parse("[delivery]\nwebhook_url = \"https://hooks.example.com/t0ken?k=s3cret\"\n")
            .expect("parses");
        let d = c.delivery.expect("delivery is set");
        assert_eq!(d.secret_env, defaults::DELIVERY_SECRET_ENV);
        assert_eq!(
            (
                d.retry_base,
                d.retry_max,
                d.max_age,
                d.timeout,
                d.concurrency.get()
            ),
            (
                Duration::from_secs(1),
                Duration::from_secs(600),
                Duration::from_secs(86_400),
                Duration::from_secs(10),
                8
            )
        );
        assert_eq!(d.webhook_url.to_string(), "https://hooks.example.com/…");
        let debug = format!("{d:?}");
        assert!(
            !debug.contains("t0ken") && !debug.contains("s3cret"),
            "{debug}"
        );
        assert!(parse("").expect("parses").delivery.is_none());
    }

    #[test]
    fn bad_settings_name_the_line_and_key() {
        let cases = [
            (
                "[delivery]\nsecret_env = \"X\"\n",
                "line 1: [delivery] webhook_url: is required",
            ),
            (
                "[delivery]\nwebhook_url = \"ftp://h/x\"\n",
                "line 2: [delivery] webhook_url",
            ),
            (
                "[delivery]\nwebhook_url = \"http://h\"\nsecret_env = \"1BAD\"\n",
                "line 3: [delivery] secret_env",
            ),
            (
                "[delivery]\nwebhook_url = \"http://h\"\nretry_base = \"20m\"\n",
                "line 3: [delivery] retry_base: must not be longer than retry_max (10m when not set)",
            ),
            (
                "[delivery]\nwebhook_url = \"http://h\"\nmax_age = \"10s\"\n",
                "line 3: [delivery] max_age",
            ),
            (
                "[delivery]\nwebhook_url = \"http://h\"\nurl = \"x\"\n",
                "line 3",
            ),
        ];
        for (text, expected) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
        let e = parse("[delivery]\nwebhook_url = \"ftp://h/t0ken\"\n")
            .expect_err("refused")
            .to_string();
        assert!(!e.contains("t0ken"), "{e}");
    }
}
