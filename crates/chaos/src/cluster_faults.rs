//! The faults of the cluster profiles: leader kill, two brokers down, paused processes,
//! database connections killed mid-commit, and network stalls and cuts through the proxies.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use rand::{rngs::StdRng, Rng};
use sqlx::Connection;
use tokio::time::Instant;

use crate::{
    load::{self, Ledger},
    observe,
    schedule::{Fault, NetTarget},
    System,
};

/// What the cluster faults did, for the report.
#[derive(Debug, Default)]
pub struct Tally {
    /// kill -9 of the busiest leader: new leaders elected and writes accepted again.
    pub leader_failovers_survived: u64,
    pub leader_failovers: u64,
    /// Longest time from a leader kill to a leader for every partition.
    pub longest_election: Duration,
    /// Two brokers down: times the gateway answered again (202) by itself afterwards.
    pub below_min_isr_recoveries: u64,
    pub below_min_isr_runs: u64,
    pub longest_recovery: Duration,
    /// Batches of a woken (SIGSTOP'd past its session) sinker refused by the offset fence.
    pub zombie_writes_refused: u64,
    /// Revocations a woken sinker logged as lost (it knew it had lost its partitions).
    pub lost_revocations: u64,
    /// COMMITs delivered to PostgreSQL whose answer the proxy withheld and then cut.
    pub commits_answer_cut: u64,
    pub sinker_pauses: u64,
    pub gateway_pauses: u64,
    /// Sinker backends terminated, and those of them terminated while running COMMIT.
    pub backends_terminated: u64,
    pub commits_cut: u64,
    /// Connections the proxies cut (after a stall).
    pub pg_connections_cut: u64,
    pub kafka_connections_cut: u64,
    /// What went wrong in a fault itself (no new leader, no recovery, ...): discrepancies.
    pub problems: Vec<String>,
}

/// Polls `ok` every 250 ms until it holds or `bound` passes; returns the time it took.
async fn poll_until<F, Fut>(bound: Duration, mut ok: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < bound {
        if ok().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

async fn partitions(
    brokers: &str,
    topic: &str,
) -> anyhow::Result<std::collections::HashMap<i32, observe::PartitionReplicas>> {
    let (b, t) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || observe::partitions(&b, &t)).await?
}

fn accepted_requests(ledger: &Mutex<Ledger>) -> u64 {
    ledger.lock().map(|l| l.statuses.get("202").copied().unwrap_or(0)).unwrap_or(0)
}

pub(crate) async fn inject(
    sys: &mut System<'_>,
    fault: &Fault,
    rng: &mut StdRng,
    ledger: &Arc<Mutex<Ledger>>,
    tally: &mut Tally,
) -> anyhow::Result<String> {
    let brokers = sys.stack.brokers();
    match fault {
        Fault::KillLeader { down } => {
            let parts = partitions(&brokers, &sys.topic).await?;
            let (victim, led) = observe::busiest_leader(&parts).context("no partition has a leader")?;
            let victim_arg = victim.to_string();
            sys.stack.run(&["broker-kill", &victim_arg])?;
            let killed = Instant::now();
            tally.leader_failovers += 1;
            let elected = poll_until(Duration::from_secs(30), || async {
                partitions(&brokers, &sys.topic)
                    .await
                    .is_ok_and(|p| p.values().all(|r| r.leader >= 0 && r.leader != victim))
            })
            .await;
            // Writes accepted again: 202s for requests answered after the election.
            let before = accepted_requests(ledger);
            let resumed =
                poll_until(Duration::from_secs(30), || async { accepted_requests(ledger) > before + 6 }).await;
            tokio::time::sleep(down.saturating_sub(killed.elapsed())).await;
            sys.stack.run(&["broker-start", &victim_arg])?;
            let in_sync = poll_until(Duration::from_secs(90), || async {
                partitions(&brokers, &sys.topic).await.is_ok_and(|p| p.values().all(|r| r.isr.contains(&victim)))
            })
            .await;
            match (elected, resumed) {
                (Some(e), Some(_)) => {
                    tally.leader_failovers_survived += 1;
                    tally.longest_election = tally.longest_election.max(e);
                }
                _ => tally.problems.push(format!(
                    "leader kill of broker {victim}: new leaders {elected:?}, writes accepted again {resumed:?}"
                )),
            }
            if in_sync.is_none() {
                tally
                    .problems
                    .push(format!("broker {victim} not back in every partition's ISR 90 s after its restart"));
            }
            Ok(format!(
                "killed broker {victim} (leader of {led} partitions): all led elsewhere after {elected:?}, 202s again after {resumed:?}; restarted, in sync after {in_sync:?}"
            ))
        }
        Fault::TwoBrokersDown { down } => {
            let parts = partitions(&brokers, &sys.topic).await?;
            let first = observe::busiest_leader(&parts).map_or(1, |(b, _)| b);
            let others: Vec<i32> = (1..=3).filter(|b| *b != first).collect();
            let second = others[rng.random_range(0..others.len())];
            tally.below_min_isr_runs += 1;
            for b in [first, second] {
                sys.stack.run(&["broker-kill", &b.to_string()])?;
            }
            // Requests in flight when the brokers died may still have been acknowledged; from
            // a second later on, none may be.
            tokio::time::sleep(Duration::from_secs(1)).await;
            ledger.lock().map(|mut l| l.below_min_isr = true).ok();
            let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
            let url = sys.ingest_url();
            let window = Instant::now();
            while window.elapsed() < *down {
                load::probe(&client, &url, ledger).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            ledger.lock().map(|mut l| l.below_min_isr = false).ok();
            let restarting = Instant::now();
            for b in [first, second] {
                sys.stack.run(&["broker-start", &b.to_string()])?;
            }
            let restart_took = restarting.elapsed();
            let recovered =
                poll_until(Duration::from_secs(120), || async { load::probe(&client, &url, ledger).await == "202" })
                    .await;
            let gateway_alive = sys.gateway.as_mut().is_some_and(|g| g.exited().is_none());
            match recovered {
                Some(t) if gateway_alive => {
                    tally.below_min_isr_recoveries += 1;
                    tally.longest_recovery = tally.longest_recovery.max(t);
                }
                _ => tally.problems.push(format!(
                    "brokers {first} and {second} back: gateway accepting again {recovered:?}, gateway alive {gateway_alive}"
                )),
            }
            let statuses =
                ledger.lock().map(|l| format!("{:?}", crate::sorted(&l.below_min_isr_statuses))).unwrap_or_default();
            Ok(format!(
                "killed brokers {first} and {second} for {down:?} (answers meanwhile, all runs so far: {statuses}); restarted in {restart_took:.1?}, the same gateway accepted again {recovered:.1?} later"
            ))
        }
        Fault::PauseSinker { pause } => {
            while sys.sinkers.len() < 2 {
                sys.spawn_sinker()?;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            let i = rng.random_range(0..sys.sinkers.len());
            let name = sys.sinkers[i].name.clone();
            let url = sys.sinkers[i].metrics_url.clone().context("sinker without a metrics address")?;
            let conflicts = "sinker_offset_conflicts_total";
            let rebalances = "sinker_rebalances_total";
            let before = observe::scrape(&url, conflicts).await.unwrap_or(0.0);
            let rebalances_before = observe::scrape(&url, rebalances).await.unwrap_or(0.0);
            let lost_before = sys.sinkers[i].log_count("lost=true");
            sys.sinkers[i].signal("STOP")?;
            tokio::time::sleep(*pause).await;
            sys.sinkers[i].signal("CONT")?;
            tally.sinker_pauses += 1;
            // Rejoin: a revocation and a new assignment seen, and partitions owned again.
            let rejoined = poll_until(Duration::from_secs(60), || async {
                observe::scrape(&url, rebalances).await.is_some_and(|n| n >= rebalances_before + 2.0)
                    && observe::scrape(&url, "sinker_partitions_assigned").await.is_some_and(|n| n > 0.0)
            })
            .await;
            let lost = sys.sinkers[i].log_count("lost=true").saturating_sub(lost_before);
            tally.lost_revocations += lost as u64;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = observe::scrape(&url, conflicts).await.unwrap_or(before);
            let refused = (after - before).max(0.0) as u64;
            tally.zombie_writes_refused += refused;
            if rejoined.is_none() {
                tally.problems.push(format!("{name} did not own partitions again within 60 s of SIGCONT"));
            }
            Ok(format!(
                "{name} stopped for {pause:?} (session timeout 6 s), continued: {lost} revocations as lost on waking, {refused} stale batches refused by the fence, owns partitions again after {rejoined:?}"
            ))
        }
        Fault::PauseGateway { pause } => {
            let gateway = sys.gateway.as_ref().context("no gateway")?;
            gateway.signal("STOP")?;
            tokio::time::sleep(*pause).await;
            gateway.signal("CONT")?;
            tally.gateway_pauses += 1;
            let ready = poll_until(Duration::from_secs(30), || async {
                reqwest::get(format!("http://127.0.0.1:{}/readyz", sys.gateway_port))
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await;
            if ready.is_none() {
                tally.problems.push("gateway not ready within 30 s of SIGCONT".into());
            }
            Ok(format!("gateway stopped for {pause:?}, continued, ready after {ready:?}"))
        }
        Fault::KillDbConnections { during } => {
            let url = format!("{}?application_name=chaos-harness", sys.admin_database_url);
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            let start = Instant::now();
            let (mut killed, mut in_commit) = (0u64, 0u64);
            while start.elapsed() < *during {
                let rows: Vec<(bool, Option<bool>)> = sqlx::query_as(
                    "SELECT coalesce(state = 'active' AND query ILIKE 'commit%', false), pg_terminate_backend(pid)
                       FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()
                        AND backend_type = 'client backend'
                        AND application_name <> 'chaos-harness'",
                )
                .fetch_all(&mut conn)
                .await?;
                killed += rows.len() as u64;
                in_commit += rows.iter().filter(|(c, _)| *c).count() as u64;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tally.backends_terminated += killed;
            tally.commits_cut += in_commit;
            Ok(format!("terminated {killed} sinker backends in {during:?}, {in_commit} of them while running COMMIT"))
        }
        Fault::CutCommit { times } => {
            let proxy = sys.pg_proxy.as_ref().context("no proxy to postgres")?;
            let mut done = 0;
            for _ in 0..*times {
                proxy.cut_after(b"COMMIT", Duration::from_millis(300));
                if poll_until(Duration::from_secs(15), || async { !proxy.cut_after_armed() }).await.is_some() {
                    done += 1;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tally.commits_answer_cut += done;
            Ok(format!(
                "{done} of {times} COMMITs delivered to postgres, their answers withheld and the connections cut"
            ))
        }
        Fault::Network { target, stall } => {
            let proxies: Vec<&crate::proxy::Proxy> = match target {
                NetTarget::Postgres => sys.pg_proxy.iter().collect(),
                NetTarget::Kafka => sys.kafka_proxies.iter().collect(),
            };
            anyhow::ensure!(!proxies.is_empty(), "no proxy for {target:?}");
            let before: u64 = proxies.iter().map(|p| p.cut_connections()).sum();
            for p in &proxies {
                p.stall();
            }
            tokio::time::sleep(*stall).await;
            for p in &proxies {
                p.cut();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let cut = proxies.iter().map(|p| p.cut_connections()).sum::<u64>() - before;
            match target {
                NetTarget::Postgres => tally.pg_connections_cut += cut,
                NetTarget::Kafka => tally.kafka_connections_cut += cut,
            }
            Ok(format!("sinkers' connections to {target:?} stalled for {stall:?}, then {cut} cut"))
        }
        other => anyhow::bail!("{other:?} is not a cluster fault"),
    }
}
