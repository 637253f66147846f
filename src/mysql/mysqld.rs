//! The tablet's mysqld process: initialise its data directory, start it (or adopt one
//! a previous agent left running), supervise it, shut it down, and talk SQL to it over
//! its unix socket.
//!
//! This module owns everything under the tablet directory that belongs to the server:
//!
//! ```text
//! DIR/data/            datadir (binlogs mysql-bin.*, relay logs relay-bin.* inside)
//! DIR/data.init-tmp/   a data dir being initialised; renamed to data/ when complete
//! DIR/mysql.sock       the socket; the OS root user logs in as `root` (unix_socket auth)
//! DIR/mysqld.pid       pid file, used to adopt a server that outlived its agent
//! DIR/mysqld.err       error log (and the server's stdout/stderr)
//! DIR/mysqld-init.log  output of the data-dir initialisation
//! DIR/tmp/             server tmpdir
//! ```
//!
//! The SQL it sends comes from [`super::flavor`]; this module only executes it. A
//! [`Mysqld`] never stops its server on drop: an agent that dies leaves mysqld
//! serving, and the next agent adopts it.
//!
//! Passwords never reach logs or errors: every statement that carries one is executed
//! through a path that redacts it from the statement and from the server's message.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, OptsBuilder, Row, Value};

use super::flavor::{
    find_on_path, quote_string, DetectedServer, Flavor, ReplicationStatus, UserAuth,
    SERVER_BINARY_NAMES,
};

/// Longest unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// How often start/shutdown look at the server while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Lines of a log quoted in an error.
const LOG_TAIL_LINES: usize = 25;

/// Maps a tablet uid to a replication server_id.
///
/// The server_id is the uid itself, so operators can read one from the other. uid 0
/// maps to `u32::MAX`, because server_id 0 disables replication in MariaDB and MySQL
/// (a uid of `u32::MAX` would collide with it; don't use both in one shard).
pub fn server_id_for_uid(uid: u32) -> u32 {
    if uid == 0 {
        u32::MAX
    } else {
        uid
    }
}

/// How to run one tablet's mysqld.
#[derive(Debug, Clone)]
pub struct MysqldConfig {
    /// Directory that holds everything of this server (data, socket, pid file, logs).
    pub tablet_dir: PathBuf,
    /// TCP port replicas and backup tools connect to.
    pub port: u16,
    /// Address the TCP listener binds; loopback unless the operator widens it.
    pub bind_address: String,
    /// Replication server_id, unique within a shard (see [`server_id_for_uid`]).
    pub server_id: u32,
    /// InnoDB buffer pool size; small by default so many servers fit on one test host.
    pub innodb_buffer_pool_size: String,
    /// InnoDB redo log size; small by default for the same reason.
    pub innodb_log_file_size: String,
    /// How long `start()` waits for the server to accept connections.
    pub start_timeout: Duration,
    /// How long data-dir initialisation may run before it is killed.
    pub init_timeout: Duration,
    /// Extra server flags, appended last so they override cairn's.
    pub extra_args: Vec<String>,
}

impl MysqldConfig {
    /// A config with the small defaults (64M buffer pool, 48M redo log, 60s start).
    pub fn new(tablet_dir: PathBuf, port: u16, bind_address: String, server_id: u32) -> Self {
        MysqldConfig {
            tablet_dir,
            port,
            bind_address,
            server_id,
            innodb_buffer_pool_size: "64M".into(),
            innodb_log_file_size: "48M".into(),
            start_timeout: Duration::from_secs(60),
            init_timeout: Duration::from_secs(300),
            extra_args: Vec::new(),
        }
    }
}

/// The server process this `Mysqld` is watching.
#[derive(Debug)]
enum ServerProcess {
    /// Spawned by us: `try_wait` reaps it when it exits.
    Child(Child),
    /// Found running (pid file or /proc) and adopted; watched through /proc.
    Adopted(u32),
}

impl ServerProcess {
    fn pid(&self) -> u32 {
        match self {
            ServerProcess::Child(c) => c.id(),
            ServerProcess::Adopted(pid) => *pid,
        }
    }
}

/// What a look at the watched process found.
enum ProcessState {
    /// Nothing is watched.
    NotTracked,
    /// Running with this pid.
    Running(u32),
    /// It exited (status known for children only).
    Exited(Option<std::process::ExitStatus>),
}

/// One tablet's mysqld: lifecycle and SQL.
#[derive(Debug)]
pub struct Mysqld {
    /// Paths, ports and sizes; `tablet_dir` made absolute so /proc matching is exact.
    config: MysqldConfig,
    /// The dialect to speak.
    flavor: Flavor,
    /// Server binary started by `start()`.
    binary: PathBuf,
    /// Server version from `--version`, for logs and backups.
    version: String,
    /// Account the agent logs in as over the socket: `root`, or the OS user when not root.
    admin_user: String,
    /// Socket path as UTF-8 (the client library wants a string); checked in `new`.
    socket: String,
    /// The watched server process; behind a lock so `is_running(&self)` can reap.
    process: Mutex<Option<ServerProcess>>,
}

fn euid_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Name of the effective OS user (the account unix_socket auth lets us use).
fn current_user_name() -> Result<String> {
    if euid_is_root() {
        return Ok("root".into());
    }
    // SAFETY: getpwuid_r writes into the buffers we own and sizes; `result` points at
    // `pwd` (or is null) and `pw_name` into `buf`, both alive while we read them.
    unsafe {
        let uid = libc::geteuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            bail!("cannot find the name of OS user {uid} (getpwuid_r: {rc})");
        }
        Ok(std::ffi::CStr::from_ptr(pwd.pw_name)
            .to_string_lossy()
            .into_owned())
    }
}

fn send_signal(pid: u32, sig: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

fn dir_is_non_empty(dir: &Path) -> Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// The last `max_lines` lines of `path` from byte `from` on (empty if unreadable).
fn log_tail(path: &Path, from: u64, max_lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        // Never read more than the last 64 KiB.
        let start = from.max(len.saturating_sub(64 * 1024));
        if f.seek(SeekFrom::Start(start)).is_ok() {
            let mut bytes = Vec::new();
            if f.read_to_end(&mut bytes).is_ok() {
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

/// The `ERROR` lines of a log (the last `max_lines`), or its tail when it has none:
/// the initialisation script buries the server's errors under a page of advice.
fn log_errors_or_tail(path: &Path, max_lines: usize) -> String {
    let all = log_tail(path, 0, usize::MAX);
    let errors: Vec<&str> = all.lines().filter(|l| l.contains("ERROR")).collect();
    if errors.is_empty() {
        return log_tail(path, 0, max_lines);
    }
    errors[errors.len().saturating_sub(max_lines)..].join("\n")
}

/// Replaces every secret (raw and as it appears inside a quoted literal) with `<redacted>`.
fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let quoted = quote_string(s);
        let inner = &quoted[1..quoted.len() - 1];
        out = out.replace(inner, "<redacted>").replace(*s, "<redacted>");
    }
    out
}

fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// A result row as column name → text value.
fn row_to_map(row: &Row) -> HashMap<String, Option<String>> {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                c.name_str().into_owned(),
                row.as_ref(i).and_then(value_to_string),
            )
        })
        .collect()
}

/// Whether `pid` is a live (not zombie) mariadbd/mysqld started with `--datadir=<datadir>`.
fn process_serves_datadir(pid: u32, datadir: &Path) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 3 (state) follows the parenthesised command name, which may hold spaces.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    if matches!(state, None | Some("Z") | Some("X")) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let Some(argv0) = args.first() else {
        return false;
    };
    let argv0 = String::from_utf8_lossy(argv0);
    let base = argv0.rsplit('/').next().unwrap_or("");
    if !SERVER_BINARY_NAMES.contains(&base) {
        return false;
    }
    let mut want = b"--datadir=".to_vec();
    want.extend_from_slice(datadir.as_os_str().as_encoded_bytes());
    args.contains(&want.as_slice())
}

impl Mysqld {
    /// Prepares to manage the server described by `config`, with the server binary and
    /// flavor found on PATH. Starts nothing.
    pub fn new(config: MysqldConfig) -> Result<Self> {
        let server = Flavor::detect().context("finding the MariaDB/MySQL server")?;
        Self::with_server(config, server)
    }

    /// Like [`Mysqld::new`] with an already detected server binary.
    pub fn with_server(mut config: MysqldConfig, server: DetectedServer) -> Result<Self> {
        config.tablet_dir = std::path::absolute(&config.tablet_dir)
            .with_context(|| format!("resolving tablet dir {}", config.tablet_dir.display()))?;
        let socket_path = config.tablet_dir.join("mysql.sock");
        let socket = socket_path
            .to_str()
            .with_context(|| format!("socket path {} is not UTF-8", socket_path.display()))?
            .to_string();
        if socket.len() > SOCKET_PATH_MAX {
            bail!(
                "socket path {socket} is {} bytes, longer than the {SOCKET_PATH_MAX} a unix socket allows; \
                 use a shorter --tablet-dir",
                socket.len()
            );
        }
        if config.server_id == 0 {
            bail!("server_id 0 disables replication; use server_id_for_uid");
        }
        Ok(Mysqld {
            flavor: server.flavor,
            binary: server.binary,
            version: server.version,
            admin_user: current_user_name()?,
            socket,
            process: Mutex::new(None),
            config,
        })
    }

    /// The config, with `tablet_dir` made absolute.
    pub fn config(&self) -> &MysqldConfig {
        &self.config
    }
    /// The dialect this server speaks.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }
    /// Version token of the server binary (from `--version`, no connection needed).
    pub fn binary_version(&self) -> &str {
        &self.version
    }
    /// The server binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }
    /// The datadir.
    pub fn data_dir(&self) -> PathBuf {
        self.config.tablet_dir.join("data")
    }
    /// The unix socket (`DIR/mysql.sock`).
    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(&self.socket)
    }
    /// The pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.config.tablet_dir.join("mysqld.pid")
    }
    /// The error log.
    pub fn error_log(&self) -> PathBuf {
        self.config.tablet_dir.join("mysqld.err")
    }
    /// The server's tmpdir.
    pub fn tmp_dir(&self) -> PathBuf {
        self.config.tablet_dir.join("tmp")
    }
    /// Where the data-dir initialisation output goes.
    pub fn init_log(&self) -> PathBuf {
        self.config.tablet_dir.join("mysqld-init.log")
    }
    /// The account the agent uses over the socket.
    pub fn admin_user(&self) -> &str {
        &self.admin_user
    }
    /// TCP port.
    pub fn port(&self) -> u16 {
        self.config.port
    }

    fn process(&self) -> MutexGuard<'_, Option<ServerProcess>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Initialises the data directory if it is missing or empty; returns whether it
    /// did. A non-empty data dir is always reused. Initialisation happens in
    /// `data.init-tmp` and is renamed to `data` only on success, so a crash midway
    /// leaves no half-initialised `data` (the leftover is removed and redone).
    pub async fn init_if_needed(&mut self) -> Result<bool> {
        let data = self.data_dir();
        if dir_is_non_empty(&data)? {
            return Ok(false);
        }
        let dir = &self.config.tablet_dir;
        fs::create_dir_all(dir)
            .with_context(|| format!("creating tablet dir {}", dir.display()))?;
        let tmp = dir.join("data.init-tmp");
        if tmp.exists() {
            tracing::warn!(dir = %tmp.display(), "removing a half-initialised data directory");
            fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        let program = self
            .flavor
            .install_db_program_names()
            .iter()
            .find_map(|n| find_on_path(n))
            .with_context(|| {
                format!(
                    "no data-dir initialisation program on PATH (looked for {:?})",
                    self.flavor.install_db_program_names()
                )
            })?;
        // The bootstrap server gets its own tmpdir: a starting server deletes every
        // `#sql*` file in its tmpdir, so bootstraps sharing /tmp break each other.
        let tmpdir = self.tmp_dir();
        fs::create_dir_all(&tmpdir).with_context(|| format!("creating {}", tmpdir.display()))?;
        let mut server_args = self.innodb_args();
        server_args.push(format!("--tmpdir={}", tmpdir.display()));
        let args = self
            .flavor
            .install_db_args(&tmp, euid_is_root(), &server_args);
        let log_path = self.init_log();
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating the init log handle")?;
        tracing::info!(program = %program.display(), datadir = %data.display(), "initialising the data directory");
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&program)
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", program.display()))?;
        let status = match tokio::time::timeout(self.config.init_timeout, child.wait()).await {
            Ok(r) => r.with_context(|| format!("waiting for {}", program.display()))?,
            Err(_) => {
                let _ = child.kill().await;
                bail!(
                    "{} did not finish within {:?}; {} ends with:\n{}",
                    program.display(),
                    self.config.init_timeout,
                    log_path.display(),
                    log_tail(&log_path, 0, LOG_TAIL_LINES)
                );
            }
        };
        if !status.success() {
            bail!(
                "{} failed ({status}); errors from {}:\n{}",
                program.display(),
                log_path.display(),
                log_errors_or_tail(&log_path, LOG_TAIL_LINES)
            );
        }
        if data.exists() {
            // Empty (checked above); rename cannot replace a directory that has entries.
            fs::remove_dir(&data).with_context(|| format!("removing empty {}", data.display()))?;
        }
        fs::rename(&tmp, &data)
            .with_context(|| format!("renaming {} to {}", tmp.display(), data.display()))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        tracing::info!(datadir = %data.display(), elapsed = ?started.elapsed(), "data directory initialised");
        Ok(true)
    }

    fn innodb_args(&self) -> Vec<String> {
        vec![
            format!(
                "--innodb-buffer-pool-size={}",
                self.config.innodb_buffer_pool_size
            ),
            format!(
                "--innodb-log-file-size={}",
                self.config.innodb_log_file_size
            ),
        ]
    }

    /// The server's full command line (after the binary).
    pub fn server_args(&self) -> Vec<String> {
        let c = &self.config;
        let p = |p: PathBuf| p.display().to_string();
        let mut v = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", p(self.data_dir())),
            format!("--socket={}", self.socket),
            format!("--port={}", c.port),
            format!("--bind-address={}", c.bind_address),
            format!("--pid-file={}", p(self.pid_file())),
            format!("--log-error={}", p(self.error_log())),
            format!("--tmpdir={}", p(self.tmp_dir())),
            format!("--server-id={}", c.server_id),
            "--log-bin=mysql-bin".into(),
            "--binlog-format=ROW".into(),
            "--log-slave-updates".into(),
            "--relay-log=relay-bin".into(),
            "--skip-name-resolve".into(),
            "--skip-slave-start".into(),
            "--read-only=ON".into(),
        ];
        v.extend(self.flavor.server_args());
        v.extend(self.innodb_args());
        if euid_is_root() {
            v.push("--user=root".into());
        }
        v.extend(c.extra_args.iter().cloned());
        v
    }

    /// Looks at the watched process, reaping a child that exited.
    fn poll_process(&self) -> ProcessState {
        let mut guard = self.process();
        let state = match guard.as_mut() {
            None => return ProcessState::NotTracked,
            Some(ServerProcess::Child(c)) => match c.try_wait() {
                Ok(None) => ProcessState::Running(c.id()),
                Ok(Some(status)) => ProcessState::Exited(Some(status)),
                Err(e) => {
                    tracing::warn!(error = %e, pid = c.id(), "cannot poll mysqld; treating it as exited");
                    ProcessState::Exited(None)
                }
            },
            Some(ServerProcess::Adopted(pid)) => {
                if process_serves_datadir(*pid, &self.data_dir()) {
                    ProcessState::Running(*pid)
                } else {
                    ProcessState::Exited(None)
                }
            }
        };
        if let ProcessState::Exited(status) = &state {
            let pid = guard.as_ref().map(ServerProcess::pid);
            match status {
                Some(s) => tracing::info!(?pid, status = %s, "mysqld exited"),
                None => tracing::info!(?pid, "mysqld exited"),
            }
            *guard = None;
        }
        state
    }

    /// Whether the server this `Mysqld` started or adopted is alive. A fresh `Mysqld`
    /// tracks nothing until `start()` (which adopts a running server) is called.
    pub fn is_running(&self) -> bool {
        matches!(self.poll_process(), ProcessState::Running(_))
    }

    /// Pid of the tracked server, if it is running.
    pub fn pid(&self) -> Option<u32> {
        match self.poll_process() {
            ProcessState::Running(pid) => Some(pid),
            _ => None,
        }
    }

    /// A live server for our datadir that we don't track: the pid file's, or else any
    /// process on /proc whose command line names our datadir.
    fn find_existing_server(&self) -> Option<u32> {
        let data = self.data_dir();
        if let Ok(text) = fs::read_to_string(self.pid_file()) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                if process_serves_datadir(pid, &data) {
                    return Some(pid);
                }
            }
        }
        let entries = fs::read_dir("/proc").ok()?;
        let me = std::process::id();
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .find(|pid| *pid != me && process_serves_datadir(*pid, &data))
    }

    /// Starts the server, or adopts one already running for this datadir (left by a
    /// previous agent), and waits until it accepts connections on the socket. The data
    /// directory must exist (see [`Mysqld::init_if_needed`]). On timeout a spawned
    /// server is left running (it may be in crash recovery); call `shutdown` to stop it.
    pub async fn start(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.config.start_timeout;
        let log_path = self.error_log();
        if self.is_running() {
            return self.wait_until_ready(deadline, 0).await;
        }
        if let Some(pid) = self.find_existing_server() {
            tracing::info!(pid, datadir = %self.data_dir().display(), "adopting a mysqld left running by a previous agent");
            *self.process() = Some(ServerProcess::Adopted(pid));
            let from = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
            return self.wait_until_ready(deadline, from).await;
        }
        let data = self.data_dir();
        if !dir_is_non_empty(&data)? {
            bail!(
                "data directory {} is missing or empty; initialise it first",
                data.display()
            );
        }
        let tmp = self.tmp_dir();
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let from = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let err = out
            .try_clone()
            .context("duplicating the error log handle")?;
        let args = self.server_args();
        let child = std::process::Command::new(&self.binary)
            .args(&args)
            .current_dir(&self.config.tablet_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C aimed at the agent must not kill mysqld;
            // the agent shuts it down cleanly (or leaves it for the next agent).
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        tracing::info!(
            pid = child.id(),
            port = self.config.port,
            datadir = %data.display(),
            "started mysqld"
        );
        *self.process() = Some(ServerProcess::Child(child));
        self.wait_until_ready(deadline, from).await
    }

    /// Polls the socket until a login works, failing early if the process dies.
    async fn wait_until_ready(&self, deadline: Instant, log_from: u64) -> Result<()> {
        let log_path = self.error_log();
        loop {
            let pid = match self.poll_process() {
                ProcessState::Running(pid) => pid,
                ProcessState::Exited(status) => {
                    let status = status.map(|s| format!(" ({s})")).unwrap_or_default();
                    bail!(
                        "mysqld exited{status} before accepting connections; {} ends with:\n{}",
                        log_path.display(),
                        log_tail(&log_path, log_from, LOG_TAIL_LINES)
                    );
                }
                ProcessState::NotTracked => bail!("mysqld is not running"),
            };
            let attempt = tokio::time::timeout(Duration::from_secs(2), self.conn()).await;
            if let Ok(Ok(conn)) = attempt {
                let _ = conn.disconnect().await;
                return Ok(());
            }
            if Instant::now() >= deadline {
                let why = match attempt {
                    Ok(Err(e)) => format!("{e:#}"),
                    _ => "login timed out".into(),
                };
                bail!(
                    "mysqld (pid {pid}) did not accept connections on {} within {:?} (last attempt: {why}); {} ends with:\n{}",
                    self.socket,
                    self.config.start_timeout,
                    log_path.display(),
                    log_tail(&log_path, log_from, LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the server cleanly (SIGTERM, which mysqld treats as SHUTDOWN), waits for
    /// it to exit, and SIGKILLs it after `timeout`. Stops an untracked server for our
    /// datadir too (pid file or /proc). Does nothing when no server is running.
    pub async fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        let pid = match self.poll_process() {
            ProcessState::Running(pid) => pid,
            _ => match self.find_existing_server() {
                Some(pid) => {
                    *self.process() = Some(ServerProcess::Adopted(pid));
                    pid
                }
                None => return Ok(()),
            },
        };
        tracing::info!(pid, "shutting down mysqld");
        let started = Instant::now();
        send_signal(pid, libc::SIGTERM);
        if self.wait_exit(timeout).await {
            tracing::info!(pid, elapsed = ?started.elapsed(), "mysqld shut down");
            return Ok(());
        }
        tracing::warn!(
            pid,
            ?timeout,
            "mysqld did not shut down in time; killing it"
        );
        send_signal(pid, libc::SIGKILL);
        if self.wait_exit(Duration::from_secs(10)).await {
            return Ok(());
        }
        Err(anyhow!("mysqld (pid {pid}) survived SIGKILL"))
    }

    async fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends SIGKILL to the tracked server (or the one in the pid file) without
    /// waiting. For tests and last-resort cleanup; `is_running` notices the exit.
    pub fn kill(&self) {
        let pid = self.pid().or_else(|| self.find_existing_server());
        if let Some(pid) = pid {
            tracing::warn!(pid, "killing mysqld");
            send_signal(pid, libc::SIGKILL);
        }
    }

    // ---- SQL ----------------------------------------------------------------

    /// A new connection over the socket as the admin user. Close it with
    /// `disconnect().await` when done.
    pub async fn conn(&self) -> Result<Conn> {
        let opts = OptsBuilder::default()
            .socket(Some(self.socket.as_str()))
            .tcp_port(self.config.port)
            .user(Some(self.admin_user.as_str()))
            .prefer_socket(true);
        Conn::new(opts).await.with_context(|| {
            format!(
                "connecting to mysqld on {} as {}",
                self.socket, self.admin_user
            )
        })
    }

    /// Runs statements in order on one connection; errors name the statement with the
    /// secrets redacted (from the SQL and from the server's message).
    async fn exec_batch(&self, stmts: &[String], secrets: &[&str]) -> Result<()> {
        let mut conn = self.conn().await?;
        for sql in stmts {
            tracing::debug!(sql = %redact(sql, secrets), "mysqld exec");
            if let Err(e) = conn.query_drop(sql.as_str()).await {
                let _ = conn.disconnect().await;
                return Err(anyhow!(
                    "{}: {}",
                    redact(sql, secrets),
                    redact(&e.to_string(), secrets)
                ));
            }
        }
        let _ = conn.disconnect().await;
        Ok(())
    }

    /// Runs one statement. Don't pass passwords here; errors quote the SQL.
    pub async fn exec(&self, sql: &str) -> Result<()> {
        self.exec_batch(&[sql.to_string()], &[]).await
    }

    /// Runs a query and returns its first row, if any.
    pub async fn query_first<T: FromRow + Send + 'static>(&self, sql: &str) -> Result<Option<T>> {
        let mut conn = self.conn().await?;
        let r = conn
            .query_first::<T, _>(sql)
            .await
            .with_context(|| format!("query {sql}"));
        let _ = conn.disconnect().await;
        r
    }

    /// Runs a query and returns all rows.
    pub async fn query<T: FromRow + Send + 'static>(&self, sql: &str) -> Result<Vec<T>> {
        let mut conn = self.conn().await?;
        let r = conn
            .query::<T, _>(sql)
            .await
            .with_context(|| format!("query {sql}"));
        let _ = conn.disconnect().await;
        r
    }

    /// The running server's `VERSION()`.
    pub async fn version(&self) -> Result<String> {
        self.query_first::<String>("SELECT VERSION()")
            .await?
            .context("SELECT VERSION() returned no row")
    }

    /// Makes the server read-only (replica) or writable (primary). MariaDB has no
    /// super_read_only; its read_only already binds accounts without READ_ONLY ADMIN.
    pub async fn set_read_only(&self, on: bool) -> Result<()> {
        self.exec_batch(&self.flavor.read_only_sqls(on), &[]).await
    }

    /// Whether the server is read-only.
    pub async fn is_read_only(&self) -> Result<bool> {
        let v = self.query_first::<i64>("SELECT @@GLOBAL.read_only").await?;
        Ok(v.unwrap_or(0) != 0)
    }

    /// Creates or updates `user@host` with `auth` and grants `privileges` on `*.*`,
    /// with binary logging off: each server manages its own accounts, so replicas never
    /// replay (and trip over) another server's user changes.
    pub async fn ensure_user(
        &self,
        user: &str,
        host: &str,
        auth: &UserAuth,
        privileges: &[&str],
    ) -> Result<()> {
        let mut stmts = vec!["SET SESSION sql_log_bin = 0".to_string()];
        stmts.extend(self.flavor.ensure_user_sqls(user, host, auth, privileges)?);
        let secrets: Vec<&str> = match auth {
            UserAuth::Password(p) => vec![p.as_str()],
            UserAuth::UnixSocket => vec![],
        };
        self.exec_batch(&stmts, &secrets)
            .await
            .with_context(|| format!("ensuring account '{user}'@'{host}'"))
    }

    /// The account replicas use to connect to this server (from any host).
    pub async fn ensure_replication_user(&self, user: &str, password: &str) -> Result<()> {
        self.ensure_user(
            user,
            "%",
            &UserAuth::Password(password.to_string()),
            self.flavor.replication_privileges(),
        )
        .await
    }

    /// The local account the hot-backup tool (mariabackup/xtrabackup) logs in as.
    pub async fn ensure_backup_tool_user(&self, user: &str, auth: &UserAuth) -> Result<()> {
        self.ensure_user(
            user,
            "localhost",
            auth,
            self.flavor.backup_tool_privileges(),
        )
        .await
    }

    /// Replication state, or `None` when the server is not configured as a replica.
    pub async fn replication_status(&self) -> Result<Option<ReplicationStatus>> {
        let rows: Vec<Row> = self.query(self.flavor.replication_status_sql()).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let status = self
            .flavor
            .parse_replication_status(&row_to_map(row))
            .context("parsing the replication status")?;
        Ok(Some(status))
    }

    /// The executed GTID set, without the flavor prefix (MariaDB: `0-1-42`).
    pub async fn gtid_position(&self) -> Result<String> {
        let row: Row = self
            .query_first(self.flavor.executed_position_sql())
            .await?
            .context("the GTID position query returned no row")?;
        let values: Vec<Option<String>> = (0..row.len())
            .map(|i| row.as_ref(i).and_then(value_to_string))
            .collect();
        self.flavor.executed_position_from_row(&values)
    }

    /// The executed GTID set with the flavor prefix (`MariaDB/0-1-42`), as stored in
    /// topo and MANIFESTs.
    pub async fn position(&self) -> Result<String> {
        Ok(self.flavor.format_position(&self.gtid_position().await?))
    }

    /// (Re)points replication at a primary and starts it, positioned by GTID.
    pub async fn start_replication_from(
        &self,
        host: &str,
        port: u16,
        user: &str,
        password: &str,
    ) -> Result<()> {
        let f = self.flavor;
        let stmts = vec![
            f.stop_replication_sql().to_string(),
            f.change_primary_sql(host, port, user, password),
            f.start_replication_sql().to_string(),
        ];
        self.exec_batch(&stmts, &[password])
            .await
            .with_context(|| format!("starting replication from {host}:{port}"))
    }

    /// Stops both replication threads (keeps the primary's coordinates).
    pub async fn stop_replication(&self) -> Result<()> {
        self.exec(self.flavor.stop_replication_sql()).await
    }

    /// Starts both replication threads with the configured primary.
    pub async fn start_replication(&self) -> Result<()> {
        self.exec(self.flavor.start_replication_sql()).await
    }

    /// Stops replication and forgets the primary (what a new primary does).
    pub async fn reset_replication(&self) -> Result<()> {
        self.exec_batch(&self.flavor.reset_replication_sqls(), &[])
            .await
    }

    /// After a restore: make replication start from `pos` (the backup's position, with
    /// or without prefix). Forgets the primary and **discards this server's binlogs**;
    /// follow with [`Mysqld::start_replication_from`].
    pub async fn set_replication_position(&self, pos: &str) -> Result<()> {
        let stmts = self.flavor.set_replication_position_sqls(pos)?;
        self.exec_batch(&stmts, &[])
            .await
            .with_context(|| format!("setting the replication position to {pos}"))
    }

    /// For a demoted primary: replication resumes from everything this server has
    /// executed, including its own writes, which MariaDB's `gtid_slave_pos` lacks (it
    /// would otherwise ask the new primary for transactions it wrote itself).
    pub async fn adopt_binlog_position_for_replication(&self) -> Result<()> {
        let pos = self.gtid_position().await?;
        let stmts = self.flavor.resume_from_executed_sqls(&pos)?;
        self.exec_batch(&stmts, &[])
            .await
            .with_context(|| format!("setting gtid_slave_pos to the executed position {pos}"))
    }

    /// Waits until this replica has applied `pos`; `Ok(false)` on timeout.
    pub async fn wait_for_position(&self, pos: &str, timeout: Duration) -> Result<bool> {
        let sql = self
            .flavor
            .wait_for_position_sql(pos, timeout.as_secs().max(1))?;
        let r = self.query_first::<Option<i64>>(&sql).await?.flatten();
        Ok(r == Some(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_nonzero() {
        assert_eq!(server_id_for_uid(0), u32::MAX);
        assert_eq!(server_id_for_uid(1), 1);
        assert_eq!(server_id_for_uid(100), 100);
    }

    #[test]
    fn redaction_covers_raw_and_quoted_forms() {
        let sql = "CHANGE MASTER TO MASTER_PASSWORD='s\\'ecret'";
        let r = redact(sql, &["s'ecret"]);
        assert_eq!(r, "CHANGE MASTER TO MASTER_PASSWORD='<redacted>'");
        assert_eq!(
            redact("near 's'ecret' at line 1", &["s'ecret"]),
            "near '<redacted>' at line 1"
        );
        assert_eq!(redact("nothing", &[""]), "nothing");
    }

    #[test]
    fn log_tail_reads_from_offset_and_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        fs::write(&p, "old1\nold2\n").unwrap();
        let from = fs::metadata(&p).unwrap().len();
        fs::write(&p, "old1\nold2\nnew1\n\nnew2\nnew3\n").unwrap();
        assert_eq!(log_tail(&p, from, 2), "new2\nnew3");
        assert_eq!(log_tail(&p, from, 10), "new1\nnew2\nnew3");
        assert_eq!(log_tail(&dir.path().join("missing"), 0, 5), "");
    }

    #[test]
    fn init_failures_quote_error_lines_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        fs::write(
            &p,
            "Installing\n[ERROR] bad option\nERROR: 1 x\nadvice\nmore advice\n",
        )
        .unwrap();
        assert_eq!(log_errors_or_tail(&p, 5), "[ERROR] bad option\nERROR: 1 x");
        fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(log_errors_or_tail(&p, 2), "b\nc");
    }

    #[test]
    fn long_socket_paths_are_refused() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        let server = DetectedServer {
            flavor: Flavor::MariaDB,
            binary: PathBuf::from("mariadbd"),
            version: "10.11".into(),
        };
        let err = Mysqld::with_server(MysqldConfig::new(long, 3310, "127.0.0.1".into(), 1), server)
            .unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
    }

    #[test]
    fn own_process_does_not_serve_a_datadir() {
        assert!(!process_serves_datadir(
            std::process::id(),
            Path::new("/nonexistent")
        ));
        assert!(!process_serves_datadir(u32::MAX, Path::new("/nonexistent")));
    }
}
