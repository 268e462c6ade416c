//! Who may call what: the operations a scope names, scopes, and the principal that
//! authentication produces. A leaf: it knows nothing of how a caller proved who it is.

pub mod jwks;
pub mod jwt;
pub mod oidc;
pub mod session;

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Operations a scope can allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Registry list, profiles, find, all, privileges.
    Read,
    /// Create users (of the allowed profiles).
    Create,
    /// Reset passwords.
    Reset,
    /// Grant, revoke, search-path, alter.
    Grant,
    /// Lock, unlock, expire, renew.
    Lock,
    /// Drop users.
    Drop,
    /// Change the registry and manage API keys.
    RegistryAdmin,
    /// Read and export the audit log.
    AuditRead,
}

impl Operation {
    /// All operations.
    pub const ALL: [Operation; 8] = [
        Operation::Read,
        Operation::Create,
        Operation::Reset,
        Operation::Grant,
        Operation::Lock,
        Operation::Drop,
        Operation::RegistryAdmin,
        Operation::AuditRead,
    ];

    /// The kebab-case name used in scopes and messages.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Reset => "reset",
            Operation::Grant => "grant",
            Operation::Lock => "lock",
            Operation::Drop => "drop",
            Operation::RegistryAdmin => "registry-admin",
            Operation::AuditRead => "audit-read",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s.trim())
    }
}

/// What a principal may do: which environments, operations and profiles (`*`: all).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scopes {
    /// Environments, or `["*"]`.
    pub environments: Vec<String>,
    /// Operations.
    pub operations: Vec<Operation>,
    /// Profiles `create` may use, or `["*"]`.
    pub profiles: Vec<String>,
}

impl Scopes {
    /// Everything: the compatibility Basic user.
    pub fn all() -> Self {
        Self {
            environments: vec!["*".into()],
            operations: Operation::ALL.to_vec(),
            profiles: vec!["*".into()],
        }
    }

    /// [`Scopes::all`], made once for the process.
    pub fn shared_all() -> Arc<Self> {
        static ALL: LazyLock<Arc<Scopes>> = LazyLock::new(|| Arc::new(Scopes::all()));
        ALL.clone()
    }

    fn allows(list: &[String], item: &str) -> bool {
        list.iter().any(|x| x == "*" || x == item)
    }

    /// Whether an environment is in scope.
    pub fn allows_env(&self, env: &str) -> bool {
        Self::allows(&self.environments, env)
    }

    /// Refuses with 403 naming the missing scope: the operation, any environment the call
    /// names (`envs`, a comma-separated list: every one of it), or the profile of a create.
    pub fn check(&self, who: &str, op: Operation, envs: &str, profile: Option<&str>) -> Result<()> {
        let missing = if !self.operations.contains(&op) {
            Some(format!("operation '{}'", op.name()))
        } else if let Some(env) = envs
            .split(',')
            .map(str::trim)
            .find(|e| !e.is_empty() && !self.allows_env(e))
        {
            Some(format!("environment '{env}'"))
        } else {
            profile
                .filter(|p| !Self::allows(&self.profiles, p))
                .map(|p| format!("profile '{p}'"))
        };
        match missing {
            Some(what) => Err(Error::Forbidden(format!(
                "'{who}' lacks the scope for {what}"
            ))),
            None => Ok(()),
        }
    }
}

/// An authenticated caller and what it may do.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Basic user name, `key:<name>` for an API key, or a JWT binding's principal.
    pub name: String,
    /// Its scopes, shared with every request it makes (a request copies a pointer).
    pub scopes: Arc<Scopes>,
    /// The verified token behind a JWT caller; none for Basic and API keys.
    pub identity: Option<Identity>,
}

/// Who stands behind a JWT caller: recorded in every audit record of its calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The token's `iss`.
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The token's `jti`, if it has one.
    pub jti: Option<String>,
    /// The binding that matched.
    pub binding: String,
}

impl Identity {
    /// `jwt iss=… sub=… jti=… binding=…`, as the audit log shows it beside the principal.
    pub fn audit_text(&self) -> String {
        format!(
            "jwt iss={} sub={} jti={} binding={}",
            self.issuer,
            self.subject,
            self.jti.as_deref().unwrap_or("-"),
            self.binding
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_what_is_missing() {
        let s = Scopes {
            environments: vec!["dev".into(), "qa".into()],
            operations: vec![Operation::Read, Operation::Create],
            profiles: vec!["devqa".into()],
        };
        let ok = "dev,qa";
        assert!(s.check("ci", Operation::Create, ok, Some("devqa")).is_ok());
        let prod = "dev, prod";
        let e = s
            .check("ci", Operation::Create, prod, Some("devqa"))
            .unwrap_err();
        assert!(e.to_string().contains("environment 'prod'"), "{e}");
        let e = s.check("ci", Operation::Drop, ok, None).unwrap_err();
        assert!(e.to_string().contains("operation 'drop'"));
        let e = s
            .check("ci", Operation::Create, ok, Some("dba"))
            .unwrap_err();
        assert!(e.to_string().contains("profile 'dba'"));
    }
}
