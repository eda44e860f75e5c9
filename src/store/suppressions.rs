//! The suppression list: a global do-not-contact list of targets (`suppress add`,
//! `/v1/suppressions`). A suppressed target is never called: the statement that records a
//! call in flight refuses it (`sql/helpers.rs`, `insert_attempts`), so a suppression that
//! commits before a call is recorded stops it, whatever the runner had claimed. Adding a
//! target also blocks its lead (it leaves the due queues); an import creates or leaves a
//! suppressed target `blocked`. Removing a target lifts the suppression only: a lead
//! blocked by it stays blocked until a person unblocks it (`leads unblock`), since a
//! removal is no consent to resume. Rows are kept until removed (retention never prunes
//! them); the list is bounded by `SUPPRESSIONS_MAX`.

use super::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The most targets one `suppress add|remove` or one request takes.
pub const SUPPRESS_BATCH_MAX: usize = 10_000;
/// The most targets the suppression list holds.
pub const SUPPRESSIONS_MAX: u64 = 1_000_000;
/// The largest page of the list one read returns.
pub const SUPPRESSIONS_PAGE_MAX: u32 = 1_000;

/// A suppressed target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Suppression {
    pub target: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// What adding targets did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Suppressed {
    /// Targets added to the list.
    pub added: u64,
    /// Targets that were on it already.
    pub already: u64,
    /// Leads of these targets blocked now (those not `blocked`, `done` or `ignored`).
    pub leads_blocked: u64,
}

/// What removing targets did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Unsuppressed {
    /// Targets removed from the list.
    pub removed: u64,
    /// Targets that were not on it.
    pub not_suppressed: u64,
    /// Leads of the removed targets that are still `blocked` (`leads unblock` resumes
    /// them).
    pub leads_still_blocked: u64,
}

/// The suppression list in the lead database.
#[async_trait]
pub trait SuppressionStore: Send + Sync {
    /// Adds `targets` (checked, each once, at most `SUPPRESS_BATCH_MAX`) and blocks their
    /// leads, in one transaction; refuses (`StoreError::Full`, nothing written) when the
    /// list would pass `SUPPRESSIONS_MAX`.
    async fn suppress(
        &self,
        targets: &[String],
        now: DateTime<Utc>,
    ) -> Result<Suppressed, StoreError>;
    /// Removes `targets` (each once, at most `SUPPRESS_BATCH_MAX`) in one transaction.
    /// Their leads are left as they are.
    async fn unsuppress(&self, targets: &[String]) -> Result<Unsuppressed, StoreError>;
    /// Up to `limit` suppressions with a target after `after` (all with `None`), in target
    /// order.
    async fn suppressions(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Suppression>, StoreError>;
    /// Whether `target` is suppressed.
    async fn is_suppressed(&self, target: &str) -> Result<bool, StoreError>;
}
