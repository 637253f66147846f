//! Applying binary log files to a running server, the way point-in-time restores
//! do: `mariadb-binlog [--start-position=GTIDS] --stop-position=GTIDS FILES… |
//! mariadb` over the server's socket, with the time zone pinned to UTC. Both
//! tools' exit codes and standard error are captured and reported together (a
//! dropped `mysqlbinlog` error once let Vitess report a half-applied restore as
//! done: vitessio/vitess#15277); either failing fails the apply. An `impl Mysqld`
//! block, so only holders of the server apply to it.
//!
//! May call: [`super::mysqld`], [`super::flavor`] (tool lookup), `common`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use super::flavor::find_on_path;
use super::mysqld::Mysqld;

/// The binlog reader, MariaDB's name first.
const BINLOG_TOOLS: &[&str] = &["mariadb-binlog", "mysqlbinlog"];
/// The client, MariaDB's name first.
const CLIENT_TOOLS: &[&str] = &["mariadb", "mysql"];
/// How much of each tool's standard error is kept for the error message (its end).
const STDERR_KEEP: usize = 4096;

/// One run of the apply: files in `dir` (in order), from `start` (exclusive,
/// empty = from each file's start) to `stop` (inclusive), GTID lists without the
/// flavor prefix.
#[derive(Debug, Clone)]
pub struct BinlogApply<'a> {
    /// The directory holding the files (their names are passed relative to it).
    pub dir: &'a Path,
    /// Binlog file names, in order.
    pub files: &'a [String],
    /// `--start-position`, a GTID list (`0-101-42`), or empty.
    pub start: &'a str,
    /// `--stop-position`, a GTID list.
    pub stop: &'a str,
}

/// The binlog reader's arguments. Pure.
pub fn binlog_tool_args(a: &BinlogApply<'_>) -> Vec<String> {
    let mut v = vec!["--no-defaults".to_string()];
    if !a.start.is_empty() {
        v.push(format!("--start-position={}", a.start));
    }
    if !a.stop.is_empty() {
        v.push(format!("--stop-position={}", a.stop));
    }
    // Names come from a MANIFEST through the restore's own check; `--` keeps one
    // that starts with a dash from being read as an option.
    v.push("--".into());
    v.extend(a.files.iter().cloned());
    v
}

/// The client's arguments: the server's socket as its admin user, binary-safe
/// input, stop at the first error. Pure.
pub fn client_args(socket: &Path, user: &str) -> Vec<String> {
    vec![
        "--no-defaults".into(),
        format!("--socket={}", socket.display()),
        format!("--user={user}"),
        "--binary-mode".into(),
        "--batch".into(),
    ]
}

fn find_tool(names: &[&str]) -> Result<PathBuf> {
    names
        .iter()
        .find_map(|n| find_on_path(n))
        .with_context(|| format!("none of {} found on PATH", names.join(", ")))
}

/// Reads a tool's standard error to its end, keeping the last [`STDERR_KEEP`] bytes.
async fn read_tail(mut r: impl AsyncRead + Unpin) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 2 * STDERR_KEEP {
                    buf.drain(..buf.len() - STDERR_KEEP);
                }
            }
        }
    }
    let start = buf.len().saturating_sub(STDERR_KEEP);
    String::from_utf8_lossy(&buf[start..])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The one-line outcome of the two tools, `Ok` only when both exited 0. Pure.
pub fn judge_apply(
    reader: (&str, Option<ExitStatus>, &str),
    client: (&str, Option<ExitStatus>, &str),
) -> std::result::Result<(), String> {
    let failed: Vec<String> = [reader, client]
        .iter()
        .filter(|(_, st, _)| !st.is_some_and(|s| s.success()))
        .map(|(tool, st, err)| {
            let how = match st {
                Some(s) => match s.code() {
                    Some(c) => format!("exited with {c}"),
                    None => "was killed by a signal".into(),
                },
                None => "did not finish".into(),
            };
            if err.is_empty() {
                format!("{tool} {how}")
            } else {
                format!("{tool} {how}: {err}")
            }
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

impl Mysqld {
    /// Applies `a` to this (running) server: `mariadb-binlog … | mariadb`, `TZ=UTC`,
    /// without the agent's `CAIRN_*` variables. Fails with both tools' exit codes and
    /// standard error when either fails; on `cancel` both are killed.
    pub async fn apply_binlogs(
        &self,
        a: &BinlogApply<'_>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let reader_bin = find_tool(BINLOG_TOOLS)?;
        let client_bin = find_tool(CLIENT_TOOLS)?;
        let tool = |bin: &Path| {
            let mut cmd = tokio::process::Command::new(bin);
            for var in crate::common::env::agent_only_env() {
                cmd.env_remove(var);
            }
            cmd.env("TZ", "UTC")
                .current_dir(a.dir)
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            cmd
        };
        let mut reader = tool(&reader_bin)
            .args(binlog_tool_args(a))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", reader_bin.display()))?;
        let pipe: Stdio = reader
            .stdout
            .take()
            .context("the binlog reader has no stdout")?
            .try_into()
            .context("passing the binlog reader's output on")?;
        let mut client = tool(&client_bin)
            .args(client_args(&self.socket_path(), self.admin_user()))
            .stdin(pipe)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", client_bin.display()))?;
        let reader_err = tokio::spawn(read_tail(reader.stderr.take().context("no stderr")?));
        let client_err = tokio::spawn(read_tail(client.stderr.take().context("no stderr")?));
        let waited = async { (reader.wait().await.ok(), client.wait().await.ok()) };
        // On cancel both children are dropped, and so killed (`kill_on_drop`).
        let (rs, cs) = tokio::select! {
            w = waited => w,
            _ = cancel.cancelled() => bail!("applying binlogs cancelled"),
        };
        let rerr = reader_err.await.unwrap_or_default();
        let cerr = client_err.await.unwrap_or_default();
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        judge_apply(
            (&name(&reader_bin), rs, &rerr),
            (&name(&client_bin), cs, &cerr),
        )
        .map_err(|e| anyhow::anyhow!("applying {}: {e}", a.files.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn tool_arguments() {
        let files = vec!["mysql-bin.000002".to_string(), "-x".to_string()];
        let a = BinlogApply {
            dir: Path::new("/d"),
            files: &files,
            start: "0-101-5",
            stop: "0-101-9",
        };
        assert_eq!(
            binlog_tool_args(&a),
            [
                "--no-defaults",
                "--start-position=0-101-5",
                "--stop-position=0-101-9",
                "--",
                "mysql-bin.000002",
                "-x"
            ]
        );
        let a = BinlogApply { start: "", ..a };
        assert!(!binlog_tool_args(&a)
            .iter()
            .any(|s| s.starts_with("--start")));
        let c = client_args(Path::new("/t/mysql.sock"), "root");
        assert_eq!(c[0], "--no-defaults");
        assert!(c.contains(&"--socket=/t/mysql.sock".to_string()));
    }

    #[test]
    fn either_tool_failing_fails_the_apply_and_both_are_named() {
        let ok = Some(ExitStatus::from_raw(0));
        let one = Some(ExitStatus::from_raw(1 << 8));
        let killed = Some(ExitStatus::from_raw(9));
        assert_eq!(judge_apply(("r", ok, ""), ("c", ok, "")), Ok(()));
        assert_eq!(
            judge_apply(("r", one, "ERROR: missing data"), ("c", ok, "")),
            Err("r exited with 1: ERROR: missing data".into())
        );
        assert_eq!(
            judge_apply(("r", killed, ""), ("c", one, "ERROR 1062 dup")),
            Err("r was killed by a signal; c exited with 1: ERROR 1062 dup".into())
        );
        assert_eq!(
            judge_apply(("r", None, ""), ("c", ok, "")),
            Err("r did not finish".into())
        );
    }
}
