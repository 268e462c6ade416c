//! Moving a user made under per-user grants to membership in its profile's group
//! (`pg-user-api adopt`): which of its own privileges the group covers, and the statements
//! that grant the membership and revoke exactly those, never more.
//!
//! A privilege is covered when the group holds the same privilege on the same object:
//! read from the catalog where the group exists and is current, and predicted from the
//! profile's grants where this plan creates or syncs the group (the statements it runs
//! grant exactly that). A per-user privilege the group does not hold, or one held WITH
//! GRANT OPTION, stays.

use serde::Serialize;

use super::grants::{Grant, GrantOn, Privilege, Schemas};
use super::naming::RoleName;
use super::sql::ident;
use super::{Profile, SchemaFacts, Statement};

/// What an ACL entry is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclObject {
    /// The database (`pg_database.datacl`).
    Database,
    /// A schema (`pg_namespace.nspacl`).
    Schema(String),
    /// A table, view, materialised view, foreign table or sequence (`pg_class.relacl`).
    Relation {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
        /// A sequence (else table-like).
        sequence: bool,
    },
    /// Default privileges on `owner`'s future objects (`pg_default_acl`).
    Default {
        /// Whose future objects.
        owner: String,
        /// In this schema; none: in every schema.
        schema: Option<String>,
        /// Of which kind (tables, sequences, functions; schemas and types read as none).
        on: Option<GrantOn>,
    },
}

/// One privilege an ACL entry gives one role on an object of one database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclGrant {
    /// Who holds it.
    pub grantee: String,
    /// On what.
    pub object: AclObject,
    /// The privilege, as `aclexplode` names it (`SELECT`, `CONNECT`, …).
    pub privilege: String,
    /// Held WITH GRANT OPTION.
    pub grantable: bool,
}

/// Whether a profile's group, as its create or sync statements leave it, holds `privilege`
/// on `object`: CONNECT on the database, and the profile's grants over `schemas`.
pub fn group_would_hold(
    profile: &Profile,
    schemas: &[SchemaFacts],
    object: &AclObject,
    privilege: Privilege,
) -> bool {
    let in_scope = |g: &Grant, schema: &str| match &g.schemas {
        Schemas::All(_) => schemas.iter().any(|f| f.name == schema),
        Schemas::Named(names) => names.iter().any(|n| n == schema),
    };
    let grants = profile
        .grants
        .iter()
        .filter(|g| g.privileges.contains(&privilege));
    match object {
        AclObject::Database => {
            privilege == Privilege::Connect || grants.into_iter().any(|g| g.on == GrantOn::Database)
        }
        AclObject::Schema(s) => grants
            .into_iter()
            .any(|g| g.on == GrantOn::Schema && in_scope(g, s)),
        AclObject::Relation {
            schema,
            name,
            sequence,
        } => {
            let on = if *sequence {
                GrantOn::Sequences
            } else {
                GrantOn::Tables
            };
            grants.into_iter().any(|g| {
                g.on == on
                    && in_scope(g, schema)
                    && (g.objects.is_empty() || g.objects.iter().any(|o| o == name))
            })
        }
        AclObject::Default {
            owner,
            schema: Some(schema),
            on: Some(on),
        } => grants.into_iter().any(|g| {
            g.future
                && g.on == *on
                && in_scope(g, schema)
                && match &g.owner {
                    Some(o) => o.as_str() == owner,
                    None => schemas
                        .iter()
                        .any(|f| &f.name == schema && f.owners.iter().any(|o| o == owner)),
                }
        }),
        // Default privileges in every schema, or on schemas and types: no group has them.
        AclObject::Default { .. } => false,
    }
}

/// The per-user privileges of `user` (its own ACL entries) that its group covers: held by
/// the group now (`group`, its own entries), or — when `changes_group` (this plan creates
/// or syncs it) — held once the group's statements ran.
pub fn covered<'a>(
    profile: &Profile,
    schemas: &[SchemaFacts],
    user: &'a [AclGrant],
    group: &[AclGrant],
    changes_group: bool,
) -> Vec<&'a AclGrant> {
    user.iter()
        .filter(|u| !u.grantable)
        .filter(|u| {
            let held_now = group
                .iter()
                .any(|g| g.object == u.object && g.privilege == u.privilege);
            held_now
                || (changes_group
                    && Privilege::parse(&u.privilege)
                        .is_some_and(|p| group_would_hold(profile, schemas, &u.object, p)))
        })
        .collect()
}

/// The REVOKEs of exactly `grants` (all of `role`), one statement per object kind and
/// privilege set, in the order schemas, relations, default privileges, database.
pub fn revokes(role: &RoleName, db: &str, grants: &[&AclGrant]) -> Vec<Statement> {
    // Per object, the privileges to revoke, kept in catalog order.
    let mut per_object: Vec<(&AclObject, Vec<Privilege>)> = Vec::new();
    for g in grants {
        let Some(p) = Privilege::parse(&g.privilege) else {
            continue;
        };
        match per_object.iter_mut().find(|(o, _)| *o == &g.object) {
            Some((_, privs)) if !privs.contains(&p) => privs.push(p),
            Some(_) => {}
            None => per_object.push((&g.object, vec![p])),
        }
    }
    let words = |privs: &[Privilege]| {
        privs
            .iter()
            .map(|p| p.keyword())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let r = ident(role.as_str());
    let comment = "revoke a per-user privilege the group now gives";
    // Objects of one kind and one privilege set share a statement.
    let mut lists: Vec<(String, Vec<String>)> = Vec::new();
    let mut defaults = Vec::new();
    let mut database = None;
    for (object, privs) in &per_object {
        let (kind, name) = match object {
            AclObject::Database => {
                database = Some(Statement::new(
                    format!("REVOKE {} ON DATABASE {} FROM {r}", words(privs), ident(db)),
                    comment,
                ));
                continue;
            }
            AclObject::Schema(s) => ("SCHEMA", ident(s)),
            AclObject::Relation {
                schema,
                name,
                sequence,
            } => (
                if *sequence { "SEQUENCE" } else { "TABLE" },
                format!("{}.{}", ident(schema), ident(name)),
            ),
            AclObject::Default { owner, schema, on } => {
                let objects = match on {
                    Some(GrantOn::Sequences) => "SEQUENCES",
                    Some(GrantOn::Functions) => "FUNCTIONS",
                    Some(GrantOn::Tables) => "TABLES",
                    // Never covered, so never here; skipping keeps the statement well-formed.
                    _ => continue,
                };
                let in_schema = schema
                    .as_deref()
                    .map(|s| format!(" IN SCHEMA {}", ident(s)))
                    .unwrap_or_default();
                defaults.push(Statement::new(
                    format!(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {}{in_schema} REVOKE {} ON {objects} FROM {r}",
                        ident(owner),
                        words(privs)
                    ),
                    "revoke a per-user default privilege the group now gives",
                ));
                continue;
            }
        };
        let head = format!("{} ON {kind}", words(privs));
        match lists.iter_mut().find(|(h, _)| *h == head) {
            Some((_, names)) => names.push(name),
            None => lists.push((head, vec![name])),
        }
    }
    let mut out: Vec<Statement> = lists
        .into_iter()
        .map(|(head, names)| {
            Statement::new(
                format!("REVOKE {head} {} FROM {r}", names.join(", ")),
                comment,
            )
        })
        .collect();
    out.extend(defaults);
    out.extend(database);
    out
}

/// A per-user privilege a move revokes, as reports show it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    /// `database`, `schema s`, `table s.t`, `sequence s.q`, `default tables of o in s`.
    pub object: String,
    /// The privilege.
    pub privilege: String,
}

impl From<&AclGrant> for Revoked {
    fn from(g: &AclGrant) -> Self {
        let object = match &g.object {
            AclObject::Database => "database".to_owned(),
            AclObject::Schema(s) => format!("schema {s}"),
            AclObject::Relation {
                schema,
                name,
                sequence,
            } => format!(
                "{} {schema}.{name}",
                if *sequence { "sequence" } else { "table" }
            ),
            AclObject::Default { owner, schema, on } => format!(
                "default {} of {owner}{}",
                match on {
                    Some(GrantOn::Sequences) => "sequences",
                    Some(GrantOn::Functions) => "functions",
                    _ => "tables",
                },
                schema
                    .as_deref()
                    .map(|s| format!(" in {s}"))
                    .unwrap_or_default()
            ),
        };
        Self {
            object,
            privilege: g.privilege.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{NamePolicy, Profiles};

    fn builtin(name: &str) -> std::sync::Arc<Profile> {
        Profiles::load(&Default::default(), &NamePolicy::default(), &[])
            .unwrap()
            .get(name)
            .unwrap()
    }

    fn facts() -> Vec<SchemaFacts> {
        vec![SchemaFacts {
            name: "public".into(),
            owners: vec!["app_owner".into()],
        }]
    }

    fn acl(grantee: &str, object: AclObject, privilege: &str) -> AclGrant {
        AclGrant {
            grantee: grantee.into(),
            object,
            privilege: privilege.into(),
            grantable: false,
        }
    }

    fn table(name: &str) -> AclObject {
        AclObject::Relation {
            schema: "public".into(),
            name: name.into(),
            sequence: false,
        }
    }

    /// What today's per-user `readonly` plan leaves: CONNECT, USAGE, SELECT on a table and
    /// a sequence, default privileges of the owner; and one extra grant made by hand.
    fn old_readonly(user: &str) -> Vec<AclGrant> {
        vec![
            acl(user, AclObject::Database, "CONNECT"),
            acl(user, AclObject::Database, "TEMPORARY"),
            acl(user, AclObject::Schema("public".into()), "USAGE"),
            acl(user, table("orders"), "SELECT"),
            acl(user, table("orders"), "INSERT"),
            acl(
                user,
                AclObject::Relation {
                    schema: "public".into(),
                    name: "orders_id_seq".into(),
                    sequence: true,
                },
                "SELECT",
            ),
            acl(
                user,
                AclObject::Default {
                    owner: "app_owner".into(),
                    schema: Some("public".into()),
                    on: Some(GrantOn::Tables),
                },
                "SELECT",
            ),
            acl(
                user,
                AclObject::Default {
                    owner: "app_owner".into(),
                    schema: Some("public".into()),
                    on: Some(GrantOn::Sequences),
                },
                "SELECT",
            ),
        ]
    }

    fn shown(statements: &[Statement]) -> Vec<String> {
        statements.iter().map(|s| s.shown().to_owned()).collect()
    }

    #[test]
    fn a_new_readonly_group_covers_the_profile_grants_and_nothing_else() {
        let ro = builtin("readonly");
        let user = old_readonly("ro");
        let covered = covered(&ro, &facts(), &user, &[], true);
        let role = NamePolicy::default().role("ro").unwrap();
        assert_eq!(
            shown(&revokes(&role, "d", &covered)),
            [
                "REVOKE USAGE ON SCHEMA \"public\" FROM \"ro\"",
                "REVOKE SELECT ON TABLE \"public\".\"orders\" FROM \"ro\"",
                "REVOKE SELECT ON SEQUENCE \"public\".\"orders_id_seq\" FROM \"ro\"",
                "ALTER DEFAULT PRIVILEGES FOR ROLE \"app_owner\" IN SCHEMA \"public\" REVOKE SELECT ON TABLES FROM \"ro\"",
                "ALTER DEFAULT PRIVILEGES FOR ROLE \"app_owner\" IN SCHEMA \"public\" REVOKE SELECT ON SEQUENCES FROM \"ro\"",
                "REVOKE CONNECT ON DATABASE \"d\" FROM \"ro\"",
            ]
        );
        // INSERT and TEMPORARY were granted by hand: the group holds neither, they stay.
        assert!(!covered.iter().any(|g| g.privilege == "INSERT"));
        assert!(!covered.iter().any(|g| g.privilege == "TEMPORARY"));
    }

    #[test]
    fn an_existing_group_covers_only_what_it_holds() {
        let ro = builtin("readonly");
        let user = old_readonly("ro");
        let group = vec![acl("g", AclObject::Database, "CONNECT")];
        let covered = covered(&ro, &facts(), &user, &group, false);
        assert_eq!(covered, [&user[0]]);
    }

    #[test]
    fn a_connect_only_group_covers_connect_and_keeps_grant_options() {
        let devqa = builtin("devqa");
        let mut user = old_readonly("dev");
        let covered_now = covered(&devqa, &facts(), &user, &[], true);
        assert_eq!(covered_now, [&user[0]]);
        user[0].grantable = true;
        assert!(covered(&devqa, &facts(), &user, &[], true).is_empty());
    }

    #[test]
    fn tables_of_one_privilege_set_share_a_statement_and_names_are_quoted() {
        let role = NamePolicy::default().role("u").unwrap();
        let a = acl("u", table("a\"b"), "SELECT");
        let b = acl("u", table("c"), "SELECT");
        assert_eq!(
            shown(&revokes(&role, "d", &[&a, &b])),
            ["REVOKE SELECT ON TABLE \"public\".\"a\"\"b\", \"public\".\"c\" FROM \"u\""]
        );
    }

    #[test]
    fn default_privileges_everywhere_are_never_covered() {
        let ro = builtin("readonly");
        let everywhere = acl(
            "ro",
            AclObject::Default {
                owner: "app_owner".into(),
                schema: None,
                on: Some(GrantOn::Tables),
            },
            "SELECT",
        );
        assert!(covered(&ro, &facts(), &[everywhere], &[], true).is_empty());
    }
}
