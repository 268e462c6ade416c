//! A role's life after creation: lock, unlock, expire, renew, alter, drop.

use chrono::Utc;

use super::audit::AuditScope;
use super::ops::UserOp;
use super::params::{self, On, RoleChange, parse_time};
use super::users::{
    Change, Existing, UserResult, alter_existing, existing_role, lock_existing, status, status_of,
    terminate_sessions,
};
use super::{App, Caller};
use crate::error::{Error, Result};
use crate::plan::lifecycle::{self, ALTERABLE_ATTRIBUTES, ValidUntil};
use crate::plan::{self, RoleName, Statement};
use crate::store::RegistryEntry;
use crate::target::catalog;

/// Runs one simple change `op` of an existing role.
async fn change_role(
    app: &App,
    caller: &Caller,
    of: Existing<'_>,
    op: UserOp,
    change: Change,
    build: impl FnOnce(&RoleName) -> Result<Vec<Statement>>,
) -> Result<UserResult> {
    let mut scope = AuditScope::for_op(app, caller, &op, of.target, of.username);
    let result = alter_existing(app, &mut scope, of, change, |role, _| build(role)).await;
    scope.outcome(&result, status_of).await;
    result
}

fn existing<'a>(target: &'a params::Target, username: &'a str, dry_run: bool) -> Existing<'a> {
    Existing {
        target,
        username,
        dry_run,
    }
}

fn change(what: &'static str, success: &str, terminate: bool) -> Change {
    Change {
        what,
        success: success.into(),
        password: None,
        terminate,
    }
}

/// NOLOGIN, then ends the role's open sessions on that server.
pub async fn lock(app: &App, caller: &Caller, input: &On<RoleChange>) -> Result<UserResult> {
    let c = change("lock", "user locked", true);
    let of = existing(&input.target, &input.params.username, input.params.dry_run);
    change_role(app, caller, of, UserOp::Lock, c, |r| Ok(lifecycle::lock(r))).await
}

/// LOGIN again.
pub async fn unlock(app: &App, caller: &Caller, input: &On<RoleChange>) -> Result<UserResult> {
    let c = change("unlock", "user unlocked", false);
    let of = existing(&input.target, &input.params.username, input.params.dry_run);
    change_role(app, caller, of, UserOp::Unlock, c, |r| {
        Ok(lifecycle::unlock(r))
    })
    .await
}

/// Reads `valid_until`: RFC 3339, a date (midnight UTC), `now` or `infinity`.
fn parse_valid_until(raw: &str) -> Result<ValidUntil> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("infinity") {
        return Ok(ValidUntil::Infinity);
    }
    if raw.eq_ignore_ascii_case("now") {
        return Ok(ValidUntil::At(Utc::now()));
    }
    parse_time(raw).map(ValidUntil::At).ok_or_else(|| {
        Error::Invalid(format!(
            "valid_until '{raw}' must be an RFC 3339 time, a YYYY-MM-DD date, now or infinity"
        ))
    })
}

/// The password stops working at `valid_until` (default: now). Open sessions stay.
pub async fn expire(app: &App, caller: &Caller, input: &On<params::Expire>) -> Result<UserResult> {
    let p = &input.params;
    let until = p
        .valid_until
        .as_deref()
        .map_or(Ok(ValidUntil::At(Utc::now())), parse_valid_until);
    let success = match &until {
        Ok(u) => format!("user expires {}", u.sql_value()),
        Err(_) => String::new(),
    };
    let c = change("expire", &success, false);
    let of = existing(&input.target, &p.username, p.dry_run);
    change_role(app, caller, of, UserOp::Expire, c, |r| {
        Ok(lifecycle::valid_until(r, until?))
    })
    .await
}

/// The password works again: until `valid_until`, for `days` more days, or (neither) forever.
pub async fn renew(app: &App, caller: &Caller, input: &On<params::Renew>) -> Result<UserResult> {
    let p = &input.params;
    let until = match (p.valid_until.as_deref(), p.days) {
        (Some(_), Some(_)) => Err(Error::Invalid("give valid_until or days, not both".into())),
        (Some(raw), None) => parse_valid_until(raw),
        (None, Some(d)) => Ok(ValidUntil::At(
            Utc::now() + chrono::Duration::days(i64::from(d)),
        )),
        (None, None) => Ok(ValidUntil::Infinity),
    };
    let success = match &until {
        Ok(u) => format!("user renewed until {}", u.sql_value()),
        Err(_) => String::new(),
    };
    let c = change("renew", &success, false);
    let of = existing(&input.target, &p.username, p.dry_run);
    change_role(app, caller, of, UserOp::Renew, c, |r| {
        Ok(lifecycle::valid_until(r, until?))
    })
    .await
}

/// Changes `connection_limit` and/or `attributes` (from a closed set).
pub async fn alter(app: &App, caller: &Caller, input: &On<params::Alter>) -> Result<UserResult> {
    let p = &input.params;
    let parsed = (|| {
        let limit = p.connection_limit;
        let mut attributes = Vec::new();
        for word in p.attributes.as_deref().unwrap_or("").split(',') {
            let word = word.trim().to_ascii_uppercase();
            if word.is_empty() {
                continue;
            }
            let known = ALTERABLE_ATTRIBUTES
                .iter()
                .find(|a| **a == word)
                .ok_or_else(|| {
                    Error::Forbidden(format!(
                        "attribute '{word}' cannot be changed through the API; allowed: {}",
                        ALTERABLE_ATTRIBUTES.join(", ")
                    ))
                })?;
            attributes.push(*known);
        }
        if limit.is_none() && attributes.is_empty() {
            return Err(Error::MissingParam("connection_limit or attributes".into()));
        }
        Ok((limit, attributes))
    })();
    let c = change("alter", "user altered", false);
    let of = existing(&input.target, &p.username, p.dry_run);
    change_role(app, caller, of, UserOp::Alter, c, |r| {
        let (limit, attributes) = parsed?;
        Ok(lifecycle::alter(r, limit, &attributes))
    })
    .await
}

/// One database on the target server where the role has objects or privileges.
struct Dependent {
    db_name: String,
    successor: String,
}

/// Drops a role the way that works where plain DROP ROLE fails: in every database of the
/// server where it owns objects or holds privileges, REASSIGN OWNED to a successor (default:
/// that database's owner) and DROP OWNED; then end its sessions and DROP ROLE. When that
/// cannot be done safely, nothing is changed and the answer is 409 with what blocks it.
pub async fn drop(app: &App, caller: &Caller, input: &On<params::Drop>) -> Result<UserResult> {
    let (target, p) = (&input.target, &input.params);
    let mut scope = AuditScope::for_op(app, caller, &UserOp::Drop, target, &p.username);
    let result = drop_in(app, &mut scope, input).await;
    scope.outcome(&result, status_of).await;
    result
}

async fn drop_in(
    app: &App,
    scope: &mut AuditScope<'_>,
    input: &On<params::Drop>,
) -> Result<UserResult> {
    let (target, p) = (&input.target, &input.params);
    let role = existing_role(app, scope, &p.username)?;
    let dry_run = p.dry_run;
    let successor = p
        .successor
        .as_deref()
        .map(|s| app.policy.names.role(s))
        .transpose()?;
    if successor.as_ref() == Some(&role) {
        return Err(Error::Invalid("the successor must be another role".into()));
    }
    let entry = app.resolve(&target.env, &target.database).await?;
    if !dry_run {
        scope.intent("drop user").await?;
    }
    let mut conn = app.targets.connect(&entry).await?;
    let tx = conn.transaction().await?;
    if !lock_existing(&tx, &role).await? {
        return Ok(UserResult::new(&role, entry, status::NOT_FOUND));
    }
    // REASSIGN OWNED to a role that does not exist would fail inside the target (42704);
    // it is the caller's mistake, told as such.
    if let Some(s) = &successor
        && matches!(
            catalog::role_state(&tx, s.as_str()).await?,
            catalog::RoleState::Missing
        )
    {
        return Err(Error::Invalid(format!(
            "the successor role '{s}' does not exist on this server; nothing was changed"
        )));
    }
    let dependents = dependents(&tx, &role, &entry, successor.as_ref()).await?;
    let admin_is_member = catalog::admin_uses(&tx, role.as_str()).await?;
    let mut plan = lifecycle::take_apart(&role, admin_is_member);
    if dry_run {
        plan.push(lifecycle::terminate_sessions(&role));
        for d in &dependents {
            plan.push(lifecycle::connect(&d.db_name));
            plan.extend(lifecycle::reassign_and_drop_owned(&role, &d.successor));
        }
        plan.extend(lifecycle::drop_role(&role));
        return Ok(UserResult::new(&role, entry, status::DRY_RUN).planned(plan));
    }
    tx.batch_execute(&plan::batch(&plan)).await?;
    tx.commit().await?;
    let terminated = terminate_sessions(&conn, &role).await?;
    for d in &dependents {
        let other = RegistryEntry {
            db_name: d.db_name.clone(),
            ..entry.clone()
        };
        let mut c = app.targets.connect(&other).await?;
        let tx = c.transaction().await?;
        tx.batch_execute(&plan::batch(&lifecycle::reassign_and_drop_owned(
            &role,
            &d.successor,
        )))
        .await?;
        tx.commit().await?;
    }
    match conn
        .batch_execute(lifecycle::drop_role(&role)[0].sql())
        .await
    {
        Ok(()) => Ok(UserResult {
            sessions_terminated: Some(terminated),
            ..UserResult::new(&role, entry, "user dropped")
        }),
        Err(e)
            if e.code()
                == Some(&tokio_postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST) =>
        {
            let detail = e
                .as_db_error()
                .and_then(|d| d.detail())
                .unwrap_or_default()
                .to_owned();
            Err(Error::Conflict(format!(
                "role '{role}' is locked and its objects were reassigned, but something new depends on it: {detail}"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Finds every database where the role has objects or privileges, with the successor for
/// each, or a 409 listing what makes a safe drop impossible.
async fn dependents(
    tx: &deadpool_postgres::Transaction<'_>,
    role: &RoleName,
    entry: &RegistryEntry,
    successor: Option<&RoleName>,
) -> Result<Vec<Dependent>> {
    let databases = catalog::dependent_databases(tx, role.as_str(), &entry.db_name).await?;
    let mut blockers = Vec::new();
    let mut out = Vec::new();
    for catalog::DependentDatabase {
        name: db_name,
        owner,
        reachable,
        owned_by_role,
    } in databases
    {
        if owned_by_role {
            blockers.push(format!("it owns database '{db_name}'"));
            continue;
        }
        if !reachable {
            blockers.push(format!(
                "it has objects in database '{db_name}', which the admin role cannot connect to"
            ));
            continue;
        }
        let successor = successor.map_or(owner, |s| s.to_string());
        if !catalog::admin_uses(tx, &successor).await? {
            blockers.push(format!(
                "the admin role is not a member of successor '{successor}' (database '{db_name}')"
            ));
            continue;
        }
        out.push(Dependent { db_name, successor });
    }
    let spaces = catalog::owned_tablespaces(tx, role.as_str()).await?;
    blockers.extend(spaces.iter().map(|s| format!("it owns tablespace '{s}'")));
    if blockers.is_empty() {
        Ok(out)
    } else {
        Err(Error::Conflict(format!(
            "role '{role}' cannot be dropped safely, nothing was changed: {}",
            blockers.join("; ")
        )))
    }
}
