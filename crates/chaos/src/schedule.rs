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
    /// Hold an ACCESS EXCLUSIVE lock on `events` for this long.
    LockTable { hold: Duration },
    /// Produce this many poison records straight to the topic.
    Poison(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// About a minute of load: every fault once. Part of `make test`.
    Short,
    /// Ten minutes of load, every fault six times. `make chaos`.
    Long,
}

impl Profile {
    pub fn load_duration(self) -> Duration {
        match self {
            Self::Short => Duration::from_secs(50),
            Self::Long => Duration::from_secs(600),
        }
    }
}

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
        Profile::Short => round(&mut rng, 0),
        // A round takes about 90 s of wall time (restarts wait for readiness), so rounds start
        // every 100 s.
        Profile::Long => (0..6).flat_map(|i| round(&mut rng, i * 100)).collect(),
    };
    faults.sort_by_key(|(at, _)| *at);
    faults
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
        for profile in [Profile::Short, Profile::Long] {
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
}
