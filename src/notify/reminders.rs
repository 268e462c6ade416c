//! Reminders of passwords about to expire: every so often each registered server is asked
//! for roles whose `VALID UNTIL` falls within the next N days, and each such role is
//! announced at most once a day.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Event, EventKind};
use crate::service::App;
use crate::store::RegistryEntry;

/// How long a reminded role is left alone.
const REMIND_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// Roles are server-wide, so a server registered under several databases is asked once.
type RoleKey = (String, u16, String);

/// Starts the reminder task when reminders are configured; it ends with the application.
pub fn spawn(app: &Arc<App>) {
    let Some((days, interval)) = app.notifier.expiry_reminders() else {
        return;
    };
    let app: Weak<App> = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut reminded: HashMap<RoleKey, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(app) = app.upgrade() else { return };
            reminded.retain(|_, at| at.elapsed() < REMIND_EVERY);
            check(&app, days, &mut reminded).await;
        }
    });
}

async fn check(app: &App, days: u32, reminded: &mut HashMap<RoleKey, Instant>) {
    let entries = match app.store.registry_list().await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "expiry reminders: cannot read the registry");
            return;
        }
    };
    let mut servers = HashSet::new();
    for entry in entries.into_iter().filter(|e| e.active) {
        if !servers.insert((entry.hostname.clone(), entry.port)) {
            continue;
        }
        let roles = match expiring_roles(app, &entry, days).await {
            Ok(roles) => roles,
            Err(e) => {
                tracing::warn!(
                    env = %entry.env, database = %entry.db_name, error = %e,
                    "expiry reminders: cannot read roles"
                );
                continue;
            }
        };
        for (role, valid_until) in roles {
            let key = (entry.hostname.clone(), entry.port, role.clone());
            if reminded.contains_key(&key) {
                continue;
            }
            reminded.insert(key, Instant::now());
            app.notifier.publish(reminder(&entry, role, valid_until));
        }
    }
}

async fn expiring_roles(
    app: &App,
    entry: &RegistryEntry,
    days: u32,
) -> Result<Vec<(String, DateTime<Utc>)>, crate::error::Error> {
    let client = app.targets.connect(entry).await?;
    let rows = client
        .query(
            "SELECT rolname::text, extract(epoch FROM rolvaliduntil)::float8 \
             FROM pg_catalog.pg_roles \
             WHERE rolvaliduntil > now() \
               AND rolvaliduntil <= now() + make_interval(days => $1) \
               AND rolname !~ '^pg_' \
             ORDER BY rolvaliduntil, rolname",
            &[&(days as i32)],
        )
        .await
        .map_err(|e| crate::target::classify(&e))?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let epoch: f64 = row.get(1);
            let at = DateTime::from_timestamp(epoch.floor() as i64, 0)?;
            Some((row.get(0), at))
        })
        .collect())
}

fn reminder(entry: &RegistryEntry, role: String, valid_until: DateTime<Utc>) -> Event {
    Event {
        event: EventKind::Expiring,
        operation: "expiring".into(),
        outcome: "reminder".into(),
        env: entry.env.clone(),
        database: entry.db_name.clone(),
        role,
        principal: "pg-user-api".into(),
        client_addr: String::new(),
        request_id: String::new(),
        time: Utc::now(),
        detail: format!("password valid until {}", valid_until.to_rfc3339()),
        error: None,
    }
}
