//! A primary's binlog, streamed over a replication connection into a local spool
//! directory: `mariadb-binlog --read-from-remote-server --raw --stop-never`
//! writes each binlog file of the primary byte for byte under its own name
//! (`<spool>/mysql-bin.000003`) as the primary writes it, rotating with it; the
//! archiver cuts what arrived into segments. Also the few questions asked of the
//! primary over TCP to pick where to start (its binlog files, the GTID state at
//! the head of each, its server_id).
//!
//! The tool gets none of the agent's `CAIRN_*` variables; the password goes in its
//! environment (`MYSQL_PWD`), never on its command line. Its stderr goes to a file
//! beside the spool, quoted when it exits. It is killed with the agent (dropped,
//! or the agent killed: `PR_SET_PDEATHSIG`), and all its streams connect with one
//! replication server_id, so the primary drops an older stream when a newer one
//! connects.
//!
//! May call: [`crate::common`].

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

/// Where and how to stream from.
#[derive(Debug, Clone)]
pub struct StreamSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// The tool's arguments (the password is not among them). Pure.
pub fn stream_args(src: &StreamSource, first_file: &str, spool: &Path) -> Vec<String> {
    vec![
        "--no-defaults".into(),
        "--read-from-remote-server".into(),
        "--raw".into(),
        "--stop-never".into(),
        "--to-last-log".into(),
        format!("--host={}", src.host),
        format!("--port={}", src.port),
        "--protocol=TCP".into(),
        format!("--user={}", src.user),
        // The tool's replication connection needs a server_id no server uses.
        "--stop-never-slave-server-id=4294967001".into(),
        format!("--result-file={}/", spool.display()),
        first_file.into(),
    ]
}

/// A running stream; the tool is killed when this is dropped.
pub struct BinlogStream {
    child: tokio::process::Child,
    stderr: PathBuf,
}

impl BinlogStream {
    /// Starts streaming `first_file` and every later one into `spool` (created;
    /// its old files are left alone).
    pub fn start(src: &StreamSource, first_file: &str, spool: &Path) -> Result<Self> {
        std::fs::create_dir_all(spool)
            .with_context(|| format!("creating the spool directory {}", spool.display()))?;
        let stderr = spool.with_extension("stderr");
        let err_file = std::fs::File::create(&stderr)
            .with_context(|| format!("creating {}", stderr.display()))?;
        let mut cmd = tokio::process::Command::new("mariadb-binlog");
        for var in crate::common::env::agent_only_env() {
            cmd.env_remove(var);
        }
        cmd.args(stream_args(src, first_file, spool))
            .env("MYSQL_PWD", &src.password)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err_file))
            .kill_on_drop(true);
        // Dies with the agent, even a killed one: an orphan must never go on
        // writing into a spool a new session reads.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .context("starting mariadb-binlog (is the MariaDB client installed?)")?;
        Ok(Self { child, stderr })
    }

    /// `Some(why)` once the tool has exited (it never does on its own while the
    /// primary serves).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => {
                let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                let err = err.trim().lines().last().unwrap_or("").to_string();
                Some(format!("mariadb-binlog exited ({status}): {err}"))
            }
            Err(e) => Some(format!("mariadb-binlog cannot be waited for: {e}")),
        }
    }

    /// Stops the tool.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// What the primary says about its binlogs.
pub struct PrimaryBinlogs {
    /// Its `server_id`.
    pub server_id: u32,
    /// Its binlog files, oldest first, each with the GTID state before it
    /// (`BINLOG_GTID_POS(file, 4)`, empty for the first file ever written).
    pub files: Vec<(String, String)>,
}

/// Asks the primary (as the replication user, over TCP) for its server_id and
/// binlog files with the GTID state at the head of each.
pub async fn primary_binlogs(src: &StreamSource) -> Result<PrimaryBinlogs> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(src.host.clone())
        .tcp_port(src.port)
        .user(Some(src.user.clone()))
        .pass(Some(src.password.clone()))
        .prefer_socket(false);
    let mut conn = Conn::new(opts)
        .await
        .with_context(|| format!("connecting to the primary {}:{}", src.host, src.port))?;
    let r = async {
        let server_id: Option<u32> = conn.query_first("SELECT @@server_id").await?;
        let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
        let mut files = Vec::new();
        for row in rows {
            let Some(Ok(name)) = row.get_opt::<String, _>(0) else {
                continue;
            };
            let pos: Option<Option<String>> = conn
                .exec_first("SELECT BINLOG_GTID_POS(?, 4)", (name.clone(),))
                .await?;
            files.push((name, pos.flatten().unwrap_or_default()));
        }
        anyhow::Ok(PrimaryBinlogs {
            server_id: server_id.unwrap_or(0),
            files,
        })
    }
    .await
    .context("reading the primary's binlog list");
    let _ = conn.disconnect().await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_an_argument() {
        let src = StreamSource {
            host: "10.0.0.5".into(),
            port: 3306,
            user: "repl".into(),
            password: "s3cret".into(),
        };
        let args = stream_args(&src, "mysql-bin.000007", Path::new("/t/spool"));
        assert!(args.iter().all(|a| !a.contains("s3cret")));
        assert_eq!(args.last().map(String::as_str), Some("mysql-bin.000007"));
        assert!(args.contains(&"--result-file=/t/spool/".to_string()));
        assert!(args.contains(&"--host=10.0.0.5".to_string()));
        assert!(args.contains(&"--raw".to_string()) && args.contains(&"--stop-never".to_string()));
    }
}
