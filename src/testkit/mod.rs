//! Real processes on loopback for integration tests, benchmarks and the
//! local-cluster example: an etcd (from `cairn_topo::testkit`), `cairn tablet` agents
//! each running a real mariadbd in its own temporary directory, `cairn coordinator`
//! processes, the `cairn` CLI, and for the `s3` storage a moto S3 server and a
//! fault-injecting TCP proxy.
//!
//! Everything is cleaned up on drop, even when a test fails: agents and their
//! mysqld (found through the pid file, since a `kill -9`ed agent leaves it behind)
//! are killed, and a dropped [`Cluster`] kills whatever still runs with a path
//! inside its directory (`reap`: orphaned mariadbd, agents, mariabackup), then
//! removes it.
//!
//! Owns: this file the etcd + scratch-dir [`Cluster`] (one plaintext etcd by
//! default; TLS with client certificates, etcd auth with a user limited to the
//! root, or several members with [`ClusterOptions`]) and the CLI runner;
//! [`tablet`](self) the agent processes, [`coordinator`](self) the coordinator
//! processes, `http` a dependency-free HTTP client, `s3` the moto S3 server,
//! `proxy` the fault-injecting TCP proxy, `shard` the shared set-up of a
//! primary and a replica with rows and its waits, `reap` the cleanup of orphaned
//! processes, `wait` the one polling helper
//! ([`wait_for`], [`Wait`]) every test and benchmark waits with. It may call the
//! `cairn` binary, `cairn_topo` and `crate::common`; nothing in the library calls it.

mod coordinator;
mod http;
mod proxy;
mod reap;
mod s3;
mod shard;
mod tablet;
mod wait;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_topo::testkit::auth::{enable_auth, AuthSetup};
use cairn_topo::testkit::{leader_index, start_cluster, EtcdOptions, EtcdServer, TestCerts};
use cairn_topo::{Topo, TopoConfig};
use tempfile::TempDir;

/// What a [`Wait`] that timed out fails with (unless a retried check failed).
pub use crate::common::wait::WaitError;
pub use coordinator::CoordinatorProcess;
pub use http::{http_get, http_request};
pub use proxy::{FaultProxy, ProxyMode};
pub use reap::processes_under;
pub use s3::{MotoServer, AWS_ENV};
pub use shard::ROWS_TABLE;
pub use tablet::{mysql_client, TabletProcess, TabletSpec};
pub use wait::{wait_for, Wait};

/// `--min-schedule-period` of every `cairn` command and coordinator a [`Cluster`]
/// runs (as `CAIRN_MIN_SCHEDULE_PERIOD`; a flag given explicitly wins): tests run
/// schedules every few seconds, which the default (5m) refuses.
pub const TEST_MIN_SCHEDULE_PERIOD: &str = "1s";

/// Name of the limited user's password file in the cluster dir.
const PASSWORD_FILE: &str = "topo-password";

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

/// What kind of etcd a [`Cluster`] runs: the default is one plaintext member
/// without auth, as every test had before these options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// Members of the etcd cluster (0 and 1 both mean one).
    pub etcd_members: usize,
    /// etcd serves TLS only and requires client certificates; certificates are
    /// generated for the cluster with `openssl` ([`Cluster::certs`]) and every
    /// `cairn` process gets `--topo-cacert/--topo-cert/--topo-key`.
    pub tls: bool,
    /// etcd auth is on and every `cairn` process runs as a user whose only role
    /// grants readwrite on `<root>/` ([`Cluster::auth`]), with
    /// `--topo-user/--topo-password-file`.
    pub auth: bool,
}

/// An etcd (one member or several) plus a scratch directory for tablets and
/// backup storage.
pub struct Cluster {
    /// The topology server (the first member of a multi-member cluster).
    pub etcd: EtcdServer,
    /// The other members of a multi-member cluster (empty for one member).
    pub etcd_peers: Vec<EtcdServer>,
    /// The TLS material, when etcd serves TLS.
    pub certs: Option<Arc<TestCerts>>,
    /// The users and role, when etcd auth is on.
    pub auth: Option<AuthSetup>,
    /// Holds every tablet dir and the backup storage root.
    pub dir: TempDir,
    /// The `cairn` binary under test.
    pub bin: PathBuf,
    /// `--topo-root` used by everything in this cluster.
    pub root: String,
    /// The storage flags its tablets and coordinators get (default: the `file`
    /// storage at [`Cluster::backup_root`]; [`Cluster::use_storage`] changes them).
    pub storage_flags: Vec<String>,
    /// Environment its tablets, coordinators and CLI runs get (e.g. AWS credentials).
    pub storage_env: Vec<(String, String)>,
}

impl Cluster {
    /// One plaintext etcd without auth.
    pub async fn start(bin: PathBuf) -> anyhow::Result<Cluster> {
        Self::start_with(bin, ClusterOptions::default()).await
    }

    /// An etcd as `opts` says.
    pub async fn start_with(bin: PathBuf, opts: ClusterOptions) -> anyhow::Result<Cluster> {
        let certs = if opts.tls {
            Some(Arc::new(
                TestCerts::generate().context("generating TLS certificates")?,
            ))
        } else {
            None
        };
        let etcd_opts = EtcdOptions { tls: certs.clone() };
        let mut members = start_cluster(opts.etcd_members.max(1), &etcd_opts)
            .await
            .context("starting etcd")?;
        let dir = tempfile::Builder::new()
            .prefix("cairn-cluster-")
            .tempdir()
            .context("creating the cluster dir")?;
        let storage_flags = vec![
            "--file-backup-storage-root".into(),
            dir.path().join("backups").display().to_string(),
        ];
        let root = "/cairn".to_string();
        let auth = if opts.auth {
            let setup = AuthSetup::limited_to(&format!("{root}/"));
            let mut all: Vec<&mut EtcdServer> = members.iter_mut().collect();
            enable_auth(&mut all, &setup).context("enabling etcd auth")?;
            std::fs::write(
                dir.path().join(PASSWORD_FILE),
                format!("{}\n", setup.password),
            )
            .context("writing the topo password file")?;
            Some(setup)
        } else {
            None
        };
        let etcd_peers = members.split_off(1);
        let etcd = members
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no etcd member was started"))?;
        Ok(Cluster {
            etcd,
            etcd_peers,
            certs,
            auth,
            dir,
            bin,
            root,
            storage_flags,
            storage_env: vec![],
        })
    }

    /// Every etcd member, the first one first.
    pub fn etcd_members(&self) -> Vec<&EtcdServer> {
        std::iter::once(&self.etcd)
            .chain(self.etcd_peers.iter())
            .collect()
    }

    /// Member `i` (0 is [`Cluster::etcd`]), to stop, restart, freeze or thaw.
    pub fn etcd_member_mut(&mut self, i: usize) -> anyhow::Result<&mut EtcdServer> {
        match i {
            0 => Ok(&mut self.etcd),
            i => self
                .etcd_peers
                .get_mut(i - 1)
                .ok_or_else(|| anyhow::anyhow!("no etcd member {i}")),
        }
    }

    /// The index of the raft leader among the running members, from
    /// `etcdctl endpoint status`. Frozen members must be thawed first.
    pub fn etcd_leader(&self) -> anyhow::Result<usize> {
        let running: Vec<(usize, &EtcdServer)> = self
            .etcd_members()
            .into_iter()
            .enumerate()
            .filter(|(_, m)| m.pid().is_some())
            .collect();
        let members: Vec<&EtcdServer> = running.iter().map(|(_, m)| *m).collect();
        let i = leader_index(&members)?;
        Ok(running[i].0)
    }

    /// `HOST:PORT` of every member, as `--topo-server` takes them.
    pub fn topo_endpoints(&self) -> Vec<String> {
        self.etcd_members().iter().map(|m| m.endpoint()).collect()
    }

    /// The file holding the limited user's password (auth clusters).
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join(PASSWORD_FILE)
    }

    pub fn topo_config(&self) -> TopoConfig {
        let mut cfg = self.etcd.config(&self.root);
        cfg.endpoints = self.topo_endpoints();
        if let Some(auth) = &self.auth {
            cfg.user = Some(auth.user.clone());
            cfg.password_file = Some(self.password_file());
        }
        cfg
    }

    pub async fn topo(&self) -> anyhow::Result<Topo> {
        Ok(Topo::connect(&self.topo_config(), Some(Duration::from_secs(10))).await?)
    }

    /// The file backup storage root shared by the cluster's tablets.
    pub fn backup_root(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// Points the tablets and coordinators spawned from now on (and
    /// [`Cluster::storage_args`]) at another storage, e.g. [`MotoServer::flags`],
    /// with `env` (e.g. [`AWS_ENV`]) for every process the cluster runs.
    pub fn use_storage(&mut self, flags: Vec<String>, env: &[(&str, &str)]) {
        self.storage_flags = flags;
        self.storage_env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// The storage flags, for admin commands that read storage.
    pub fn storage_args(&self) -> Vec<&str> {
        self.storage_flags.iter().map(String::as_str).collect()
    }

    /// Global flags pointing a `cairn` command at this cluster: every member,
    /// the root, and the TLS and auth flags the cluster needs.
    pub fn global_args(&self) -> Vec<String> {
        let mut args = vec![
            "--topo-server".into(),
            self.topo_endpoints().join(","),
            "--topo-root".into(),
            self.root.clone(),
        ];
        if let Some(certs) = &self.certs {
            let client = certs.client();
            for (flag, path) in [
                ("--topo-cacert", certs.ca()),
                ("--topo-cert", client.cert),
                ("--topo-key", client.key),
            ] {
                args.push(flag.into());
                args.push(path.display().to_string());
            }
        }
        if let Some(auth) = &self.auth {
            args.push("--topo-user".into());
            args.push(auth.user.clone());
            args.push("--topo-password-file".into());
            args.push(self.password_file().display().to_string());
        }
        args
    }

    /// Runs `cairn ARGS… GLOBALS…` with global flags of the caller's choosing
    /// (e.g. a wrong certificate), not the cluster's.
    pub fn cli_with_globals(&self, args: &[&str], globals: &[String]) -> anyhow::Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .args(globals)
            .envs(self.storage_env.iter().map(|(k, v)| (k, v)))
            .env("CAIRN_MIN_SCHEDULE_PERIOD", TEST_MIN_SCHEDULE_PERIOD)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running cairn {}", args.join(" ")))
    }

    /// Runs `cairn ARGS…` against this cluster and returns its output (with the
    /// tests' [`TEST_MIN_SCHEDULE_PERIOD`] unless ARGS give the flag).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.cli_with_globals(args, &self.global_args())
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

impl Drop for Cluster {
    /// Kills every process still running with a path inside the cluster's
    /// directory (a failed test's orphaned mariadbd or agent) before the directory
    /// goes; other clusters' processes never match.
    fn drop(&mut self) {
        let killed = reap::kill_processes_under(self.dir.path());
        if killed > 0 {
            eprintln!(
                "testkit: killed {killed} process(es) left running under {}",
                self.dir.path().display()
            );
        }
    }
}
