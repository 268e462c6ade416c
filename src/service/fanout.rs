//! One call, several targets: `env=dev,qa,uat` and/or `database=a,b` run the operation on
//! every (env, database) pair, a few servers at a time, one result per target.
//!
//! Roles are cluster-wide, so targets on the same server are worked on in order: the first
//! one does what is done to the role (create it, reset its password, lock it, …); the others
//! get what belongs to their own database (a create's grants and settings) or the first
//! one's result, and each target gets its own audit records.

use std::future::Future;

use futures_util::StreamExt;

use super::audit::AuditScope;
use super::ops::{Reach, UserOp};
use super::params::{On, Target};
use super::users::{UserResult, status_of};
use super::{App, Caller};
use crate::error::Result;

/// One target's result.
pub struct Outcome<T> {
    /// Environment asked for.
    pub env: String,
    /// Database asked for.
    pub database: String,
    /// What happened there.
    pub result: Result<T>,
}

fn list(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        if !part.is_empty() && !out.iter().any(|p| p == part) {
            out.push(part.to_owned());
        }
    }
    out
}

/// The single-target calls of a call naming several targets (every env with every
/// database), or `None` for an ordinary single-target call.
pub fn split<P: Clone>(call: &On<P>) -> Option<Vec<On<P>>> {
    let (envs, dbs) = (list(&call.target.env), list(&call.target.database));
    if envs.len() <= 1 && dbs.len() <= 1 {
        return None;
    }
    let mut out = Vec::new();
    for env in &envs {
        for db in &dbs {
            out.push(On {
                target: Target::new(env.clone(), db.clone()),
                params: call.params.clone(),
            });
        }
    }
    Some(out)
}

/// Targets on one server (`None`: a target that did not resolve), with their call order.
type ServerGroup<P> = (Option<(String, u16)>, Vec<(usize, On<P>)>);

/// Runs `op` on every target; `op(input, same_server)` is told when an earlier target on
/// the same server has already done the role-wide part.
pub async fn run<P, F, Fut>(
    app: &App,
    caller: &Caller,
    calls: Vec<On<P>>,
    operation: &UserOp,
    op: F,
) -> Vec<Outcome<UserResult>>
where
    P: Clone,
    F: Fn(On<P>, bool) -> Fut,
    Fut: Future<Output = Result<UserResult>>,
{
    // Group by server; targets that do not resolve form groups of their own (and fail).
    let mut groups: Vec<ServerGroup<P>> = Vec::new();
    for (i, input) in calls.into_iter().enumerate() {
        let server = app
            .resolve(&input.target.env, &input.target.database)
            .await
            .ok()
            .map(|e| (e.hostname, e.port));
        match groups
            .iter_mut()
            .find(|(s, _)| server.is_some() && *s == server)
        {
            Some((_, members)) => members.push((i, input)),
            None => groups.push((server, vec![(i, input)])),
        }
    }
    let op = &op;
    let mut done: Vec<(usize, Outcome<UserResult>)> = futures_util::stream::iter(groups)
        .map(|(_, members)| async move {
            let mut out = Vec::new();
            let mut leader: Option<UserResult> = None;
            for (i, input) in members {
                let result = match (&leader, operation.reach()) {
                    (Some(first), Reach::Role) => {
                        copy(app, caller, operation, &input.target, first).await
                    }
                    (Some(_), Reach::Create) => op(input.clone(), true).await,
                    _ => op(input.clone(), false).await,
                };
                if leader.is_none() {
                    leader = result.as_ref().ok().cloned();
                }
                out.push((
                    i,
                    Outcome {
                        env: input.target.env,
                        database: input.target.database,
                        result,
                    },
                ));
            }
            out
        })
        .buffer_unordered(app.fan_out_parallelism)
        .flat_map(futures_util::stream::iter)
        .collect()
        .await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, o)| o).collect()
}

/// Runs a read on every target, a few at a time, results in call order.
pub async fn run_each<P, T, F, Fut>(app: &App, calls: Vec<On<P>>, op: F) -> Vec<Outcome<T>>
where
    P: Clone,
    F: Fn(On<P>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let op = &op;
    futures_util::stream::iter(calls)
        .map(|input| async move {
            let (env, database) = (input.target.env.clone(), input.target.database.clone());
            Outcome {
                env,
                database,
                result: op(input).await,
            }
        })
        .buffered(app.fan_out_parallelism)
        .collect()
        .await
}

/// A role-wide change already made through another entry on the same server: this target
/// reports the same result, under its own registry entry and its own audit record.
async fn copy(
    app: &App,
    caller: &Caller,
    operation: &UserOp,
    target: &Target,
    first: &UserResult,
) -> Result<UserResult> {
    let scope = AuditScope::for_op(app, caller, operation, target, &first.username);
    let result = async {
        let entry = app.resolve(&target.env, &target.database).await?;
        Ok(UserResult {
            entry,
            sessions_terminated: first.sessions_terminated.map(|_| 0),
            ..first.clone()
        })
    }
    .await;
    scope.outcome(&result, status_of).await;
    result
}
