//! Privileges as closed sets, and the GRANT / REVOKE / ALTER DEFAULT PRIVILEGES they become.

use serde::{Deserialize, Serialize};

use super::naming::{NamePolicy, RoleName};
use super::sql::ident;
use super::{SchemaFacts, Statement};

/// What a grant is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GrantOn {
    /// The target database.
    Database,
    /// Schemas.
    Schema,
    /// Tables, views and materialised views.
    Tables,
    /// Sequences.
    Sequences,
    /// Functions and procedures.
    Functions,
}

impl GrantOn {
    /// Privileges that make sense on this kind of object.
    pub fn privileges(self) -> &'static [Privilege] {
        use Privilege::*;
        match self {
            GrantOn::Database => &[Connect, Create, Temporary],
            GrantOn::Schema => &[Usage, Create],
            GrantOn::Tables => &[
                Select, Insert, Update, Delete, Truncate, References, Trigger, Maintain,
            ],
            GrantOn::Sequences => &[Usage, Select, Update],
            GrantOn::Functions => &[Execute],
        }
    }

    fn object_keyword(self) -> &'static str {
        match self {
            GrantOn::Database => "DATABASE",
            GrantOn::Schema => "SCHEMA",
            GrantOn::Tables => "TABLE",
            GrantOn::Sequences => "SEQUENCE",
            GrantOn::Functions => "FUNCTION",
        }
    }

    fn plural_keyword(self) -> &'static str {
        match self {
            GrantOn::Tables => "TABLES",
            GrantOn::Sequences => "SEQUENCES",
            GrantOn::Functions => "FUNCTIONS",
            GrantOn::Database | GrantOn::Schema => "",
        }
    }

    /// Whether the grant names schemas.
    fn in_schemas(self) -> bool {
        self != GrantOn::Database
    }
}

/// A privilege keyword; anything else is refused before SQL is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Privilege {
    /// Connect to a database.
    Connect,
    /// Create schemas (database) or objects (schema).
    Create,
    /// Create temporary tables.
    #[serde(alias = "TEMP")]
    Temporary,
    /// Use a schema or sequence.
    Usage,
    /// Read.
    Select,
    /// Add rows.
    Insert,
    /// Change rows (or set a sequence).
    Update,
    /// Remove rows.
    Delete,
    /// Empty a table.
    Truncate,
    /// Create foreign keys to it.
    References,
    /// Create triggers on it.
    Trigger,
    /// VACUUM, ANALYZE, REINDEX, CLUSTER, REFRESH MATERIALIZED VIEW, LOCK TABLE (17+).
    Maintain,
    /// Call a function.
    Execute,
}

impl Privilege {
    /// The SQL keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Privilege::Connect => "CONNECT",
            Privilege::Create => "CREATE",
            Privilege::Temporary => "TEMPORARY",
            Privilege::Usage => "USAGE",
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::References => "REFERENCES",
            Privilege::Trigger => "TRIGGER",
            Privilege::Maintain => "MAINTAIN",
            Privilege::Execute => "EXECUTE",
        }
    }

    /// The first PostgreSQL version (`server_version_num`) that knows it, if later than 15.
    pub fn since(self) -> Option<i32> {
        match self {
            Privilege::Maintain => Some(170000),
            _ => None,
        }
    }

    /// Parses a keyword case-insensitively.
    pub fn parse(word: &str) -> Option<Self> {
        let word = word.trim().to_ascii_uppercase();
        let word = if word == "TEMP" {
            "TEMPORARY".into()
        } else {
            word
        };
        ALL_PRIVILEGES.iter().copied().find(|p| p.keyword() == word)
    }
}

const ALL_PRIVILEGES: &[Privilege] = &[
    Privilege::Connect,
    Privilege::Create,
    Privilege::Temporary,
    Privilege::Usage,
    Privilege::Select,
    Privilege::Insert,
    Privilege::Update,
    Privilege::Delete,
    Privilege::Truncate,
    Privilege::References,
    Privilege::Trigger,
    Privilege::Maintain,
    Privilege::Execute,
];

/// Refuses grants of privileges the server does not know yet (PostgreSQL would answer
/// with a syntax error), naming the version they need.
pub fn check_server_version(grants: &[Grant], server_version_num: i32) -> Result<(), String> {
    let too_new = grants.iter().flat_map(|g| &g.privileges).find_map(|p| {
        p.since()
            .filter(|v| *v > server_version_num)
            .map(|v| (p, v))
    });
    match too_new {
        Some((p, v)) => Err(format!(
            "the {} privilege needs PostgreSQL {} or later; this server is {}",
            p.keyword(),
            v / 10000,
            server_version_num / 10000
        )),
        None => Ok(()),
    }
}

/// A grant as written in a profile: `{ on, schemas, objects, privileges, future }`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// What the grant is on.
    pub on: GrantOn,
    /// Schema names, or `["*"]` for every non-system schema.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Named objects in the one schema given; empty means all of that kind.
    #[serde(default)]
    pub objects: Vec<String>,
    /// Privileges from the closed set of that kind.
    pub privileges: Vec<Privilege>,
    /// Also for objects the schema and object owners create later (default privileges).
    #[serde(default)]
    pub future: bool,
    /// With `future`: only for objects this role creates later, instead of every owner's.
    #[serde(default)]
    pub owner: Option<String>,
}

/// Which schemas a grant covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Schemas {
    /// Every non-system schema of the database, as it is when the grant runs.
    All(AllMarker),
    /// These schemas.
    Named(Vec<String>),
}

/// Serialises as `"*"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllMarker;

impl Serialize for AllMarker {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("*")
    }
}

/// A validated grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// What it is on.
    pub on: GrantOn,
    /// Which schemas.
    pub schemas: Schemas,
    /// Named objects (in the single named schema), or empty for all.
    pub objects: Vec<String>,
    /// Privileges.
    pub privileges: Vec<Privilege>,
    /// With default privileges for future objects.
    pub future: bool,
    /// The one owner whose future objects are meant, if given.
    pub owner: Option<RoleName>,
}

impl Grant {
    /// Validates a grant: privileges fit the object kind, names are acceptable.
    pub fn from_config(cfg: &GrantConfig, names: &NamePolicy) -> Result<Self, String> {
        let on = cfg.on;
        if cfg.privileges.is_empty() {
            return Err("a grant needs at least one privilege".into());
        }
        if let Some(p) = cfg.privileges.iter().find(|p| !on.privileges().contains(p)) {
            let allowed: Vec<&str> = on.privileges().iter().map(|p| p.keyword()).collect();
            return Err(format!(
                "{} is not a privilege on {on:?} (allowed: {})",
                p.keyword(),
                allowed.join(", ")
            ));
        }
        let schemas = if !on.in_schemas() {
            if !cfg.schemas.is_empty() || !cfg.objects.is_empty() || cfg.future {
                return Err("a database grant takes no schemas, objects or future".into());
            }
            Schemas::Named(Vec::new())
        } else if cfg.schemas == ["*"] {
            Schemas::All(AllMarker)
        } else if cfg.schemas.is_empty() {
            return Err(format!("a grant on {on:?} needs schemas (names, or \"*\")"));
        } else {
            Schemas::Named(
                cfg.schemas
                    .iter()
                    .map(|s| {
                        if s == "$user" {
                            return Err("$user is not a schema one can grant on".to_owned());
                        }
                        names
                            .schema(s)
                            .map(|n| n.as_str().to_owned())
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        let objects = cfg
            .objects
            .iter()
            .map(|o| {
                names
                    .schema(o)
                    .map(|n| n.as_str().to_owned())
                    .map_err(|e| e.to_string().replace("schema name", "object name"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !objects.is_empty() {
            let one_schema = matches!(&schemas, Schemas::Named(s) if s.len() == 1);
            if on == GrantOn::Schema || !one_schema || cfg.future {
                return Err("named objects need exactly one named schema, and no future".into());
            }
        }
        if cfg.future && on == GrantOn::Schema {
            return Err("future applies to tables, sequences and functions".into());
        }
        if cfg.owner.is_some() && !cfg.future {
            return Err("owner names whose future objects are meant: it needs future".into());
        }
        let owner = cfg
            .owner
            .as_deref()
            .map(|o| names.role(o))
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            on,
            schemas,
            objects,
            privileges: cfg.privileges.clone(),
            future: cfg.future,
            owner,
        })
    }

    /// The statements that grant (or revoke) it for `role` in database `db`.
    pub fn statements(
        &self,
        role: &RoleName,
        db: &str,
        facts: &[SchemaFacts],
        revoke: bool,
    ) -> Result<Vec<Statement>, String> {
        let r = ident(role.as_str());
        let privs: Vec<&str> = self.privileges.iter().map(|p| p.keyword()).collect();
        let privs = privs.join(", ");
        let (verb, prep) = if revoke {
            ("REVOKE", "FROM")
        } else {
            ("GRANT", "TO")
        };
        let comment = if revoke {
            "revoke privileges"
        } else {
            "grant privileges"
        };
        let mut out = Vec::new();
        if self.on == GrantOn::Database {
            out.push(Statement::new(
                format!("{verb} {privs} ON DATABASE {} {prep} {r}", ident(db)),
                comment,
            ));
            return Ok(out);
        }
        let schemas: Vec<&SchemaFacts> = match &self.schemas {
            Schemas::All(_) => facts.iter().collect(),
            Schemas::Named(names) => names
                .iter()
                .map(|n| {
                    facts
                        .iter()
                        .find(|f| &f.name == n)
                        .ok_or_else(|| format!("schema '{n}' does not exist in database '{db}'"))
                })
                .collect::<Result<_, _>>()?,
        };
        for schema in schemas {
            let s = ident(&schema.name);
            let kind = self.on.object_keyword();
            let target = match (self.on, self.objects.is_empty()) {
                (GrantOn::Schema, _) => format!("SCHEMA {s}"),
                (_, true) => format!("ALL {} IN SCHEMA {s}", self.on.plural_keyword()),
                (_, false) => {
                    let list: Vec<String> = self
                        .objects
                        .iter()
                        .map(|o| format!("{s}.{}", ident(o)))
                        .collect();
                    format!("{kind} {}", list.join(", "))
                }
            };
            out.push(Statement::new(
                format!("{verb} {privs} ON {target} {prep} {r}"),
                comment,
            ));
            if self.future {
                let given = self.owner.as_ref().map(|o| vec![o.to_string()]);
                for owner in given.as_ref().unwrap_or(&schema.owners) {
                    out.push(Statement::new(
                        format!(
                            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {s} {verb} {privs} ON {} {prep} {r}",
                            ident(owner),
                            self.on.plural_keyword()
                        ),
                        "the same for objects this owner creates later",
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// The schemas some grants touch: `None` when any covers every schema.
pub fn schema_scope(grants: &[Grant]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for g in grants.iter().filter(|g| g.on != GrantOn::Database) {
        match &g.schemas {
            Schemas::All(_) => return None,
            Schemas::Named(list) => names.extend(list.iter().cloned()),
        }
    }
    Some(names)
}

/// The options of a membership grant.
#[derive(Clone, Copy, Debug, Default)]
pub struct MembershipOptions {
    /// The member may grant the membership on (ADMIN).
    pub admin: bool,
    /// It inherits the group's privileges (16+; none: the server's default).
    pub inherit: Option<bool>,
    /// It may `SET ROLE` to the group (16+; none: the server's default).
    pub set: Option<bool>,
}

/// `GRANT group TO role [WITH …]`, or `REVOKE group FROM role`; `pg16`: the server is
/// PostgreSQL 16 or later, which spells ADMIN as a boolean and knows INHERIT and SET.
pub fn membership(
    role: &RoleName,
    group: &RoleName,
    options: MembershipOptions,
    revoke: bool,
    pg16: bool,
) -> Result<Statement, String> {
    let (r, g) = (ident(role.as_str()), ident(group.as_str()));
    if revoke {
        return Ok(Statement::new(
            format!("REVOKE {g} FROM {r}"),
            "revoke membership",
        ));
    }
    let MembershipOptions {
        admin,
        inherit,
        set,
    } = options;
    if (inherit.is_some() || set.is_some()) && !pg16 {
        return Err("inherit and set options of a membership need PostgreSQL 16 or later".into());
    }
    let mut words = Vec::new();
    if admin {
        words.push(if pg16 { "ADMIN TRUE" } else { "ADMIN OPTION" });
    }
    for (word, value) in [("INHERIT", inherit), ("SET", set)] {
        if let Some(v) = value {
            words.push(match (word, v) {
                ("INHERIT", true) => "INHERIT TRUE",
                ("INHERIT", false) => "INHERIT FALSE",
                (_, true) => "SET TRUE",
                (_, false) => "SET FALSE",
            });
        }
    }
    let with = if words.is_empty() {
        String::new()
    } else {
        format!(" WITH {}", words.join(", "))
    };
    Ok(Statement::new(
        format!("GRANT {g} TO {r}{with}"),
        "grant membership",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(toml_text: &str) -> Result<Grant, String> {
        let cfg: GrantConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Grant::from_config(&cfg, &NamePolicy::default())
    }

    #[test]
    fn membership_options_are_spelled_per_server_version() {
        let names = NamePolicy::default();
        let (role, group) = (names.role("app").unwrap(), names.role("readers").unwrap());
        let admin = MembershipOptions {
            admin: true,
            ..MembershipOptions::default()
        };
        let sql = |options, revoke, pg16| {
            membership(&role, &group, options, revoke, pg16).map(|s| s.sql().to_owned())
        };
        assert_eq!(
            sql(admin, false, false).unwrap(),
            r#"GRANT "readers" TO "app" WITH ADMIN OPTION"#
        );
        assert_eq!(
            sql(admin, false, true).unwrap(),
            r#"GRANT "readers" TO "app" WITH ADMIN TRUE"#
        );
        let no_inherit = MembershipOptions {
            inherit: Some(false),
            ..MembershipOptions::default()
        };
        assert!(sql(no_inherit, false, false).is_err());
        assert_eq!(
            sql(no_inherit, false, true).unwrap(),
            r#"GRANT "readers" TO "app" WITH INHERIT FALSE"#
        );
        assert_eq!(
            sql(no_inherit, true, false).unwrap(),
            r#"REVOKE "readers" FROM "app""#
        );
    }

    fn facts() -> Vec<SchemaFacts> {
        vec![
            SchemaFacts {
                name: "public".into(),
                owners: vec!["app_owner".into()],
            },
            SchemaFacts {
                name: "sales".into(),
                owners: vec!["app_owner".into(), "etl".into()],
            },
        ]
    }

    fn shown(g: &Grant, revoke: bool) -> Vec<String> {
        let role = NamePolicy::default().role("bob").unwrap();
        g.statements(&role, "d", &facts(), revoke)
            .unwrap()
            .iter()
            .map(|s| s.shown().to_owned())
            .collect()
    }

    #[test]
    fn privileges_must_fit_the_object_kind() {
        assert!(grant("on = \"schema\"\nschemas = [\"*\"]\nprivileges = [\"SELECT\"]").is_err());
        assert!(grant("on = \"database\"\nprivileges = [\"EXECUTE\"]").is_err());
        assert!(grant("on = \"tables\"\nschemas = [\"*\"]\nprivileges = [\"DROP\"]").is_err());
        assert!(grant("on = \"tables\"\nprivileges = [\"SELECT\"]").is_err());
    }

    #[test]
    fn all_schemas_with_future_covers_every_owner() {
        let g = grant("on = \"tables\"\nschemas = [\"*\"]\nprivileges = [\"SELECT\", \"INSERT\"]\nfuture = true").unwrap();
        let s = shown(&g, false);
        assert_eq!(
            s[0],
            "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA \"public\" TO \"bob\""
        );
        assert!(s.contains(&"ALTER DEFAULT PRIVILEGES FOR ROLE \"etl\" IN SCHEMA \"sales\" GRANT SELECT, INSERT ON TABLES TO \"bob\"".to_owned()));
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn named_objects_and_revoke() {
        let g = grant(
            "on = \"tables\"\nschemas = [\"sales\"]\nobjects = [\"orders\", \"Items\"]\nprivileges = [\"select\"]",
        );
        assert!(g.is_err(), "privilege keywords are upper case in config");
        let g = grant("on = \"tables\"\nschemas = [\"sales\"]\nobjects = [\"orders\", \"Items\"]\nprivileges = [\"SELECT\"]").unwrap();
        assert_eq!(
            shown(&g, true),
            ["REVOKE SELECT ON TABLE \"sales\".\"orders\", \"sales\".\"items\" FROM \"bob\""]
        );
    }

    #[test]
    fn future_for_a_given_owner_only() {
        let g = grant("on = \"tables\"\nschemas = [\"sales\"]\nprivileges = [\"SELECT\"]\nfuture = true\nowner = \"ETL\"").unwrap();
        assert_eq!(
            shown(&g, false)[1],
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"etl\" IN SCHEMA \"sales\" GRANT SELECT ON TABLES TO \"bob\""
        );
        assert_eq!(shown(&g, false).len(), 2);
        assert!(
            grant(
                "on = \"tables\"\nschemas = [\"sales\"]\nprivileges = [\"SELECT\"]\nowner = \"etl\""
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_schema_is_reported() {
        let g = grant("on = \"schema\"\nschemas = [\"nope\"]\nprivileges = [\"USAGE\"]").unwrap();
        let role = NamePolicy::default().role("bob").unwrap();
        let e = g.statements(&role, "d", &facts(), false).unwrap_err();
        assert!(e.contains("'nope' does not exist"));
    }

    #[test]
    fn maintain_is_refused_before_17_with_the_version_it_needs() {
        let names = NamePolicy::new(crate::plan::naming::DEFAULT_NAME_PATTERN).unwrap();
        let cfg: GrantConfig =
            toml::from_str("on = \"tables\"\nschemas = [\"public\"]\nprivileges = [\"MAINTAIN\"]")
                .unwrap();
        let grants = [Grant::from_config(&cfg, &names).unwrap()];
        assert_eq!(check_server_version(&grants, 170000), Ok(()));
        assert_eq!(
            check_server_version(&grants, 160004),
            Err("the MAINTAIN privilege needs PostgreSQL 17 or later; this server is 16".into())
        );
    }

    #[test]
    fn privilege_words_parse_case_insensitively() {
        assert_eq!(Privilege::parse("temp"), Some(Privilege::Temporary));
        assert_eq!(Privilege::parse("maintain"), Some(Privilege::Maintain));
        assert_eq!(Privilege::parse(" select "), Some(Privilege::Select));
        assert_eq!(Privilege::parse("ALL"), None);
    }
}
