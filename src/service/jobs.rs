//! Background work's one home. A [`Job`] runs every interval, from start-up on, either on
//! every replica (work on what that replica holds in memory) or on the one replica that
//! holds the job's claim in the store (work on what they all share). The holder renews its
//! claim at every run; when it stops, its claim runs out and another replica takes over.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

use super::{App, keys, reminders};
use crate::config::Config;

/// The store's namespace of job claims.
const CLAIMS: &str = "job";

/// How often the store is tidied: audit records past retention, claims that ran out.
const HOURLY: Duration = Duration::from_secs(3600);

/// How often ended console sessions are forgotten.
const SESSIONS_PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Where a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// On each replica.
    EveryReplica,
    /// On the one replica that holds the job's claim.
    OneReplica,
}

type Run = Box<dyn Fn(Arc<App>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Work done every `interval`.
pub struct Job {
    name: &'static str,
    interval: Duration,
    scope: Scope,
    run: Run,
}

impl Job {
    /// A job called `name` (unique: it is the key of its claim) that runs `run`.
    pub fn new<F, Fut>(name: &'static str, interval: Duration, scope: Scope, run: F) -> Self
    where
        F: Fn(Arc<App>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            name,
            interval,
            scope,
            run: Box::new(move |app| Box::pin(run(app))),
        }
    }
}

/// A started job; dropping it stops it.
pub struct Running(tokio::task::AbortHandle);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// This replica's identity as a claim holder, and the jobs it started with.
pub struct Jobs {
    replica: String,
    running: Mutex<Vec<Running>>,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            replica: format!("pid{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            running: Mutex::default(),
        }
    }
}

impl Jobs {
    /// The holder name of this replica's claims.
    pub fn replica(&self) -> &str {
        &self.replica
    }
}

/// Starts `job`: a first run now, then one every interval, until the handle is dropped or
/// `app` is gone.
pub fn spawn(app: &Arc<App>, job: Job) -> Running {
    let app = Arc::downgrade(app);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(job.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(app) = app.upgrade() else { return };
            if job.scope == Scope::OneReplica && !claim(&app, &job).await {
                continue;
            }
            metrics::counter!("pgua_job_runs_total", "job" => job.name).increment(1);
            (job.run)(app).await;
        }
    });
    Running(task.abort_handle())
}

/// Whether this replica holds the job's claim (taking or renewing it). The claim lasts two
/// intervals, so it never lapses between two runs of a live holder (claims are kept in whole
/// seconds, rounded up), and a holder that stopped is replaced within three and a second.
async fn claim(app: &App, job: &Job) -> bool {
    let until = Utc::now() + job.interval * 2;
    match app
        .store
        .claim(CLAIMS, job.name, app.jobs.replica(), until)
        .await
    {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(job = job.name, error = %format!("{e:#}"), "cannot claim the job's run; skipped");
            false
        }
    }
}

/// Starts the jobs `config` asks for, for the life of `app`: failure summaries of
/// authentication refusals, expiry reminders, audit pruning and the pruning of claims.
pub fn start(app: &Arc<App>, config: &Config) -> anyhow::Result<()> {
    let mut jobs = vec![
        Job::new(
            "auth-failure-summaries",
            app.throttle.summary_every(),
            Scope::EveryReplica,
            |app| async move { keys::write_summaries(&app).await },
        ),
        Job::new("claims-pruning", HOURLY, Scope::OneReplica, prune_claims),
    ];
    if let Some(days) = config.audit.retention_days {
        let key = crate::config::audit_key()?;
        jobs.push(Job::new(
            "audit-pruning",
            HOURLY,
            Scope::OneReplica,
            move |app| prune_audit(app, days, key.clone()),
        ));
    }
    if let Some((days, interval)) = app.notifier.expiry_reminders() {
        jobs.push(Job::new(
            "expiry-reminders",
            interval,
            Scope::OneReplica,
            move |app| async move { reminders::remind(&app, days).await },
        ));
    }
    if let Some(rp) = &app.sso {
        let idle = i64::try_from(rp.config().idle_timeout_secs).unwrap_or(i64::MAX);
        jobs.push(Job::new(
            "sessions-pruning",
            SESSIONS_PRUNE_EVERY,
            Scope::OneReplica,
            move |app| prune_sessions(app, idle),
        ));
    }
    let names: Vec<&str> = jobs.iter().map(|job| job.name).collect();
    tracing::info!(replica = app.jobs.replica(), jobs = ?names, "background jobs started");
    let started: Vec<Running> = jobs.into_iter().map(|job| spawn(app, job)).collect();
    app.jobs
        .running
        .lock()
        .expect("job list poisoned")
        .extend(started);
    Ok(())
}

/// Removes audit records older than `days`, leaving signed checkpoints.
async fn prune_audit(app: Arc<App>, days: u32, key: Option<SecretString>) {
    let before = Utc::now() - chrono::Duration::days(i64::from(days));
    let key = key.as_ref().map(|k| k.expose_secret().as_bytes());
    match app.store.audit_prune(before, key).await {
        Ok(Some(c)) => tracing::info!(
            pruned = c.pruned,
            through_id = c.through_id,
            "audit records pruned"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "audit pruning failed"),
    }
}

/// Forgets the console's sessions that ended, idle for `idle` seconds or past their end.
async fn prune_sessions(app: Arc<App>, idle: i64) {
    let now = Utc::now().timestamp();
    match app
        .store
        .sessions_prune(now, now.saturating_sub(idle))
        .await
    {
        Ok(n) if n > 0 => tracing::info!(pruned = n, "ended sessions pruned"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "session pruning failed"),
    }
}

/// Forgets claims that ran out: they hold nobody back any more.
async fn prune_claims(app: Arc<App>) {
    match app.store.claims_prune(Utc::now()).await {
        Ok(n) => tracing::debug!(pruned = n, "claims pruned"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "claims pruning failed"),
    }
}
