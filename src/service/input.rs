//! The parameters of one call, whichever way they came (query string, form or JSON body).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};

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

/// Named string parameters of a call.
#[derive(Clone, Debug, Default)]
pub struct Input(BTreeMap<String, String>);

impl Input {
    /// Builds input from name/value pairs; later pairs win.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(pairs.into_iter().collect())
    }

    /// Adds or replaces a parameter.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// The raw value, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The raw value; a 400 when absent.
    pub fn required(&self, name: &'static str) -> Result<&str> {
        self.get(name)
            .ok_or_else(|| Error::MissingParam(name.to_owned()))
    }

    /// A boolean flag: absent is false; `true/1/yes/on` and `false/0/no/off` are accepted.
    /// An empty value is refused: `dry_run=` must not quietly mean a real change.
    pub fn flag(&self, name: &str) -> Result<bool> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "0" | "no" | "off") => Ok(false),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some(other) => Err(Error::Invalid(format!(
                "{name} must be true or false, not '{other}'"
            ))),
        }
    }

    /// A time ([`parse_time`]), if present.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>> {
        self.get(name)
            .map(|raw| {
                parse_time(raw).ok_or_else(|| {
                    Error::Invalid(format!("{name} '{raw}' must be RFC 3339 or YYYY-MM-DD"))
                })
            })
            .transpose()
    }

    /// A whole number within `range`, if present.
    pub fn number<T>(&self, name: &str, range: RangeInclusive<T>) -> Result<Option<T>>
    where
        T: FromStr + PartialOrd + Display,
    {
        self.get(name)
            .map(|raw| {
                raw.trim()
                    .parse::<T>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "{name} '{raw}' must be a number {}-{}",
                            range.start(),
                            range.end()
                        ))
                    })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(value: &str) -> Result<bool> {
        Input::from_pairs([("dry_run".to_owned(), value.to_owned())]).flag("dry_run")
    }

    #[test]
    fn flags_take_the_usual_words_and_refuse_anything_else() {
        for yes in ["true", "1", "yes", "on", "TRUE"] {
            assert!(flag(yes).unwrap(), "{yes}");
        }
        for no in ["false", "0", "no", "off"] {
            assert!(!flag(no).unwrap(), "{no}");
        }
        assert!(!Input::default().flag("dry_run").unwrap());
        for bad in ["", "maybe", "2", "t"] {
            let err = flag(bad).unwrap_err();
            assert_eq!(
                err.status(),
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{bad}"
            );
        }
    }

    #[test]
    fn times_and_numbers_are_read_or_refused() {
        let input = |v: &str| Input::from_pairs([("x".to_owned(), v.to_owned())]);
        let t = input("2027-01-02T03:04:05+02:00")
            .time("x")
            .unwrap()
            .unwrap();
        assert_eq!(t.to_rfc3339(), "2027-01-02T01:04:05+00:00");
        let d = input(" 2027-01-02 ").time("x").unwrap().unwrap();
        assert_eq!(d.to_rfc3339(), "2027-01-02T00:00:00+00:00");
        assert!(input("tomorrow").time("x").is_err());
        assert_eq!(Input::default().time("x").unwrap(), None);

        assert_eq!(input(" 30 ").number("x", 1..=3650u32).unwrap(), Some(30));
        for bad in ["0", "3651", "-1", "1.5", "ten", ""] {
            let err = input(bad).number("x", 1..=3650u32).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("x '{bad}' must be a number 1-3650")
            );
        }
        assert_eq!(Input::default().number("x", 1..=3650u32).unwrap(), None);
    }
}
