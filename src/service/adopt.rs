//! `pg-user-api adopt` and the doctor's adoption section: users created under per-user
//! grants (before group roles) are moved to membership in their profile's group, per
//! registry entry. A dry run (the default) plans; `--apply` moves each user in its own
//! transaction, audited, so an interrupted run leaves every user moved or untouched, and a
//! second run finds nothing to do.

use std::collections::BTreeMap;

use serde::Serialize;

use super::audit::AuditScope;
use super::params::Target;
use super::users::{ensure_group, group_plan, lock_role, schema_facts};
use super::{App, Caller};
use crate::error::{Error, Result};
use crate::plan::admin::PG16;
use crate::plan::adopt::{AclGrant, Revoked, covered, revokes};
use crate::plan::groups::{Group, uses_group};
use crate::plan::{self, PROFILE_COMMENT, Profile, RoleName, SchemaFacts, Statement};
use crate::store::RegistryEntry;
use crate::target::catalog::{self, GroupState};

/// The audit log's name of the operation.
const OPERATION: &str = "adopt";

/// Why a user with per-user grants is left as it is.
const NOINHERIT_ON_15: &str = "NOINHERIT on PostgreSQL 15: a membership grants nothing \
     without SET ROLE there, so its per-user grants stay (PostgreSQL 16+ adopts it with \
     WITH INHERIT TRUE)";

/// What happened, or would happen, to one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A dry run: the plan would move it.
    WouldMove,
    /// Moved: member of the group, the covered per-user privileges revoked.
    Moved,
    /// Left as it is, with the reason.
    Skipped,
    /// The move failed and was rolled back; the user is untouched.
    Failed,
}

/// One user's move.
#[derive(Clone, Debug, Serialize)]
pub struct UserMove {
    /// The role.
    pub username: String,
    /// The profile that created it, as its comment says (`readonly@1a2b3c4d`).
    pub profile: String,
    /// The group it joins.
    pub group: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// Per-user privileges the group covers, revoked by the move.
    pub revoked: Vec<Revoked>,
    /// The statements (redacted as every plan is), in the order they run.
    pub plan: Vec<Statement>,
}

/// The moves on one registry entry.
#[derive(Debug, Serialize)]
pub struct EntryMoves {
    /// The entry.
    pub entry: RegistryEntry,
    /// Why the entry could not be worked on (unreachable, admin role lacking a membership…).
    pub error: Option<String>,
    /// Users with per-user grants their group covers, by name.
    pub users: Vec<UserMove>,
}

/// What one user's move is planned from, read in one database.
struct Candidate {
    role: RoleName,
    profile_label: String,
    profile: std::sync::Arc<Profile>,
    inherit: bool,
    member: bool,
}

/// A group of the entry's database as planning found it.
struct GroupFacts {
    group: Group,
    schemas: Vec<SchemaFacts>,
    /// It is missing or stale: its create or sync runs before the moves.
    changes: Vec<Statement>,
}

/// Plans the moves in the transaction's database: every user pg-user-api created whose
/// profile is configured and whose per-user privileges its group covers (`only`: just that
/// user). `exact`: count only what the group holds now (the group was just made current);
/// otherwise also what its pending create or sync would grant.
async fn plan_moves(
    tx: &deadpool_postgres::Transaction<'_>,
    app: &App,
    entry: &RegistryEntry,
    only: Option<&str>,
    exact: bool,
) -> Result<Vec<(UserMove, Option<Group>)>> {
    let version = catalog::server_version_num(tx).await?;
    let mut candidates = Vec::new();
    for r in catalog::managed_roles(tx, PROFILE_COMMENT, only).await? {
        let name = r.profile_label.split('@').next().unwrap_or_default();
        let (Some(profile), Ok(role)) = (app.profiles.get(name), app.policy.names.role(&r.name))
        else {
            continue;
        };
        // Protected roles are never touched, whatever their comment says.
        if app.policy.check_not_protected(&role).is_err() || role.as_str() != r.name {
            continue;
        }
        let group = Group::for_profile(&profile, &entry.db_name);
        let member = r
            .member_of
            .iter()
            .any(|(g, inherits)| g == group.name().as_str() && *inherits);
        candidates.push(Candidate {
            role,
            profile_label: r.profile_label,
            profile,
            inherit: r.inherit,
            member,
        });
    }
    let mut groups: BTreeMap<String, GroupFacts> = BTreeMap::new();
    for c in &candidates {
        let group = Group::for_profile(&c.profile, &entry.db_name);
        if groups.contains_key(group.name().as_str()) {
            continue;
        }
        let schemas = if group.needs_schema_facts() {
            schema_facts(tx, app, entry, &c.profile.grants).await?
        } else {
            Vec::new()
        };
        let state = catalog::group_state(tx, group.name().as_str()).await?;
        let changes = match state {
            GroupState::Missing => group
                .locks()
                .into_iter()
                .chain(group_plan(&group, &state, &schemas)?)
                .collect(),
            GroupState::Exists(_) => {
                let sync = group_plan(&group, &state, &schemas)?;
                if sync.is_empty() {
                    sync
                } else {
                    group.locks().into_iter().chain(sync).collect()
                }
            }
        };
        groups.insert(
            group.name().to_string(),
            GroupFacts {
                group,
                schemas,
                changes,
            },
        );
    }
    let mut names: Vec<&str> = candidates.iter().map(|c| c.role.as_str()).collect();
    names.extend(groups.keys().map(String::as_str));
    let acl = catalog::acl_grants(tx, &names).await?;
    let of =
        |who: &str| -> Vec<AclGrant> { acl.iter().filter(|g| g.grantee == who).cloned().collect() };
    let mut out = Vec::new();
    for c in candidates {
        let key = Group::for_profile(&c.profile, &entry.db_name)
            .name()
            .to_string();
        let g = &groups[&key];
        let user = of(c.role.as_str());
        let held = of(&key);
        let changes_group = !exact && !g.changes.is_empty();
        let covered = covered(&c.profile, &g.schemas, &user, &held, changes_group);
        if covered.is_empty() {
            continue;
        }
        let mut m = UserMove {
            username: c.role.to_string(),
            profile: c.profile_label.clone(),
            group: key.clone(),
            outcome: Outcome::WouldMove,
            reason: None,
            revoked: covered.iter().map(|g| Revoked::from(*g)).collect(),
            plan: Vec::new(),
        };
        if !uses_group(&c.profile, version) || (version < PG16 && !c.inherit) {
            m.outcome = Outcome::Skipped;
            m.reason = Some(NOINHERIT_ON_15.into());
            m.revoked.clear();
            out.push((m, None));
            continue;
        }
        if changes_group {
            m.plan.extend(g.changes.iter().cloned().map(|mut s| {
                s.comment = GROUP_FIRST;
                s
            }));
        }
        m.plan.push(plan::grant_lock());
        if !c.member {
            m.plan.push(g.group.membership(&c.role, version));
        }
        m.plan.extend(revokes(&c.role, &entry.db_name, &covered));
        out.push((m, Some(g.group.clone())));
    }
    Ok(out)
}

/// How a plan marks the group's statements, listed before the user's.
const GROUP_FIRST: &str = "runs first, once, in its own transaction: create or sync the group that holds the profile's privileges";

/// Plans the moves on `entry` without changing anything (the doctor and dry runs).
pub async fn survey(app: &App, entry: &RegistryEntry) -> Result<Vec<UserMove>> {
    let mut conn = app.targets.connect(entry).await?;
    let tx = conn.transaction().await?;
    let moves = plan_moves(&tx, app, entry, None, false).await?;
    Ok(moves.into_iter().map(|(m, _)| m).collect())
}

/// Plans (`apply` false) or runs the moves on each active entry. With `apply`, each
/// entry's groups are made current first, then every user moves in its own transaction
/// between an audit intent and an outcome; an audit log that cannot be written stops the
/// run before that user (fail closed).
pub async fn run(
    app: &App,
    caller: &Caller,
    entries: Vec<RegistryEntry>,
    apply: bool,
) -> Vec<EntryMoves> {
    let mut out = Vec::new();
    for entry in entries.into_iter().filter(|e| e.active) {
        let mut moves = EntryMoves {
            entry,
            error: None,
            users: Vec::new(),
        };
        let result = if apply {
            apply_entry(app, caller, &mut moves).await
        } else {
            survey(app, &moves.entry).await.map(|u| moves.users = u)
        };
        // Fail closed: without an audit log nothing more is moved, on any entry.
        let stop = matches!(result, Err(Error::AuditUnavailable(_)));
        if let Err(e) = result {
            moves.error = Some(e.to_string());
        }
        out.push(moves);
        if stop {
            break;
        }
    }
    out
}

async fn apply_entry(app: &App, caller: &Caller, moves: &mut EntryMoves) -> Result<()> {
    let entry = moves.entry.clone();
    let planned = survey(app, &entry).await?;
    let mut conn = app.targets.connect(&entry).await?;
    let mut ensured: Vec<String> = Vec::new();
    let target = Target {
        env: entry.env.clone(),
        database: entry.db_name.clone(),
    };
    for planned in planned {
        if planned.outcome == Outcome::Skipped {
            moves.users.push(planned);
            continue;
        }
        let mut scope = AuditScope::new(app, caller, OPERATION, Some(&target), &planned.username);
        scope.set_profile(&planned.profile);
        if !ensured.contains(&planned.group) {
            let profile = profile_of(app, &planned.profile)?;
            let group = Group::for_profile(&profile, &entry.db_name);
            ensure_group(&mut conn, app, &scope, &entry, &profile, &group).await?;
            ensured.push(planned.group.clone());
        }
        scope
            .intent(&format!("move per-user grants to group {}", planned.group))
            .await?;
        let result = move_one(&mut conn, app, &entry, &planned.username).await;
        let detail = |m: &Option<UserMove>| match m {
            Some(m) => format!(
                "joined {}; {} per-user privileges revoked",
                m.group,
                m.revoked.len()
            ),
            None => "nothing to do".to_owned(),
        };
        scope.outcome(&result, detail).await;
        moves.users.push(match result {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => UserMove {
                outcome: Outcome::Failed,
                reason: Some(e.to_string()),
                ..planned
            },
        });
    }
    Ok(())
}

/// The configured profile a label (`name@version`) names.
fn profile_of(app: &App, label: &str) -> Result<std::sync::Arc<Profile>> {
    let name = label.split('@').next().unwrap_or_default();
    app.profiles
        .get(name)
        .ok_or_else(|| Error::Invalid(format!("profile '{name}' is not configured")))
}

/// Moves one user in one transaction, planned again under its lock and the grant lock from
/// what the group holds now; none when nothing is left to move.
async fn move_one(
    conn: &mut deadpool_postgres::Object,
    app: &App,
    entry: &RegistryEntry,
    username: &str,
) -> Result<Option<UserMove>> {
    let role = app.policy.names.role(username)?;
    let tx = conn.transaction().await?;
    lock_role(&tx, &role).await?;
    tx.batch_execute(&plan::batch(&[plan::grant_lock()]))
        .await?;
    let Some((mut m, Some(_))) = plan_moves(&tx, app, entry, Some(username), true)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    // The grant lock is held already.
    tx.batch_execute(&plan::batch(&m.plan[1..])).await?;
    tx.commit().await?;
    m.outcome = Outcome::Moved;
    Ok(Some(m))
}

/// Per group, how many users hold per-user grants it covers: the doctor's adoption section.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdoptionCheck {
    /// Groups with users to move, by name.
    pub groups: Vec<GroupCoverage>,
    /// Users `adopt` leaves as they are (NOINHERIT on PostgreSQL 15).
    pub skipped: usize,
}

/// Users whose per-user grants one group covers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupCoverage {
    /// The group.
    pub group: String,
    /// Profiles of those users (`name@version`).
    pub profiles: Vec<String>,
    /// How many users.
    pub users: usize,
}

/// The doctor's adoption section for `entry`.
pub async fn check(app: &App, entry: &RegistryEntry) -> Result<AdoptionCheck> {
    let moves = survey(app, entry).await?;
    let mut groups: Vec<GroupCoverage> = Vec::new();
    for m in moves.iter().filter(|m| m.outcome != Outcome::Skipped) {
        match groups.iter_mut().find(|g| g.group == m.group) {
            Some(g) => {
                g.users += 1;
                if !g.profiles.contains(&m.profile) {
                    g.profiles.push(m.profile.clone());
                }
            }
            None => groups.push(GroupCoverage {
                group: m.group.clone(),
                profiles: vec![m.profile.clone()],
                users: 1,
            }),
        }
    }
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(AdoptionCheck {
        groups,
        skipped: moves
            .iter()
            .filter(|m| m.outcome == Outcome::Skipped)
            .count(),
    })
}
