//! `cairn coordinator` processes of a [`Cluster`]: spawning one on a port of its
//! own and the running process ([`CoordinatorProcess`], killed on drop).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};
use cairn_topo::testkit::free_port;

use super::{http_get, Cluster};

impl Cluster {
    /// Starts `cairn coordinator --id ID` with an HTTP port of its own, logging to
    /// `coordinator-ID.log` in the cluster dir, with the tests'
    /// [`TEST_MIN_SCHEDULE_PERIOD`](super::TEST_MIN_SCHEDULE_PERIOD) unless `extra`
    /// gives the flag.
    pub fn spawn_coordinator(
        &self,
        id: &str,
        extra: &[&str],
    ) -> anyhow::Result<CoordinatorProcess> {
        self.spawn_coordinator_env(id, extra, &[])
    }

    /// [`Cluster::spawn_coordinator`] with more environment (e.g. a failpoint).
    pub fn spawn_coordinator_env(
        &self,
        id: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<CoordinatorProcess> {
        let port = free_port().context("picking a port")?;
        let log_path = self.dir.path().join(format!("coordinator-{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log2 = log.try_clone().context("duplicating the log handle")?;
        let child = Command::new(&self.bin)
            .arg("coordinator")
            .args(self.global_args())
            .args(["--id", id, "--port", &port.to_string()])
            .args(&self.storage_flags)
            .envs(self.storage_env.iter().map(|(k, v)| (k, v)))
            .args(extra)
            .envs(env.iter().copied())
            .env("CAIRN_MIN_SCHEDULE_PERIOD", super::TEST_MIN_SCHEDULE_PERIOD)
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        Ok(CoordinatorProcess {
            id: id.to_string(),
            port,
            log_path,
            child: Some(child),
        })
    }
}

/// A running coordinator; killed on drop.
pub struct CoordinatorProcess {
    /// `--id`.
    pub id: String,
    /// Its HTTP port.
    pub port: u16,
    /// Where it logs.
    pub log_path: PathBuf,
    /// The process; `None` once reaped.
    child: Option<Child>,
}

impl CoordinatorProcess {
    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit on its own (e.g. at a failpoint); its status.
    pub async fn wait_exit(
        &mut self,
        timeout: std::time::Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let what = format!("coordinator {} to exit", self.id);
        let waited = super::wait_for(&what, timeout, || {
            let st = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            async move { Ok(st) }
        })
        .await;
        match waited {
            Ok(st) => {
                self.child = None;
                Ok(st)
            }
            Err(e) => Err(anyhow::anyhow!("{e}\n{}", self.log_tail(20))),
        }
    }

    /// SIGSTOP / SIGCONT (a frozen leader).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// GET a path of its HTTP endpoint; returns (status, body).
    pub fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(self.port, path)
    }

    /// `/api/v1/status` as JSON.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let (code, body) = self.http_get("/api/v1/status")?;
        if code != 200 {
            bail!("status endpoint answered {code}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Waits until this coordinator leads; the error quotes its log.
    pub async fn wait_leader(&self, timeout: std::time::Duration) -> anyhow::Result<()> {
        super::wait_for("a leader", timeout, || async {
            Ok(self
                .status()
                .ok()
                .filter(|s| s["is_leader"] == true)
                .map(|_| ()))
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.log_tail(20)))
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill9();
    }
}
