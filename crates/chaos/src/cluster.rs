//! The system under test: a private Kafka + PostgreSQL (deploy/local/stack.sh with its own state
//! dir and ports), one gateway on a fixed port, and a set of sinkers.

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

/// A private stack, torn down on drop.
pub struct Stack {
    script: PathBuf,
    envs: Vec<(String, String)>,
    pub kafka_port: u16,
    pub pg_port: u16,
    state_dir: PathBuf,
}

impl Stack {
    pub fn start(repo: &Path, state_dir: PathBuf) -> anyhow::Result<Self> {
        let (kafka_port, controller, sasl, pg_port) = (free_port()?, free_port()?, free_port()?, free_port()?);
        let envs = vec![
            ("SLUICE_STATE_DIR".to_owned(), state_dir.display().to_string()),
            ("KAFKA_PORT".to_owned(), kafka_port.to_string()),
            ("KAFKA_CONTROLLER_PORT".to_owned(), controller.to_string()),
            ("KAFKA_SASL_PORT".to_owned(), sasl.to_string()),
            ("PG_PORT".to_owned(), pg_port.to_string()),
        ];
        let stack = Self { script: repo.join("deploy/local/stack.sh"), envs, kafka_port, pg_port, state_dir };
        stack.run(&["up"])?;
        Ok(stack)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
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
}

impl Proc {
    pub fn spawn(bin_dir: &Path, log_dir: &Path, name: &str, binary: &str, args: &[String]) -> anyhow::Result<Self> {
        let log = File::create(log_dir.join(format!("{name}.log")))?;
        let child = Command::new(bin_dir.join(binary))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {binary} from {}", bin_dir.display()))?;
        Ok(Self { name: name.to_owned(), child, stopped_by_harness: false })
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
