//! The inbound relay's lease (`RunnerStore::begin_inbound`). Mounted by each backend
//! (`sqlite.rs`, `postgres.rs`) over its own types.

use super::helpers::{lead_in, upsert_batch};
use super::replies::credit_reply;
use super::suppress::suppressed_in;
use super::{D, Store};
use crate::store::dialect::Dialect;
use crate::store::params::Lease;
use crate::store::rules::in_tx;
use crate::store::values::Ts;
use crate::store::{Lead, LeadInput, StoreError};

impl Store {
    /// Records the reply of `target` and leases the lead for the relay's call, in one
    /// write transaction (see `RunnerStore::begin_inbound`).
    pub(super) async fn lease_inbound(
        &self,
        target: &str,
        own_username: Option<&str>,
        lease: Lease<'_>,
    ) -> Result<Lead, StoreError> {
        let Lease {
            lease_token,
            now,
            until: lease_until,
        } = lease;
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            // A suppressed target is never called (nor added): refused before anything
            // is written. The record statement would refuse its call in any case.
            if suppressed_in(tx, target).await? {
                let from = match lead_in(tx, target, false).await {
                    Ok(lead) => lead.state,
                    Err(StoreError::NotFound(_)) => crate::lead::LeadState::Blocked,
                    Err(e) => return Err(e),
                };
                return Err(StoreError::Refused(crate::lead::Refused {
                    from,
                    event: "an inbound message",
                    why: "the target is on the suppression list (do-not-contact): no call is made",
                }));
            }
            let lead = match lead_in(tx, target, true).await {
                Ok(lead) => lead,
                Err(StoreError::NotFound(_)) => {
                    // A lead who writes first is in conversation from now on.
                    let new = LeadInput {
                        target: target.to_string(),
                        own_username: own_username.map(str::to_string),
                        state: Some(crate::lead::LeadState::Contacted),
                        last_reply_at: Some(now),
                        ..LeadInput::default()
                    };
                    upsert_batch(tx, vec![new], now).await?;
                    lead_in(tx, target, true).await?
                }
                Err(e) => return Err(e),
            };
            if lead.state == crate::lead::LeadState::Blocked {
                return Err(StoreError::Refused(crate::lead::Refused {
                    from: lead.state,
                    event: "an inbound message",
                    why: "the lead is blocked (do-not-contact): no call is made",
                }));
            }
            let busy: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM attempts WHERE lead_id = $1 AND status = 'in_flight' LIMIT 1",
            )
            .bind(lead.id)
            .fetch_optional(&mut *tx)
            .await?;
            if busy.is_some() {
                return Err(StoreError::Busy(target.to_string()));
            }
            let to = crate::lead::next(lead.state, crate::lead::LeadEvent::Replied)?;
            // The reply resets the quiet clock and the follow-up count, as
            // `record_reply` does; the lease taken from a runner that only claimed
            // the lead stops its call (its lead is no longer as claimed).
            let done = sqlx::query(
                "UPDATE leads SET state = $1, follow_ups_sent = 0, updated_at = $2,
                    last_reply_at = $2, own_username = COALESCE(own_username, $3),
                    lease_owner = $4, lease_expires_at = $5
                 WHERE id = $6 AND state = $7",
            )
            .bind(to.as_str())
            .bind(Ts(now))
            .bind(own_username)
            .bind(lease_token)
            .bind(Ts(lease_until))
            .bind(lead.id)
            .bind(lead.state.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(target.to_string()));
            }
            credit_reply(tx, lead.id, now).await?;
            lead_in(tx, target, false).await
        })
        .await
    }
}
