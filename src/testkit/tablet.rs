//! `cairn tablet` agents of a [`Cluster`], each with its real mariadbd in its own
//! directory: how to start one ([`TabletSpec`]), the running process
//! ([`TabletProcess`], killed with its mysqld on drop) and SQL through its socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_topo::testkit::free_port;
use cairn_topo::Topo;

use super::{Cluster, Wait, WaitError};

impl Cluster {
    /// Describes a tablet to spawn; `spawn_tablet` starts it.
    pub fn tablet(&self, uid: u32, keyspace: &str, shard: &str) -> anyhow::Result<TabletSpec> {
        Ok(TabletSpec {
            uid,
            keyspace: keyspace.into(),
            shard: shard.into(),
            tablet_type: "replica".into(),
            dir: self.dir.path().join(format!("tablet-{uid}")),
            mysql_port: free_port().context("picking a mysql port")?,
            extra: vec![],
            env: vec![],
        })
    }

    /// Starts `cairn tablet` for `spec`, logging to `<dir>.agent.log`.
    pub fn spawn_tablet(&self, spec: &TabletSpec) -> anyhow::Result<TabletProcess> {
        let log_path = spec.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log2 = log.try_clone().context("duplicating the log handle")?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("tablet")
            .args(self.global_args())
            .args(["--tablet-uid", &spec.uid.to_string()])
            .args([
                "--init-keyspace",
                &spec.keyspace,
                "--init-shard",
                &spec.shard,
            ])
            .args(["--init-tablet-type", &spec.tablet_type])
            .arg("--tablet-dir")
            .arg(&spec.dir)
            .args(["--mysql-port", &spec.mysql_port.to_string()])
            .args(&self.storage_flags)
            .envs(self.storage_env.iter().map(|(k, v)| (k, v)))
            .args(["--innodb-buffer-pool-size", "32M"])
            .args(&spec.extra)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CAIRN_REPLICATION_PASSWORD", "test-repl-pw")
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Fast health by default; a spec that sets either flag (a benchmark at the
        // defaults) sets both itself.
        let sets_health = spec.extra.iter().any(|a| {
            ["--health-interval", "--health-ttl"]
                .iter()
                .any(|f| a == f || a.starts_with(&format!("{f}=")))
        });
        if !sets_health {
            cmd.args(["--health-interval", "1s", "--health-ttl", "4s"]);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        Ok(TabletProcess {
            spec: spec.clone(),
            child: Some(child),
        })
    }
}

/// How to start one tablet.
#[derive(Debug, Clone)]
pub struct TabletSpec {
    /// `--tablet-uid` (cell is the default `zone1`).
    pub uid: u32,
    /// `--init-keyspace`/`--init-shard`.
    pub keyspace: String,
    pub shard: String,
    /// `--init-tablet-type`.
    pub tablet_type: String,
    /// `--tablet-dir`.
    pub dir: PathBuf,
    /// `--mysql-port`.
    pub mysql_port: u16,
    /// More flags.
    pub extra: Vec<String>,
    /// Environment of the agent on top of the test's (e.g. fault injection).
    pub env: Vec<(String, String)>,
}

impl TabletSpec {
    /// `zone1-<uid>` zero-padded, as the contract prints it.
    pub fn alias(&self) -> String {
        format!("zone1-{:010}", self.uid)
    }

    /// The agent's log file (beside the tablet dir, so restores don't touch it).
    pub fn log_path(&self) -> PathBuf {
        let mut p = self.dir.clone().into_os_string();
        p.push(".agent.log");
        PathBuf::from(p)
    }
}

/// A running agent; killed with its mysqld on drop.
pub struct TabletProcess {
    /// How it was started (to restart it the same way).
    pub spec: TabletSpec,
    /// The agent process; `None` once it was reaped.
    child: Option<Child>,
}

impl TabletProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `kill -9` of the agent only (its mysqld keeps running, as in production).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (clean shutdown); returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("agent not running")
        };
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().context("waiting for the agent")? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("agent did not stop within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the agent process exited (and with what).
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for the agent to exit on its own (e.g. refusing to start); its status.
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let what = format!("agent {} to exit", self.spec.alias());
        let waited = Wait::new(what, timeout)
            .every(Duration::from_millis(100))
            .until(|| {
                let st = self.try_exit();
                async move { Ok(st) }
            })
            .await;
        waited.map_err(|e| anyhow::anyhow!("{e}:\n{}", self.log_tail(20)))
    }

    /// The pid mysqld wrote, if its pid file exists.
    pub fn mysqld_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.spec.dir.join("mysqld.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The agent's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.spec.log_path()).unwrap_or_default()
    }

    /// Last lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the tablet's Health says mysqld is up and it serves.
    pub async fn wait_healthy(&mut self, topo: &Topo, timeout: Duration) -> anyhow::Result<()> {
        let alias = self
            .spec
            .alias()
            .parse()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let what = format!("tablet {} healthy", self.spec.alias());
        let waited = Wait::new(what, timeout)
            .fail_fast()
            .until(|| {
                let exited = self.try_exit().map(|st| {
                    anyhow::anyhow!(
                        "agent {} exited ({st}) before becoming healthy:\n{}",
                        self.spec.alias(),
                        self.log_tail(30)
                    )
                });
                let alias = &alias;
                async move {
                    if let Some(e) = exited {
                        return Err(e);
                    }
                    let healthy = matches!(
                        topo.get_tablet_info(alias).await,
                        Ok(Some(info)) if info.health.as_ref().is_some_and(|h| h.mysqld_up && h.serving)
                    );
                    Ok(healthy.then_some(()))
                }
            })
            .await;
        waited.map_err(|e| {
            // A timeout (not the agent's exit, which carries its log already).
            if e.is::<WaitError>() {
                anyhow::anyhow!("{e}:\n{}", self.log_tail(30))
            } else {
                e
            }
        })
    }

    /// Waits until `query` (a single value, e.g. `SELECT COUNT(*) FROM app.t`)
    /// returns `want` on this tablet; the error quotes the tablet's log.
    pub async fn wait_value(
        &self,
        query: &str,
        want: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let what = format!("{query} = {want} on {}", self.spec.alias());
        super::wait_for(&what, timeout, || async {
            Ok(self
                .sql(query)
                .ok()
                .filter(|s| s.trim() == want)
                .map(|_| ()))
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.log_tail(30)))
    }

    /// Runs SQL through the tablet's socket with the `mariadb` client; returns stdout
    /// (tab-separated, no headers).
    pub fn sql(&self, sql: &str) -> anyhow::Result<String> {
        mysql_client(&self.spec.dir.join("mysql.sock"), sql)
    }
}

/// Runs SQL with the `mariadb` command-line client over a socket as root.
pub fn mysql_client(socket: &Path, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .args(["-uroot", "-N", "-B", "-e", sql])
        .output()
        .context("running the mariadb client")?;
    if !out.status.success() {
        bail!(
            "sql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for TabletProcess {
    fn drop(&mut self) {
        self.kill9();
        if let Some(pid) = self.mysqld_pid() {
            // SAFETY: kill(2) with a pid read from the tablet's own pid file.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
