//! The parameters of one call, whichever way they came (query string, form or JSON body).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

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
}
