//! Group commit for the audit log: concurrent requests' records are written together, in one
//! transaction, by one writer. Each caller still waits until its own record is stored, so
//! "audit before action" holds; the store sees one write per batch instead of one per record.
//!
//! Where the store writes with blocking calls (SQLite, see [`Store::blocking_audit`]) the
//! writer is a thread of its own that drains the queue and writes with no further hop: a
//! batch costs two thread wake-ups, the caller's record in and its answer out. Otherwise
//! (PostgreSQL) it is a task driving the store's async writes.

use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use tokio::sync::{mpsc, oneshot};

use super::{AuditRecord, BlockingAudit, Store};

/// Records written in one transaction at most.
const MAX_BATCH: usize = 128;

type Waiter = oneshot::Sender<Result<(), String>>;
type Job = (AuditRecord, Waiter);

/// A handle to the audit writer.
#[derive(Clone)]
pub struct AuditQueue {
    tx: mpsc::Sender<Job>,
}

impl AuditQueue {
    /// Starts the writer for `store`; it ends when the last handle is dropped.
    pub fn spawn(store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        if let Some(writer) = store.blocking_audit()? {
            std::thread::Builder::new()
                .name("audit-writer".into())
                .spawn(move || write_blocking(writer, rx))?;
        } else {
            tokio::spawn(async move {
                let mut jobs = Vec::with_capacity(MAX_BATCH);
                while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
                    let (records, waiters): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
                    let started = Instant::now();
                    let result = store.audit_append(&records).await;
                    answer(waiters, started, result);
                }
            });
        }
        Ok(Self { tx })
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

/// The writer thread: waits for a record, takes whatever else is queued, writes them all.
fn write_blocking(mut writer: Box<dyn BlockingAudit>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = rx.blocking_recv() {
        jobs.push(job);
        while jobs.len() < MAX_BATCH
            && let Ok(job) = rx.try_recv()
        {
            jobs.push(job);
        }
        let (mut records, waiters): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
        let started = Instant::now();
        let result = writer.append(&mut records);
        answer(waiters, started, result);
    }
}

/// Records the batch's metrics and gives each waiter the batch's result.
fn answer(waiters: Vec<Waiter>, started: Instant, result: anyhow::Result<()>) {
    metrics::histogram!("pgua_store_write_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("pgua_audit_batch_size").record(waiters.len() as f64);
    let result = result.map_err(|e| format!("{e:#}"));
    if result.is_err() {
        metrics::counter!("pgua_store_write_errors_total").increment(1);
    }
    for waiter in waiters {
        let _ = waiter.send(result.clone());
    }
}
