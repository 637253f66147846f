//! The xtrabackup engine: an online backup with `mariabackup --backup
//! --stream=xbstream` (Percona's `xtrabackup` where that is the tool), streamed
//! through the same compression and hashing pipeline into storage while the tablet
//! keeps serving. Restore unpacks the verified stream with `mbstream -x` (every
//! chunk's path checked on the way in by [`xbstream`]: nothing lands outside the
//! staging directory), runs `--prepare`, and leaves a data directory. The tools run
//! without the agent's `CAIRN_*` variables.
//!
//! The tool logs in as `--xtrabackup-user`; for an account other than the OS user
//! a fresh random password is set before each run and handed over in `MYSQL_PWD`,
//! so no password is stored or shown on a command line.
//!
//! May call: [`super::pipeline`], [`super::storage`], [`super::manifest`],
//! [`crate::mysql`] (the mysqld, its flavor and tools), [`crate::common`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use super::manifest::{BackupMethod, Manifest};
use super::params::{BackupParams, EngineConfig, RestoreParams};
use super::pipeline;
use super::storage::BackupStorage;
use crate::common::env::agent_only_env;
use crate::common::failpoint;
use crate::mysql::flavor::{find_on_path, Flavor, UserAuth};
use crate::mysql::mysqld::Mysqld;
use cairn_topo::StreamMode;
use xbstream::{check_no_symlinks, XbstreamGuard};

mod xbstream;

/// Size asked for the pipe from the backup tool.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Name of the stream inside the backup.
const STREAM_NAME: &str = "backup.xbstream";

/// Bytes of the tool's stream read before the `xtrabackup-while-streaming`
/// failpoint fires (enough for part of the stream to be in storage).
const STREAMING_FAILPOINT_AFTER: u64 = 4 << 20;

/// The backup tool's stdout as the pipeline reads it, counting bytes so a test can
/// kill the agent in the middle of the stream (failpoint
/// `xtrabackup-while-streaming`; nothing in a real build).
struct ToolStream<R> {
    inner: R,
    read: u64,
}

impl<R: std::io::Read> std::io::Read for ToolStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read >= STREAMING_FAILPOINT_AFTER {
            failpoint::hit("xtrabackup-while-streaming");
        }
        Ok(n)
    }
}

/// Finds the backup tool (in `--xtrabackup-root-path` if given, else PATH).
fn find_tool(names: &[&str], root: Option<&Path>) -> anyhow::Result<PathBuf> {
    for n in names {
        let found = match root {
            Some(r) => Some(r.join(n)).filter(|p| p.is_file()),
            None => find_on_path(n),
        };
        if let Some(p) = found {
            return Ok(p);
        }
    }
    match root {
        Some(r) => bail!(
            "none of {names:?} found in --xtrabackup-root-path {}",
            r.display()
        ),
        None => bail!("none of {names:?} found on PATH (install mariadb-backup)"),
    }
}

/// A command for a backup tool, without the agent's own `CAIRN_*` variables (the
/// replication password among them): the tool needs none of them.
fn tool_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for var in agent_only_env() {
        cmd.env_remove(var);
    }
    cmd
}

/// A backup tool's process (mariabackup, mbstream), SIGKILLed and reaped when
/// dropped unfinished: a cancelled job, or one aborted at shutdown, never leaves a
/// tool running behind the agent.
struct ToolChild(Option<std::process::Child>);

/// How often a tool's exit is polled.
const TOOL_POLL: std::time::Duration = std::time::Duration::from_millis(50);

impl ToolChild {
    /// Waits for the tool to exit without blocking a thread (a blocking wait on a
    /// hung tool would keep the runtime, hence the agent, from ending); on `cancel`
    /// the tool is killed, then reaped.
    async fn wait(
        &mut self,
        cancel: &CancellationToken,
    ) -> std::io::Result<std::process::ExitStatus> {
        let Some(child) = self.0.as_mut() else {
            return Err(std::io::Error::other("the tool was already reaped"));
        };
        let mut killed = false;
        loop {
            if let Some(status) = child.try_wait()? {
                self.0 = None;
                return Ok(status);
            }
            if !killed && cancel.is_cancelled() {
                let _ = child.kill();
                killed = true;
            }
            tokio::time::sleep(TOOL_POLL).await;
        }
    }

    /// Sends SIGKILL (the exit is then collected by [`ToolChild::wait`] or drop).
    fn kill(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
        }
    }
}

impl Drop for ToolChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The stream mode to use, refusing what the tool cannot do.
fn stream_mode(flavor: Flavor, asked: Option<StreamMode>) -> anyhow::Result<&'static str> {
    match (flavor, asked) {
        (_, None | Some(StreamMode::Xbstream)) => Ok("xbstream"),
        (Flavor::MariaDB, Some(StreamMode::Tar)) => bail!(
            "--xtrabackup-stream-mode tar is not supported by MariaDB's mariabackup (it streams xbstream only)"
        ),
    }
}

/// Reads the GTID of the backup from the tool's info file
/// (`binlog_pos = filename '…', position '…', GTID of the last change '0-1-5'`),
/// or from the same sentence in its log.
pub fn parse_backup_gtid(text: &str) -> Option<String> {
    let marker = "GTID of the last change '";
    let start = text.rfind(marker)? + marker.len();
    let end = text[start..].find('\'')? + start;
    Some(text[start..end].to_string())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Takes an online backup; mysqld keeps running.
pub async fn backup(
    mysqld: &mut Mysqld,
    storage: &dyn BackupStorage,
    p: &BackupParams,
    cfg: &EngineConfig,
) -> anyhow::Result<Manifest> {
    let flavor = mysqld.flavor();
    let mode = stream_mode(flavor, cfg.xtrabackup_stream_mode)?;
    let tool = find_tool(
        flavor.backup_tool_names(),
        cfg.xtrabackup_root_path.as_deref(),
    )?;
    let user = cfg.xtrabackup_user.clone().unwrap_or_else(|| "root".into());
    let password = if user == "root" {
        None
    } else {
        let pw = format!("{:032x}", rand::random::<u128>());
        mysqld
            .ensure_backup_tool_user(&user, &UserAuth::Password(pw.clone()))
            .await
            .with_context(|| format!("preparing the --xtrabackup-user account {user}"))?;
        Some(pw)
    };
    let version = mysqld.version().await.unwrap_or_default();
    let scratch = cfg.work_dir.join("xtrabackup-scratch");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(scratch.join("lsn"))
        .with_context(|| format!("creating {}", scratch.display()))?;
    let log_path = cfg.work_dir.join("xtrabackup.log");
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;

    let mut cmd = tool_command(&tool);
    cmd.arg("--backup")
        .arg(format!("--stream={mode}"))
        .arg(format!("--target-dir={}", scratch.join("target").display()))
        .arg(format!("--extra-lsndir={}", scratch.join("lsn").display()))
        .arg(format!("--socket={}", mysqld.socket_path().display()))
        .arg(format!("--datadir={}", mysqld.data_dir().display()))
        .arg(format!("--user={user}"))
        .arg(format!("--parallel={}", p.copy.concurrency.max(1)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    if let Some(pw) = &password {
        cmd.env("MYSQL_PWD", pw);
    }
    let mut child = ToolChild(Some(
        cmd.spawn()
            .with_context(|| format!("running {}", tool.display()))?,
    ));
    let stdout = child
        .0
        .as_mut()
        .context("the backup tool has no process")?
        .stdout
        .take()
        .context("the backup tool has no stdout")?;
    // A bigger pipe (64 KiB by default) means fewer, larger reads into the pipeline.
    {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a pipe fd we own; failure only leaves the default size.
        unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    }
    let writer = match storage.start_backup(&p.keyspace, &p.shard, &p.name).await {
        Ok(w) => w,
        Err(e) => {
            drop(child);
            return Err(
                anyhow::Error::new(e).context(format!("starting backup {} in storage", p.name))
            );
        }
    };
    tracing::info!(tool = %tool.display(), name = %p.name, "streaming an online backup");
    let stream = pipeline::backup_stream(
        writer.as_ref(),
        ToolStream {
            inner: stdout,
            read: 0,
        },
        STREAM_NAME,
        &p.copy,
        p.progress.clone(),
        p.cancel.clone(),
    );
    tokio::pin!(stream);
    // Cancelled: the tool is killed at once, not when the copy next looks (a slow
    // storage write can keep it busy for a while).
    let streamed = tokio::select! {
        r = &mut stream => r,
        () = p.cancel.cancelled() => {
            child.kill();
            stream.await
        }
    };
    if streamed.is_err() {
        child.kill();
    }
    let status = child
        .wait(&p.cancel)
        .await
        .context("waiting for the backup tool")?;
    let fail = |why: anyhow::Error| async {
        if let Err(e) = writer.abort().await {
            tracing::warn!(error = %e, "could not remove the partial backup; it stays incomplete (no MANIFEST)");
        }
        why
    };
    let entry = match streamed {
        Ok(e) => e,
        Err(e) => return Err(fail(e.context(format!("streaming backup {}", p.name))).await),
    };
    if !status.success() {
        let why = anyhow::anyhow!(
            "{} failed ({status}); its log ends with: {}",
            tool.display(),
            tail(&log_path, 5)
        );
        return Err(fail(why).await);
    }
    let info = ["xtrabackup_info", "mariadb_backup_info"]
        .iter()
        .find_map(|f| fs::read_to_string(scratch.join("lsn").join(f)).ok())
        .unwrap_or_default();
    let log_text = fs::read_to_string(&log_path).unwrap_or_default();
    let Some(gtid) = parse_backup_gtid(&info).or_else(|| parse_backup_gtid(&log_text)) else {
        return Err(fail(anyhow::anyhow!(
            "the backup tool did not report a GTID position"
        ))
        .await);
    };
    let _ = fs::remove_dir_all(&scratch);
    // The whole stream is in storage; no MANIFEST yet (the backup is incomplete).
    failpoint::hit("xtrabackup-after-stream");
    let mut manifest = p.manifest(
        BackupMethod::Xtrabackup,
        format!("{}/{gtid}", flavor.name()),
        version,
        flavor.name(),
        vec![entry],
    );
    manifest.upgrade_safe = true;
    manifest.stream_mode = Some(mode.to_string());
    if let Err(e) = writer.write_manifest(&manifest).await {
        return Err(fail(
            anyhow::Error::new(e).context(format!("writing the MANIFEST of {}", p.name)),
        )
        .await);
    }
    // Complete in storage; the job is still RUNNING and the backup not catalogued.
    failpoint::hit("xtrabackup-after-manifest");
    Ok(manifest)
}

/// Restores an xtrabackup backup into `p.staging`: verified stream into
/// `mbstream -x`, then `--prepare`.
pub async fn restore(p: RestoreParams<'_>) -> anyhow::Result<()> {
    let from = p.stored();
    let RestoreParams {
        manifest,
        staging,
        cfg,
        progress,
        cancel,
        ..
    } = p;
    if manifest
        .stream_mode
        .as_deref()
        .is_some_and(|m| m != "xbstream")
    {
        bail!(
            "backup {} is a {:?} stream; only xbstream can be restored here",
            manifest.backup_name,
            manifest.stream_mode
        );
    }
    let flavor = Flavor::MariaDB;
    let tool = find_tool(
        flavor.backup_tool_names(),
        cfg.xtrabackup_root_path.as_deref(),
    )?;
    let unpacker = find_tool(
        &["mbstream", "xbstream"],
        cfg.xtrabackup_root_path.as_deref(),
    )?;
    fs::create_dir_all(staging).with_context(|| format!("creating {}", staging.display()))?;
    // A symlink already in staging would carry the unpacked files elsewhere.
    check_no_symlinks(staging)?;
    let log_path = cfg.work_dir.join("xtrabackup-restore.log");
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let log2 = log.try_clone().context("duplicating a log handle")?;
    let mut unpack = ToolChild(Some(
        tool_command(&unpacker)
            .arg("-x")
            .arg("-C")
            .arg(staging)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .with_context(|| format!("running {}", unpacker.display()))?,
    ));
    let stdin = unpack
        .0
        .as_mut()
        .and_then(|c| c.stdin.take())
        .context("mbstream has no stdin")?;
    // Every chunk's path is checked before mbstream sees it: nothing lands outside
    // the staging directory.
    let guarded = XbstreamGuard::new(stdin);
    let piped = pipeline::restore_stream(from, guarded, progress, cancel.clone());
    tokio::pin!(piped);
    let piped = tokio::select! {
        r = &mut piped => r,
        () = cancel.cancelled() => {
            unpack.kill();
            piped.await
        }
    };
    let piped = piped.and_then(|(guarded, _)| {
        let mut stdin = guarded.finish().context("the end of the backup stream")?;
        stdin.flush().context("flushing into mbstream")?;
        drop(stdin);
        Ok(())
    });
    if piped.is_err() {
        unpack.kill();
    }
    let status = unpack.wait(&cancel).await.context("waiting for mbstream")?;
    piped.with_context(|| format!("reading backup {}", manifest.backup_name))?;
    if !status.success() {
        bail!(
            "{} failed ({status}): {}",
            unpacker.display(),
            tail(&log_path, 5)
        );
    }
    check_no_symlinks(staging)
        .with_context(|| format!("unpacking backup {}", manifest.backup_name))?;
    let prepare_log = fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let prepare_log2 = prepare_log
        .try_clone()
        .context("duplicating a log handle")?;
    let mut prepare = ToolChild(Some(
        tool_command(&tool)
            .arg("--prepare")
            .arg(format!("--target-dir={}", staging.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(prepare_log))
            .stderr(Stdio::from(prepare_log2))
            .spawn()
            .with_context(|| format!("running {} --prepare", tool.display()))?,
    ));
    let status = prepare
        .wait(&cancel)
        .await
        .context("waiting for --prepare")?;
    if !status.success() {
        bail!(
            "{} --prepare failed ({status}): {}",
            tool.display(),
            tail(&log_path, 5)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_from_tool_output() {
        let info = "binlog_pos = filename 'mysql-bin.000001', position '749', GTID of the last change '0-5-3'\n";
        assert_eq!(parse_backup_gtid(info).as_deref(), Some("0-5-3"));
        assert_eq!(parse_backup_gtid("nothing here"), None);
        let multi = "GTID of the last change '0-1-2,1-2-3'";
        assert_eq!(parse_backup_gtid(multi).as_deref(), Some("0-1-2,1-2-3"));
    }

    #[test]
    fn tar_is_refused_for_mariadb() {
        let e = stream_mode(Flavor::MariaDB, Some(StreamMode::Tar))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not supported by MariaDB"), "{e}");
        assert_eq!(stream_mode(Flavor::MariaDB, None).unwrap(), "xbstream");
    }
}
