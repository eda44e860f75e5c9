//! `[http]`: where and how the daemon serves its HTTP API and dashboard, as written and
//! checked: the address, the public URL people use (behind a TLS proxy), the daemon's own
//! TLS, and the limits that keep one client from holding the service (timeouts, connection
//! caps, failed logins per minute).

use super::fields::{Count, Dur, Listen};
use super::{ConfigError, defaults, locate};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// `[http]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Where `daemon` serves the HTTP API; `None`: it serves none (unless `--http`).
    pub listen: Option<std::net::SocketAddr>,
    /// The address people and clients use (`https://runner.example.com` behind a TLS
    /// proxy): its scheme says whether the dashboard's cookie is `Secure`, its host is the
    /// only name `Host` may carry, its origin the only `Origin` a dashboard form may come
    /// from. `None`: whatever address the request used.
    pub public_url: Option<url::Url>,
    /// PEM files the daemon serves HTTPS with itself.
    pub tls: Option<TlsFiles>,
    /// How long a client may take to send a request's headers, and to send its first
    /// request on a new connection.
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request being answered.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged, and how long its answer may take.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    /// Connections open at once, from everyone and from one client address.
    pub max_connections: u32,
    pub max_connections_per_client: u32,
    /// Failed logins and wrong bearer tokens one client address may send per minute
    /// before it is answered 429 for a while.
    pub auth_failures_per_minute: u32,
}

/// `[http] tls_cert` and `tls_key`: a certificate chain and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: None,
            public_url: None,
            tls: None,
            header_timeout: defaults::HTTP_HEADER_TIMEOUT,
            idle_timeout: defaults::HTTP_IDLE_TIMEOUT,
            keep_alive_interval: defaults::HTTP_KEEP_ALIVE_INTERVAL,
            keep_alive_timeout: defaults::HTTP_KEEP_ALIVE_TIMEOUT,
            max_connections: defaults::HTTP_MAX_CONNECTIONS,
            max_connections_per_client: defaults::HTTP_MAX_CONNECTIONS_PER_CLIENT,
            auth_failures_per_minute: defaults::HTTP_AUTH_FAILURES_PER_MINUTE,
        }
    }
}

impl HttpSettings {
    /// Whether people reach the service over HTTPS: the daemon's own TLS, or a proxy's
    /// (`public_url` is `https://`).
    pub fn https(&self) -> bool {
        self.tls.is_some()
            || self
                .public_url
                .as_ref()
                .is_some_and(|u| u.scheme() == "https")
    }
}

/// From one second to ten minutes.
type ShortDur = Dur<1_000, 600_000>;
/// From one second to an hour.
type LongDur = Dur<1_000, 3_600_000>;

/// `[http]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<Listen>,
    public_url: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    header_timeout: Option<ShortDur>,
    idle_timeout: Option<LongDur>,
    keep_alive_interval: Option<LongDur>,
    keep_alive_timeout: Option<ShortDur>,
    max_connections: Option<Count<2, 65_536>>,
    max_connections_per_client: Option<Spanned<Count<1, 65_535>>>,
    auth_failures_per_minute: Option<Count<1, 10_000>>,
}

/// Checks `[http]` of `text`, read from `path` (TLS files are relative to its folder).
pub(super) fn check(path: &Path, text: &str, r: &RawHttp) -> Result<HttpSettings, ConfigError> {
    let err = |span: std::ops::Range<usize>, key: &str, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        line: locate::line_column(text, span.start).0,
        key: format!("[http] {key}"),
        message,
    };
    let d = HttpSettings::default();
    let public_url = r
        .public_url
        .as_ref()
        .map(|u| public_url(u.get_ref()).map_err(|m| err(u.span(), "public_url", m)))
        .transpose()?;
    let file = |v: &Spanned<String>, key: &str| {
        let name = v.get_ref().trim();
        if name.is_empty() {
            return Err(err(v.span(), key, "is empty; expected a PEM file".into()));
        }
        let file = path.parent().unwrap_or(Path::new(".")).join(name);
        match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => Ok(file),
            Ok(_) => Err(err(
                v.span(),
                key,
                format!("{} is not a file", file.display()),
            )),
            Err(e) => Err(err(
                v.span(),
                key,
                format!("{} cannot be read: {e}", file.display()),
            )),
        }
    };
    let tls = match (&r.tls_cert, &r.tls_key) {
        (None, None) => None,
        (Some(c), Some(k)) => Some(TlsFiles {
            cert: file(c, "tls_cert")?,
            key: file(k, "tls_key")?,
        }),
        (Some(c), None) => {
            return Err(err(
                c.span(),
                "tls_key",
                "is missing: tls_cert needs its private key (a PEM file)".into(),
            ));
        }
        (None, Some(k)) => {
            return Err(err(
                k.span(),
                "tls_cert",
                "is missing: tls_key needs its certificate chain (a PEM file)".into(),
            ));
        }
    };
    if let (Some(_), Some(u)) = (&tls, &r.public_url)
        && public_url.as_ref().is_some_and(|p| p.scheme() != "https")
    {
        return Err(err(
            u.span(),
            "public_url",
            "is http://, but tls_cert and tls_key make the daemon serve HTTPS: use https://".into(),
        ));
    }
    let max_connections = r.max_connections.map_or(d.max_connections, |n| n.get());
    let per_client = r
        .max_connections_per_client
        .as_ref()
        .map_or(d.max_connections_per_client, |n| n.get_ref().get());
    if per_client >= max_connections {
        let span = r
            .max_connections_per_client
            .as_ref()
            .map_or(0..0, Spanned::span);
        return Err(err(
            span,
            "max_connections_per_client",
            format!(
                "is {per_client}; it must be below max_connections ({max_connections}), or one client address could hold every connection"
            ),
        ));
    }
    Ok(HttpSettings {
        listen: r.listen.map(|l| l.0),
        public_url,
        tls,
        header_timeout: r.header_timeout.map_or(d.header_timeout, |t| t.0),
        idle_timeout: r.idle_timeout.map_or(d.idle_timeout, |t| t.0),
        keep_alive_interval: r.keep_alive_interval.map_or(d.keep_alive_interval, |t| t.0),
        keep_alive_timeout: r.keep_alive_timeout.map_or(d.keep_alive_timeout, |t| t.0),
        max_connections,
        max_connections_per_client: per_client,
        auth_failures_per_minute: r
            .auth_failures_per_minute
            .map_or(d.auth_failures_per_minute, |n| n.get()),
    })
}

/// `public_url`: http(s), a host, nothing after it (the service is served at `/`).
fn public_url(text: &str) -> Result<url::Url, String> {
    let example = "expected the address people use, e.g. \"https://runner.example.com\"";
    let url = url::Url::parse(text.trim())
        .map_err(|e| format!("{text:?} is not a URL ({e}); {example}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{text:?} is not an http(s) URL with a host; {example}"
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?} has a path, query or fragment; the service is served at the root: {example}"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?} holds a user name or password; {example}"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;
    use std::time::Duration;

    fn http(toml: &str) -> Result<super::HttpSettings, String> {
        parse(Path::new("jobs.toml"), &format!("[http]\n{toml}"))
            .map(|c| c.http)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_bound_every_connection() {
        let h = http("listen = \"127.0.0.1:8080\"\n").expect("parses");
        assert_eq!(h.header_timeout, Duration::from_secs(10));
        assert_eq!(h.idle_timeout, Duration::from_secs(60));
        assert_eq!(
            (h.max_connections, h.max_connections_per_client),
            (1024, 64)
        );
        assert_eq!(h.auth_failures_per_minute, 5);
        assert!(!h.https());
    }

    #[test]
    fn a_public_https_url_makes_the_service_https() {
        let h = http("public_url = \"https://runner.example.com\"\n").expect("parses");
        assert!(h.https());
        assert_eq!(
            h.public_url.map(|u| u.origin().ascii_serialization()),
            Some("https://runner.example.com".into())
        );
    }

    #[test]
    fn wrong_values_name_their_line_and_key() {
        for (toml, want) in [
            ("public_url = \"ftp://x\"\n", "line 2: [http] public_url"),
            ("public_url = \"https://x/dash\"\n", "has a path"),
            ("tls_cert = \"cert.pem\"\n", "[http] tls_key: is missing"),
            (
                "tls_cert = \"nowhere.pem\"\ntls_key = \"nowhere.pem\"\n",
                "cannot be read",
            ),
            (
                "max_connections = 10\nmax_connections_per_client = 10\n",
                "line 3: [http] max_connections_per_client: is 10; it must be below",
            ),
            ("idle_timeout = \"0s\"\n", "idle_timeout"),
            ("header_timeout = \"1h\"\n", "out of range"),
            ("auth_failures_per_minute = 0\n", "auth_failures_per_minute"),
        ] {
            let e = http(toml).expect_err(toml);
            assert!(e.contains(want), "{toml}: {e}");
        }
    }
}
