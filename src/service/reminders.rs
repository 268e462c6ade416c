//! Reminders of passwords about to expire: each registered server is asked for roles whose
//! `VALID UNTIL` falls within the next N days, and each such role is announced at most once
//! a day, across all replicas (the announcement is claimed in the store).

use chrono::{DateTime, Utc};
use std::collections::HashSet;

use super::App;
use crate::notify::{Event, EventKind};
use crate::store::RegistryEntry;
use crate::target::catalog;

/// The store's namespace of reminder claims: one per server and role.
const CLAIMS: &str = "reminder";

/// How long a reminded role is left alone.
const REMIND_EVERY: chrono::Duration = chrono::Duration::days(1);

/// Looks at every active server once and announces the roles expiring within `days`.
pub async fn remind(app: &App, days: u32) {
    let entries = match app.store.registry_list().await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "expiry reminders: cannot read the registry");
            return;
        }
    };
    // Roles are server-wide, so a server registered under several databases is asked once.
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
        for role in roles {
            if first_today(app, &entry, &role.name).await {
                app.notifier
                    .publish(reminder(&entry, role.name, role.valid_until));
            }
        }
    }
}

async fn expiring_roles(
    app: &App,
    entry: &RegistryEntry,
    days: u32,
) -> crate::error::Result<Vec<catalog::ExpiringRole>> {
    let client = app.targets.connect(entry).await?;
    catalog::expiring_roles(&client, days).await
}

/// Claims the role's reminder for a day; the holder is unique to this attempt, so a claim
/// already taken (by any replica) refuses it.
async fn first_today(app: &App, entry: &RegistryEntry, role: &str) -> bool {
    let key = format!("{}:{}:{role}", entry.hostname, entry.port);
    let attempt = uuid::Uuid::new_v4().to_string();
    match app
        .store
        .claim(CLAIMS, &key, &attempt, Utc::now() + REMIND_EVERY)
        .await
    {
        Ok(first) => first,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "expiry reminders: cannot claim a reminder");
            false
        }
    }
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
