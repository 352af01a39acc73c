//! The gateway's background tasks (the lag watcher, the readiness watcher) run for the life of
//! the process. None may die quietly: if one ends, by a panic or by returning, the process
//! logs an error and exits non-zero, and its supervisor (systemd, Kubernetes) restarts it.
//! A gateway that still answers /healthz but no longer throttles or checks the broker would be
//! worse than one that restarts.

use std::collections::HashMap;

use tokio::task::{Id, JoinSet};

/// Background tasks by name; [`Self::first_exit`] resolves when any of them ends.
#[derive(Default)]
pub struct Background {
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl Background {
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits for the first task to end and says which and how. Pending forever when empty.
    pub async fn first_exit(&mut self) -> anyhow::Error {
        let (id, panic) = match self.set.join_next_with_id().await {
            Some(Ok((id, ()))) => (id, None),
            Some(Err(error)) => (error.id(), Some(sluice_core::task::describe_exit(error))),
            None => return std::future::pending().await,
        };
        let name = self.names.get(&id).copied().unwrap_or("unnamed");
        match panic {
            None => anyhow::anyhow!("background task `{name}` stopped; it must run for the life of the process"),
            Some(how) => anyhow::anyhow!("background task `{name}` {how}"),
        }
    }

    /// Stops every task (at shutdown).
    pub fn abort_all(&mut self) {
        self.set.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported() {
        let mut tasks = Background::default();
        tasks.spawn("forever", std::future::pending());
        tasks.spawn("boom", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("cannot convert float seconds to Duration");
        });
        let error = tasks.first_exit().await;
        assert_eq!(error.to_string(), "background task `boom` panicked: cannot convert float seconds to Duration");
        tasks.abort_all();
    }

    #[tokio::test]
    async fn a_task_that_returns_is_reported_by_name() {
        let mut tasks = Background::default();
        tasks.spawn("forever", std::future::pending());
        tasks.spawn("lag watcher", async {});
        let error = tasks.first_exit().await;
        assert!(error.to_string().contains("`lag watcher` stopped"), "{error}");
    }
}
