//! Group roles that hold a profile's privileges in one database, so a user costs a
//! membership row instead of an entry in every shared ACL (`pg_database.datacl`, each
//! table's `relacl`, the default ACLs): creating, resetting or dropping a user then never
//! rewrites a row every other user's privileges live in.
//!
//! One NOLOGIN group per (database, privilege set). Its name is a pure function of the
//! database name and the canonical privilege set text, so every replica and every version of
//! the service finds the same group, and profiles with the same privileges on one database
//! share one (all the built-ins but `readonly` need only CONNECT).

use sha2::{Digest, Sha256};

use super::grants::{Grant, GrantOn, MembershipOptions, Schemas, membership};
use super::naming::{MAX_NAME_BYTES, RoleName};
use super::profile::{Attribute, Profile};
use super::sql::{ident, literal};
use super::{SchemaFacts, Statement};

/// How a managed group's comment begins; role_state treats such roles as protected.
pub const GROUP_COMMENT: &str = "managed by pg-user-api: group ";

/// Every group name begins so; the names policy refuses it for callers' user names.
pub const GROUP_PREFIX: &str = "pgua_";

/// How many bytes of the (sanitised) database name a group name keeps.
const DB_PART_BYTES: usize = 36;

/// How many hex digits of the SHA-256 a group name and a fingerprint keep (64 bits).
const HASH_HEX: usize = 16;

/// The first server version whose membership grants take `WITH INHERIT TRUE`.
const PG16: i32 = 160_000;

/// One NOLOGIN group role per (database, privilege set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    name: RoleName,
    db: String,
    /// The profile's grants (CONNECT comes on top of them).
    grants: Vec<Grant>,
}

/// The first `HASH_HEX` hex digits of SHA-256 over `parts`, each followed by NUL.
fn short_hash<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    hex::encode(&digest[..HASH_HEX / 2])
}

/// A list of names as `"a","b"` (quoted, so no name can fake a separator), sorted.
fn name_list(names: &[String]) -> String {
    let mut quoted: Vec<String> = names.iter().map(|n| ident(n)).collect();
    quoted.sort();
    quoted.dedup();
    quoted.join(",")
}

/// One grant as canonical text: `TABLES SELECT schemas=* objects= future=true owner=`.
/// Group names hash this text, so changing its spelling renames every group: don't.
fn canonical_grant(g: &Grant) -> String {
    let on = match g.on {
        GrantOn::Database => "DATABASE",
        GrantOn::Schema => "SCHEMA",
        GrantOn::Tables => "TABLES",
        GrantOn::Sequences => "SEQUENCES",
        GrantOn::Functions => "FUNCTIONS",
    };
    let mut privs: Vec<&str> = g.privileges.iter().map(|p| p.keyword()).collect();
    privs.sort_unstable();
    privs.dedup();
    let schemas = match &g.schemas {
        Schemas::All(_) => "*".to_owned(),
        Schemas::Named(list) => name_list(list),
    };
    let owner = g
        .owner
        .as_ref()
        .map_or(String::new(), |o| ident(o.as_str()));
    format!(
        "{on} {} schemas={schemas} objects={} future={} owner={owner}",
        privs.join(","),
        name_list(&g.objects),
        g.future
    )
}

impl Group {
    /// The group a profile's users join in `db` (CONNECT + the profile's `grants`).
    pub fn for_profile(profile: &Profile, db: &str) -> Group {
        let name = Self::name_for(db, &Self::privilege_set(&profile.grants));
        Group {
            name,
            db: db.to_owned(),
            grants: profile.grants.clone(),
        }
    }

    /// The group `profile`'s users get their privileges through in `db` on a server of
    /// `server_version_num`; none where they keep per-user grants ([`uses_group`]).
    pub fn of(profile: &Profile, db: &str, server_version_num: i32) -> Option<Group> {
        uses_group(profile, server_version_num).then(|| Self::for_profile(profile, db))
    }

    /// The canonical privilege set text: `CONNECT`, then each grant's canonical line, sorted
    /// and without repeats, one per line.
    fn privilege_set(grants: &[Grant]) -> String {
        let mut lines: Vec<String> = grants.iter().map(canonical_grant).collect();
        lines.sort();
        lines.dedup();
        let mut text = String::from("CONNECT");
        for l in lines {
            text.push('\n');
            text.push_str(&l);
        }
        text
    }

    /// `pgua_` + the database name lowercased with every byte outside `[a-z0-9]` replaced by
    /// `_`, cut to 36 bytes, + `_` + the first 16 hex digits of SHA-256(db name, NUL,
    /// privilege set text, NUL). At most 58 bytes; the hash covers the exact database name,
    /// so two databases whose readable parts agree still get different groups.
    fn name_for(db: &str, privilege_set: &str) -> RoleName {
        let readable: String = db
            .bytes()
            .take(DB_PART_BYTES)
            .map(|b| {
                let b = b.to_ascii_lowercase();
                if b.is_ascii_lowercase() || b.is_ascii_digit() {
                    char::from(b)
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!(
            "{GROUP_PREFIX}{readable}_{}",
            short_hash([db, privilege_set])
        );
        debug_assert!(name.len() <= MAX_NAME_BYTES);
        RoleName::planned(name)
    }

    /// The group's role name.
    pub fn name(&self) -> &RoleName {
        &self.name
    }

    /// The database the group holds privileges in.
    pub fn db(&self) -> &str {
        &self.db
    }

    /// Whether the profile's grants name schemas (so schema facts are needed to plan it).
    pub fn needs_schema_facts(&self) -> bool {
        self.grants.iter().any(|g| g.on != GrantOn::Database)
    }

    /// Stable short text of the schema set + owners the grants were applied for: 16 hex
    /// digits of SHA-256 over each schema name and its owners, sorted.
    pub fn fingerprint(facts: &[SchemaFacts]) -> String {
        let mut lines: Vec<String> = facts
            .iter()
            .map(|f| {
                let mut owners = f.owners.clone();
                owners.sort();
                owners.dedup();
                format!("{} {}", ident(&f.name), name_list(&owners))
            })
            .collect();
        lines.sort();
        lines.dedup();
        short_hash(lines.iter().map(String::as_str))
    }

    /// The facts that count for this group: none when its grants name no schema.
    fn relevant<'a>(&self, facts: &'a [SchemaFacts]) -> &'a [SchemaFacts] {
        if self.needs_schema_facts() {
            facts
        } else {
            &[]
        }
    }

    /// The comment the group carries: GROUP_COMMENT + what it holds + fingerprint, e.g.
    /// `managed by pg-user-api: group of database "d": CONNECT; …; schemas 0123456789abcdef`.
    pub fn comment(&self, facts: &[SchemaFacts]) -> String {
        let holds = Self::privilege_set(&self.grants).replace('\n', "; ");
        format!(
            "{GROUP_COMMENT}of database {}: {holds}; schemas {}",
            ident(&self.db),
            Self::fingerprint(self.relevant(facts))
        )
    }

    /// Whether a group whose comment is `comment` holds the grants for these facts already,
    /// so a create may skip the lock and the group's statements.
    pub fn is_current(&self, comment: Option<&str>, facts: &[SchemaFacts]) -> bool {
        comment == Some(self.comment(facts).as_str())
    }

    /// The per-database lock of catalog-changing grants and a lock on the group's name,
    /// both held to the end of the group's own transaction; the caller re-checks the group
    /// after taking them, then runs [`Group::create`] or [`Group::sync`].
    pub fn locks(&self) -> Vec<Statement> {
        vec![
            super::grant_lock(),
            Statement::new(
                format!(
                    "SELECT pg_advisory_xact_lock(hashtext({}))",
                    literal(&format!("pg-user-api:group:{}", self.name))
                ),
                "one creator of this group at a time",
            ),
        ]
    }

    /// CREATE ROLE … NOLOGIN (+ COMMENT, GRANT CONNECT, the grants, default privileges),
    /// run under plan::grant_lock().
    pub fn create(&self, facts: &[SchemaFacts]) -> Result<Vec<Statement>, String> {
        let mut plan = vec![Statement::new(
            format!("CREATE ROLE {} WITH NOLOGIN", ident(self.name.as_str())),
            "the group role that holds the profile's privileges in this database",
        )];
        plan.extend(self.grant_statements(facts)?);
        Ok(plan)
    }

    /// Re-applies the grants for changed schema facts and rewrites the comment.
    pub fn sync(&self, facts: &[SchemaFacts]) -> Result<Vec<Statement>, String> {
        self.grant_statements(facts)
    }

    /// COMMENT, GRANT CONNECT and the grants, all idempotent.
    fn grant_statements(&self, facts: &[SchemaFacts]) -> Result<Vec<Statement>, String> {
        let g = ident(self.name.as_str());
        let facts = self.relevant(facts);
        let mut plan = vec![
            Statement::new(
                format!("COMMENT ON ROLE {g} IS {}", literal(&self.comment(facts))),
                "mark the group as managed, with what it holds and for which schemas",
            ),
            Statement::new(
                format!("GRANT CONNECT ON DATABASE {} TO {g}", ident(&self.db)),
                "members may connect to the target database",
            ),
        ];
        for grant in &self.grants {
            plan.extend(grant.statements(&self.name, &self.db, facts, false)?);
        }
        Ok(plan)
    }

    /// GRANT group TO role, `WITH INHERIT TRUE` when server_version_num >= 160000.
    pub fn membership(&self, role: &RoleName, server_version_num: i32) -> Statement {
        let pg16 = server_version_num >= PG16;
        let options = MembershipOptions {
            inherit: pg16.then_some(true),
            ..MembershipOptions::default()
        };
        let mut s = membership(role, &self.name, options, false, pg16)
            .expect("INHERIT is only asked for on 16+");
        s.comment = "membership in the group that holds the profile's privileges here";
        s
    }
}

/// Whether `profile`'s users get their privileges through a group on this server. On
/// PostgreSQL 15 a NOINHERIT role gains nothing from a membership without `SET ROLE` (and
/// `WITH INHERIT TRUE` needs 16), so there such profiles keep per-user grants.
pub fn uses_group(profile: &Profile, server_version_num: i32) -> bool {
    server_version_num >= PG16 || !profile.attributes.contains(&Attribute::Noinherit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{NamePolicy, Profiles};

    fn profiles() -> Profiles {
        Profiles::load(&Default::default(), &NamePolicy::default(), &[]).unwrap()
    }

    fn group(profile: &str, db: &str) -> Group {
        Group::for_profile(&profiles().get(profile).unwrap(), db)
    }

    fn facts() -> Vec<SchemaFacts> {
        vec![
            SchemaFacts {
                name: "public".into(),
                owners: vec!["app_owner".into()],
            },
            SchemaFacts {
                name: "sales".into(),
                owners: vec!["etl".into(), "app_owner".into()],
            },
        ]
    }

    #[test]
    fn names_are_prefixed_readable_hashed_and_short() {
        let g = group("devqa", "My-DB");
        let name = g.name().as_str();
        assert!(name.starts_with("pgua_my_db_"), "{name}");
        assert_eq!(name.len(), "pgua_my_db_".len() + 16);
        assert!(
            name["pgua_my_db_".len()..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
        let long = group("readonly", &"Ünïcødé \"db\" ".repeat(20));
        let name = long.name().as_str();
        assert!(name.len() <= MAX_NAME_BYTES, "{name}");
        assert_eq!(name.len(), 5 + 36 + 1 + 16);
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
    }

    #[test]
    fn names_are_deterministic_and_depend_on_db_and_privileges() {
        assert_eq!(group("devqa", "d"), group("devqa", "d"));
        // Pinned: a change here renames every group of every installation.
        assert_eq!(group("devqa", "d").name().as_str(), group_name_pinned());
        let connect_only: Vec<String> = ["app", "app-k8s", "devqa", "devlead", "dba"]
            .iter()
            .map(|p| group(p, "d").name().to_string())
            .collect();
        assert!(connect_only.iter().all(|n| n == &connect_only[0]));
        assert_ne!(group("readonly", "d").name(), group("devqa", "d").name());
        // Same readable part, different databases.
        assert_ne!(group("devqa", "a-b").name(), group("devqa", "a_b").name());
        assert_ne!(group("devqa", "D").name(), group("devqa", "d").name());
    }

    fn group_name_pinned() -> String {
        format!("pgua_d_{}", short_hash(["d", "CONNECT"]))
    }

    #[test]
    fn grant_order_does_not_change_the_group() {
        let p = profiles().get("readonly").unwrap();
        let mut reversed = (*p).clone();
        reversed.grants.reverse();
        assert_eq!(
            Group::for_profile(&p, "d").name(),
            Group::for_profile(&reversed, "d").name()
        );
    }

    #[test]
    fn readonly_group_plan_grants_to_the_group_with_defaults_per_owner() {
        let g = group("readonly", "d");
        assert!(g.needs_schema_facts());
        let plan = g.create(&facts()).unwrap();
        let n = ident(g.name().as_str());
        let shown: Vec<&str> = plan.iter().map(Statement::shown).collect();
        assert_eq!(shown[0], format!("CREATE ROLE {n} WITH NOLOGIN"));
        assert!(shown[1].starts_with(&format!(
            "COMMENT ON ROLE {n} IS 'managed by pg-user-api: group "
        )));
        assert!(shown.contains(&format!("GRANT CONNECT ON DATABASE \"d\" TO {n}").as_str()));
        assert!(shown.contains(&format!("GRANT USAGE ON SCHEMA \"sales\" TO {n}").as_str()));
        assert!(
            shown.contains(
                &format!("GRANT SELECT ON ALL TABLES IN SCHEMA \"public\" TO {n}").as_str()
            )
        );
        assert!(shown.contains(&format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"etl\" IN SCHEMA \"sales\" GRANT SELECT ON SEQUENCES TO {n}"
        ).as_str()));
        let text = crate::plan::batch(&plan);
        assert!(
            !text.contains("INSERT")
                && !text.contains("UPDATE")
                && !text.contains("LOGIN PASSWORD")
        );
        // sync is the same without the CREATE ROLE.
        assert_eq!(g.sync(&facts()).unwrap().len(), plan.len() - 1);
    }

    #[test]
    fn the_comment_tracks_schema_facts_only_where_they_matter() {
        let ro = group("readonly", "d");
        let mut more = facts();
        more[0].owners.push("new_owner".into());
        assert!(ro.comment(&facts()).starts_with(GROUP_COMMENT));
        assert_ne!(ro.comment(&facts()), ro.comment(&more));
        assert!(ro.is_current(Some(&ro.comment(&facts())), &facts()));
        assert!(!ro.is_current(Some(&ro.comment(&facts())), &more));
        assert!(!ro.is_current(None, &facts()));
        let dev = group("devqa", "d");
        assert!(!dev.needs_schema_facts());
        assert_eq!(dev.comment(&facts()), dev.comment(&[]));
        assert_eq!(dev.create(&facts()).unwrap().len(), 3);
    }

    #[test]
    fn fingerprints_ignore_order_and_see_every_owner() {
        let mut shuffled = facts();
        shuffled.reverse();
        shuffled[0].owners.reverse();
        assert_eq!(Group::fingerprint(&facts()), Group::fingerprint(&shuffled));
        assert_eq!(Group::fingerprint(&facts()).len(), 16);
        assert_ne!(
            Group::fingerprint(&facts()),
            Group::fingerprint(&facts()[..1])
        );
        assert_ne!(Group::fingerprint(&[]), Group::fingerprint(&facts()));
    }

    #[test]
    fn membership_inherits_explicitly_from_16() {
        let g = group("devqa", "d");
        let user = NamePolicy::default().role("bob").unwrap();
        let n = ident(g.name().as_str());
        assert_eq!(
            g.membership(&user, 150_007).sql(),
            format!("GRANT {n} TO \"bob\"")
        );
        assert_eq!(
            g.membership(&user, 160_000).sql(),
            format!("GRANT {n} TO \"bob\" WITH INHERIT TRUE")
        );
    }

    #[test]
    fn noinherit_profiles_keep_per_user_grants_on_15_only() {
        let mut p = (*profiles().get("devqa").unwrap()).clone();
        assert!(uses_group(&p, 150_000));
        p.attributes.push(Attribute::Noinherit);
        assert!(!uses_group(&p, 150_007));
        assert!(uses_group(&p, 160_000));
    }

    #[test]
    fn locks_are_the_grant_lock_and_the_group_name() {
        let g = group("devqa", "d");
        let locks = g.locks();
        assert_eq!(locks[0].sql(), crate::plan::grant_lock().sql());
        assert!(
            locks[1]
                .sql()
                .contains(&format!("pg-user-api:group:{}", g.name()))
        );
    }
}
