//! Group commit for the audit log: concurrent requests' records are written together, in one
//! transaction, by one writer; the store sees one write per batch instead of one per record.
//! A caller whose record gates what it does next (an intent, the outcome of a change) waits
//! until that record is stored ([`AuditQueue::append`]), so "audit before action" holds. The
//! outcome of a call that changed nothing (a read, a refusal) is only queued
//! ([`AuditQueue::enqueue`]): its answer does not depend on it, and not waiting for the
//! commit saves the call a hand-off between threads and lets concurrent reads share batches.
//! Reading the log through the service ([`AuditQueue::flush`]) and stopping it wait for
//! what is queued, so a caller sees its own reads' records; a killed process loses at most
//! the reads of its last batch, never an intent.
//!
//! A batch of records nobody waits for stays open for [`LINGER`] (a waiter's record closes
//! it at once), so under a stream of reads the writer wakes and commits once per batch
//! rather than once per record.
//!
//! Where the store writes with blocking calls (SQLite, see [`Store::blocking_audit`]) the
//! writer is a thread of its own, with a runtime of its own, that drains the queue and
//! writes with no further hop. Otherwise (PostgreSQL) it is a task on the server's runtime
//! driving the store's async writes. Both run [`drain`].

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use tokio::sync::{Notify, mpsc, oneshot};

use super::{AuditRecord, BlockingAudit, Store};

/// Records written in one transaction at most.
const MAX_BATCH: usize = 128;

/// How long a batch of records nobody waits for stays open for more. Measured under `wrk`
/// (README, *Performance*): a find's server CPU went from 93 to 75 µs at the median.
const LINGER: Duration = Duration::from_millis(2);

type Waiter = oneshot::Sender<Result<(), String>>;
/// A record to store and who waits for it: both (`append`), a record only (`enqueue`), or a
/// waiter only (`flush`: answered once everything queued before it is stored).
type Job = (Option<AuditRecord>, Option<Waiter>);

/// A handle to the audit writer.
#[derive(Clone)]
pub struct AuditQueue {
    tx: mpsc::Sender<Job>,
    /// Rung after a job someone waits for: it ends the writer's linger.
    doorbell: Arc<Notify>,
}

/// Where the writer stores its batches.
enum Sink {
    Blocking(Box<dyn BlockingAudit>),
    Store(Arc<dyn Store>),
}

impl Sink {
    async fn write(&mut self, records: &mut [AuditRecord]) -> anyhow::Result<()> {
        match self {
            _ if records.is_empty() => Ok(()),
            Sink::Blocking(writer) => writer.append(records),
            Sink::Store(store) => store.audit_append(records).await,
        }
    }
}

impl AuditQueue {
    /// Starts the writer for `store`; it ends when the last handle is dropped.
    pub fn spawn(store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        let doorbell = Arc::new(Notify::new());
        let bell = doorbell.clone();
        if let Some(writer) = store.blocking_audit()? {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?;
            std::thread::Builder::new()
                .name("audit-writer".into())
                .spawn(move || runtime.block_on(drain(rx, bell, Sink::Blocking(writer))))?;
        } else {
            tokio::spawn(drain(rx, bell, Sink::Store(store)));
        }
        Ok(Self { tx, doorbell })
    }

    /// Stores one record; returns once it is committed.
    pub async fn append(&self, record: AuditRecord) -> anyhow::Result<()> {
        self.wait_for(Some(record)).await
    }

    /// Queues one record without waiting for its commit (only for room in the queue, so a
    /// slow store still slows its callers down); the writer logs a batch it cannot store.
    pub async fn enqueue(&self, record: AuditRecord) -> anyhow::Result<()> {
        self.tx
            .send((Some(record), None))
            .await
            .map_err(|_| anyhow!("audit writer stopped"))
    }

    /// Returns once every record queued before this call is stored (or failed to be).
    pub async fn flush(&self) -> anyhow::Result<()> {
        self.wait_for(None).await
    }

    async fn wait_for(&self, record: Option<AuditRecord>) -> anyhow::Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((record, Some(done)))
            .await
            .map_err(|_| anyhow!("audit writer stopped"))?;
        self.doorbell.notify_waiters();
        wait.await
            .map_err(|_| anyhow!("audit writer stopped"))?
            .map_err(|e| anyhow!(e))
    }
}

/// The writer: waits for a job, takes whatever else is queued — lingering for more while
/// nobody waits — and writes the batch.
async fn drain(mut rx: mpsc::Receiver<Job>, doorbell: Arc<Notify>, mut sink: Sink) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    // Only a batch with room left that nobody waits for stays open.
    let may_linger = |jobs: &[Job]| jobs.len() < MAX_BATCH && jobs.iter().all(|j| j.1.is_none());
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        if may_linger(&jobs) {
            // Armed before the queue is looked at again, so that no ring is missed.
            let mut rung = pin!(doorbell.notified());
            rung.as_mut().enable();
            take_queued(&mut rx, &mut jobs);
            if may_linger(&jobs) {
                tokio::select! {
                    () = rung => {},
                    () = tokio::time::sleep(LINGER) => {},
                }
            }
            take_queued(&mut rx, &mut jobs);
        }
        let (mut records, waiters) = split(&mut jobs);
        let started = Instant::now();
        let result = sink.write(&mut records).await;
        answer(records.len(), waiters, started, result);
    }
}

/// Adds what is queued now to the batch, up to its limit.
fn take_queued(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_BATCH
        && let Ok(job) = rx.try_recv()
    {
        jobs.push(job);
    }
}

/// A batch's records and waiters, in queue order.
fn split(jobs: &mut Vec<Job>) -> (Vec<AuditRecord>, Vec<Waiter>) {
    let (mut records, mut waiters) = (Vec::with_capacity(jobs.len()), Vec::new());
    for (record, waiter) in jobs.drain(..) {
        records.extend(record);
        waiters.extend(waiter);
    }
    (records, waiters)
}

/// Records the batch's metrics and gives each waiter the batch's result; a failure is
/// logged here too, for the records nobody waits for.
fn answer(records: usize, waiters: Vec<Waiter>, started: Instant, result: anyhow::Result<()>) {
    if records > 0 {
        metrics::histogram!("pgua_store_write_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("pgua_audit_batch_size").record(records as f64);
    }
    let result = result.map_err(|e| format!("{e:#}"));
    if let Err(e) = &result {
        metrics::counter!("pgua_store_write_errors_total").increment(1);
        tracing::error!(error = %e, records, "could not write audit records");
    }
    for waiter in waiters {
        let _ = waiter.send(result.clone());
    }
}
