//! Quoting for the only two ways untrusted text may enter SQL: as an identifier or as a literal.

use postgres_protocol::escape::{escape_identifier, escape_literal};

/// Quotes `name` as an SQL identifier (`"a""b"`); safe for any input without NUL.
pub fn ident(name: &str) -> String {
    escape_identifier(name)
}

/// Quotes `value` as an SQL string literal; safe whatever `standard_conforming_strings` says.
pub fn literal(value: &str) -> String {
    escape_literal(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_double_embedded_quotes() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident("x; DROP ROLE y"), "\"x; DROP ROLE y\"");
    }

    #[test]
    fn literals_double_embedded_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert!(literal("a\\b").starts_with(" E'"));
    }
}
