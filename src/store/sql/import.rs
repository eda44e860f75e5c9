//! An import in progress (`ImportSession`). Expanded by `sql_store!`.

macro_rules! sql_import {
    ($store:ident) => {
        struct Import {
            pool: sqlx::Pool<DB>,
            atomic: bool,
            tx: Option<sqlx::Transaction<'static, DB>>,
            /// Rows imported or updated so far.
            written: u64,
        }

        /// An import that wrote at least this many rows refreshes the planner's statistics
        /// (where the dialect needs it): a run right after a big import should not plan
        /// with the statistics of an empty table.
        const REFRESH_STATS_AFTER: u64 = 1_000;

        #[async_trait::async_trait]
        impl ImportSession for Import {
            async fn upsert(
                &mut self,
                rows: Vec<LeadInput>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<ImportCounts, StoreError> {
                if !self.atomic {
                    let tx = self.pool.begin_with(D::BEGIN_WRITE).await?;
                    let counts = in_tx(tx, async |tx| upsert_batch(tx, rows, now).await).await?;
                    self.written += counts.imported + counts.updated;
                    return Ok(counts);
                }
                // One transaction for the whole import: a failed batch rolls it all back,
                // and the session refuses further batches instead of committing them one
                // by one.
                let Some(mut tx) = self.tx.take() else {
                    return Err(StoreError::ImportAborted);
                };
                match upsert_batch(&mut tx, rows, now).await {
                    Ok(counts) => {
                        self.tx = Some(tx);
                        self.written += counts.imported + counts.updated;
                        Ok(counts)
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }

            async fn finish(self: Box<Self>, keep: bool) -> Result<(), StoreError> {
                if self.atomic && self.tx.is_none() {
                    return Err(StoreError::ImportAborted);
                }
                if let Some(tx) = self.tx {
                    if keep {
                        tx.commit().await?;
                    } else {
                        tx.rollback().await?;
                        return Ok(());
                    }
                }
                if let Some(sql) = D::REFRESH_STATS.filter(|_| self.written >= REFRESH_STATS_AFTER) {
                    // The rows are stored; statistics are only a help to the planner.
                    if let Err(e) = sqlx::query(sql).execute(&self.pool).await {
                        tracing::warn!(error = %e, "could not refresh the planner's statistics after the import");
                    }
                }
                Ok(())
            }
        }
    };
}
