//! The baseline the benchmarks compare the gateway with: the design of the article sluice
//! answers. `POST /v1/events` takes the same bodies as the gateway (one JSON event or an
//! array), validates them with the same rules, then runs one `INSERT` per event, each in its
//! own transaction (autocommit), and answers 202 only after the last commit. Same table, same
//! primary key, same answer shape: only the write path differs.

use std::{net::SocketAddr, time::Duration};

use axum::{body::Bytes, extract::State, http::StatusCode, response::IntoResponse, routing::post, Json, Router};
use chrono::Utc;
use clap::Parser;
use serde_json::{json, Value};
use sluice_core::Event;
use sqlx::{postgres::PgPoolOptions, PgPool};

/// Synchronous-write baseline for the benchmarks (not part of sluice).
#[derive(Parser)]
#[command(name = "sync-baseline", version, about)]
struct Args {
    #[arg(long, env = "SYNC_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Database connections: one per request in flight, as a thread-per-request API server has.
    #[arg(long, default_value_t = 64)]
    pool_size: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = PgPoolOptions::new()
        .max_connections(args.pool_size)
        .acquire_timeout(Duration::from_secs(60))
        .connect(&args.database_url)
        .await?;
    sinker_schema(&pool).await?;
    let app = Router::new().route("/v1/events", post(ingest)).with_state(pool);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// The same table as the sinker's migrations create.
async fn sinker_schema(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS events (id uuid PRIMARY KEY, type text NOT NULL, key text, ts timestamptz NOT NULL,
         received_at timestamptz NOT NULL, data jsonb NOT NULL, inserted_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(pool)
    .await
    .map(|_| ())
}

async fn ingest(State(pool): State<PgPool>, body: Bytes) -> impl IntoResponse {
    let received_at = Utc::now();
    let values = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        Ok(single) => vec![single],
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"code": "invalid_json", "message": e.to_string()}})),
            )
        }
    };
    let mut events = Vec::with_capacity(values.len());
    for value in values {
        match Event::from_api(value, received_at) {
            Ok(e) => events.push(e),
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": {"code": "invalid_event", "message": e.message}})),
                )
            }
        }
    }
    for e in &events {
        let result = sqlx::query(
            "INSERT INTO events (id, type, key, ts, received_at, data) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(e.id)
        .bind(&e.event_type)
        .bind(&e.key)
        .bind(e.ts)
        .bind(e.received_at)
        .bind(Value::Object(e.data.clone()))
        .execute(&pool)
        .await;
        if let Err(error) = result {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": {"code": "database", "message": error.to_string()}})),
            );
        }
    }
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    (StatusCode::ACCEPTED, Json(json!({"accepted": ids.len(), "ids": ids})))
}
