//! The typed parameters of every operation. The edge builds them (the HTTP layer from the
//! query string or a JSON or form body, the CLI from its flags), the OpenAPI document is
//! generated from them (`IntoParams`), and the service takes nothing else: a misspelt
//! parameter cannot reach it.
//!
//! Values arrive as text (`dry_run=yes`, `"port": 8080` both read as text first), so flags
//! and numbers are read by the helpers in [`text`], which keep the API's wording of errors.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde::de::value::{self, MapDeserializer};
use serde::de::{DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use utoipa::{IntoParams, ToSchema};

use crate::error::{Error, Result};

/// A time as RFC 3339, or a `YYYY-MM-DD` date (midnight UTC).
pub fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.to_utc())
        .or_else(|_| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        })
        .ok()
}

/// A boolean flag: `true/1/yes/on` and `false/0/no/off`. An empty value is refused:
/// `dry_run=` must not quietly mean a real change.
pub fn parse_flag(name: &str, raw: &str) -> Result<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "false" | "0" | "no" | "off" => Ok(false),
        "true" | "1" | "yes" | "on" => Ok(true),
        other => Err(Error::Invalid(format!(
            "{name} must be true or false, not '{other}'"
        ))),
    }
}

/// A time ([`parse_time`]) or the error that names the parameter.
pub fn parse_time_param(name: &str, raw: &str) -> Result<DateTime<Utc>> {
    parse_time(raw)
        .ok_or_else(|| Error::Invalid(format!("{name} '{raw}' must be RFC 3339 or YYYY-MM-DD")))
}

/// Reads `T` from a call's parameters, one value per name (the edge decides which of a
/// repeated name's values counts). A missing required parameter is a 400 (`missing
/// parameter: …`), any other misfit a 422.
pub fn from_params<T: DeserializeOwned>(params: BTreeMap<String, String>) -> Result<T> {
    let fields = MapDeserializer::new(params.into_iter().map(|(name, value)| (name, Text(value))));
    T::deserialize(fields).map_err(|e: value::Error| {
        let msg = e.to_string();
        match msg
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            Some(name) => Error::MissingParam(name.to_owned()),
            None => Error::Invalid(msg),
        }
    })
}

/// A parameter's value: text, which an optional field takes as present (what a query
/// string's `name=value` gives). Flags and numbers are read from it by [`text`].
struct Text(String);

impl IntoDeserializer<'_, value::Error> for Text {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Text {
    type Error = value::Error;

    fn deserialize_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, value::Error> {
        visitor.visit_string(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, value::Error> {
        visitor.visit_some(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// Readers of flags and bounded numbers written as text, for `#[serde(deserialize_with)]`;
/// each keeps the parameter's name for its error message.
pub mod text {
    use serde::{Deserialize, Deserializer, de::Error as _};

    macro_rules! flags {
        ($($name:ident),*) => {$(
            #[doc = concat!("`", stringify!($name), "` as a flag (absent: false).")]
            pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
                let raw = String::deserialize(d)?;
                super::parse_flag(stringify!($name), &raw).map_err(D::Error::custom)
            }
        )*};
    }
    flags!(dry_run, future, admin);

    macro_rules! optional_flags {
        ($($fn:ident: $name:literal),*) => {$(
            #[doc = concat!("`", $name, "` as a flag, when present.")]
            pub fn $fn<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
                let raw = String::deserialize(d)?;
                super::parse_flag($name, &raw).map(Some).map_err(D::Error::custom)
            }
        )*};
    }
    optional_flags!(inherit: "inherit", set: "set", active: "active");

    /// A number as text, trimmed; a whole one written with a fraction (`23.0`, as JSON
    /// Schema still counts an integer) as the whole number.
    fn whole(raw: &str) -> std::borrow::Cow<'_, str> {
        let raw = raw.trim();
        match raw.parse::<f64>() {
            Ok(f) if raw.contains('.') && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                std::borrow::Cow::Owned(format!("{}", f as i64))
            }
            _ => std::borrow::Cow::Borrowed(raw),
        }
    }

    macro_rules! numbers {
        ($($fn:ident: $name:literal, $t:ty, $lo:expr, $hi:expr);* $(;)?) => {$(
            #[doc = concat!("`", $name, "`, a whole number in ", stringify!($lo), "..=", stringify!($hi), ".")]
            pub fn $fn<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$t>, D::Error> {
                let raw = String::deserialize(d)?;
                whole(&raw)
                    .parse::<$t>()
                    .ok()
                    .filter(|n| ($lo..=$hi).contains(n))
                    .map(Some)
                    .ok_or_else(|| {
                        D::Error::custom(format!(
                            "{} '{raw}' must be a number {}-{}",
                            $name, $lo, $hi
                        ))
                    })
            }
        )*};
    }
    numbers!(
        renew_days: "days", u32, 1, 36_500;
        key_days: "days", u32, 1, 3650;
        port: "port", u16, 1, u16::MAX;
        after_id: "after_id", i64, 0, i64::MAX;
        limit: "limit", i64, 0, crate::service::params::MAX_EXPORT_PAGE;
    );

    /// `connection_limit`: -1 (no limit) to 10000.
    pub fn connection_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
        let raw = String::deserialize(d)?;
        whole(&raw)
            .parse::<i32>()
            .ok()
            .filter(|l| (-1..=10_000).contains(l))
            .map(Some)
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "connection_limit '{raw}' must be -1 (no limit) to 10000"
                ))
            })
    }
}

/// One or several targets: `env=dev,qa` and/or `database=a,b` run on each pair.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Target {
    /// Environment, or a comma-separated list.
    #[param(min_length = 1)]
    pub env: String,
    /// Database name, or a comma-separated list.
    #[param(min_length = 1)]
    pub database: String,
}

impl Target {
    /// One target.
    pub fn new(env: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            env: env.into(),
            database: database.into(),
        }
    }
}

/// The parameters `P` of a call on a target (or several).
#[derive(Clone, Debug, Deserialize)]
pub struct On<P> {
    /// Where it runs.
    #[serde(flatten)]
    pub target: Target,
    /// What it does there.
    #[serde(flatten)]
    pub params: P,
}

/// Records per page of an audit export at most.
pub const MAX_EXPORT_PAGE: i64 = 10_000;

/// A call that needs nothing but its target.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Nothing {}

/// Create a user of a profile: the profile's own parameters (documented per profile).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreateUser {
    /// Return the SQL that would run (passwords redacted), change nothing.
    #[serde(default, deserialize_with = "text::dry_run")]
    pub dry_run: bool,
    /// The profile's parameters by name (`username`, `servername`, …).
    #[serde(flatten)]
    #[param(ignore)]
    pub params: BTreeMap<String, String>,
}

/// A user looked up or reported on.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Lookup {
    /// The role.
    #[param(min_length = 1)]
    pub username: String,
}

/// A change of an existing role that needs nothing more: reset, lock, unlock.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoleChange {
    /// The role.
    #[param(min_length = 1)]
    pub username: String,
    /// Return the SQL that would run (passwords redacted), change nothing.
    #[serde(default, deserialize_with = "text::dry_run")]
    pub dry_run: bool,
}

/// search-path.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchPath {
    /// The role.
    #[param(min_length = 1)]
    pub username: String,
    /// Schemas, comma-separated (`$user` allowed); default `public`.
    #[param(min_length = 1)]
    pub schema: Option<String>,
    /// Return the SQL that would run, change nothing.
    #[serde(default, deserialize_with = "text::dry_run")]
    pub dry_run: bool,
}

/// expire.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Expire {
    /// The role.
    #[param(min_length = 1)]
    pub username: String,
    /// RFC 3339, `YYYY-MM-DD`, `now` (default) or `infinity`.
    #[param(min_length = 1)]
    pub valid_until: Option<String>,
    /// Return the SQL that would run, change nothing.
    #[serde(default, deserialize_with = "text::dry_run")]
    pub dry_run: bool,
}

/// renew: `valid_until` or `days`; neither: forever.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Renew {
    /// The role.
    #[param(min_length = 1)]
    pub username: String,
    /// RFC 3339, `YYYY-MM-DD` or `infinity`.
    #[param(min_length = 1)]
    pub valid_until: Option<String>,
    /// Days from now.
    #[serde(default, deserialize_with = "text::renew_days")]
    #[param(minimum = 1, maximum = 36500)]
    pub days: Option<u32>,
    /// Return the SQL that would run, change nothing.
    #[serde(default, deserialize_with = "text::dry_run")]
    pub dry_run: bool,
}

/// alter.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Alter {
    /// The role.
    #[param(min_length = 1)]
    pub username: String,
    /// -1 (no limit) to 10000.
    #[serde(default, deserialize_with = "text::connection_limit")]
    #[param(minimum = -1, maximum = 10000)]
    pub connection_limit: Option<i32>,
    /// Comma-separated: CREATEDB, NOCREATEDB, INHERIT, NOINHERIT.
    pub attributes: Option<String>,
    /// Return the SQL that would run, change nothing.
    #[serde(default, deserialize_with = "text::dry_run")]
    pub dry_run: bool,
}

/// drop.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Drop {
    /// The role.
    #[param(min_length = 1)]
    pub username: String,
    /// The role that receives what the dropped one owns; default: each database's owner.
    #[param(min_length = 1)]
    pub successor: Option<String>,
    /// Return the SQL that would run, change nothing.
    #[serde(default, deserialize_with = "text::dry_run")]
    pub dry_run: bool,
}

/// What a grant or revoke is on: a kind of object, or a role whose membership it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum GrantOn {
    /// Privileges on objects of this kind.
    Objects(crate::plan::grants::GrantOn),
    /// Membership of `role`.
    Role(Membership),
}

/// `on=role`: membership of a group role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// Membership of `role`.
    Role,
}

/// One enum of words, the kinds of object and `role`: the kinds are listed only in
/// [`crate::plan::grants::GrantOn`].
impl utoipa::PartialSchema for GrantOn {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{RefOr, schema::Schema};
        let mut schema = <crate::plan::grants::GrantOn as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(words)) = &mut schema {
            words
                .enum_values
                .get_or_insert_default()
                .push("role".into());
        }
        schema
    }
}

impl ToSchema for GrantOn {}

impl GrantOn {
    /// `on` as sent (any case, spaces around it ignored).
    pub fn parse(raw: &str) -> Result<Self> {
        let on = raw.trim().to_ascii_lowercase();
        serde_json::from_value(serde_json::Value::String(on.clone())).map_err(|_| {
            Error::Invalid(format!(
                "on '{on}' must be database, schema, tables, sequences, functions or role"
            ))
        })
    }
}

/// grant and revoke: privileges (`on` = database, schema, tables, sequences, functions) or
/// membership (`on=role`, which needs `role`).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Grant {
    /// The role.
    #[param(min_length = 1)]
    pub username: String,
    /// What the privileges are on, or `role` for membership.
    #[param(inline, value_type = GrantOn)]
    pub on: String,
    /// Schemas, comma-separated, or `*`.
    pub schema: Option<String>,
    /// Object names in that one schema; empty: all.
    pub objects: Option<String>,
    /// Comma-separated privileges from the closed set of that kind.
    pub privileges: Option<String>,
    /// Also objects created later (default privileges).
    #[serde(default, deserialize_with = "text::future")]
    pub future: bool,
    /// With `future`: only objects this role creates.
    pub owner: Option<String>,
    /// With `on=role`: the group role (required there, ignored otherwise).
    pub role: Option<String>,
    /// With `on=role`: WITH ADMIN.
    #[serde(default, deserialize_with = "text::admin")]
    pub admin: bool,
    /// With `on=role`: WITH INHERIT (PostgreSQL 16).
    #[serde(default, deserialize_with = "text::inherit")]
    pub inherit: Option<bool>,
    /// With `on=role`: WITH SET (PostgreSQL 16).
    #[serde(default, deserialize_with = "text::set")]
    pub set: Option<bool>,
    /// Return the SQL that would run, change nothing.
    #[serde(default, deserialize_with = "text::dry_run")]
    pub dry_run: bool,
}

/// A registry entry's settings (`host` is required to add).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegistryFields {
    /// Server host name (required to add).
    #[serde(alias = "hostname")]
    #[param(min_length = 1)]
    pub host: Option<String>,
    /// Server port; default 5432.
    #[serde(default, deserialize_with = "text::port")]
    #[param(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    /// Free text.
    pub notes: Option<String>,
    /// Whether operations may run against it.
    #[serde(default, deserialize_with = "text::active")]
    pub active: Option<bool>,
    /// disable, prefer, require or verify-full.
    #[param(pattern = r"^(disable|prefer|require|verify-full)$")]
    pub sslmode: Option<String>,
}

/// A registry entry to add, change or remove, and (add, update) its settings.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Entry {
    /// Environment.
    #[param(min_length = 1)]
    pub env: String,
    /// Database name.
    #[param(min_length = 1)]
    pub database: String,
    /// Its settings (documented as [`RegistryFields`]).
    #[serde(flatten)]
    #[param(ignore)]
    pub fields: RegistryFields,
}

/// A new API key's scopes and expiry (no more than the creator's own).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyScopes {
    /// Comma-separated environments, or `*`.
    #[param(min_length = 1)]
    pub environments: String,
    /// Comma-separated: read, create, reset, grant, lock, drop, registry-admin, audit-read,
    /// or `*`; default `read`.
    #[param(
        pattern = r"^\s*(\*|read|create|reset|grant|lock|drop|registry-admin|audit-read)(\s*,\s*(\*|read|create|reset|grant|lock|drop|registry-admin|audit-read))*\s*$"
    )]
    pub operations: Option<String>,
    /// Profiles `create` may use, comma-separated, or `*`; default `*`.
    pub profiles: Option<String>,
    /// Expiry: RFC 3339 or `YYYY-MM-DD`.
    #[param(min_length = 1)]
    pub expires: Option<String>,
    /// Expiry in days from now.
    #[serde(default, deserialize_with = "text::key_days")]
    #[param(minimum = 1, maximum = 3650)]
    pub days: Option<u32>,
}

/// An API key to create: its name, owner, scopes and expiry.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NewKey {
    /// Unique name.
    #[param(pattern = r"^[A-Za-z0-9_.-]{1,63}$")]
    pub name: String,
    /// Who answers for it.
    #[param(pattern = r"\S")]
    pub owner: String,
    /// What it may do.
    #[serde(flatten)]
    #[param(ignore)]
    pub scopes: KeyScopes,
}

/// The key to revoke.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyName {
    /// The key's name.
    #[param(min_length = 1)]
    pub name: String,
}

/// Which registry entries a check covers: all, or those of env and/or database.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckFilter {
    /// Only entries of this environment.
    pub env: Option<String>,
    /// Only entries of this database name.
    pub database: Option<String>,
}

/// What the audit export returns.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{records, next_after_id}`.
    #[default]
    Json,
    /// Spreadsheet-safe CSV with a header row.
    Csv,
}

/// An RFC 3339 time, or a `YYYY-MM-DD` date (midnight UTC).
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the two forms `parse_time` reads; never built
pub enum Time {
    /// An RFC 3339 time.
    At(DateTime<Utc>),
    /// A date: midnight UTC.
    Day(NaiveDate),
}

/// Audit filters and paging.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// json (default) or csv.
    #[param(inline, value_type = Option<Format>)]
    pub format: Option<String>,
    /// From this time (RFC 3339 or `YYYY-MM-DD`).
    #[param(value_type = Option<Time>, inline)]
    pub since: Option<String>,
    /// Until this time (RFC 3339 or `YYYY-MM-DD`).
    #[param(value_type = Option<Time>, inline)]
    pub until: Option<String>,
    /// Environment.
    pub env: Option<String>,
    /// Database.
    pub database: Option<String>,
    /// Role.
    pub username: Option<String>,
    /// Operation (create:app, reset, …).
    pub operation: Option<String>,
    /// Caller.
    pub principal: Option<String>,
    /// Records after this id (the `x-next-after-id` of the previous page).
    #[serde(default, deserialize_with = "text::after_id")]
    #[param(minimum = 0)]
    pub after_id: Option<i64>,
    /// Page size.
    #[serde(default, deserialize_with = "text::limit")]
    #[param(minimum = 0, maximum = 10000)]
    pub limit: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameters `p` names, a later value of a name winning (as the HTTP edge reads them).
    fn pairs(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn flags_take_the_usual_words_and_refuse_anything_else() {
        let flag = |v: &str| from_params::<RoleChange>(pairs(&[("username", "u"), ("dry_run", v)]));
        for yes in ["true", "1", "yes", "on", "TRUE"] {
            assert!(flag(yes).unwrap().dry_run, "{yes}");
        }
        for no in ["false", "0", "no", "off"] {
            assert!(!flag(no).unwrap().dry_run, "{no}");
        }
        let absent: RoleChange = from_params(pairs(&[("username", "u")])).unwrap();
        assert!(!absent.dry_run);
        for bad in ["", "maybe", "2", "t"] {
            let err = flag(bad).unwrap_err();
            assert_eq!(
                (err.status(), err.to_string()),
                (
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    format!("dry_run must be true or false, not '{bad}'")
                ),
            );
        }
    }

    #[test]
    fn a_missing_parameter_is_named_and_targets_come_with_the_rest() {
        let err =
            from_params::<On<RoleChange>>(pairs(&[("env", "dev"), ("database", "d")])).unwrap_err();
        assert_eq!(err.to_string(), "missing parameter: username");
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        let call: On<CreateUser> = from_params(pairs(&[
            ("env", "dev"),
            ("database", "d"),
            ("servername", "web"),
            ("dry_run", "yes"),
            ("env", "qa"),
        ]))
        .unwrap();
        assert_eq!(
            (call.target.env.as_str(), call.target.database.as_str()),
            ("qa", "d")
        );
        assert!(call.params.dry_run);
        assert_eq!(
            call.params.params.get("servername").map(String::as_str),
            Some("web")
        );
        assert!(!call.params.params.contains_key("env"));
    }

    #[test]
    fn on_is_a_kind_of_object_or_role_and_its_refusal_names_each_documented_word() {
        use crate::plan::grants::GrantOn as Kind;
        assert_eq!(
            GrantOn::parse(" Tables ").unwrap(),
            GrantOn::Objects(Kind::Tables)
        );
        assert_eq!(
            GrantOn::parse("role").unwrap(),
            GrantOn::Role(Membership::Role)
        );
        let err = GrantOn::parse("views").unwrap_err().to_string();
        let listed = err
            .strip_prefix("on 'views' must be ")
            .unwrap()
            .replace(" or ", ", ");
        let listed: Vec<&str> = listed.split(", ").collect();
        let utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(words)) =
            <GrantOn as utoipa::PartialSchema>::schema()
        else {
            panic!("the words are an enum");
        };
        let kinds: Vec<String> = words
            .enum_values
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, kinds);
        for word in listed {
            GrantOn::parse(word).unwrap();
        }
    }

    #[test]
    fn times_and_numbers_are_read_or_refused() {
        let t = parse_time_param("x", "2027-01-02T03:04:05+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2027-01-02T01:04:05+00:00");
        let d = parse_time(" 2027-01-02 ").unwrap();
        assert_eq!(d.to_rfc3339(), "2027-01-02T00:00:00+00:00");
        assert!(parse_time_param("x", "tomorrow").is_err());

        let days = |v: &str| from_params::<KeyScopes>(pairs(&[("environments", "*"), ("days", v)]));
        assert_eq!(days(" 30 ").unwrap().days, Some(30));
        assert_eq!(days("30.0").unwrap().days, Some(30));
        for bad in ["0", "3651", "-1", "1.5", "ten", "", "NaN"] {
            assert_eq!(
                days(bad).unwrap_err().to_string(),
                format!("days '{bad}' must be a number 1-3650")
            );
        }
    }
}
