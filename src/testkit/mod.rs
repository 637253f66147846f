//! Real processes on loopback for integration tests, benchmarks and the
//! local-cluster example: an etcd (from `cairn_topo::testkit`), `cairn tablet` agents
//! each running a real mariadbd in its own temporary directory, and the `cairn` CLI.
//!
//! Everything is cleaned up on drop, even when a test fails: agents and their
//! mysqld (found through the pid file, since a `kill -9`ed agent leaves it behind)
//! are killed, directories removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_topo::testkit::{free_port, EtcdServer};
use cairn_topo::{Topo, TopoConfig};
use tempfile::TempDir;

/// Where the `cairn` binary is: `$CAIRN_BIN`, else next to the running executable
/// (examples live in `target/<profile>/examples/`, tests in `target/<profile>/deps/`).
pub fn cairn_binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("CAIRN_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join("cairn");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
        if dir
            .as_ref()
            .is_some_and(|p| p.file_name().is_some_and(|n| n == "target"))
        {
            break;
        }
    }
    bail!("cannot find the cairn binary; build it (cargo build) or set CAIRN_BIN")
}

/// An etcd plus a scratch directory for tablets and backup storage.
pub struct Cluster {
    /// The topology server.
    pub etcd: EtcdServer,
    /// Holds every tablet dir and the backup storage root.
    pub dir: TempDir,
    /// The `cairn` binary under test.
    pub bin: PathBuf,
    /// `--topo-root` used by everything in this cluster.
    pub root: String,
}

impl Cluster {
    pub async fn start(bin: PathBuf) -> anyhow::Result<Cluster> {
        let etcd = EtcdServer::start().await.context("starting etcd")?;
        let dir = tempfile::Builder::new()
            .prefix("cairn-cluster-")
            .tempdir()
            .context("creating the cluster dir")?;
        Ok(Cluster {
            etcd,
            dir,
            bin,
            root: "/cairn".into(),
        })
    }

    pub fn topo_config(&self) -> TopoConfig {
        self.etcd.config(&self.root)
    }

    pub async fn topo(&self) -> anyhow::Result<Topo> {
        Ok(Topo::connect(&self.topo_config(), Some(Duration::from_secs(10))).await?)
    }

    /// The file backup storage root shared by the cluster's tablets.
    pub fn backup_root(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// Global flags pointing a `cairn` command at this cluster.
    pub fn global_args(&self) -> Vec<String> {
        vec![
            "--topo-server".into(),
            self.etcd.endpoint(),
            "--topo-root".into(),
            self.root.clone(),
        ]
    }

    /// Runs `cairn ARGS…` against this cluster and returns its output.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .args(self.global_args())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running cairn {}", args.join(" ")))
    }

    /// Like [`Cluster::cli`] but fails unless the command exits 0; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "cairn {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

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
            .arg("--file-backup-storage-root")
            .arg(self.backup_root())
            .args(["--health-interval", "1s", "--health-ttl", "4s"])
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
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        Ok(TabletProcess {
            spec: spec.clone(),
            child: Some(child),
        })
    }
}

impl Cluster {
    /// Starts `cairn coordinator --id ID` with an HTTP port of its own, logging to
    /// `coordinator-ID.log` in the cluster dir.
    pub fn spawn_coordinator(
        &self,
        id: &str,
        extra: &[&str],
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
            .arg("--file-backup-storage-root")
            .arg(self.backup_root())
            .args(extra)
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
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill9();
    }
}

/// A minimal HTTP/1.1 GET on 127.0.0.1 (tests need no client library).
pub fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code in the HTTP answer")?;
    // Bodies may be chunked; the JSON and text we read are small, so strip chunk sizes.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    Ok((code, body))
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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                return Ok(st);
            }
            if Instant::now() > deadline {
                bail!(
                    "agent {} still running after {timeout:?}:\n{}",
                    self.spec.alias(),
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                bail!(
                    "agent {} exited ({st}) before becoming healthy:\n{}",
                    self.spec.alias(),
                    self.log_tail(30)
                );
            }
            if let Ok(Some(info)) = topo.get_tablet_info(&alias).await {
                if info
                    .health
                    .as_ref()
                    .is_some_and(|h| h.mysqld_up && h.serving)
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "tablet {} not healthy within {timeout:?}:\n{}",
                    self.spec.alias(),
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// Polls `f` until it returns `Ok(Some(v))` or the timeout passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            match last_err {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}: last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
