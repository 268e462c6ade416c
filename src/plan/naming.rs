//! Validated names. Once you hold a [`RoleName`] or [`SchemaName`] it is safe to quote into SQL.
//!
//! Names are folded to lower case first, as PostgreSQL folds the unquoted names the original
//! service sent, so `Alice` and `alice` are the same user everywhere.

use regex::Regex;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1); longer names would be silently truncated.
pub const MAX_NAME_BYTES: usize = 63;

/// The default pattern a folded name must match.
pub const DEFAULT_NAME_PATTERN: &str = r"^[a-z_][a-z0-9_.\-]*$";

/// Role names PostgreSQL reserves or treats as keywords in role positions.
const RESERVED_ROLE_NAMES: &[&str] = &[
    "public",
    "none",
    "current_user",
    "session_user",
    "current_role",
    "all",
];

/// Why a name was rejected; the text is shown to the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Empty after trimming nothing: PostgreSQL has no empty identifiers.
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    /// Longer than PostgreSQL would keep.
    #[error("{what} '{name}' is {len} bytes long; the limit is 63")]
    TooLong {
        what: &'static str,
        name: String,
        len: usize,
    },
    /// Does not match the configured pattern.
    #[error("{what} '{name}' is not allowed: it must match {pattern}")]
    Pattern {
        what: &'static str,
        name: String,
        pattern: String,
    },
    /// A name PostgreSQL reserves.
    #[error("{what} '{name}' is reserved")]
    Reserved { what: &'static str, name: String },
}

/// The rule every caller-supplied name must satisfy.
#[derive(Clone, Debug)]
pub struct NamePolicy {
    pattern: Regex,
}

impl Default for NamePolicy {
    fn default() -> Self {
        Self::new(DEFAULT_NAME_PATTERN).expect("default pattern compiles")
    }
}

impl NamePolicy {
    /// A policy from a regular expression that folded names must match.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            pattern: Regex::new(pattern)?,
        })
    }

    /// The pattern's text, for error messages and `check-config`.
    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }

    fn check(&self, what: &'static str, raw: &str) -> Result<String, NameError> {
        let name = raw.to_ascii_lowercase();
        if name.is_empty() {
            return Err(NameError::Empty { what });
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong {
                what,
                len: name.len(),
                name: shorten(&name),
            });
        }
        // NUL can never reach PostgreSQL; the pattern is configurable, so check it here too.
        if name.contains('\0') || !self.pattern.is_match(&name) {
            return Err(NameError::Pattern {
                what,
                name: shorten(&name),
                pattern: self.pattern.as_str().to_owned(),
            });
        }
        Ok(name)
    }

    /// Validates a role name.
    pub fn role(&self, raw: &str) -> Result<RoleName, NameError> {
        let name = self.check("user name", raw)?;
        if RESERVED_ROLE_NAMES.contains(&name.as_str()) {
            return Err(NameError::Reserved {
                what: "user name",
                name,
            });
        }
        Ok(RoleName(name))
    }

    /// Validates one schema name; `$user` is accepted as PostgreSQL's placeholder.
    pub fn schema(&self, raw: &str) -> Result<SchemaName, NameError> {
        if raw == "$user" {
            return Ok(SchemaName(raw.to_owned()));
        }
        self.check("schema name", raw).map(SchemaName)
    }

    /// Validates a comma-separated search path such as `app, public`.
    pub fn search_path(&self, raw: &str) -> Result<Vec<SchemaName>, NameError> {
        raw.split(',').map(|s| self.schema(s.trim())).collect()
    }

    /// Validates one part of a templated name (`servername`, `farmname`, …): it must be
    /// made of the characters the pattern allows, though it need not start a name itself.
    pub fn name_part(&self, what: &'static str, raw: &str) -> Result<String, NameError> {
        let part = raw.to_ascii_lowercase();
        let ok = !part.is_empty()
            && part.len() <= MAX_NAME_BYTES
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(part)
        } else if part.is_empty() {
            Err(NameError::Empty { what })
        } else {
            Err(NameError::Pattern {
                what,
                name: shorten(&part),
                pattern: "letters, digits, '_', '.' or '-', at most 63 bytes".into(),
            })
        }
    }
}

/// Keeps error messages short when someone sends a megabyte of name.
fn shorten(name: &str) -> String {
    if name.len() <= 80 {
        return name.to_owned();
    }
    let mut end = 80;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}

/// A validated, folded role name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RoleName(String);

impl RoleName {
    /// A name the plan itself makes (a group's), valid by construction.
    pub(super) fn planned(name: String) -> Self {
        RoleName(name)
    }

    /// The name as PostgreSQL stores it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated schema name (or `$user`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaName(String);

impl SchemaName {
    /// The name as PostgreSQL stores it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> NamePolicy {
        NamePolicy::default()
    }

    #[test]
    fn names_are_folded_to_lower_case() {
        assert_eq!(policy().role("Alice").unwrap().as_str(), "alice");
    }

    #[test]
    fn hostile_names_are_rejected() {
        for bad in [
            "",
            "a'b",
            "a\"b",
            "a;b",
            "a b",
            "naïve",
            "1abc",
            "a\0b",
            "x; DROP ROLE postgres",
            &"a".repeat(64),
        ] {
            assert!(policy().role(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sixty_three_bytes_is_the_limit() {
        assert!(policy().role(&"a".repeat(63)).is_ok());
        assert!(matches!(
            policy().role(&"a".repeat(64)),
            Err(NameError::TooLong { len: 64, .. })
        ));
    }

    #[test]
    fn reserved_role_names_are_rejected() {
        for name in ["public", "PUBLIC", "none", "current_user", "session_user"] {
            assert!(matches!(
                policy().role(name),
                Err(NameError::Reserved { .. })
            ));
        }
    }

    #[test]
    fn search_path_accepts_user_placeholder_and_rejects_injection() {
        let path = policy().search_path("$user, App").unwrap();
        let names: Vec<_> = path.iter().map(SchemaName::as_str).collect();
        assert_eq!(names, ["$user", "app"]);
        assert!(policy().search_path("public; CREATE ROLE x").is_err());
        assert!(policy().search_path("public,,app").is_err());
    }

    #[test]
    fn custom_pattern_is_enforced() {
        let p = NamePolicy::new("^svc_[a-z]+$").unwrap();
        assert!(p.role("svc_web").is_ok());
        assert!(p.role("web").is_err());
    }

    #[test]
    fn name_parts_allow_leading_digits_but_nothing_hostile() {
        assert_eq!(policy().name_part("port", "8080").unwrap(), "8080");
        assert!(policy().name_part("servername", "web 01").is_err());
        assert!(policy().name_part("servername", "").is_err());
    }
}
