//! The accept loop and each connection's life: nothing a client does (or fails to do)
//! holds a connection open for long, and no client address holds many.
//!
//! - A connection's first request must start within `[http] header_timeout` (hyper-util
//!   reads the first bytes to tell HTTP/1 from HTTP/2 with no timer of its own), and one
//!   with no request being answered is closed after `idle_timeout`: the watch in `drive`
//!   (for HTTP/1 and HTTP/2 alike) asks hyper to close it gracefully, then drops it.
//! - HTTP/1: hyper's timer gives a request's headers `header_timeout`, which also bounds
//!   the wait for the next request on a kept-alive connection.
//! - HTTP/2: hyper pings every `keep_alive_interval` and closes a connection whose answer
//!   takes over `keep_alive_timeout`; at most `MAX_STREAMS` requests at once per
//!   connection.
//! - HTTPS (`[http] tls_cert`, `tls_key`): the handshake gets `header_timeout` too.
//! - `max_connections` open at once, at most `max_connections_per_client` from one client
//!   address (an IPv6 /64 counts as one): one address cannot hold every slot. A connection
//!   over either is closed at once.
//!
//! Refused and timed-out connections are counted (`metrics::HTTP_CONNECTIONS_REFUSED`,
//! `HTTP_CONNECTIONS_TIMED_OUT`) and logged at most once a minute, with their counts
//! (`tally`). A stop stops accepting, asks every connection to close once its requests are
//! answered, and waits for them (the daemon bounds that wait by its grace).

use super::tally::{self, Tally};
use crate::config::HttpSettings;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Requests one HTTP/2 connection may have open at once.
pub const MAX_STREAMS: u32 = 32;
/// How long a connection asked to close (idle, or the server stopping with it stalled)
/// may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The HTTPS side: rustls over the accepted TCP stream (see `tls`).
pub type Acceptor = tokio_rustls::TlsAcceptor;

/// The client address connections and failed logins are counted by: an IPv4 address, or
/// an IPv6 address's /64 (one host's usual share, which it can fill with addresses).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::V6(s.into())
        }
        v4 => v4,
    }
}

/// What every connection shares.
struct Shared {
    app: Router,
    builder: Builder<TokioExecutor>,
    tls: Option<Acceptor>,
    header_timeout: Duration,
    idle_timeout: Duration,
    per_client: u32,
    clients: Mutex<HashMap<IpAddr, u32>>,
    tally: Tally,
}

impl Shared {
    fn refused(&self, reason: &'static str) {
        metrics::counter!(crate::metrics::HTTP_CONNECTIONS_REFUSED, "reason" => reason)
            .increment(1);
        if let Some(counts) = self.tally.note(reason) {
            say(&counts);
        }
    }

    fn timed_out(&self, reason: &'static str) {
        metrics::counter!(crate::metrics::HTTP_CONNECTIONS_TIMED_OUT, "reason" => reason)
            .increment(1);
        if let Some(counts) = self.tally.note(reason) {
            say(&counts);
        }
    }

    /// Takes one of `key`'s connections, if it has one left.
    fn take(self: &Arc<Self>, key: IpAddr) -> Option<ClientSlot> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let open = clients.entry(key).or_default();
        if *open >= self.per_client {
            return None;
        }
        *open += 1;
        Some(ClientSlot {
            shared: self.clone(),
            key,
        })
    }
}

/// One line for what the tally counted: refusals are a warning (clients went unserved),
/// timeouts alone are information (idle keep-alive connections end this way too).
fn say(counts: &tally::Counts) {
    let refused = counts.contains_key("per_client") || counts.contains_key("total");
    let what = tally::describe(counts);
    if refused {
        tracing::warn!(
            connections = %what,
            "HTTP connections refused (over [http] max_connections_per_client or max_connections) or timed out since the last such line"
        );
    } else {
        tracing::info!(connections = %what, "HTTP connections timed out since the last such line");
    }
}

/// A connection counted against its client address until dropped.
struct ClientSlot {
    shared: Arc<Shared>,
    key: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut clients = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(open) = clients.get_mut(&self.key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                clients.remove(&self.key);
            }
        }
    }
}

/// Counts the open connections in the gauge while alive.
struct OpenGauge;

impl OpenGauge {
    fn new() -> OpenGauge {
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS_OPEN).increment(1.0);
        OpenGauge
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Where a person opens the dashboard: `[http] public_url` if set, else this address (an
/// unspecified one, such as 0.0.0.0, shown as the loopback address of its family).
pub fn dashboard_url(http: &HttpSettings, scheme: &str, addr: std::net::SocketAddr) -> String {
    if let Some(u) = &http.public_url {
        return u.to_string();
    }
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("{scheme}://{}/", std::net::SocketAddr::new(ip, addr.port()))
}

/// Serves `app` on `listener` (over TLS with `tls`) until `stop`; then stops accepting,
/// asks every connection to close once its requests are answered, and waits for them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    http: &HttpSettings,
    tls: Option<Acceptor>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, scheme, dashboard = %dashboard_url(http, scheme, addr), "HTTP API listening");
    }
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(http.keep_alive_interval)
        .keep_alive_timeout(http.keep_alive_timeout)
        .max_concurrent_streams(MAX_STREAMS);
    let shared = Arc::new(Shared {
        app,
        builder,
        tls,
        header_timeout: http.header_timeout,
        idle_timeout: http.idle_timeout,
        per_client: http.max_connections_per_client,
        clients: Mutex::default(),
        tally: Tally::default(),
    });
    let open = Arc::new(Semaphore::new(http.max_connections as usize));
    let connections = TaskTracker::new();
    let mut ticker = tokio::time::interval(tally::LOG_EVERY);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {
                if let Some(counts) = shared.tally.flush() {
                    say(&counts);
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, not a busy loop.
                    tracing::warn!(error = %e, "could not accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Dropping the stream closes the connection; its client may try again.
        let Some(mine) = shared.take(client_key(peer.ip())) else {
            shared.refused("per_client");
            continue;
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            shared.refused("total");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, stop) = (shared.clone(), stop.clone());
        connections.spawn(async move {
            let _held = (slot, mine, OpenGauge::new());
            match &shared.tls {
                None => drive(stream, peer, &shared, &stop).await,
                Some(tls) => {
                    match tokio::time::timeout(shared.header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => drive(stream, peer, &shared, &stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "a TLS handshake failed"),
                        Err(_) => shared.timed_out("tls_handshake"),
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// A connection's requests: how many are being answered, and when the last began or
/// ended (`None`: none yet).
struct Activity {
    opened: Instant,
    state: Mutex<(usize, Option<Instant>)>,
}

/// A request being answered; its end is the connection's latest activity.
struct Busy(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.1 = Some(Instant::now());
        Busy(self.clone())
    }

    /// When the connection next needs looking at, and why it is closed if it is idle
    /// then: no request yet within the header timeout, or none since the last for the idle
    /// timeout. With a request being answered, it is looked at again an idle time later.
    fn deadline(&self, first: Duration, idle: Duration) -> (Instant, Option<&'static str>) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            (0, None) => (self.opened + first, Some("no_request")),
            (0, Some(last)) => (last + idle, Some("idle")),
            _ => (Instant::now() + idle, None),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = s.0.saturating_sub(1);
        s.1 = Some(Instant::now());
    }
}

/// Serves one connection's requests (HTTP/1 or HTTP/2, as the client speaks) until it
/// ends, idles past its time, or the server stops.
async fn drive<I>(io: I, peer: SocketAddr, shared: &Arc<Shared>, stop: &CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let activity = Arc::new(Activity {
        opened: Instant::now(),
        state: Mutex::new((0, None)),
    });
    let watched = activity.clone();
    let app = shared.app.clone();
    // Each request learns its client's address (`ConnectInfo`) and counts as activity
    // until its answer is ready.
    let service = tower::service_fn(
        move |mut request: axum::extract::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let busy = watched.begin();
            let app = app.clone();
            async move {
                let answer = app.oneshot(request).await;
                drop(busy);
                answer
            }
        },
    );
    let conn = shared
        .builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let (wake, idle_reason) = activity.deadline(shared.header_timeout, shared.idle_timeout);
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    let timeout = e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timeout {
                        // HTTP/1 headers not sent in time, or an HTTP/2 ping not answered.
                        shared.timed_out("stalled");
                    } else {
                        tracing::debug!(error = %e, "an HTTP connection ended with an error");
                    }
                }
                return;
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(wake) => {
                let Some(reason) = idle_reason else { continue };
                if activity.deadline(shared.header_timeout, shared.idle_timeout).0 > Instant::now() {
                    continue;
                }
                if !stopping {
                    shared.timed_out(reason);
                    conn.as_mut().graceful_shutdown();
                }
                let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_url_is_the_public_one_or_a_reachable_local_one() {
        let mut http = HttpSettings::default();
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        assert_eq!(dashboard_url(&http, "http", any), "http://127.0.0.1:8080/");
        let v6: std::net::SocketAddr = "[::]:8443".parse().expect("addr");
        assert_eq!(dashboard_url(&http, "https", v6), "https://[::1]:8443/");
        let lan: std::net::SocketAddr = "10.0.0.5:80".parse().expect("addr");
        assert_eq!(dashboard_url(&http, "http", lan), "http://10.0.0.5:80/");
        http.public_url = Some(url::Url::parse("https://runner.example.com/").expect("url"));
        assert_eq!(
            dashboard_url(&http, "http", any),
            "https://runner.example.com/"
        );
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_its_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().expect("ip");
        assert_eq!(
            client_key(mapped),
            "127.0.0.2".parse::<IpAddr>().expect("ip")
        );
    }
}
