//! What the admin role must have for an operation, per server version, and the statement
//! that gives it what it lacks. Pure: the facts come from `target::admin_facts`; the create
//! and grant pre-checks and the doctor all ask here.

use serde::Serialize;

use super::profile::{Attribute, Profile};
use super::sql::ident;

/// The first server version where only a role holding CREATEDB, REPLICATION or BYPASSRLS
/// may give it, and granting a membership needs ADMIN OPTION on the role.
pub const PG16: i32 = 160_000;

/// What the admin role is and holds on one server, seen from one database.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AdminFacts {
    /// The admin role's name.
    pub role: String,
    /// `server_version_num`, e.g. 180001.
    pub server_version_num: i32,
    /// `server_version`, e.g. `18.1`.
    pub server_version: String,
    /// SUPERUSER.
    pub superuser: bool,
    /// CREATEROLE.
    pub createrole: bool,
    /// CREATEDB.
    pub createdb: bool,
    /// REPLICATION.
    pub replication: bool,
    /// BYPASSRLS.
    pub bypassrls: bool,
    /// Holds the privileges of `pg_signal_backend` (ends other roles' sessions).
    pub pg_signal_backend: bool,
    /// The owner of the database the facts were read in.
    pub database_owner: String,
    /// Holds the privileges of that owner.
    pub member_of_database_owner: bool,
    /// Group roles it is a member of, and roles it was asked about.
    pub memberships: Vec<AdminMembership>,
}

/// One role the admin role is a member of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AdminMembership {
    /// The group role.
    pub role: String,
    /// Its privileges are usable without SET ROLE (inherited).
    pub inherit: bool,
    /// With ADMIN OPTION: may grant it to others.
    pub admin: bool,
}

/// Something the admin role lacks for an operation, and how to give it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Missing {
    /// What it lacks: an attribute, a membership, a predefined role.
    pub privilege: String,
    /// Why the operation needs it.
    pub needed_for: String,
    /// The statement (run as a superuser) that fixes it.
    pub fix: String,
}

impl Missing {
    /// The sentence a refusal and the doctor show.
    pub fn message(&self, admin: &str) -> String {
        format!(
            "the admin role {admin} lacks {}, which {}; fix: {}",
            self.privilege, self.needed_for, self.fix
        )
    }
}

impl AdminFacts {
    fn has(&self, attribute: Attribute) -> bool {
        self.superuser
            || match attribute {
                Attribute::Createdb => self.createdb,
                Attribute::Createrole => self.createrole,
                Attribute::Replication => self.replication,
                Attribute::Bypassrls => self.bypassrls,
                Attribute::Superuser => false,
                Attribute::Login
                | Attribute::Nologin
                | Attribute::Inherit
                | Attribute::Noinherit => true,
            }
    }

    fn admin_of(&self, role: &str) -> bool {
        self.superuser || self.memberships.iter().any(|m| m.role == role && m.admin)
    }

    fn version_16(&self) -> bool {
        self.server_version_num >= PG16
    }

    fn alter(&self, keyword: &str) -> String {
        format!("ALTER ROLE {} {keyword};", ident(&self.role))
    }

    fn attribute(&self, attribute: Attribute, needed_for: String) -> Missing {
        Missing {
            privilege: attribute.keyword().to_owned(),
            needed_for,
            fix: self.alter(attribute.keyword()),
        }
    }
}

/// Whether creating a user of `profile` can need more of the admin role than CREATEROLE —
/// without which PostgreSQL refuses the CREATE ROLE itself, inside the create's
/// transaction, so nothing is half made. Only then does a create read the admin's facts
/// first: the plain LOGIN profiles (app, devqa, readonly, …) pay no extra round trip.
pub fn create_needs_more_than_createrole(profile: &Profile) -> bool {
    !profile.member_of.is_empty()
        || profile.attributes.iter().any(|a| {
            matches!(
                a,
                Attribute::Createdb
                    | Attribute::Superuser
                    | Attribute::Replication
                    | Attribute::Bypassrls
            )
        })
}

/// What creating a user of `profile` needs that the admin role lacks.
pub fn for_create(profile: &Profile, facts: &AdminFacts) -> Vec<Missing> {
    let mut out = Vec::new();
    if !facts.has(Attribute::Createrole) {
        out.push(facts.attribute(Attribute::Createrole, "creating any role needs".into()));
    }
    for &a in &profile.attributes {
        if facts.has(a) {
            continue;
        }
        let word = a.keyword();
        out.push(if a == Attribute::Superuser {
            facts.attribute(a, "creating users with SUPERUSER needs".into())
        } else if !facts.version_16() && matches!(a, Attribute::Replication | Attribute::Bypassrls)
        {
            facts.attribute(
                Attribute::Superuser,
                format!("PostgreSQL 15 requires to create users with {word}"),
            )
        } else if facts.version_16() {
            facts.attribute(
                a,
                format!("PostgreSQL 16+ requires to create users with {word}"),
            )
        } else {
            // Before 16, CREATEROLE may give CREATEDB.
            continue;
        });
    }
    for group in &profile.member_of {
        out.extend(for_membership(group.as_str(), facts));
    }
    out
}

/// What granting or revoking membership in `group` needs that the admin role lacks.
pub fn for_membership(group: &str, facts: &AdminFacts) -> Option<Missing> {
    if facts.admin_of(group) || (!facts.version_16() && facts.has(Attribute::Createrole)) {
        return None;
    }
    let needed_for = if facts.version_16() {
        format!("PostgreSQL 16+ requires to grant or revoke membership in {group}")
    } else {
        format!("granting or revoking membership in {group} needs (or CREATEROLE)")
    };
    Some(Missing {
        privilege: format!("ADMIN OPTION on {group}"),
        needed_for,
        fix: format!(
            "GRANT {} TO {} WITH ADMIN OPTION;",
            ident(group),
            ident(&facts.role)
        ),
    })
}

fn signal_backend(facts: &AdminFacts, operation: &str) -> Option<Missing> {
    (!facts.superuser && !facts.pg_signal_backend).then(|| Missing {
        privilege: "pg_signal_backend".into(),
        needed_for: format!("{operation} needs to end the user's open sessions"),
        fix: format!("GRANT pg_signal_backend TO {};", ident(&facts.role)),
    })
}

/// What lock needs that the admin role lacks (ending the user's sessions).
pub fn for_lock(facts: &AdminFacts) -> Vec<Missing> {
    signal_backend(facts, "lock").into_iter().collect()
}

/// What drop needs that the admin role lacks: ending sessions, and membership in the
/// database owner, the default successor of the user's objects.
pub fn for_drop(facts: &AdminFacts) -> Vec<Missing> {
    let mut out: Vec<Missing> = signal_backend(facts, "drop").into_iter().collect();
    if !facts.superuser && !facts.member_of_database_owner {
        out.push(Missing {
            privilege: format!("membership in {}", facts.database_owner),
            needed_for: format!(
                "drop needs to hand the user's objects to {}, the database owner",
                facts.database_owner
            ),
            fix: format!(
                "GRANT {} TO {};",
                ident(&facts.database_owner),
                ident(&facts.role)
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{NamePolicy, Profiles};

    fn facts(version: i32) -> AdminFacts {
        AdminFacts {
            role: "pgua_admin".into(),
            server_version_num: version,
            server_version: String::new(),
            superuser: false,
            createrole: true,
            createdb: false,
            replication: false,
            bypassrls: false,
            pg_signal_backend: true,
            database_owner: "app_owner".into(),
            member_of_database_owner: true,
            memberships: vec![AdminMembership {
                role: "app_owner".into(),
                inherit: true,
                admin: true,
            }],
        }
    }

    fn profile(name: &str) -> std::sync::Arc<Profile> {
        Profiles::load(&Default::default(), &NamePolicy::default(), &[])
            .unwrap()
            .get(name)
            .unwrap()
    }

    #[test]
    fn dba_needs_createdb_from_16_on() {
        assert!(for_create(&profile("dba"), &facts(150_004)).is_empty());
        let missing = for_create(&profile("dba"), &facts(180_001));
        assert_eq!(missing.len(), 1);
        assert_eq!(
            missing[0].message("pgua_admin"),
            "the admin role pgua_admin lacks CREATEDB, which PostgreSQL 16+ requires to create \
             users with CREATEDB; fix: ALTER ROLE \"pgua_admin\" CREATEDB;"
        );
        let mut f = facts(180_001);
        f.createdb = true;
        assert!(for_create(&profile("dba"), &f).is_empty());
    }

    #[test]
    fn only_profiles_that_may_lack_more_than_createrole_read_the_admins_facts() {
        for name in ["app", "app-k8s", "devqa", "devlead", "readonly"] {
            let p = profile(name);
            assert!(!create_needs_more_than_createrole(&p), "{name}");
            for version in [150_000, 160_000, 180_000] {
                assert!(
                    for_create(&p, &facts(version)).is_empty(),
                    "{name} on {version}"
                );
            }
        }
        assert!(create_needs_more_than_createrole(&profile("dba")));
        let mut grouped = (*profile("devqa")).clone();
        grouped
            .member_of
            .push(NamePolicy::default().role("app_group").unwrap());
        assert!(create_needs_more_than_createrole(&grouped));
    }

    #[test]
    fn replication_needs_superuser_on_15_and_the_attribute_on_16() {
        let mut p = (*profile("devqa")).clone();
        p.attributes.push(Attribute::Replication);
        assert_eq!(for_create(&p, &facts(150_000))[0].privilege, "SUPERUSER");
        assert_eq!(for_create(&p, &facts(160_000))[0].privilege, "REPLICATION");
    }

    #[test]
    fn memberships_need_admin_option_from_16_on() {
        assert!(for_membership("app_owner", &facts(180_000)).is_none());
        assert!(for_membership("app_group", &facts(150_000)).is_none());
        let m = for_membership("app_group", &facts(180_000)).unwrap();
        assert_eq!(
            m.fix,
            "GRANT \"app_group\" TO \"pgua_admin\" WITH ADMIN OPTION;"
        );
        let mut f = facts(150_000);
        f.createrole = false;
        assert!(for_membership("app_group", &f).is_some());
    }

    #[test]
    fn lock_and_drop_need_signal_backend_and_the_database_owner() {
        let mut f = facts(170_000);
        assert!(for_lock(&f).is_empty() && for_drop(&f).is_empty());
        f.pg_signal_backend = false;
        f.member_of_database_owner = false;
        assert_eq!(
            for_lock(&f)[0].fix,
            "GRANT pg_signal_backend TO \"pgua_admin\";"
        );
        let drop: Vec<String> = for_drop(&f).into_iter().map(|m| m.fix).collect();
        assert_eq!(
            drop,
            [
                "GRANT pg_signal_backend TO \"pgua_admin\";",
                "GRANT \"app_owner\" TO \"pgua_admin\";"
            ]
        );
        f.superuser = true;
        assert!(for_drop(&f).is_empty());
    }
}
