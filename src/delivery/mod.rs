//! Webhook delivery of the outbox: each message POSTed as signed JSON to
//! `[delivery] webhook_url`, retried with back-off until a 2xx, parked after `max_age`.
//!
//! - `signer`: the HMAC-SHA256 signature and the headers' names;
//! - `backoff`: when a failed try is tried again, and when a message is parked;
//! - `worker`: the `Deliverer`: a `pass` claims deliverable messages (like leads: a lease
//!   per daemon, at most one message per target, in id order), POSTs them and records
//!   each result under its lease; `run` makes passes until stopped.
//!
//! Delivery is at least once: a daemon that dies after the receiver answered but before
//! the result was written sends the message again once its lease runs out. Receivers
//! deduplicate on `Idempotency-Key: outbox-<id>`.

mod backoff;
mod signer;
mod worker;

pub use backoff::{Next, Retry};
pub use signer::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, SecretError, Signer, TIMESTAMP_HEADER};
pub use worker::{Deliverer, PassReport, Payload, SetupError};
