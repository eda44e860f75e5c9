//! The example `jobs.toml` states defaults: the values of `[limits]`, `[backoff]` and
//! `[retention]` ("These are the defaults."), `[fluidtalk]`'s and `[database]`'s, and the
//! settings under the commented-out `[delivery]`. Each must be the default the code uses
//! (`config::defaults`), so the file's comments cannot drift from the code.

use fluidtalk_runner::config::{self, Backoff, Delivery, Limits, Retention, defaults};
use std::collections::BTreeSet;

const EXAMPLE: &str = include_str!("../../jobs.toml");

/// Per table: the keys whose value in the example is the default, and the keys that are
/// only examples (no default, or one the file does not claim).
const STATED: &[(&str, &[&str], &[&str])] = &[
    ("fluidtalk", &["base_url", "timeout"], &["own_username"]),
    ("database", &["url"], &[]),
    ("limits", &["concurrency", "per_second"], &[]),
    (
        "backoff",
        &[
            "out_of_tokens",
            "out_of_tokens_max",
            "retry_base",
            "retry_max",
            "max_attempts",
        ],
        &[],
    ),
    ("retention", &["runs", "outbox", "events", "attempts"], &[]),
    ("http", &[], &["listen"]),
    (
        "delivery",
        &[
            "secret_env",
            "timeout",
            "retry_base",
            "retry_max",
            "max_age",
            "concurrency",
        ],
        &["webhook_url"],
    ),
];

/// The example with its commented-out tables switched on: a `# [table]` line and the
/// `# key = value` lines under it, up to the next blank line (prose stays a comment).
fn uncommented(text: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    for line in text.lines() {
        let setting = line.strip_prefix("# ").filter(|rest| {
            rest.starts_with('[')
                || (in_table
                    && rest.split_once(" = ").is_some_and(|(key, _)| {
                        !key.is_empty()
                            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    }))
        });
        match setting {
            Some(rest) => {
                in_table = true;
                out.push_str(rest);
            }
            None => {
                if line.trim().is_empty() {
                    in_table = false;
                }
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_example_jobs_toml_states_the_defaults_the_code_uses() {
    let text = uncommented(EXAMPLE);
    let raw: toml::Table = toml::from_str(&text).expect("the example is TOML");
    for (table, defaults, examples) in STATED {
        let written: BTreeSet<&str> = raw
            .get(*table)
            .and_then(toml::Value::as_table)
            .unwrap_or_else(|| panic!("jobs.toml has no [{table}]"))
            .keys()
            .map(String::as_str)
            .collect();
        let listed: BTreeSet<&str> = defaults.iter().chain(examples.iter()).copied().collect();
        assert_eq!(
            written, listed,
            "jobs.toml's [{table}] states other keys than this test checks: list each as a \
             default (checked below) or an example"
        );
    }

    let c = config::parse(std::path::Path::new("jobs.toml"), &text).expect("the example parses");
    assert_eq!(
        c.fluidtalk.base_url,
        defaults::BASE_URL,
        "[fluidtalk] base_url"
    );
    assert_eq!(
        c.fluidtalk.timeout,
        defaults::API_TIMEOUT,
        "[fluidtalk] timeout"
    );
    assert_eq!(
        c.database_url.as_deref(),
        Some(defaults::DATABASE_URL),
        "[database] url"
    );
    assert_eq!(c.limits, Limits::default(), "[limits]");
    assert_eq!(c.backoff, Backoff::default(), "[backoff]");
    assert_eq!(c.retention, Retention::default(), "[retention]");
    let delivery = c.delivery.expect("the example's [delivery], uncommented");
    assert_eq!(
        delivery,
        Delivery::new(delivery.webhook_url.clone()),
        "[delivery]"
    );
}

/// The check above compares against the code, not against itself: the example's stated
/// values differ from any other value.
#[test]
fn a_stated_value_other_than_the_default_is_caught() {
    let text = uncommented(EXAMPLE).replace("concurrency = 8 ", "concurrency = 9 ");
    let c = config::parse(std::path::Path::new("jobs.toml"), &text).expect("parses");
    assert_ne!(c.limits, Limits::default());
    let delivery = c.delivery.expect("the example's [delivery], uncommented");
    assert_ne!(delivery, Delivery::new(delivery.webhook_url.clone()));
}
