//! The routes profiles' books, on top of the `events` books every profile keeps:
//!
//! - every `page.viewed` id answered 202 is exactly one row of `chaos_views`; none that only
//!   got a 4xx is there, nor any id nobody sent as a page view; unconfirmed ones at most once;
//! - `chaos_view_log` (no key) holds each page view id as many times as requests carrying it
//!   were answered 202, plus at most the unanswered ones: exactly once per accepted record;
//! - every order's row in `chaos_orders` is what its books allow (`orders::OrderBook::check`):
//!   the highest version answered 202, never a version that only got a 4xx, absent once its
//!   delete was answered 202, its columns all from the event of its version; no row for an
//!   order nobody sent;
//! - the poison records only routes refuse are dead letters with the reason they must have
//!   (`mapping_failed`, `no_route`).

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::{
    load::Ledger,
    orders::{OrderRow, Verdict},
    Report,
};

/// Discrepancies listed one by one, at most this many (the count is always reported).
const SHOWN: usize = 10;

pub(crate) async fn check(
    report: &mut Report,
    pool: &sqlx::PgPool,
    ledger: &Ledger,
    markers: &HashMap<String, Option<&'static str>>,
    found: &HashMap<String, String>,
) -> anyhow::Result<()> {
    views(report, pool, ledger).await?;
    view_log(report, pool, ledger).await?;
    orders(report, pool, ledger).await?;
    let wrong: Vec<String> = markers
        .iter()
        .filter_map(|(marker, expected)| {
            let expected = (*expected)?;
            let got = found.get(marker)?;
            (got != expected).then(|| format!("{marker}: {got}, expected {expected}"))
        })
        .collect();
    let routed = markers.values().filter(|r| r.is_some()).count();
    report.check(
        wrong.is_empty(),
        format!(
            "the {routed} poison records only routes refuse carry their reason (mapping_failed, no_route): {wrong:?}"
        ),
    );
    Ok(())
}

async fn views(report: &mut Report, pool: &sqlx::PgPool, ledger: &Ledger) -> anyhow::Result<()> {
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM chaos_views").fetch_one(pool).await?;
    let stored: HashSet<Uuid> =
        sqlx::query_scalar("SELECT view_id FROM chaos_views").fetch_all(pool).await?.into_iter().collect();
    let accepted: HashSet<Uuid> = ledger.accepted.intersection(&ledger.views).copied().collect();
    let missing = accepted.difference(&stored).count();
    report.check(
        missing == 0,
        format!("every page view answered 202 is a chaos_views row: {missing} missing of {}", accepted.len()),
    );
    report.check(
        rows == stored.len() as i64,
        format!("no page view is stored twice: {rows} rows, {} distinct ids", stored.len()),
    );
    let refused = stored.iter().filter(|id| ledger.refused.contains(id)).count();
    report.check(refused == 0, format!("no page view that only got a 4xx is a chaos_views row: {refused} found"));
    let uncertain = stored.iter().filter(|id| ledger.uncertain.contains(id)).count();
    let strangers = stored
        .iter()
        .filter(|id| !ledger.views.contains(id) || !(ledger.accepted.contains(id) || ledger.uncertain.contains(id)))
        .count();
    report.check(strangers == 0, format!("no chaos_views row has an id nobody sent as a page view: {strangers} found"));
    report.say(format!("page views: {} accepted, {uncertain} unconfirmed ones written (once each)", accepted.len()));
    Ok(())
}

async fn view_log(report: &mut Report, pool: &sqlx::PgPool, ledger: &Ledger) -> anyhow::Result<()> {
    let rows: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT view_id, count(*) FROM chaos_view_log GROUP BY view_id").fetch_all(pool).await?;
    let stored: HashMap<Uuid, i64> = rows.into_iter().collect();
    let mut wrong = Vec::new();
    for (id, (accepted, unanswered)) in &ledger.view_answers {
        let n = stored.get(id).copied().unwrap_or(0);
        if n < i64::from(*accepted) || n > i64::from(*accepted) + i64::from(*unanswered) {
            wrong.push(format!("{id}: {n} rows, {accepted} answers 202, {unanswered} unanswered"));
        }
    }
    let strangers = stored.keys().filter(|id| !ledger.view_answers.contains_key(id)).count();
    let accepted: u64 = ledger.view_answers.values().map(|(a, _)| u64::from(*a)).sum();
    let total: i64 = stored.values().sum();
    report.check(
        wrong.is_empty(),
        format!(
            "the keyless chaos_view_log holds each page view once per 202 ({accepted} answers 202, {total} rows), \
             plus at most its unanswered sends: {} wrong {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(SHOWN)]
        ),
    );
    report.check(
        strangers == 0,
        format!("no chaos_view_log row has an id nobody sent as a page view: {strangers} found"),
    );
    Ok(())
}

async fn orders(report: &mut Report, pool: &sqlx::PgPool, ledger: &Ledger) -> anyhow::Result<()> {
    let rows: Vec<(i64, i64, String, String)> =
        sqlx::query_as("SELECT order_id, version, total::text, status FROM chaos_orders").fetch_all(pool).await?;
    let stored: HashMap<i64, OrderRow> =
        rows.into_iter().map(|(id, version, total, status)| (id, OrderRow { version, total, status })).collect();
    let mut verdicts: HashMap<&'static str, usize> = HashMap::new();
    let mut wrong = Vec::new();
    for (order_id, book) in &ledger.orders {
        match book.check(*order_id, stored.get(order_id)) {
            Ok(verdict) => {
                let name = match verdict {
                    Verdict::Exact => "exact",
                    Verdict::Deleted => "deleted",
                    Verdict::NeverAccepted => "never accepted",
                    Verdict::Consistent => "unconfirmed, consistent",
                };
                *verdicts.entry(name).or_default() += 1;
            }
            Err(problem) => wrong.push(problem),
        }
    }
    let mut counts: Vec<_> = verdicts.into_iter().collect();
    counts.sort();
    report.say(format!(
        "orders: {} in the books, {} rows; by verdict {counts:?}; versions answered 202 {}, refused {}, unconfirmed {}",
        ledger.orders.len(),
        stored.len(),
        ledger.orders.values().map(|b| b.accepted.len()).sum::<usize>(),
        ledger.orders.values().map(|b| b.refused.len()).sum::<usize>(),
        ledger.orders.values().map(|b| b.uncertain.len()).sum::<usize>(),
    ));
    let shown: Vec<&String> = wrong.iter().take(SHOWN).collect();
    report.check(
        wrong.is_empty(),
        format!(
            "every order's row is the highest version answered 202 (absent once deleted): {} wrong {shown:?}",
            wrong.len()
        ),
    );
    let strangers: Vec<i64> = stored.keys().filter(|id| !ledger.orders.contains_key(id)).copied().collect();
    report.check(
        strangers.is_empty(),
        format!(
            "no chaos_orders row for an order nobody sent: {} found {:?}",
            strangers.len(),
            &strangers[..strangers.len().min(SHOWN)]
        ),
    );
    Ok(())
}
