//! The mysqld process: initialise a data directory, start the server (or adopt one a
//! previous agent left running), watch it, stop it. An `impl Mysqld` block over the
//! type in [`super::mysqld`]; it reads /proc and the server's logs and calls only
//! [`super::flavor`], [`super::mysqld`] and `common`. Children it spawns get none of
//! the agent's `CAIRN_*` variables ([`crate::common::env::agent_only_env`]).

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::flavor::{find_on_path, SERVER_BINARY_NAMES};
use super::mysqld::{euid_is_root, Mysqld, ServerProcess};
use crate::common::lock;
use crate::common::wait::poll_until;

/// How often start/shutdown look at the server while waiting.
const POLL: Duration = Duration::from_millis(50);

/// How long [`Mysqld::shutdown`] waits for a server it SIGKILLed to be gone.
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// Lines of a log quoted in an error.
const LOG_TAIL_LINES: usize = 25;

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
        let mut cmd = tokio::process::Command::new(&program);
        for var in crate::common::env::agent_only_env() {
            cmd.env_remove(var);
        }
        let mut child = cmd
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
        let mut cmd = std::process::Command::new(&self.binary);
        for var in crate::common::env::agent_only_env() {
            cmd.env_remove(var);
        }
        if self.config.background {
            use std::os::unix::process::CommandExt;
            // SAFETY: setpriority and the ioprio_set syscall are async-signal-safe;
            // nothing else runs between fork and exec. Set before exec, so every
            // thread mysqld creates inherits them.
            unsafe {
                cmd.pre_exec(lowest_priority);
            }
        }
        let child = cmd
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
        let log_path = &self.error_log();
        // The pid and why the last login failed, quoted if the deadline passes.
        let last = &std::sync::Mutex::new((0u32, String::new()));
        let waited = poll_until(
            "mysqld to accept connections",
            deadline.saturating_duration_since(Instant::now()),
            POLL,
            None,
            || async move {
                let pid = match self.poll_process() {
                    ProcessState::Running(pid) => pid,
                    ProcessState::Exited(status) => {
                        let status = status.map(|s| format!(" ({s})")).unwrap_or_default();
                        return Some(Err(anyhow!(
                            "mysqld exited{status} before accepting connections; {} ends with:\n{}",
                            log_path.display(),
                            log_tail(log_path, log_from, LOG_TAIL_LINES)
                        )));
                    }
                    ProcessState::NotTracked => return Some(Err(anyhow!("mysqld is not running"))),
                };
                match tokio::time::timeout(Duration::from_secs(2), self.conn()).await {
                    Ok(Ok(conn)) => {
                        let _ = conn.disconnect().await;
                        Some(Ok(()))
                    }
                    attempt => {
                        let why = match attempt {
                            Ok(Err(e)) => format!("{e:#}"),
                            _ => "login timed out".into(),
                        };
                        *lock(last) = (pid, why);
                        None
                    }
                }
            },
        )
        .await;
        match waited {
            Ok(ready) => ready,
            Err(_) => {
                let (pid, why) = lock(last).clone();
                bail!(
                    "mysqld (pid {pid}) did not accept connections on {} within {:?} (last attempt: {why}); {} ends with:\n{}",
                    self.socket,
                    self.config.start_timeout,
                    log_path.display(),
                    log_tail(log_path, log_from, LOG_TAIL_LINES)
                );
            }
        }
    }

    /// Stops the server cleanly (SIGTERM, which mysqld treats as SHUTDOWN), waits for
    /// it to exit, and SIGKILLs it after `timeout` (a hung or frozen server too:
    /// InnoDB's crash recovery makes the data consistent at the next start); returns
    /// within `timeout` + [`KILL_WAIT`]. Stops an untracked server for our
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
        if self.wait_exit(KILL_WAIT).await {
            return Ok(());
        }
        Err(anyhow!("mysqld (pid {pid}) survived SIGKILL"))
    }

    async fn wait_exit(&self, timeout: Duration) -> bool {
        poll_until("mysqld to exit", timeout, POLL, None, || async {
            (!self.is_running()).then_some(())
        })
        .await
        .is_ok()
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
}

/// In a child between fork and exec: CPU priority nice 19 and I/O priority
/// best-effort level 7 (both the lowest short of idle, which could starve). A
/// kernel or scheduler that ignores I/O priorities is no error.
fn lowest_priority() -> std::io::Result<()> {
    // SAFETY: plain syscalls on the calling process (who 0: itself).
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_BE: libc::c_long = 2;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: as above; the result is deliberately ignored (see the doc).
    unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn own_process_does_not_serve_a_datadir() {
        assert!(!process_serves_datadir(
            std::process::id(),
            Path::new("/nonexistent")
        ));
        assert!(!process_serves_datadir(u32::MAX, Path::new("/nonexistent")));
    }
}
