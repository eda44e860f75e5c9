//! Guessing the token is slow and seen: wrong bearer tokens and failed dashboard logins
//! count against their client address (`serve::client_key`: an IPv4 address, an IPv6 /64).
//! A few a minute are allowed (`[http] auth_failures_per_minute`, a GCRA quota from
//! governor, so the allowance comes back one at a time); past them the address is answered
//! 429 with `Retry-After` until its next failure would be allowed, its token not even
//! compared, so the right token cannot be found by trying on. Failures are counted
//! (`metrics::HTTP_AUTH_FAILURES`) and logged at most once a minute with their counts.
//!
//! Memory is bounded: governor's table is pruned of addresses back at a full allowance,
//! and at most `MAX_WAITING` addresses are remembered as waiting (the oldest go first).

use super::error::ApiError;
use super::tally::{self, Tally};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most client addresses remembered as waiting.
const MAX_WAITING: usize = 65_536;
/// Addresses in governor's table before it is pruned.
const PRUNE_AT: usize = 10_000;

/// The client address of a request served by `serve` (`0.0.0.0` for one that was not).
pub fn client_of(request: &Request) -> IpAddr {
    key_of(request.extensions())
}

fn key_of(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| {
            super::serve::client_key(c.0.ip())
        })
}

/// The request's client address (`client_of`), as an extractor.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client(key_of(&parts.extensions)))
    }
}

/// Failed tries per client address, and who must wait.
#[derive(Debug)]
pub struct Throttle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    waiting: Mutex<HashMap<IpAddr, Instant>>,
    tally: Tally,
}

impl Throttle {
    /// Allows `per_minute` failures a minute per address (all at once, then one every
    /// `60 / per_minute` seconds).
    pub fn new(per_minute: u32) -> Throttle {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Throttle {
            limiter: RateLimiter::keyed(Quota::per_minute(n).allow_burst(n)),
            waiting: Mutex::default(),
            tally: Tally::default(),
        }
    }

    /// How long `client`, trying `via` the API (`bearer`) or the dashboard (`login`),
    /// must still wait, if it must (counted as throttled).
    pub fn waiting(&self, client: IpAddr, via: &'static str) -> Option<Duration> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let until = *waiting.get(&client)?;
        let now = Instant::now();
        if until <= now {
            waiting.remove(&client);
            return None;
        }
        metrics::counter!(crate::metrics::HTTP_AUTH_FAILURES, "via" => via, "result" => "throttled")
            .increment(1);
        Some(until - now)
    }

    /// `client` sent a wrong token `via` the API (`bearer`) or the dashboard (`login`):
    /// counted; if that was one too many, how long it must now wait.
    pub fn failed(&self, client: IpAddr, via: &'static str) -> Option<Duration> {
        if self.limiter.len() > PRUNE_AT {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        let wait = match self.limiter.check_key(&client) {
            Ok(()) => None,
            Err(not_until) => Some(
                not_until
                    .wait_time_from(self.limiter.clock().now())
                    .max(Duration::from_secs(1)),
            ),
        };
        let result = if wait.is_some() {
            "throttled"
        } else {
            "refused"
        };
        metrics::counter!(crate::metrics::HTTP_AUTH_FAILURES, "via" => via, "result" => result)
            .increment(1);
        if let Some(wait) = wait {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if waiting.len() >= MAX_WAITING {
                waiting.retain(|_, until| *until > now);
            }
            while waiting.len() >= MAX_WAITING {
                let Some(oldest) = waiting.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k) else {
                    break;
                };
                waiting.remove(&oldest);
            }
            waiting.insert(client, now + wait);
        }
        let kind = match (via, wait.is_some()) {
            (_, true) => "throttled",
            ("login", false) => "wrong_login",
            _ => "wrong_bearer",
        };
        if let Some(counts) = self.tally.note(kind) {
            tracing::warn!(
                failures = %tally::describe(&counts),
                client = %client,
                "wrong HTTP API tokens or dashboard logins since the last such line (the client is the latest); past [http] auth_failures_per_minute an address is answered 429"
            );
        }
        wait
    }
}

/// Whole seconds to wait, rounded up, at least one.
pub fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The API's answer to a client that must wait: 429 with `Retry-After`.
pub fn too_many(wait: Duration) -> Response {
    let secs = retry_after(wait);
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        format!("too many wrong tokens from this address; try again in {secs} s (Retry-After)"),
    )
    .into_response();
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_failures_a_minute_then_the_address_waits_and_others_do_not() {
        let t = Throttle::new(3);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(t.failed(a, "bearer"), None, "within the allowance");
            assert_eq!(t.waiting(a, "bearer"), None);
        }
        let wait = t.failed(a, "login").expect("one too many");
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(t.waiting(a, "login").is_some(), "the address waits");
        assert_eq!(t.waiting(b, "bearer"), None, "another address does not");
        assert_eq!(t.failed(b, "bearer"), None);
        assert_eq!(retry_after(Duration::from_millis(19_001)), 20);
    }
}
