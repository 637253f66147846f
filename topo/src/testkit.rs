//! Real servers on loopback for tests, benchmarks and the local-cluster example:
//! an `etcd` process (from PATH) on free ports in a temporary directory, which a
//! test can kill, restart on the same ports and data, freeze and thaw.
//!
//! Plain library code (not `cfg(test)`) because the root crate's tests, the
//! benchmarks and the example use it too.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::conn::TopoConfig;

/// A port that was free a moment ago on 127.0.0.1 (bind to port 0, read it, drop).
/// Callers that spawn a server on it must retry on a bind failure (the port can be
/// taken in between).
pub fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// How long a fresh etcd may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);
/// Spawn attempts with new ports when the chosen ones were taken meanwhile.
const SPAWN_ATTEMPTS: usize = 5;

/// Distinguishes servers started by one process (names must be unique only
/// within a cluster, but unique names make logs easier to read).
static SERVER_SEQ: AtomicU32 = AtomicU32::new(0);

/// An etcd process owned by a test. Dropping it kills and reaps the process and
/// removes its directory.
pub struct EtcdServer {
    /// The running process; `None` while stopped.
    child: Option<Child>,
    /// Holds the data dir and the log; removed on drop.
    dir: tempfile::TempDir,
    /// Client port on 127.0.0.1.
    client_port: u16,
    /// Peer port on 127.0.0.1 (never the default 2380, so servers can coexist).
    peer_port: u16,
    /// The member name (`--name`), unique per server.
    name: String,
}

impl EtcdServer {
    /// Starts etcd on free ports and waits until it answers a real request.
    pub async fn start() -> anyhow::Result<EtcdServer> {
        let dir = tempfile::Builder::new()
            .prefix("cairn-etcd-")
            .tempdir()
            .context("cannot create a temporary directory for etcd")?;
        let name = format!(
            "cairn-test-{}-{}",
            std::process::id(),
            SERVER_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut server = EtcdServer {
            child: None,
            dir,
            client_port: 0,
            peer_port: 0,
            name,
        };
        let mut last_err = anyhow!("etcd was not started");
        for _ in 0..SPAWN_ATTEMPTS {
            server.client_port = free_port().context("no free port for etcd clients")?;
            server.peer_port = loop {
                let p = free_port().context("no free port for etcd peers")?;
                if p != server.client_port {
                    break p;
                }
            };
            // A failed attempt may have left a half-initialised member behind.
            let data = server.data_dir();
            if data.exists() {
                std::fs::remove_dir_all(&data)
                    .with_context(|| format!("cannot clear {}", data.display()))?;
            }
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.kill_and_reap();
                    let log = server.log_tail();
                    if log.contains("address already in use") {
                        last_err = e;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(last_err.context(format!(
            "etcd did not start after {SPAWN_ATTEMPTS} attempts"
        )))
    }

    /// Starts a new etcd whose data is restored from a snapshot file with
    /// `etcdctl snapshot restore` (the documented recovery path), on free ports.
    pub async fn restore_from_snapshot(snapshot: &Path) -> anyhow::Result<EtcdServer> {
        let dir = tempfile::Builder::new()
            .prefix("cairn-etcd-restored-")
            .tempdir()
            .context("cannot create a temporary directory for etcd")?;
        let name = format!(
            "cairn-restored-{}-{}",
            std::process::id(),
            SERVER_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut server = EtcdServer {
            child: None,
            dir,
            client_port: free_port().context("no free port for etcd clients")?,
            peer_port: free_port().context("no free port for etcd peers")?,
            name,
        };
        let peer_url = format!("http://127.0.0.1:{}", server.peer_port);
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("snapshot")
            .arg("restore")
            .arg(snapshot)
            .arg("--name")
            .arg(&server.name)
            .arg("--data-dir")
            .arg(server.data_dir())
            .arg("--initial-cluster")
            .arg(format!("{}={peer_url}", server.name))
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .output()
            .context("cannot run `etcdctl snapshot restore`")?;
        if !out.status.success() {
            bail!(
                "etcdctl snapshot restore failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        server.spawn_and_wait().await?;
        Ok(server)
    }

    /// `127.0.0.1:PORT` of the client listener.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// A topo config for this server under `root`, with short deadlines (a test
    /// should fail fast, not hang).
    pub fn config(&self, root: &str) -> TopoConfig {
        TopoConfig {
            endpoints: vec![self.endpoint()],
            root: root.to_string(),
            request_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(2),
            ..TopoConfig::default()
        }
    }

    /// Kills the process (SIGKILL, like a crash) and reaps it; keeps the data.
    pub fn stop(&mut self) {
        self.kill_and_reap();
    }

    /// Starts the process again on the same ports with the same data.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("etcd {} is still running", self.name);
        }
        self.spawn_and_wait().await
    }

    /// Stops the process in its tracks (SIGSTOP): connections stay open, nothing
    /// answers, as with a hung server.
    /// Returns once the kernel reports every thread stopped (a signal is
    /// delivered asynchronously; a request could otherwise still be answered).
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.all_threads_stopped() {
                Some(false) => std::thread::sleep(Duration::from_millis(5)),
                Some(true) | None => return Ok(()),
            }
        }
        bail!("etcd {} did not stop within 2s of SIGSTOP", self.name)
    }

    /// Whether every thread's state in `/proc/PID/task/*/stat` is `T` (stopped);
    /// `None` where there is no procfs, so freeze does not wait there.
    fn all_threads_stopped(&self) -> Option<bool> {
        let pid = self.pid()?;
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        for task in tasks {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            // The command name is in parentheses and may contain spaces; the
            // state letter follows the last `)`.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            if state != 'T' && state != 't' {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// etcd's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where etcd's output goes (kept out of the test's own output).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The last few kilobytes of etcd's log, for error messages.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log_path(), 4096)
    }

    fn signal(&self, sig: libc::c_int) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("etcd {} is not running", self.name))?;
        let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(pid, sig) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot signal etcd (pid {pid})"));
        }
        Ok(())
    }

    fn kill_and_reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Spawns etcd with this server's ports and data, then polls until a
    /// linearizable read succeeds (the member has elected itself).
    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("cannot open the etcd log file")?;
        let log2 = log
            .try_clone()
            .context("cannot duplicate the etcd log handle")?;
        let client_url = format!("http://127.0.0.1:{}", self.client_port);
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("{}={peer_url}", self.name))
            .arg("--initial-cluster-state")
            .arg("new")
            // A single member: a short election timeout makes it ready sooner.
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .context("cannot run `etcd` (is it installed and on PATH?)")?;
        self.child = Some(child);

        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("cannot poll etcd")? {
                    self.child = None;
                    bail!(
                        "etcd exited at start ({status}); its log ends with:\n{}",
                        self.log_tail()
                    );
                }
            }
            if self.answers().await {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "etcd at {} did not answer within {READY_TIMEOUT:?}; its log ends with:\n{}",
                    self.endpoint(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Whether a linearizable read succeeds right now.
    async fn answers(&self) -> bool {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(1));
        let url = format!("http://{}", self.endpoint());
        let Ok(mut c) = etcd_client::Client::connect([url], Some(opts)).await else {
            return false;
        };
        c.get("cairn-testkit-ready", None).await.is_ok()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // SIGKILL also ends a frozen process; reaping avoids a zombie per test.
        self.kill_and_reap();
    }
}

/// The last `max` bytes of a file as text (empty if unreadable).
fn read_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_not_reserved() {
        let p = free_port().unwrap();
        assert_ne!(p, 0);
        assert!(TcpListener::bind(("127.0.0.1", p)).is_ok());
    }

    #[test]
    fn tail_of_a_missing_file_is_empty() {
        assert_eq!(read_tail(Path::new("/nonexistent/cairn/etcd.log"), 10), "");
    }
}
