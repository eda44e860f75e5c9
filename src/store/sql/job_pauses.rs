//! `impl JobPauseStore`: the job pauses (`job_pauses`, migration 0014). Mounted by each
//! backend (`sqlite.rs`, `postgres.rs`) over its own types.

use super::{D, Store};
use crate::store::StoreError;
use crate::store::dialect::Dialect;
use crate::store::job_pauses::{JOB_PAUSES_MAX, JobPause, JobPauseStore};
use crate::store::rules::in_tx;
use crate::store::values::Ts;
use chrono::{DateTime, Utc};

type Row = (String, Ts, Option<Ts>, Option<String>);

fn pause_of((job, paused_at, until, reason): Row) -> JobPause {
    JobPause {
        job,
        paused_at: paused_at.0,
        until: until.map(|t| t.0),
        reason,
    }
}

#[async_trait::async_trait]
impl JobPauseStore for Store {
    async fn job_pauses(&self) -> Result<Vec<JobPause>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT job, paused_at, until, reason FROM job_pauses ORDER BY job LIMIT $1",
        )
        .bind(i64::from(JOB_PAUSES_MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(pause_of).collect())
    }

    async fn job_pause(
        &self,
        job: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<JobPause>, StoreError> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT job, paused_at, until, reason FROM job_pauses
             WHERE job = $1 AND (until IS NULL OR until > $2)",
        )
        .bind(job)
        .bind(Ts(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(pause_of))
    }

    async fn pause_job(&self, pause: &JobPause) -> Result<Option<JobPause>, StoreError> {
        in_tx(&self.pool, D::BEGIN_WRITE, async |tx| {
            let before: Option<Row> = sqlx::query_as(
                "SELECT job, paused_at, until, reason FROM job_pauses WHERE job = $1",
            )
            .bind(&pause.job)
            .fetch_optional(&mut *tx)
            .await?;
            if before.is_none() {
                let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_pauses")
                    .fetch_one(&mut *tx)
                    .await?;
                if held.max(0) as u64 >= u64::from(JOB_PAUSES_MAX) {
                    return Err(StoreError::Full(format!(
                        "{held} jobs are paused already, the most the database keeps \
                         ({JOB_PAUSES_MAX}); job {:?} was not paused",
                        pause.job
                    )));
                }
            }
            sqlx::query(
                "INSERT INTO job_pauses (job, paused_at, until, reason) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (job) DO UPDATE SET paused_at = $2, until = $3, reason = $4",
            )
            .bind(&pause.job)
            .bind(Ts(pause.paused_at))
            .bind(pause.until.map(Ts))
            .bind(pause.reason.as_deref())
            .execute(&mut *tx)
            .await?;
            Ok(before.map(pause_of).filter(|p| p.in_force(pause.paused_at)))
        })
        .await
    }

    async fn resume_job(
        &self,
        job: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<JobPause>, StoreError> {
        let row: Option<Row> = sqlx::query_as(
            "DELETE FROM job_pauses WHERE job = $1 RETURNING job, paused_at, until, reason",
        )
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(pause_of).filter(|p| p.in_force(now)))
    }
}
