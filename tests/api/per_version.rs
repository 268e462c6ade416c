//! What differs between PostgreSQL versions, checked on whichever version this run uses
//! (`versions.rs` runs the suite on each).

use crate::grants::{call, user, works};
use crate::support::spawn_app;

#[tokio::test]
async fn membership_inherit_and_set_options_follow_the_server_version() {
    let app = spawn_app().await;
    let (name, me) = user(&app).await;
    let group = crate::support::unique("team");
    // A group made by someone else, as the README's admin role set-up hands it over.
    let su = app.clusters.dev.superuser("dev").await;
    su.batch_execute(&format!(
        "CREATE ROLE {group} NOLOGIN;
         GRANT SELECT ON public.orders TO {group};
         GRANT {group} TO pgua_admin WITH ADMIN OPTION;"
    ))
    .await
    .unwrap();
    let options = [("on", "role"), ("role", group.as_str())];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut q = options.to_vec();
        q.extend_from_slice(extra);
        q
    };
    let select = "SELECT * FROM public.orders";
    let set_role = format!("SET ROLE {group}; RESET ROLE");
    if app.clusters.dev.server_version_num().await < 160_000 {
        let r = call(&app, "grant", &name, &with(&[("inherit", "false")])).await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.str("error").contains("PostgreSQL 16"), "{}", r.body);
        assert!(!works(&me, &set_role).await, "nothing was granted");
        return;
    }
    let r = call(
        &app,
        "grant",
        &name,
        &with(&[("inherit", "false"), ("set", "true")]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        !works(&me, select).await,
        "INHERIT FALSE: no privileges of its own"
    );
    assert!(
        works(&me, &format!("SET ROLE {group}; {select}; RESET ROLE")).await,
        "SET TRUE: it may act as the group"
    );
    // Granting again with other options changes them.
    let r = call(
        &app,
        "grant",
        &name,
        &with(&[("inherit", "true"), ("set", "false")]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(works(&me, select).await, "INHERIT TRUE");
    assert!(!works(&me, &set_role).await, "SET FALSE");
    let r = call(&app, "revoke", &name, &options).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!works(&me, select).await, "revoked");
}
