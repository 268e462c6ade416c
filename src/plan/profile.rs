//! User profiles: what a kind of user is named, may do and is granted. The six built-in
//! profiles of the original are defined in `builtin_profiles.toml` with the same schema a
//! configuration file uses, so a config can change, replace or add profiles.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::grants::{Grant, GrantConfig};
use super::naming::{NameError, NamePolicy, RoleName};

/// The built-in profiles, in the configuration file's format.
pub const BUILTIN_PROFILES: &str = include_str!("builtin_profiles.toml");

/// Endpoint names under `/api/v1/users/` that are operations, not profiles.
pub const RESERVED_ENDPOINTS: &[&str] = &[
    "all",
    "reset",
    "search-path",
    "find",
    "lock",
    "unlock",
    "expire",
    "renew",
    "alter",
    "drop",
    "grant",
    "revoke",
    "privileges",
];

/// How a profile parameter is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    /// A whole role name (folded, checked against the name pattern).
    Name,
    /// Part of a templated name: letters, digits, `_`, `.`, `-`.
    NamePart,
    /// A TCP port, 1-65535.
    Port,
}

/// Role attributes a profile may set; the privileged ones need `policy.privileged_attributes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Attribute {
    /// May log in.
    Login,
    /// May not log in (a group role).
    Nologin,
    /// May create databases.
    Createdb,
    /// May create roles.
    Createrole,
    /// Inherits the privileges of roles it is a member of.
    Inherit,
    /// Does not inherit them.
    Noinherit,
    /// Superuser: privileged.
    Superuser,
    /// Streaming replication: privileged.
    Replication,
    /// Bypasses row-level security: privileged.
    Bypassrls,
}

impl Attribute {
    /// The SQL keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Attribute::Login => "LOGIN",
            Attribute::Nologin => "NOLOGIN",
            Attribute::Createdb => "CREATEDB",
            Attribute::Createrole => "CREATEROLE",
            Attribute::Inherit => "INHERIT",
            Attribute::Noinherit => "NOINHERIT",
            Attribute::Superuser => "SUPERUSER",
            Attribute::Replication => "REPLICATION",
            Attribute::Bypassrls => "BYPASSRLS",
        }
    }

    /// Whether configuration must allow it explicitly.
    pub fn privileged(self) -> bool {
        matches!(
            self,
            Attribute::Superuser | Attribute::Replication | Attribute::Bypassrls
        )
    }
}

/// `[profiles.<name>]` in the configuration file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// `false` removes a built-in profile.
    pub enabled: Option<bool>,
    /// One line for `/api/v1/profiles`.
    pub description: String,
    /// Parameters the endpoint takes besides env and database, and how each is checked.
    pub params: BTreeMap<String, ParamKind>,
    /// The role name, from `{param}` placeholders.
    pub name: String,
    /// Role attributes.
    pub attributes: Vec<Attribute>,
    /// `CONNECTION LIMIT`; none means unlimited.
    pub connection_limit: Option<i32>,
    /// Password lifetime in days (`VALID UNTIL` now + N days); none means no expiry.
    pub password_valid_days: Option<u32>,
    /// Environments the profile may be used in; empty means all.
    pub environments: Vec<String>,
    /// Refused in production environments (unless `policy.developer_accounts_in_production`).
    pub non_production_only: bool,
    /// Roles the new role joins.
    pub member_of: Vec<String>,
    /// Privileges granted in the target database.
    pub grants: Vec<GrantConfig>,
    /// `ALTER ROLE … IN DATABASE <target> SET name = value`.
    pub database_settings: BTreeMap<String, String>,
    /// `ALTER ROLE … SET name = value`, everywhere.
    pub role_settings: BTreeMap<String, String>,
    /// The `status` a successful create reports (default `user created`).
    pub created_status: Option<String>,
}

/// A validated profile.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// Endpoint name.
    pub name: String,
    /// Short hash of the definition: which version created a user.
    pub version: String,
    /// What it is for.
    pub description: String,
    /// Parameters and their kinds.
    pub params: BTreeMap<String, ParamKind>,
    /// Name template.
    pub template: String,
    /// Role attributes.
    pub attributes: Vec<Attribute>,
    /// Connection limit.
    pub connection_limit: Option<i32>,
    /// Password lifetime in days.
    pub password_valid_days: Option<u32>,
    /// Allowed environments (empty: all).
    pub environments: Vec<String>,
    /// Kept out of production.
    pub non_production_only: bool,
    /// Roles joined.
    pub member_of: Vec<RoleName>,
    /// Privileges in the target database.
    pub grants: Vec<Grant>,
    /// Per-database settings.
    pub database_settings: Vec<(String, String)>,
    /// Role-wide settings.
    pub role_settings: Vec<(String, String)>,
    /// Success status.
    pub created_status: String,
}

/// A setting name PostgreSQL would accept (`search_path`, `app.tenant`, …).
fn check_setting_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "setting name '{name}' is not a valid parameter name"
        ))
    }
}

impl Profile {
    /// Validates one profile definition.
    pub fn build(
        name: &str,
        cfg: &ProfileConfig,
        names: &NamePolicy,
        privileged_allowed: &[Attribute],
    ) -> Result<Self, String> {
        let err = |m: String| format!("profile '{name}': {m}");
        let name_ok = !name.is_empty()
            && name.len() <= 40
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(err("names are lower-case letters, digits and '-'".into()));
        }
        if RESERVED_ENDPOINTS.contains(&name) {
            return Err(err(format!("'{name}' is an operation's endpoint")));
        }
        if cfg.name.is_empty() {
            return Err(err("`name` (the role name template) is required".into()));
        }
        check_template(&cfg.name, &cfg.params).map_err(err)?;
        for a in &cfg.attributes {
            if a.privileged() && !privileged_allowed.contains(a) {
                return Err(err(format!(
                    "attribute {} needs policy.privileged_attributes to allow it",
                    a.keyword()
                )));
            }
        }
        if let Some(limit) = cfg.connection_limit
            && !(-1..=10_000).contains(&limit)
        {
            return Err(err("connection_limit must be -1 to 10000".into()));
        }
        let member_of = cfg
            .member_of
            .iter()
            .map(|m| names.role(m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        let grants = cfg
            .grants
            .iter()
            .map(|g| Grant::from_config(g, names))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        for (k, v) in cfg.database_settings.iter().chain(&cfg.role_settings) {
            check_setting_name(k).map_err(err)?;
            if k == "search_path" {
                names.search_path(v).map_err(|e| err(e.to_string()))?;
            }
        }
        let canonical = toml::to_string(cfg).expect("a profile serialises");
        let digest = Sha256::digest(format!("{name}\n{canonical}").as_bytes());
        Ok(Self {
            name: name.to_owned(),
            version: hex::encode(&digest[..4]),
            description: cfg.description.clone(),
            params: cfg.params.clone(),
            template: cfg.name.clone(),
            attributes: cfg.attributes.clone(),
            connection_limit: cfg.connection_limit,
            password_valid_days: cfg.password_valid_days,
            environments: cfg.environments.clone(),
            non_production_only: cfg.non_production_only,
            member_of,
            grants,
            database_settings: cfg
                .database_settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            role_settings: cfg
                .role_settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            created_status: cfg
                .created_status
                .clone()
                .unwrap_or_else(|| "user created".into()),
        })
    }

    /// `name@version`, as the audit log and the `x-pgua-profile` header give it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Builds the role name from validated parameter values.
    pub fn role_name(
        &self,
        names: &NamePolicy,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<RoleName, ProfileInputError> {
        let mut out = self.template.clone();
        for (param, kind) in &self.params {
            let raw = get(param).ok_or_else(|| ProfileInputError::Missing(param.clone()))?;
            let value = match kind {
                ParamKind::Name => names.role(&raw)?.to_string(),
                ParamKind::NamePart => names.name_part("name part", &raw).map_err(|_| {
                    ProfileInputError::Invalid(format!(
                        "{param} '{raw}' may hold only letters, digits, '_', '.' or '-'"
                    ))
                })?,
                ParamKind::Port => raw
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        ProfileInputError::Invalid(format!(
                            "{param} '{raw}' must be a number 1-65535"
                        ))
                    })?
                    .to_string(),
            };
            out = out.replace(&format!("{{{param}}}"), &value);
        }
        Ok(names.role(&out)?)
    }
}

/// Why a profile's parameters were refused.
#[derive(Debug, thiserror::Error)]
pub enum ProfileInputError {
    /// A declared parameter is absent.
    #[error("missing parameter: {0}")]
    Missing(String),
    /// A value does not fit its kind.
    #[error("{0}")]
    Invalid(String),
    /// The resulting name is not acceptable.
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Every `{placeholder}` is a declared parameter and every parameter is used.
fn check_template(template: &str, params: &BTreeMap<String, ParamKind>) -> Result<(), String> {
    let mut rest = template;
    let mut used = Vec::new();
    while let Some(start) = rest.find('{') {
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in name template '{template}'"))?;
        let param = &rest[start + 1..start + end];
        if !params.contains_key(param) {
            return Err(format!(
                "name template '{template}' uses {{{param}}}, which is not in params"
            ));
        }
        used.push(param.to_owned());
        rest = &rest[start + end + 1..];
    }
    if let Some(unused) = params.keys().find(|p| !used.contains(p)) {
        return Err(format!(
            "parameter '{unused}' is not used in the name template"
        ));
    }
    Ok(())
}

/// `[policy] privileged_attributes` and `[profiles]` of the configuration, validated.
#[derive(Clone, Debug, Default)]
pub struct Profiles(BTreeMap<String, Arc<Profile>>);

impl Profiles {
    /// The built-in profiles with the configured ones laid over them (same name replaces,
    /// `enabled = false` removes, new names add).
    pub fn load(
        configured: &BTreeMap<String, ProfileConfig>,
        names: &NamePolicy,
        privileged_allowed: &[Attribute],
    ) -> Result<Self, String> {
        let mut all: BTreeMap<String, ProfileConfig> =
            toml::from_str(BUILTIN_PROFILES).map_err(|e| format!("built-in profiles: {e}"))?;
        for (name, cfg) in configured {
            if cfg.enabled == Some(false) {
                all.remove(name);
            } else {
                all.insert(name.clone(), cfg.clone());
            }
        }
        let mut out = BTreeMap::new();
        for (name, cfg) in &all {
            out.insert(
                name.clone(),
                Arc::new(Profile::build(name, cfg, names, privileged_allowed)?),
            );
        }
        Ok(Self(out))
    }

    /// The profile behind `/api/v1/users/<name>`.
    pub fn get(&self, name: &str) -> Option<Arc<Profile>> {
        self.0.get(name).cloned()
    }

    /// All profiles, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.0.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<Profiles, String> {
        let configured: BTreeMap<String, ProfileConfig> =
            toml::from_str(extra).map_err(|e| e.to_string())?;
        Profiles::load(&configured, &NamePolicy::default(), &[])
    }

    #[test]
    fn the_six_builtins_load() {
        let p = load("").unwrap();
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["app", "app-k8s", "dba", "devlead", "devqa", "readonly"]
        );
        assert_eq!(p.get("dba").unwrap().created_status, "dba user created");
    }

    #[test]
    fn templated_names_are_built_and_validated() {
        let p = load("").unwrap().get("app").unwrap();
        let names = NamePolicy::default();
        let get = |k: &str| match k {
            "servername" => Some("Web01".to_owned()),
            "port" => Some("8080".to_owned()),
            _ => None,
        };
        assert_eq!(p.role_name(&names, get).unwrap().as_str(), "web01_8080");
        let bad = |k: &str| {
            (k == "servername")
                .then(|| "web;01".to_owned())
                .or(Some("1".into()))
        };
        assert!(p.role_name(&names, bad).is_err());
        assert!(matches!(
            p.role_name(&names, |_| None),
            Err(ProfileInputError::Missing(_))
        ));
    }

    #[test]
    fn config_can_replace_remove_and_add_profiles() {
        let p = load(
            r#"
            [devlead]
            enabled = false
            [etl]
            description = "batch jobs"
            params = { job = "name-part" }
            name = "etl_{job}"
            attributes = ["LOGIN"]
            connection_limit = 5
            password_valid_days = 30
            "#,
        )
        .unwrap();
        assert!(p.get("devlead").is_none());
        assert_eq!(p.get("etl").unwrap().connection_limit, Some(5));
    }

    #[test]
    fn bad_profiles_are_refused_with_reasons() {
        for (cfg, why) in [
            ("[x]\nname = \"a_{b}\"\n", "not in params"),
            ("[x]\nname = \"a\"\nparams = { b = \"name\" }\n", "not used"),
            (
                "[x]\nname = \"a\"\nattributes = [\"SUPERUSER\"]\n",
                "privileged_attributes",
            ),
            ("[reset]\nname = \"a\"\n", "operation"),
            (
                "[x]\nname = \"a\"\nattributes = [\"GOD\"]\n",
                "unknown variant",
            ),
            (
                "[x]\nname = \"a\"\nconnection_limit = 99999\n",
                "connection_limit",
            ),
            (
                "[x]\nname = \"a\"\ndatabase_settings = { \"x;y\" = \"1\" }\n",
                "setting name",
            ),
        ] {
            let e = load(cfg).unwrap_err();
            assert!(e.contains(why), "{cfg}: {e}");
        }
    }

    #[test]
    fn the_version_changes_with_the_definition() {
        let a = load("").unwrap().get("devqa").unwrap().version.clone();
        let b = load(
            "[devqa]\nname = \"{username}\"\nparams = { username = \"name\" }\nconnection_limit = 21\n",
        )
        .unwrap()
        .get("devqa")
        .unwrap()
        .version
        .clone();
        assert_ne!(a, b);
        assert_eq!(a.len(), 8);
    }
}
