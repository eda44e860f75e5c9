//! What every answer carries, and which requests are refused before any route sees them.
//!
//! Every answer: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
//! `X-Frame-Options: DENY`, `Cross-Origin-Opener-Policy` and `-Resource-Policy:
//! same-origin`, `Cache-Control: no-store` (unless the route set its own), a
//! Content-Security-Policy (the dashboard's pages: only their own script and style, by
//! hash; anything else: nothing at all), and over HTTPS `Strict-Transport-Security`.
//!
//! With `[http] public_url` set, a request whose `Host` (or HTTP/2 `:authority`) is
//! neither that URL's host nor an IP address is answered 421: a DNS name pointed at the
//! daemon by someone else (DNS rebinding) gets nothing. IP addresses stay allowed, so a
//! proxy that forwards to `127.0.0.1:8080`, a health probe or a metrics scraper needs no
//! special `Host`.

use super::AppState;
use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The policy of every answer that is not a dashboard page: nothing may load or run.
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// How the service is reached: whether over HTTPS, and the names `Host` may carry.
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// The daemon serves TLS, or `public_url` is `https://`.
    pub https: bool,
    /// `public_url`'s origin (`https://runner.example.com`), if set.
    pub origin: Option<String>,
    /// `public_url`'s host and port as `Host` carries them (with and without a default
    /// port); empty: any `Host` is answered.
    hosts: Vec<String>,
}

impl Site {
    pub fn new(http: &crate::config::HttpSettings) -> Site {
        let mut hosts = Vec::new();
        if let Some(u) = &http.public_url
            && let Some(host) = u.host_str()
        {
            let host = host.to_ascii_lowercase();
            match u.port_or_known_default() {
                Some(port) => {
                    hosts.push(format!("{host}:{port}"));
                    if u.port().is_none() {
                        hosts.push(host);
                    }
                }
                None => hosts.push(host),
            }
        }
        Site {
            https: http.https(),
            origin: http
                .public_url
                .as_ref()
                .map(|u| u.origin().ascii_serialization()),
            hosts,
        }
    }

    /// Whether a request for `host` (as `Host` carries it) is for this service.
    pub fn answers(&self, host: &str) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        // An IP address, with or without a port: no DNS name can be rebound to it.
        host.parse::<std::net::SocketAddr>().is_ok()
            || host.parse::<std::net::IpAddr>().is_ok()
            || host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
    }

    /// The origin forms of this service must come from: `public_url`'s, else the scheme
    /// it is served with and the request's own host.
    pub fn expected_origin(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(o) = &self.origin {
            return Some(o.clone());
        }
        let host = headers.get(HOST)?.to_str().ok()?;
        let scheme = if self.https { "https" } else { "http" };
        Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
    }
}

/// The request's host: HTTP/2's `:authority` (or an absolute URI's), else `Host`.
fn host_of(request: &Request) -> Option<String> {
    if let Some(a) = request.uri().authority() {
        return Some(a.as_str().to_string());
    }
    request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
}

/// The layer around every route: refuses unknown hosts, adds the headers above.
pub async fn secure(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    let host = host_of(&request);
    let answered = probe
        || match &host {
            Some(h) => state.site.answers(h),
            None => state.site.hosts.is_empty(),
        };
    let mut response = if answered {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong_host",
            format!(
                "this service answers to {} ([http] public_url) and IP addresses, not to {:?}",
                state.site.origin.as_deref().unwrap_or("its public URL"),
                host.unwrap_or_default()
            ),
        )
        .into_response()
    };
    let html = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    let h = response.headers_mut();
    let policy = if html {
        super::ui::content_security_policy()
    } else {
        API_CSP
    };
    if let Ok(v) = HeaderValue::from_str(policy) {
        h.insert(CONTENT_SECURITY_POLICY, v);
    }
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    // Answers hold leads, tokens' sessions and the campaign's state: no cache keeps them.
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.site.https {
        h.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(url: &str) -> Site {
        let toml = format!("[http]\npublic_url = \"{url}\"\n");
        let c = crate::config::parse(std::path::Path::new("jobs.toml"), &toml).expect("parses");
        Site::new(&c.http)
    }

    #[test]
    fn with_a_public_url_only_its_host_and_ip_addresses_are_answered() {
        let s = site("https://Runner.example.com");
        for ok in [
            "runner.example.com",
            "RUNNER.example.com:443",
            "runner.example.com.",
            "127.0.0.1:8080",
            "10.0.0.5",
            "[::1]:8080",
        ] {
            assert!(s.answers(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "runner.example.com:8443",
            "runner.example.com.evil",
            "",
        ] {
            assert!(!s.answers(no), "{no}");
        }
        assert!(
            Site::default().answers("anything"),
            "no public_url: any host"
        );
        let s = site("http://runner.example.com:8080");
        assert!(s.answers("runner.example.com:8080") && !s.answers("runner.example.com"));
        assert_eq!(s.origin.as_deref(), Some("http://runner.example.com:8080"));
    }
}
