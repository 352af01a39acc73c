//! The fault schedule: which fault, when. Pure and seeded, so a failing run can be replayed
//! with the seed it printed.

use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 one running sinker (chosen by the seed) and start a replacement.
    KillSinker,
    /// Run this many sinkers from now on (starting or stopping with SIGTERM).
    ScaleSinkers(usize),
    /// Immediate shutdown of PostgreSQL, then a start after `down`.
    RestartPostgres { down: Duration },
    /// Stop the Kafka broker, then start it after `down`.
    RestartKafka { down: Duration },
    /// kill -9 the gateway and start it again after `down`.
    KillGateway { down: Duration },
    /// Hold an ACCESS EXCLUSIVE lock on `events` (the routes profiles: on one of the user
    /// tables the routes write) for this long.
    LockTable { hold: Duration },
    /// Produce this many poison records straight to the topic.
    Poison(usize),
    // --- the cluster profiles' faults (three brokers) -----------------------------------
    /// kill -9 the broker that leads the most partitions of the topic, under load; start it
    /// again after `down`.
    KillLeader { down: Duration },
    /// kill -9 two brokers at once (below min.insync.replicas): the gateway must answer 503,
    /// never 202, and recover by itself once they are back after `down`.
    TwoBrokersDown { down: Duration },
    /// SIGSTOP a sinker for `pause` (longer than its session timeout) while another sinker
    /// takes its partitions, then SIGCONT: its stale writes must be refused by the fence.
    PauseSinker { pause: Duration },
    /// SIGSTOP the gateway for `pause` under load, then SIGCONT.
    PauseGateway { pause: Duration },
    /// `pg_terminate_backend` on every sinker backend in a tight loop for `during`.
    KillDbConnections { during: Duration },
    /// `times` times: let a sinker's COMMIT reach PostgreSQL, withhold the answer and cut the
    /// connection (the commit happened; the sinker cannot know).
    CutCommit { times: usize },
    /// Through the proxy between the sinkers and `target`: stall every connection for
    /// `stall`, then cut them all.
    Network { target: NetTarget, stall: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetTarget {
    Postgres,
    Kafka,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// About a minute of load: every fault once. Part of `make test`.
    Short,
    /// Ten minutes of load, every fault six times. `make chaos`.
    Long,
    /// The three-broker cluster: every cluster fault once, with a few of the others
    /// (about three minutes of load).
    ClusterShort,
    /// The three-broker cluster: three rounds (about eight minutes of load).
    /// `make chaos PROFILE=cluster`.
    Cluster,
    /// The short profile's faults with the routes workload (`routes.rs`): gateway and sinkers
    /// with `--routes`, three event types into two user tables and `events`. Part of `make test`.
    RoutesShort,
    /// The long profile's faults with the routes workload. `make chaos PROFILE=routes`.
    Routes,
    /// Steady load well below capacity for this long, a fault that leaves the gateway and
    /// sinkers running every few minutes, memory sampled, a 429 asked for at the end.
    /// `make soak`.
    Soak(Duration),
}

impl Profile {
    pub fn load_duration(self) -> Duration {
        match self {
            Self::Short | Self::RoutesShort => Duration::from_secs(50),
            Self::Long | Self::Routes => Duration::from_secs(600),
            Self::ClusterShort => Duration::from_secs(CLUSTER_ROUND_SECS),
            Self::Cluster => Duration::from_secs(3 * CLUSTER_ROUND_SECS),
            Self::Soak(duration) => duration,
        }
    }

    /// Runs the gateway and the sinkers with `--routes` and the routes workload.
    pub fn is_routes(self) -> bool {
        matches!(self, Self::RoutesShort | Self::Routes)
    }

    /// Runs on the three-broker cluster.
    pub fn is_cluster(self) -> bool {
        matches!(self, Self::ClusterShort | Self::Cluster)
    }
}

/// Wall time of one round of the cluster faults: they run one after the other, and broker
/// restarts wait for the broker to be back.
const CLUSTER_ROUND_SECS: u64 = 170;

/// Faults at offsets from the start of the load, in time order.
pub fn schedule(profile: Profile, seed: u64) -> Vec<(Duration, Fault)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let jitter = |rng: &mut StdRng, base: u64| Duration::from_millis(base * 1000 + rng.random_range(0..1500));
    // One round of every fault, spread over ~45 s; the kill moments vary with the seed.
    let round = |rng: &mut StdRng, offset: u64| -> Vec<(Duration, Fault)> {
        let at = |rng: &mut StdRng, s: u64| jitter(rng, offset + s);
        vec![
            (at(rng, 2), Fault::Poison(3)),
            (at(rng, 4), Fault::KillSinker),
            (at(rng, 7), Fault::ScaleSinkers(3)),
            (at(rng, 10), Fault::KillSinker),
            (at(rng, 13), Fault::ScaleSinkers(2)),
            (at(rng, 15), Fault::RestartPostgres { down: Duration::from_secs(3) }),
            (at(rng, 21), Fault::Poison(2)),
            (at(rng, 23), Fault::RestartKafka { down: Duration::from_secs(3) }),
            (at(rng, 33), Fault::KillGateway { down: Duration::from_secs(1) }),
            (at(rng, 37), Fault::LockTable { hold: Duration::from_secs(3) }),
            (at(rng, 42), Fault::KillSinker),
            (at(rng, 44), Fault::Poison(2)),
        ]
    };
    let mut faults = match profile {
        Profile::Short | Profile::RoutesShort => round(&mut rng, 0),
        // A round takes about 90 s of wall time (restarts wait for readiness), so rounds start
        // every 100 s.
        Profile::Long | Profile::Routes => (0..6).flat_map(|i| round(&mut rng, i * 100)).collect(),
        Profile::ClusterShort => cluster_round(&mut rng, 0),
        Profile::Cluster => (0..3).flat_map(|i| cluster_round(&mut rng, i * CLUSTER_ROUND_SECS)).collect(),
        Profile::Soak(duration) => soak_faults(duration),
    };
    faults.sort_by_key(|(at, _)| *at);
    faults
}

/// A fault every three minutes (every quarter of the run if shorter), none in the last 30 s;
/// all of them leave the gateway and the sinkers running, so their memory can be followed.
fn soak_faults(duration: Duration) -> Vec<(Duration, Fault)> {
    let every = Duration::from_secs(180).min(duration / 4);
    let secs = Duration::from_secs;
    let kinds = [
        Fault::RestartKafka { down: secs(3) },
        Fault::RestartPostgres { down: secs(3) },
        Fault::LockTable { hold: secs(3) },
        Fault::KillDbConnections { during: secs(5) },
        Fault::Poison(3),
    ];
    let mut faults = Vec::new();
    let mut at = every;
    while !every.is_zero() && at + secs(30) < duration {
        faults.push((at, kinds[faults.len() % kinds.len()].clone()));
        at += every;
    }
    faults
}

/// One round on the cluster. Faults run one after the other; the offsets leave room for the
/// slow ones (a broker restart takes 10-20 s on the small machine).
fn cluster_round(rng: &mut StdRng, offset: u64) -> Vec<(Duration, Fault)> {
    let secs = Duration::from_secs;
    let mut at = |s: u64| Duration::from_millis((offset + s) * 1000 + rng.random_range(0..1500));
    vec![
        (at(1), Fault::ScaleSinkers(2)),
        (at(3), Fault::Poison(3)),
        (at(5), Fault::KillLeader { down: secs(5) }),
        // the session timeout is 6 s: 12 s stopped is well past it
        (at(30), Fault::PauseSinker { pause: secs(12) }),
        (at(55), Fault::KillDbConnections { during: secs(8) }),
        (at(64), Fault::CutCommit { times: 3 }),
        (at(70), Fault::PauseGateway { pause: secs(4) }),
        (at(73), Fault::Network { target: NetTarget::Postgres, stall: secs(5) }),
        (at(81), Fault::Network { target: NetTarget::Kafka, stall: secs(4) }),
        (at(88), Fault::TwoBrokersDown { down: secs(10) }),
        (at(140), Fault::KillSinker),
        (at(143), Fault::Poison(2)),
        (at(146), Fault::KillGateway { down: Duration::from_secs(1) }),
        (at(152), Fault::ScaleSinkers(3)),
        (at(156), Fault::LockTable { hold: Duration::from_secs(3) }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        assert_eq!(schedule(Profile::Short, 7), schedule(Profile::Short, 7));
        assert_ne!(schedule(Profile::Short, 7), schedule(Profile::Short, 8));
    }

    #[test]
    fn every_fault_kind_happens_and_all_within_the_load() {
        for profile in [Profile::Short, Profile::Long, Profile::RoutesShort, Profile::Routes] {
            let s = schedule(profile, 1);
            assert!(s.windows(2).all(|w| w[0].0 <= w[1].0), "sorted");
            assert!(s.last().is_some_and(|(at, _)| *at < profile.load_duration()));
            for kind in
                ["KillSinker", "ScaleSinkers", "RestartPostgres", "RestartKafka", "KillGateway", "LockTable", "Poison"]
            {
                assert!(s.iter().any(|(_, f)| format!("{f:?}").starts_with(kind)), "{kind} in {profile:?}");
            }
        }
        assert_eq!(schedule(Profile::Long, 1).len(), 6 * schedule(Profile::Short, 1).len());
    }

    #[test]
    fn the_cluster_profiles_have_every_cluster_fault_within_the_load() {
        for profile in [Profile::ClusterShort, Profile::Cluster] {
            let s = schedule(profile, 3);
            assert!(profile.is_cluster());
            assert!(s.windows(2).all(|w| w[0].0 <= w[1].0), "sorted");
            assert!(s.last().is_some_and(|(at, _)| *at < profile.load_duration()));
            for kind in [
                "KillLeader",
                "TwoBrokersDown",
                "PauseSinker",
                "PauseGateway",
                "KillDbConnections",
                "CutCommit",
                "Network { target: Postgres",
                "Network { target: Kafka",
                "KillSinker",
                "Poison",
            ] {
                assert!(s.iter().any(|(_, f)| format!("{f:?}").starts_with(kind)), "{kind} in {profile:?}");
            }
            // the single-broker faults that stop the one broker are not on the cluster
            assert!(!s.iter().any(|(_, f)| matches!(f, Fault::RestartKafka { .. })));
        }
        assert!(!Profile::Short.is_cluster() && !Profile::Long.is_cluster());
        assert!(!Profile::Routes.is_cluster() && Profile::Routes.is_routes() && !Profile::Long.is_routes());
    }

    #[test]
    fn the_soak_has_a_fault_every_three_minutes_and_none_at_the_end() {
        let thirty = Duration::from_secs(1800);
        let s = schedule(Profile::Soak(thirty), 1);
        assert_eq!(s.len(), 9, "at 3, 6, ... 27 minutes");
        assert_eq!(s[0].0, Duration::from_secs(180));
        assert!(s.iter().all(|(at, _)| *at + Duration::from_secs(30) < thirty));
        let short = schedule(Profile::Soak(Duration::from_secs(240)), 1);
        assert_eq!(short.iter().map(|(at, _)| at.as_secs()).collect::<Vec<_>>(), vec![60, 120, 180]);
        assert!(!s
            .iter()
            .any(|(_, f)| matches!(f, Fault::KillSinker | Fault::KillGateway { .. } | Fault::ScaleSinkers(_))));
    }
}
