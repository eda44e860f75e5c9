//! Shared test helpers: the simulator on port 0, a recording HTTP server that decodes form
//! bodies, and the built binary.
#![allow(dead_code)]

pub mod campaign;
pub mod db;
pub mod http;
pub mod logs;
pub mod webhook;

use fluidtalk_runner::fluidtalk::{ApiKey, Client, ClientConfig};
use fluidtalk_runner::sim::{SimConfig, Simulator};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Runs each named `async fn(TestDb)` of the calling module twice: on a fresh SQLite file
/// (`mod sqlite`) and on a fresh PostgreSQL schema (`mod postgres`; without
/// `TEST_DATABASE_URL` that half says it was skipped, and CI sets it).
#[allow(unused_macros)]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::common::db::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = crate::common::db::postgres().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use conformance;

/// Held by the tests that load the machine (several daemon or runner processes, chaos,
/// storage faults, the HTTP flood) and by those that measure time under such load: one of
/// them at a time in the test binary, the others run beside it as before.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const TEST_KEY: &str = "ft_sk_test_7f3a9c1e5b2d";

/// A simulator serving on a free loopback port for the life of the test's runtime.
pub async fn spawn_sim(config: SimConfig) -> (String, Simulator) {
    fluidtalk_runner::fluidtalk::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("bound address");
    let sim = Simulator::new(config);
    let served = sim.clone();
    tokio::spawn(async move {
        served
            .serve(listener, std::future::pending())
            .await
            .expect("simulator serves");
    });
    (format!("http://{addr}"), sim)
}

pub fn client(base_url: &str) -> Client {
    client_with(base_url, None, Duration::from_secs(10))
}

pub fn client_with(base_url: &str, own_username: Option<&str>, timeout: Duration) -> Client {
    let mut config = ClientConfig::new(ApiKey::new(TEST_KEY).expect("test key"));
    config.base_url = base_url.to_string();
    config.own_username = own_username.map(str::to_string);
    config.timeout = timeout;
    Client::new(config).expect("client builds")
}

/// A server that answers every POST with `response` and records what it got.
pub async fn recorder(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

/// One part of a multipart body, or one urlencoded field (then `filename` and
/// `content_type` are `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// A request as the server saw it, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub api_key: Option<String>,
    /// The media type without parameters (the multipart boundary differs per request).
    pub content_type: String,
    pub parts: Vec<Part>,
    /// The raw body for urlencoded requests (multipart bodies differ by boundary).
    pub raw_form: Option<String>,
}

impl Seen {
    /// The text fields, in order, as (name, value).
    pub fn fields(&self) -> Vec<(String, String)> {
        self.parts
            .iter()
            .filter(|p| p.filename.is_none())
            .map(|p| {
                (
                    p.name.clone(),
                    String::from_utf8_lossy(&p.data).into_owned(),
                )
            })
            .collect()
    }

    pub fn field(&self, name: &str) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    pub fn files(&self) -> Vec<&Part> {
        self.parts.iter().filter(|p| p.filename.is_some()).collect()
    }
}

pub async fn seen(server: &MockServer) -> Vec<Seen> {
    let requests = server.received_requests().await.expect("recording is on");
    let mut out = Vec::new();
    for r in requests {
        out.push(decode(&r).await);
    }
    out
}

pub async fn decode(r: &Request) -> Seen {
    let content_type_full = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let content_type = content_type_full
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let api_key = r
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut parts = Vec::new();
    let mut raw_form = None;
    if content_type == "multipart/form-data" {
        let boundary = multer::parse_boundary(&content_type_full).expect("boundary");
        let body = r.body.clone();
        let stream = futures_once(body);
        let mut mp = multer::Multipart::new(stream, boundary);
        while let Some(field) = mp.next_field().await.expect("valid multipart") {
            let name = field.name().unwrap_or_default().to_string();
            let filename = field.file_name().map(str::to_string);
            let content_type = field
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let data = field.bytes().await.expect("part bytes").to_vec();
            parts.push(Part {
                name,
                filename,
                content_type,
                data,
            });
        }
    } else {
        let text = String::from_utf8(r.body.clone()).expect("utf-8 form body");
        for (k, v) in form_urlencoded::parse(text.as_bytes()) {
            parts.push(Part {
                name: k.into_owned(),
                filename: None,
                content_type: None,
                data: v.into_owned().into_bytes(),
            });
        }
        raw_form = Some(text);
    }
    Seen {
        method: r.method.to_string(),
        path: r.url.path().to_string(),
        api_key,
        content_type,
        parts,
        raw_form,
    }
}

fn futures_once(
    body: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    struct Once(Option<bytes::Bytes>);
    impl futures_core::Stream for Once {
        type Item = Result<bytes::Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.take().map(Ok))
        }
    }
    Once(Some(bytes::Bytes::from(body)))
}

/// The binary under test: the one just built, or the one `FLUIDTALK_RUNNER_BIN` names (to
/// show a regression test fails on an older build: `FLUIDTALK_RUNNER_BIN=old/fluidtalk-runner
/// cargo test --test it reliability::`).
pub fn bin() -> std::process::Command {
    match std::env::var_os("FLUIDTALK_RUNNER_BIN") {
        Some(path) => std::process::Command::new(path),
        None => built(),
    }
}

/// The binary just built (the simulator always comes from it).
pub fn built() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_fluidtalk-runner"))
}

/// Starts `fluidtalk-runner sim` with `args` on a free port; returns the child and its URL.
pub fn spawn_sim_process(args: &[&str]) -> (KillOnDrop, String) {
    use std::io::BufRead;
    let mut child = built()
        .args(["sim", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the simulator");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("read the bound address");
    let url = first.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "first line was {url:?}"
    );
    (KillOnDrop(child), url)
}

pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` to its end, as `Command::output` does, and reads the child's peak resident
/// memory (KiB) from `wait4`: the rusage of this one process, not of every child of the
/// test binary (`RUSAGE_CHILDREN`). Linux counts in it the memory of this process as it was
/// when the child started, so it is the child's own only from a small test binary
/// (`tests/memory/`). Standard output and error go through files (no pipe to drain
/// meanwhile).
pub fn output_with_peak_rss(cmd: &mut std::process::Command) -> (std::process::Output, i64) {
    use std::os::unix::process::ExitStatusExt;
    let mut stdout = tempfile::tempfile().expect("temp file for stdout");
    let mut stderr = tempfile::tempfile().expect("temp file for stderr");
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(stdout.try_clone().expect("clone"))
        .stderr(stderr.try_clone().expect("clone"))
        .spawn()
        .expect("start the command");
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut status: libc::c_int = 0;
    // SAFETY: wait4 writes only into the status and rusage we pass; the child is ours and
    // not waited for by anything else (`child` is dropped without `wait`).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break rc;
    };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let read = |file: &mut std::fs::File| {
        use std::io::{Read, Seek};
        file.rewind().expect("rewind");
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).expect("read");
        bytes
    };
    let output = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    };
    (output, usage.ru_maxrss)
}
