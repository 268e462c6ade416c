//! Group commit for the audit log: concurrent requests' records are written together, in one
//! statement, by one task. Each caller still waits until its own record is stored, so
//! "audit before action" holds; the store sees one write per batch instead of one per record
//! (SQLite serialises writers, and each write is a round trip to its worker thread).

use std::sync::Arc;

use anyhow::anyhow;
use tokio::sync::{mpsc, oneshot};

use super::{AuditRecord, Store};

/// Records written in one statement at most.
const MAX_BATCH: usize = 128;

type Job = (AuditRecord, oneshot::Sender<Result<(), String>>);

/// A handle to the audit writer task.
#[derive(Clone)]
pub struct AuditQueue {
    tx: mpsc::Sender<Job>,
}

impl AuditQueue {
    /// Starts the writer task for `store`; it ends when the last handle is dropped.
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
                let (records, waiters): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
                let started = std::time::Instant::now();
                let result = store
                    .audit_append(&records)
                    .await
                    .map_err(|e| format!("{e:#}"));
                metrics::histogram!("pgua_store_write_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("pgua_audit_batch_size").record(records.len() as f64);
                if result.is_err() {
                    metrics::counter!("pgua_store_write_errors_total").increment(1);
                }
                for waiter in waiters {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        Self { tx }
    }

    /// Stores one record; returns once it is committed.
    pub async fn append(&self, record: AuditRecord) -> anyhow::Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((record, done))
            .await
            .map_err(|_| anyhow!("audit writer stopped"))?;
        wait.await
            .map_err(|_| anyhow!("audit writer stopped"))?
            .map_err(|e| anyhow!(e))
    }
}
