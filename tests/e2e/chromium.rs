//! Headless Chromium (Debian's `chromium` package) for the browser test, driven from its
//! command line: it opens one URL and runs that page until it is closed. No WebDriver, no
//! download: `deploy/local/stack.sh chromium` installs the package when it is missing (make test
//! runs it first; the test runs it too, so `cargo test` alone works).

use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
};

use crate::helpers::{bin_dir, random_name};

/// The chromium binary, installed first if needed (once per test run).
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/local/stack.sh");
            let output = Command::new(&script).arg("chromium").output().expect("run stack.sh chromium");
            assert!(
                output.status.success(),
                "installing chromium failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            assert!(!path.is_empty(), "stack.sh chromium printed no path");
            PathBuf::from(path)
        })
        .clone()
}

/// A running headless Chromium with a fresh profile, showing one page. Closed on drop: its
/// whole process group (browser, renderers, helpers), which it leads, is killed.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    log: PathBuf,
}

impl Chromium {
    pub fn open(url: &str) -> Self {
        let profile = std::env::temp_dir().join(random_name("sluice-chromium"));
        let dir = bin_dir().join("e2e-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = dir.join(format!("{}.log", random_name("chromium")));
        let stderr = File::create(&log).expect("chromium log");
        let child = Command::new(binary())
            .args([
                "--headless",
                // Tests run as root in CI, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-sync",
                "--mute-audio",
                "--password-store=basic",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start chromium: {e}"));
        Self { child, profile, log }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill_group(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
    }
}

impl Drop for Chromium {
    /// The profile is thrown away, so nothing needs a clean exit: kill -9 the group at once.
    fn drop(&mut self) {
        self.kill_group("-KILL");
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
