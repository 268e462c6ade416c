//! Background jobs: a one-replica job runs on exactly one replica of a shared store, and
//! another takes over when that one stops; an every-replica job runs on each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pgua::config::Config;
use pgua::service::jobs::{self, Job, Scope};

use crate::support::{fresh_postgres_store_url, spawn_app_with_store};

const INTERVAL: Duration = Duration::from_secs(1);

/// A job called `name` that counts its runs in `runs`.
fn counting(name: &'static str, scope: Scope, runs: &Arc<AtomicU32>) -> Job {
    let runs = runs.clone();
    Job::new(name, INTERVAL, scope, move |_| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
        }
    })
}

fn count(runs: &Arc<AtomicU32>) -> u32 {
    runs.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_one_replica_job_runs_on_one_replica_and_moves_when_it_stops() {
    let url = fresh_postgres_store_url().await;
    let replicas = [
        spawn_app_with_store(Config::default(), &url).await,
        spawn_app_with_store(Config::default(), &url).await,
    ];
    assert_ne!(
        replicas[0].state.jobs.replica(),
        replicas[1].state.jobs.replica()
    );
    let runs = [Arc::default(), Arc::default()];
    let mut running: Vec<Option<jobs::Running>> = replicas
        .iter()
        .zip(&runs)
        .map(|(r, n)| {
            Some(jobs::spawn(
                &r.state,
                counting("test-tick", Scope::OneReplica, n),
            ))
        })
        .collect();
    let each = [Arc::default(), Arc::default()];
    let _everywhere: Vec<jobs::Running> = replicas
        .iter()
        .zip(&each)
        .map(|(r, n)| jobs::spawn(&r.state, counting("test-each", Scope::EveryReplica, n)))
        .collect();

    tokio::time::sleep(INTERVAL * 9 / 2).await;
    let (a, b) = (count(&runs[0]), count(&runs[1]));
    assert!(a == 0 || b == 0, "ran on both replicas: {a} and {b} runs");
    // A run when started, then one per interval: about five in four and a half.
    assert!(
        (3..=6).contains(&(a + b)),
        "{a} + {b} runs in 4.5 intervals"
    );
    for n in &each {
        assert!(count(n) >= 3, "an every-replica job ran {} times", count(n));
    }

    // The holder stops; its claim runs out within two intervals (and under a second of
    // rounding up) and the other takes over at its next run.
    let (holder, other) = if a > 0 { (0, 1) } else { (1, 0) };
    running[holder] = None;
    let stopped_at = count(&runs[holder]);
    let mut waited = Duration::ZERO;
    while count(&runs[other]) == 0 && waited < INTERVAL * 6 {
        tokio::time::sleep(INTERVAL / 4).await;
        waited += INTERVAL / 4;
    }
    assert!(
        count(&runs[other]) > 0,
        "nobody took over within {waited:?}"
    );
    assert!(
        waited <= INTERVAL * 3 + Duration::from_secs(1) + INTERVAL / 4,
        "took over after {waited:?}"
    );
    tokio::time::sleep(INTERVAL * 2).await;
    assert_eq!(count(&runs[holder]), stopped_at, "a stopped job ran");
    assert!(count(&runs[other]) >= 2, "the new holder keeps it");
    drop(running);
}
