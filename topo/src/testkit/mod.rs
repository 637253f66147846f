//! Real servers on loopback for tests, benchmarks and the local-cluster example:
//! `etcd` processes (from PATH) on free ports in temporary directories, which a
//! test can kill, restart on the same ports and data, freeze and thaw: a single
//! server ([`EtcdServer::start`]) or the members of one cluster
//! ([`start_cluster`]), optionally serving TLS with client-certificate auth
//! ([`EtcdOptions`], certificates from [`certs`]) and with etcd auth turned on
//! ([`auth`], set up with `etcdctl`).
//!
//! Plain library code (not `cfg(test)`) because the root crate's tests, the
//! benchmarks and the example use it too.

pub mod auth;
pub mod certs;
mod ctl;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::conn::TopoConfig;
pub use certs::{CertPair, TestCerts};
pub use ctl::{etcdctl, leader_index};

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

/// How a test etcd serves its clients.
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// Serve clients over TLS only, with `certs.server()`, and require a client
    /// certificate signed by `certs.ca()` (`--client-cert-auth`). Peers talk
    /// plaintext on loopback.
    pub tls: Option<Arc<TestCerts>>,
}

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
    /// `--initial-cluster`: `name=peer-url` of every member, this one included.
    initial_cluster: String,
    /// TLS material when clients must use TLS.
    tls: Option<Arc<TestCerts>>,
    /// root's password once auth is enabled (readiness checks log in with it).
    root_password: Option<String>,
    /// `--heartbeat-interval` and `--election-timeout`, in milliseconds.
    raft_timing: (u32, u32),
}

/// Starts the `n` members of one etcd cluster on loopback ports, each in its own
/// directory, and waits until every member answers a linearizable read.
pub async fn start_cluster(n: usize, opts: &EtcdOptions) -> anyhow::Result<Vec<EtcdServer>> {
    if n == 0 {
        bail!("an etcd cluster needs at least one member");
    }
    // A single member may elect itself quickly; a real quorum on a busy machine
    // gets more slack so that heartbeats late by a few hundred ms are no election.
    let raft_timing = if n == 1 { (50, 500) } else { (100, 1500) };
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        let dir = tempfile::Builder::new()
            .prefix("cairn-etcd-")
            .tempdir()
            .context("cannot create a temporary directory for etcd")?;
        members.push(EtcdServer {
            child: None,
            dir,
            client_port: 0,
            peer_port: 0,
            name: format!(
                "cairn-test-{}-{}",
                std::process::id(),
                SERVER_SEQ.fetch_add(1, Ordering::Relaxed)
            ),
            initial_cluster: String::new(),
            tls: opts.tls.clone(),
            root_password: None,
            raft_timing,
        });
    }
    let mut last_err = anyhow!("etcd was not started");
    for _ in 0..SPAWN_ATTEMPTS {
        let ports = distinct_free_ports(2 * n)?;
        for (i, m) in members.iter_mut().enumerate() {
            m.client_port = ports[2 * i];
            m.peer_port = ports[2 * i + 1];
            // A failed attempt may have left a half-initialised member behind.
            let data = m.data_dir();
            if data.exists() {
                std::fs::remove_dir_all(&data)
                    .with_context(|| format!("cannot clear {}", data.display()))?;
            }
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut outcome = Ok(());
        for m in members.iter_mut() {
            m.initial_cluster = initial_cluster.clone();
            if let Err(e) = m.spawn() {
                outcome = Err(e);
                break;
            }
        }
        if outcome.is_ok() {
            for m in members.iter_mut() {
                if let Err(e) = m.wait_ready().await {
                    outcome = Err(e);
                    break;
                }
            }
        }
        match outcome {
            Ok(()) => return Ok(members),
            Err(e) => {
                let port_taken = members
                    .iter()
                    .any(|m| m.log_tail().contains("address already in use"));
                for m in members.iter_mut() {
                    m.kill_and_reap();
                }
                if port_taken {
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

/// `n` distinct free ports.
fn distinct_free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let p = free_port().context("no free port for etcd")?;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    Ok(ports)
}

impl EtcdServer {
    /// Starts a single plaintext etcd on free ports and waits until it answers a
    /// real request.
    pub async fn start() -> anyhow::Result<EtcdServer> {
        Self::start_with(&EtcdOptions::default()).await
    }

    /// Starts a single etcd served as `opts` says.
    pub async fn start_with(opts: &EtcdOptions) -> anyhow::Result<EtcdServer> {
        start_cluster(1, opts)
            .await?
            .pop()
            .ok_or_else(|| anyhow!("no etcd member was started"))
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
        let ports = distinct_free_ports(2)?;
        let mut server = EtcdServer {
            child: None,
            dir,
            client_port: ports[0],
            peer_port: ports[1],
            name,
            initial_cluster: String::new(),
            tls: None,
            root_password: None,
            raft_timing: (50, 500),
        };
        let peer_url = server.peer_url();
        server.initial_cluster = format!("{}={peer_url}", server.name);
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
            .arg(&server.initial_cluster)
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
        server.spawn()?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// `127.0.0.1:PORT` of the client listener.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The client URL: `https://…` when serving TLS, else `http://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.endpoint())
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The member name (`--name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TLS material clients need, when this server serves TLS.
    pub fn tls(&self) -> Option<&Arc<TestCerts>> {
        self.tls.as_ref()
    }

    /// Remembers root's password (auth was enabled), so readiness checks after
    /// a restart and [`etcdctl`] log in.
    pub fn set_root_password(&mut self, password: Option<String>) {
        self.root_password = password;
    }

    /// A topo config for this server under `root`, with short deadlines (a test
    /// should fail fast, not hang); with the CA and the client certificate when
    /// the server serves TLS.
    pub fn config(&self, root: &str) -> TopoConfig {
        let mut cfg = TopoConfig {
            endpoints: vec![self.endpoint()],
            root: root.to_string(),
            request_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(2),
            ..TopoConfig::default()
        };
        if let Some(tls) = &self.tls {
            let client = tls.client();
            cfg.ca_file = Some(tls.ca());
            cfg.cert_file = Some(client.cert);
            cfg.key_file = Some(client.key);
        }
        cfg
    }

    /// Kills the process (SIGKILL, like a crash) and reaps it; keeps the data.
    pub fn stop(&mut self) {
        self.kill_and_reap();
    }

    /// Starts the process again on the same ports with the same data. A member
    /// of a cluster answers once it has rejoined the quorum.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("etcd {} is still running", self.name);
        }
        self.spawn()?;
        self.wait_ready().await
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

    /// Spawns etcd with this server's ports, data and cluster (no waiting).
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("cannot open the etcd log file")?;
        let log2 = log
            .try_clone()
            .context("cannot duplicate the etcd log handle")?;
        let client_url = self.url();
        let peer_url = self.peer_url();
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
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
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--heartbeat-interval")
            .arg(self.raft_timing.0.to_string())
            .arg("--election-timeout")
            .arg(self.raft_timing.1.to_string());
        if let Some(tls) = &self.tls {
            let server = tls.server();
            cmd.arg("--cert-file")
                .arg(server.cert)
                .arg("--key-file")
                .arg(server.key)
                .arg("--trusted-ca-file")
                .arg(tls.ca())
                .arg("--client-cert-auth");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .context("cannot run `etcd` (is it installed and on PATH?)")?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls until a linearizable read through this member succeeds (it has a
    /// leader and a quorum).
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
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
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(1));
        if let Some(tls) = &self.tls {
            let client = tls.client();
            let (Ok(ca), Ok(cert), Ok(key)) = (
                std::fs::read(tls.ca()),
                std::fs::read(client.cert),
                std::fs::read(client.key),
            ) else {
                return false;
            };
            opts = opts.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(ca))
                    .identity(etcd_client::Identity::from_pem(cert, key)),
            );
        }
        if let Some(pw) = &self.root_password {
            opts = opts.with_user("root", pw.clone());
        }
        let Ok(mut c) = etcd_client::Client::connect([self.url()], Some(opts)).await else {
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
