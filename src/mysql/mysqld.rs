//! One tablet's mysqld as a value: [`Mysqld`] (its paths, flavor and the process it
//! watches) and [`MysqldConfig`]. The lifecycle (initialise, start, adopt, supervise,
//! stop) is in [`super::process`]; the SQL cairn sends it is in [`super::sql`]; both
//! are `impl Mysqld` blocks, so callers only ever see this type.
//!
//! This room owns everything under the tablet directory that belongs to the server:
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
//! A [`Mysqld`] never stops its server on drop: an agent that dies leaves mysqld
//! serving, and the next agent adopts it. Calls only [`super::flavor`] and `common`.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::flavor::{DetectedServer, Flavor};

/// Longest unix socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
pub const SOCKET_PATH_MAX: usize = 107;

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
    /// Run at the lowest CPU priority (nice 19) and the lowest best-effort I/O
    /// priority, every thread of it: a restore drill's scratch server beside a
    /// serving one, which must keep the machine first.
    pub background: bool,
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
            background: false,
        }
    }
}

/// One tablet's mysqld: lifecycle and SQL.
#[derive(Debug)]
pub struct Mysqld {
    /// Paths, ports and sizes; `tablet_dir` made absolute so /proc matching is exact.
    pub(super) config: MysqldConfig,
    /// The dialect to speak.
    pub(super) flavor: Flavor,
    /// Server binary started by `start()`.
    pub(super) binary: PathBuf,
    /// Server version from `--version`, for logs and backups.
    pub(super) version: String,
    /// Account the agent logs in as over the socket: `root`, or the OS user when not root.
    pub(super) admin_user: String,
    /// Socket path as UTF-8 (the client library wants a string); checked in `new`.
    pub(super) socket: String,
    /// The watched server process; behind a lock so `is_running(&self)` can reap.
    pub(super) process: Mutex<Option<ServerProcess>>,
}

/// The server process this `Mysqld` is watching.
#[derive(Debug)]
pub(crate) enum ServerProcess {
    /// Spawned by us: `try_wait` reaps it when it exits.
    Child(Child),
    /// Found running (pid file or /proc) and adopted; watched through /proc.
    Adopted(u32),
}

pub(super) fn euid_is_root() -> bool {
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

    /// The watched process, whatever a panicking holder left behind.
    pub(super) fn process(&self) -> MutexGuard<'_, Option<ServerProcess>> {
        crate::common::lock(&self.process)
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
}
