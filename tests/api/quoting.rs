//! Property: any string is either rejected by validation or round-trips through PostgreSQL.

use std::sync::OnceLock;

use pgua::plan::NamePolicy;
use pgua::plan::sql::{ident, literal};
use proptest::prelude::*;

use crate::support::clusters;

/// One connection for all cases; its runtime keeps the connection task running.
fn client() -> &'static (tokio::runtime::Runtime, tokio_postgres::Client) {
    static CLIENT: OnceLock<(tokio::runtime::Runtime, tokio_postgres::Client)> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = rt.block_on(clusters().dev.superuser("postgres"));
        (rt, client)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn quoted_literals_and_identifiers_round_trip(s in "\\PC{0,70}|[\"'\\\\;$ a-z\\x01-\\x1f]{0,70}") {
        let (rt, c) = client();
        rt.block_on(async {
            if !s.contains('\0') {
                let row = c.query_one(&format!("SELECT {}::text", literal(&s)), &[]).await.unwrap();
                prop_assert_eq!(row.get::<_, String>(0), s.clone());
            }
            if !s.is_empty() && !s.contains('\0') && s.len() <= 63 {
                let stmt = c.prepare(&format!("SELECT 1 AS {}", ident(&s))).await.unwrap();
                prop_assert_eq!(stmt.columns()[0].name(), s.as_str());
            }
            // A name the policy accepts is stored exactly as validated, never truncated.
            if let Ok(role) = NamePolicy::default().role(&s) {
                let stmt = c.prepare(&format!("SELECT 1 AS {}", ident(role.as_str()))).await.unwrap();
                prop_assert_eq!(stmt.columns()[0].name(), role.as_str());
                prop_assert_eq!(role.as_str(), s.to_ascii_lowercase());
            }
            Ok(())
        })?;
    }
}
