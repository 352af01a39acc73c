//! What the database tests share: a fresh, migrated database per test.
//!
//! Needs DATABASE_URL (an account that may create databases), as `make test` provides.

#![allow(dead_code)]

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use sinker::store::{SessionSettings, Store};
use sluice_core::Event;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// A new database with the migrations applied; its pool holds up to 10 connections.
pub async fn fresh_store() -> Store {
    let admin_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://sluice:sluice@127.0.0.1:5432/sluice".into());
    let name = format!("sluice_fence_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create database");
    let base = admin_url.split('?').next().unwrap_or(&admin_url);
    let url = format!("{}/{name}", base.rsplit_once('/').map_or(base, |(b, _)| b));
    let store = Store::connect_lazy(
        &url,
        SessionSettings {
            pool_size: 10,
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        },
    )
    .expect("store");
    store.migrate().await.expect("migrate");
    store
}

pub fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event::from_api(json!({"type": "fence", "data": {"i": i}}), Utc::now()).expect("valid event"))
        .collect()
}

/// Waits until `n` sessions of this database wait on a lock (not a sleep that may be too short).
pub async fn wait_for_lock_waiters(store: &Store, n: i64) {
    let start = std::time::Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(store.pool())
        .await
        .expect("pg_stat_activity");
        if waiting == n {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{n} sessions never waited on a lock ({waiting} did)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
