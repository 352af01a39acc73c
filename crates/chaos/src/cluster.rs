//! The system under test: a private Kafka (one broker, or the three-broker cluster) and
//! PostgreSQL (deploy/local/stack.sh with its own state dir and ports), one gateway on a fixed
//! port, and a set of sinkers.

use std::{
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A first port such that the cluster's twelve ports (base+0..2, +100..102, +200..202,
/// +300..302; see stack.sh) are free now.
fn free_cluster_base() -> anyhow::Result<u16> {
    for _ in 0..50 {
        let base: u16 = rand::random_range(20_000..40_000);
        let all_free = [0u16, 100, 200, 300]
            .iter()
            .flat_map(|o| (0..3).map(move |n| base + o + n))
            .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return Ok(base);
        }
    }
    bail!("no free range of ports for the three-broker cluster")
}

/// A private stack, torn down on drop.
pub struct Stack {
    script: PathBuf,
    envs: Vec<(String, String)>,
    pub kafka_port: u16,
    pub pg_port: u16,
    /// The three-broker cluster's first port, when it is the cluster.
    pub cluster_base: Option<u16>,
    state_dir: PathBuf,
}

impl Stack {
    /// One broker and PostgreSQL (stack.sh up).
    pub fn start(repo: &Path, state_dir: PathBuf) -> anyhow::Result<Self> {
        Self::start_with(repo, state_dir, false)
    }

    /// Three brokers and PostgreSQL (stack.sh up-cluster).
    pub fn start_cluster(repo: &Path, state_dir: PathBuf) -> anyhow::Result<Self> {
        Self::start_with(repo, state_dir, true)
    }

    fn start_with(repo: &Path, state_dir: PathBuf, cluster: bool) -> anyhow::Result<Self> {
        let (kafka_port, controller, sasl, pg_port) = (free_port()?, free_port()?, free_port()?, free_port()?);
        let cluster_base = if cluster { Some(free_cluster_base()?) } else { None };
        let mut envs = vec![
            ("SLUICE_STATE_DIR".to_owned(), state_dir.display().to_string()),
            ("KAFKA_PORT".to_owned(), kafka_port.to_string()),
            ("KAFKA_CONTROLLER_PORT".to_owned(), controller.to_string()),
            ("KAFKA_SASL_PORT".to_owned(), sasl.to_string()),
            ("PG_PORT".to_owned(), pg_port.to_string()),
        ];
        if let Some(base) = cluster_base {
            envs.push(("KAFKA_CLUSTER_PORT".to_owned(), base.to_string()));
        }
        let stack =
            Self { script: repo.join("deploy/local/stack.sh"), envs, kafka_port, pg_port, cluster_base, state_dir };
        stack.run(&[if cluster { "up-cluster" } else { "up" }])?;
        Ok(stack)
    }

    /// Bootstrap servers: the one broker, or all three.
    pub fn brokers(&self) -> String {
        match self.cluster_base {
            Some(base) => (0..3).map(|n| format!("127.0.0.1:{}", base + n)).collect::<Vec<_>>().join(","),
            None => format!("127.0.0.1:{}", self.kafka_port),
        }
    }

    /// Broker `n` (1..=3) of the cluster: its PROXIED listener and the port it advertises for
    /// it (where the harness runs a proxy).
    pub fn proxied_ports(&self, n: u16) -> Option<(u16, u16)> {
        self.cluster_base.map(|base| (base + 200 + n - 1, base + 300 + n - 1))
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://sluice:sluice@127.0.0.1:{}/sluice", self.pg_port)
    }

    pub fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let output = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("run stack.sh {args:?}"))?;
        if !output.status.success() {
            bail!("stack.sh {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// One running binary and how it ended.
pub struct Proc {
    pub name: String,
    child: Child,
    /// Set when the harness itself killed or stopped it.
    pub stopped_by_harness: bool,
    /// The sinker's /metrics URL.
    pub metrics_url: Option<String>,
    log_path: PathBuf,
}

impl Proc {
    pub fn spawn(bin_dir: &Path, log_dir: &Path, name: &str, binary: &str, args: &[String]) -> anyhow::Result<Self> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = File::create(&log_path)?;
        let child = Command::new(bin_dir.join(binary))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {binary} from {}", bin_dir.display()))?;
        Ok(Self { name: name.to_owned(), child, stopped_by_harness: false, metrics_url: None, log_path })
    }

    /// Lines of its log (stderr) containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log_path)
            .map(|log| log.lines().filter(|l| l.contains(needle)).count())
            .unwrap_or(0)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (STOP, CONT, ...) with kill(1).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", self.name);
        Ok(())
    }

    pub fn kill9(&mut self) {
        self.stopped_by_harness = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `grace` for a clean exit; returns whether it exited 0.
    pub async fn terminate(&mut self, grace: Duration) -> bool {
        self.stopped_by_harness = true;
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill9();
        false
    }

    /// `Some(status)` if it exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
