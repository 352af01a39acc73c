//! Adoption of the stored offsets written before `sink_offsets` recorded the consumer group.
//!
//! The migration `20261204000001_sink_offsets_by_group` keyed the fence by (consumer group,
//! topic, partition) and gave the rows it found the group `''`: "written before groups were
//! recorded". Before that, the fence of a topic could hold one writer group only, so those rows
//! are the progress of exactly one group. The first sinker group that starts without rows of its
//! own for the topic takes them over, and resumes from them instead of from Kafka's offsets.
//!
//! Invariants:
//! - one statement adopts all of a topic's `''` rows or none of them; only a group that has no
//!   row of its own for the topic adopts, so once one group adopted, no other can (there are no
//!   `''` rows left, and nothing writes new ones);
//! - it runs at start, before the consumer subscribes, so no assignment reads the group's
//!   offsets before the adoption;
//! - it is idempotent and safe when several sinkers (of one group or of several) start at once:
//!   the UPDATE locks the rows it changes, and a concurrent one waits, re-reads them, no longer
//!   finds them `''` and adopts nothing.

use sqlx::PgExecutor;

/// The group that rows written before groups were recorded carry (the migration's default).
pub const UNRECORDED_GROUP: &str = "";

/// Gives `group` the topic's rows written before groups were recorded, if it has none of its
/// own for the topic. Returns how many rows it adopted (0: nothing to adopt, or adopted before,
/// or another group did). Runs on a pool, a connection or inside a transaction.
pub async fn adopt_unrecorded_offsets<'e>(
    db: impl PgExecutor<'e>,
    group: &str,
    topic: &str,
) -> Result<u64, sqlx::Error> {
    debug_assert_ne!(group, UNRECORDED_GROUP, "config validation refuses an empty group");
    let adopted = sqlx::query(
        "UPDATE sink_offsets SET consumer_group = $1
          WHERE consumer_group = $3 AND topic = $2
            AND NOT EXISTS (SELECT 1 FROM sink_offsets WHERE consumer_group = $1 AND topic = $2)",
    )
    .bind(group)
    .bind(topic)
    .bind(UNRECORDED_GROUP)
    .execute(db)
    .await?;
    Ok(adopted.rows_affected())
}
