//! The six kinds of user the original service created, as a closed set.

use serde::Serialize;

/// A built-in user profile; each has one endpoint `/api/v1/users/<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Service account `<servername>_<port>`.
    App,
    /// Kubernetes workload `<env_prefix>_<farmname>`.
    AppK8s,
    /// Individual developer or QA engineer.
    Devqa,
    /// Developer lead.
    Devlead,
    /// Read-only reporting user.
    Readonly,
    /// Database administrator.
    Dba,
}

impl Profile {
    /// The endpoint name, also used in the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Profile::App => "app",
            Profile::AppK8s => "app-k8s",
            Profile::Devqa => "devqa",
            Profile::Devlead => "devlead",
            Profile::Readonly => "readonly",
            Profile::Dba => "dba",
        }
    }

    /// Role attributes, from a closed set of keywords.
    pub fn attributes(self) -> &'static str {
        match self {
            Profile::Dba => "LOGIN CREATEDB CREATEROLE",
            _ => "LOGIN",
        }
    }

    /// `CONNECTION LIMIT` of the role.
    pub fn connection_limit(self) -> u32 {
        match self {
            Profile::App | Profile::AppK8s => 200,
            _ => 20,
        }
    }

    /// Individual developer accounts stay out of production unless configured otherwise.
    pub fn non_production_only(self) -> bool {
        matches!(self, Profile::Devqa | Profile::Devlead)
    }

    /// Non-DBA users get `search_path TO public` in the target database, as in the original.
    pub fn sets_search_path(self) -> bool {
        self != Profile::Dba
    }

    /// The read-only profile gets SELECT everywhere and a read-only default transaction.
    pub fn read_only(self) -> bool {
        self == Profile::Readonly
    }

    /// The `status` a successful create reports.
    pub fn created_status(self) -> &'static str {
        match self {
            Profile::Dba => "dba user created",
            _ => "user created",
        }
    }
}
