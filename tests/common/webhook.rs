//! For webhook delivery tests: outbox messages written through the store, and a webhook
//! receiver (axum on a free port) that checks each request's signature and timestamp as
//! docs/http-api.md tells receivers to, answers as the test says, and records what it got.

use super::db::TestDb;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use fluidtalk_runner::clock::Clock;
use fluidtalk_runner::delivery::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};
use fluidtalk_runner::store::{Action, AttemptEnd, AttemptStatus, LeadInput, NewAttempt};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SECRET: &str = "whsec_test_9c41d2e8b7a6f5e4d3c2b1a0f9e8";

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0)
        .single()
        .expect("valid time")
}

/// Writes one outbox message per `(target, text)`, in order, as finished attempts of
/// successive steps (an opener, then follow-ups); returns their outbox ids.
pub async fn write_messages(db: &TestDb, messages: &[(&str, &str)]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (target, text) in messages {
        let mut import = db.store.begin_import(false).await.expect("begin import");
        import
            .upsert(
                vec![LeadInput {
                    target: target.to_string(),
                    ..Default::default()
                }],
                t0(),
            )
            .await
            .expect("upsert");
        import.finish(true).await.expect("finish import");
        let lead = db
            .store
            .get_lead(target)
            .await
            .expect("get lead")
            .expect("lead exists");
        let step = db
            .store
            .attempts_for(lead.id)
            .await
            .expect("attempts")
            .len() as i64;
        let action = if step == 0 {
            Action::Opener
        } else {
            Action::FollowUp
        };
        let attempt = db
            .store
            .start_attempts(&[NewAttempt {
                lead_id: lead.id,
                job: "test".into(),
                action,
                step,
                lease_token: "writer".into(),
                started_at: t0(),
                claimed: None,
                sender: None,
            }])
            .await
            .expect("start attempt")[0];
        db.store
            .finish_attempts(&[AttemptEnd {
                attempt_id: attempt,
                status: AttemptStatus::Sent,
                http_status: Some(200),
                error_kind: None,
                error_detail: None,
                session_id: Some(format!("sess-{target}")),
                finished_at: t0(),
                message: Some(text.to_string()),
                release: None,
            }])
            .await
            .expect("finish attempt");
        let pending = db.store.outbox(false).await.expect("outbox");
        ids.push(pending.last().expect("a message").id);
    }
    ids
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Status(u16),
    /// Waits this long, then answers 200 (if the sender is still there).
    Slow(Duration),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: i64,
    pub target: String,
    pub text: String,
    pub body: serde_json::Value,
    pub idempotency_key: String,
    /// What the receiver answered.
    pub status: u16,
}

struct Inner {
    signer: Signer,
    clock: Arc<dyn Clock>,
    answer: Mutex<Answer>,
    got: Mutex<Vec<Got>>,
    in_flight: Mutex<HashSet<i64>>,
    /// Requests for a message already being handled.
    overlaps: Mutex<Vec<i64>>,
    /// Requests refused for a bad signature or an old timestamp.
    refused: Mutex<Vec<String>>,
}

/// A webhook receiver on a loopback port.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Receiver {
    /// A receiver on a free port that answers `answer`, judging timestamps by `clock`.
    pub async fn start(clock: Arc<dyn Clock>, answer: Answer) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let r = Receiver::down(clock, answer).await;
        let r = Receiver {
            addr: listener.local_addr().expect("bound address"),
            url: format!(
                "http://{}/hooks/t0ken",
                listener.local_addr().expect("addr")
            ),
            ..r
        };
        r.serve(listener);
        r
    }

    /// A receiver whose port refuses connections until `up`.
    pub async fn down(clock: Arc<dyn Clock>, answer: Answer) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("bound address");
        drop(listener);
        Receiver {
            url: format!("http://{addr}/hooks/t0ken"),
            addr,
            inner: Arc::new(Inner {
                signer: Signer::new(SECRET.to_string().into()),
                clock,
                answer: Mutex::new(answer),
                got: Mutex::new(Vec::new()),
                in_flight: Mutex::new(HashSet::new()),
                overlaps: Mutex::new(Vec::new()),
                refused: Mutex::new(Vec::new()),
            }),
            task: Arc::new(Mutex::new(None)),
        }
    }

    /// Starts serving on the receiver's port.
    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the receiver's port again");
        self.serve(listener);
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .route("/hooks/t0ken", axum::routing::post(receive))
            .with_state(self.inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.task.lock().expect("lock") = Some(task);
    }

    pub fn answer(&self, answer: Answer) {
        *self.inner.answer.lock().expect("lock") = answer;
    }

    pub fn got(&self) -> Vec<Got> {
        self.inner.got.lock().expect("lock").clone()
    }

    /// The ids the receiver accepted (answered 2xx), in the order it accepted them.
    pub fn accepted(&self) -> Vec<i64> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.status))
            .map(|g| g.id)
            .collect()
    }

    /// Whether a request is being handled right now.
    pub fn busy(&self) -> bool {
        !self.inner.in_flight.lock().expect("lock").is_empty()
    }

    pub fn overlaps(&self) -> Vec<i64> {
        self.inner.overlaps.lock().expect("lock").clone()
    }

    pub fn refused(&self) -> Vec<String> {
        self.inner.refused.lock().expect("lock").clone()
    }
}

/// Takes a message off the in-flight set however its request ends (a sender that timed
/// out drops the request mid-way).
struct InFlight(Arc<Inner>, i64);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.lock().expect("lock").remove(&self.1);
    }
}

/// What docs/http-api.md tells a receiver to do: check the signature over the raw body, and
/// refuse a timestamp more than 5 minutes away.
async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let timestamp: i64 = header(TIMESTAMP_HEADER).parse().unwrap_or(0);
    let fresh = (inner.clock.now().timestamp() - timestamp).abs() <= 300;
    if !fresh
        || !inner
            .signer
            .verify(timestamp, &body, &header(SIGNATURE_HEADER))
    {
        inner
            .refused
            .lock()
            .expect("lock")
            .push(header(SIGNATURE_HEADER));
        return StatusCode::UNAUTHORIZED;
    }
    let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    let id = json["id"].as_i64().expect("an id");
    if !inner.in_flight.lock().expect("lock").insert(id) {
        inner.overlaps.lock().expect("lock").push(id);
    }
    let _in_flight = InFlight(inner.clone(), id);
    let answer = *inner.answer.lock().expect("lock");
    let status = match answer {
        Answer::Ok => 200,
        Answer::Status(s) => s,
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            200
        }
    };
    inner.got.lock().expect("lock").push(Got {
        id,
        target: json["target"].as_str().unwrap_or_default().to_string(),
        text: json["text"].as_str().unwrap_or_default().to_string(),
        idempotency_key: header(IDEMPOTENCY_HEADER),
        body: json,
        status,
    });
    StatusCode::from_u16(status).expect("a status")
}
