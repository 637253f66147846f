//! Real processes on loopback for integration tests, benchmarks and the
//! local-cluster example: an etcd (from `cairn_topo::testkit`), `cairn tablet` agents
//! each running a real mariadbd in its own temporary directory, `cairn coordinator`
//! processes, and the `cairn` CLI.
//!
//! Everything is cleaned up on drop, even when a test fails: agents and their
//! mysqld (found through the pid file, since a `kill -9`ed agent leaves it behind)
//! are killed, directories removed.
//!
//! Owns: this file the etcd + scratch-dir [`Cluster`] and the CLI runner;
//! [`tablet`](self) the agent processes, [`coordinator`](self) the coordinator
//! processes, `http` a dependency-free HTTP GET, `wait` the one polling helper
//! ([`wait_for`], [`Wait`]) every test and benchmark waits with. It may call the
//! `cairn` binary, `cairn_topo` and `crate::common`; nothing in the library calls it.

mod coordinator;
mod http;
mod tablet;
mod wait;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_topo::testkit::EtcdServer;
use cairn_topo::{Topo, TopoConfig};
use tempfile::TempDir;

/// What a [`Wait`] that timed out fails with (unless a retried check failed).
pub use crate::common::wait::WaitError;
pub use coordinator::CoordinatorProcess;
pub use http::http_get;
pub use tablet::{mysql_client, TabletProcess, TabletSpec};
pub use wait::{wait_for, Wait};

/// `--min-schedule-period` of every `cairn` command and coordinator a [`Cluster`]
/// runs (as `CAIRN_MIN_SCHEDULE_PERIOD`; a flag given explicitly wins): tests run
/// schedules every few seconds, which the default (5m) refuses.
pub const TEST_MIN_SCHEDULE_PERIOD: &str = "1s";

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

    /// Runs `cairn ARGS…` against this cluster and returns its output (with the
    /// tests' [`TEST_MIN_SCHEDULE_PERIOD`] unless ARGS give the flag).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .args(self.global_args())
            .env("CAIRN_MIN_SCHEDULE_PERIOD", TEST_MIN_SCHEDULE_PERIOD)
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
}
