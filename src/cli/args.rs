//! The command line of the `cairn` binary: global flags, subcommands and their flags,
//! as fixed by the contract. Parsing and the normalisation of Vitess-style spellings
//! (`-flag_name`, `--flag_name`) live here; behaviour lives in the command modules.

use std::path::PathBuf;
use std::time::Duration;

use cairn_topo::names::{self, TabletAlias};
use cairn_topo::{BackupMethod, CompressionEngine, StreamMode, TabletType};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::common::parse_duration;

mod archive;
mod backups;
mod schedule;
mod storage;
pub use archive::{ArchiveCommand, ArchiveSetArgs};
pub use backups::{
    BackupArgs, BackupShardArgs, DrillArgs, JobFlags, ListBackupsArgs, RemoveBackupArgs,
    RestoreArgs, VerifyArgs,
};
pub use schedule::{ScheduleCommand, SchedulePruneArgs, ScheduleSetArgs};
pub use storage::{EncryptionArgs, StorageArg, StorageArgs};

/// cairn: backups and seeded replicas for a sharded MariaDB/MySQL fleet, coordinated
/// through etcd.
#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand understands; each also reads an environment variable.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// etcd endpoints, HOST:PORT[,HOST:PORT…]
    #[arg(
        long,
        global = true,
        env = "CAIRN_TOPO_SERVER",
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub topo_server: Vec<String>,
    /// Prefix of every key cairn writes in etcd
    #[arg(long, global = true, env = "CAIRN_TOPO_ROOT", default_value = "/cairn")]
    pub topo_root: String,
    /// CA certificate for TLS to etcd
    #[arg(long, global = true, env = "CAIRN_TOPO_CACERT")]
    pub topo_cacert: Option<PathBuf>,
    /// Client certificate for mutual TLS to etcd
    #[arg(long, global = true, env = "CAIRN_TOPO_CERT")]
    pub topo_cert: Option<PathBuf>,
    /// Client key for mutual TLS to etcd
    #[arg(long, global = true, env = "CAIRN_TOPO_KEY")]
    pub topo_key: Option<PathBuf>,
    /// etcd user
    #[arg(long, global = true, env = "CAIRN_TOPO_USER")]
    pub topo_user: Option<String>,
    /// File holding the etcd user's password
    #[arg(long, global = true, env = "CAIRN_TOPO_PASSWORD_FILE")]
    pub topo_password_file: Option<PathBuf>,
    /// Log format
    #[arg(long, global = true, env = "CAIRN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the tablet agent: one mysqld, its registration, health, replication and jobs
    Tablet(Box<TabletArgs>),
    /// Run the cluster-wide coordinator (schedules, catalog, retention, snapshots)
    Coordinator(Box<CoordinatorArgs>),
    /// Back up one tablet; prints the backup name
    Backup(BackupArgs),
    /// Back up the healthiest eligible tablet of a shard
    BackupShard(BackupShardArgs),
    /// List the backups of a shard, oldest first
    ListBackups(ListBackupsArgs),
    /// Delete one backup from storage and topo
    RemoveBackup(RemoveBackupArgs),
    /// Restore a running tablet in place from a backup
    RestoreFromBackup(RestoreArgs),
    /// List tablets with their type and health
    GetTablets(GetTabletsArgs),
    /// Show a shard record (primary, latest backup)
    GetShard(GetShardArgs),
    /// Make a tablet the primary of its shard; the others replicate from it
    InitShardPrimary(InitShardPrimaryArgs),
    /// Manage backup schedules
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Continuous binlog archiving of shards (point-in-time recovery)
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// List backup and restore jobs
    Jobs(JobsArgs),
    /// Topology server maintenance
    #[command(subcommand)]
    Topo(TopoCommand),
    /// Check a shard's stored backups: every object's size and hash, and their age
    #[command(
        long_about = "Check a shard's backups where they are stored, without restoring them and \
without a decryption key: each MANIFEST parses and is restorable, every object it lists exists \
with the recorded size and hash (read in full, several at once), and the newest good backup is \
younger than its schedule's period plus the usual backup duration. Prints OK, WARNING or FAILURE \
per backup with one line per problem. Exit 0 when nothing failed, 1 otherwise. Reads storage \
and etcd only; changes nothing.\n\nExamples:\n  \
cairn verify commerce/0 --file-backup-storage-root /var/backups/cairn\n  \
cairn verify commerce/0 --backup 2026-11-25.020000.zone1-0000000101 --json"
    )]
    Verify(VerifyArgs),
    /// Every shard's recoverability, one line each: health, newest backup age, last drill, loss window
    #[command(
        long_about = "Every shard's recoverability, one line per shard: its health (green, amber, \
red), the newest complete full backup's age against what its schedule allows (the longest gap \
between runs plus the usual backup duration), the last restore drill and its recovery time, the \
point-in-time loss window, and why the shard is not green. Amber: one run missed, or no active \
schedule covers the shard. Red: more than twice the allowed age, no backup under a schedule, or \
the last drill failed. Says 'no coordinator leader' when none leads. Reads etcd only (no \
coordinator needed); changes nothing. Exit 0 when no shard is red, 1 when any is.\n\n\
Examples:\n  \
cairn status\n  \
cairn status --json | jq '.[] | select(.health != \"green\")'"
    )]
    Status(super::status::StatusArgs),
    /// Prove a backup restores: restore it beside a serving tablet, start and check it
    #[command(
        long_about = "Run a restore drill of one backup of a shard (the newest complete full one \
unless --backup names another): a DRILL job on a SPARE tablet, else a healthy REPLICA or RDONLY \
(never the primary, never a busy tablet), only where the disk has room: a tablet whose Health \
reports less free disk than the backup's restored size plus the drill's margin (the agent's own \
rule) is passed over; when no tablet fits, exit 1 naming each one and why (busy, primary, not \
healthy, \"needs 2.1 GiB, has 800.0 MiB free\"). Its agent restores the backup through the real restore \
code into a scratch directory beside its data, starts a second mariadbd on it on a loopback port, \
runs CHECK TABLE on every table, compares the restored GTID position with the MANIFEST's and \
counts the rows of the largest tables, then stops that server and removes the scratch directory. \
With --to-now it also plans the chain of incremental backups and archived binlog segments from \
that backup up to the newest archived transaction (the archive's recorded position; with no \
archive, the newest incremental's), downloads and verifies those binlogs, applies them to the \
scratch server (mariadb-binlog | mariadb, TZ=UTC, as a point-in-time restore does) and checks \
the position against the chain's end; a gap in the chain fails the drill naming the missing \
GTIDs. The tablet keeps serving throughout; its own mysqld and data are never touched. A drill the disk \
cannot hold is refused before anything is written. Changes: one job record, and the backup's \
record gets verified_at, drill_seconds, drill_result (and drill_error). Waits for the job and \
prints the outcome with the time of each stage; exit 0 when the drill succeeded, 1 otherwise.\n\n\
Examples:\n  \
cairn drill commerce/0\n  \
cairn drill commerce/0 --backup 2026-11-25.020000.zone1-0000000101 --json\n  \
cairn drill commerce/0 --to-now\n  \
cairn drill commerce/-80 --no-wait"
    )]
    Drill(DrillArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        long_about = "Print a shell completion script for cairn on stdout. Changes nothing.\n\n\
Examples:\n  \
source <(cairn completions bash)\n  \
cairn completions bash > /etc/bash_completion.d/cairn\n  \
cairn completions zsh > \"${fpath[1]}/_cairn\"\n  \
cairn completions fish > ~/.config/fish/completions/cairn.fish"
    )]
    Completions(CompletionsArgs),
}

/// `cairn completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// A `KEYSPACE/SHARD` argument, validated at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceShard {
    pub keyspace: String,
    pub shard: String,
}

impl std::fmt::Display for KeyspaceShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.keyspace, self.shard)
    }
}

fn parse_ks_shard(s: &str) -> Result<KeyspaceShard, String> {
    let (keyspace, shard) = names::parse_keyspace_shard(s).map_err(|e| e.to_string())?;
    Ok(KeyspaceShard { keyspace, shard })
}

fn parse_alias(s: &str) -> Result<TabletAlias, String> {
    s.parse::<TabletAlias>().map_err(|e| e.to_string())
}

fn parse_keyspace(s: &str) -> Result<String, String> {
    names::validate_keyspace(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_shard(s: &str) -> Result<String, String> {
    names::validate_shard(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_cell(s: &str) -> Result<String, String> {
    names::validate_cell(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_backup_name(s: &str) -> Result<String, String> {
    names::validate_backup_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// `--incremental-from-pos`, in its canonical spelling for the job record.
fn parse_incremental_from(s: &str) -> Result<String, String> {
    crate::backup::incremental::parse_from_pos(s).map(|f| f.to_string())
}

fn parse_schedule_name(s: &str) -> Result<String, String> {
    names::validate_schedule_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_init_type(s: &str) -> Result<TabletType, String> {
    match s.parse::<TabletType>()? {
        t @ (TabletType::Replica | TabletType::Rdonly | TabletType::Spare) => Ok(t),
        t => Err(format!(
            "--init-tablet-type must be replica, rdonly or spare, not {t}"
        )),
    }
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// `YYYY-MM-DD.HHMMSS`, as in backup names: exactly the rule the restore applies
/// when the job runs, so a timestamp the CLI accepts is never refused later.
fn parse_backup_ts(s: &str) -> Result<String, String> {
    crate::backup::manifest::parse_backup_timestamp(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// `MariaDB/<gtid-list>`, checked as the restore will read it.
fn parse_restore_to_pos(s: &str) -> Result<String, String> {
    crate::backup::pitr::parse_restore_to_pos(s)?;
    Ok(s.to_string())
}

/// `YYYY-MM-DDTHH:MM:SSZ`, not in the future.
fn parse_restore_to_timestamp(s: &str) -> Result<String, String> {
    crate::backup::pitr::parse_restore_to_timestamp(s, chrono::Utc::now())?;
    Ok(s.to_string())
}

/// `cairn tablet`.
#[derive(Debug, Clone, Args)]
pub struct TabletArgs {
    /// Unique id of the tablet in its cell
    #[arg(long)]
    pub tablet_uid: u32,
    /// Cell (failure domain)
    #[arg(long, default_value = "zone1", value_parser = parse_cell)]
    pub cell: String,
    /// Keyspace the tablet serves
    #[arg(long, value_parser = parse_keyspace)]
    pub init_keyspace: String,
    /// Shard the tablet serves
    #[arg(long, value_parser = parse_shard, allow_hyphen_values = true)]
    pub init_shard: String,
    /// replica, rdonly or spare
    #[arg(long, default_value = "replica", value_parser = parse_init_type)]
    pub init_tablet_type: TabletType,
    /// Directory for this tablet's mysqld: data, socket (DIR/mysql.sock), logs
    #[arg(long)]
    pub tablet_dir: PathBuf,
    /// mysqld TCP port (on 127.0.0.1 unless --mysql-bind-address)
    #[arg(long)]
    pub mysql_port: u16,
    /// Address mysqld listens on
    #[arg(long, default_value = "127.0.0.1")]
    pub mysql_bind_address: String,
    /// Agent HTTP port (/healthz, /metrics); 0 picks a free one
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Hostname published in the Tablet record
    #[arg(long)]
    pub tablet_hostname: Option<String>,
    /// Engine used when a job does not name one
    #[arg(long, value_enum, default_value_t = BackupMethod::Builtin)]
    pub backup_engine_implementation: BackupMethod,
    /// User the xtrabackup engine connects as
    #[arg(long)]
    pub xtrabackup_user: Option<String>,
    /// xtrabackup stream format (MariaDB's mariabackup supports xbstream only)
    #[arg(long, value_enum)]
    pub xtrabackup_stream_mode: Option<StreamMode>,
    /// Directory holding xtrabackup/mariabackup (default: PATH)
    #[arg(long)]
    pub xtrabackup_root_path: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub encryption: EncryptionArgs,
    /// age identity file (`AGE-SECRET-KEY-1…` lines) that decrypts encrypted
    /// backups when this tablet restores
    #[arg(long, value_name = "FILE")]
    pub backup_encryption_identity_file: Option<PathBuf>,
    /// Compression of backup files
    #[arg(long, value_enum, default_value_t = CompressionEngine::Zstd)]
    pub compression_engine: CompressionEngine,
    /// Files copied in parallel by the builtin engine
    #[arg(long, default_value_t = 4)]
    pub concurrency: u32,
    /// Restore the newest complete backup at start (or start empty if none)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub restore_from_backup: bool,
    /// With --restore-from-backup: wait for a backup, checking this often (0 = do not wait)
    #[arg(long, default_value = "0", value_parser = parse_dur)]
    pub wait_for_backup_interval: Duration,
    /// With --restore-from-backup: newest backup at or before this time (YYYY-MM-DD.HHMMSS, UTC)
    #[arg(long, value_parser = parse_backup_ts)]
    pub restore_from_backup_ts: Option<String>,
    /// With --restore-from-backup: restore up to and including these GTIDs
    /// (MariaDB/<gtid-list>), then stay DRAINED with replication stopped
    #[arg(long, value_parser = parse_restore_to_pos, conflicts_with = "restore_to_timestamp")]
    pub restore_to_pos: Option<String>,
    /// With --restore-from-backup: restore every transaction committed before this
    /// second (YYYY-MM-DDTHH:MM:SSZ, UTC), then stay DRAINED with replication stopped
    #[arg(long, value_parser = parse_restore_to_timestamp)]
    pub restore_to_timestamp: Option<String>,
    /// Restores on this tablet (at start and in place) may use a backup whose MANIFEST
    /// names another keyspace or shard
    #[arg(long)]
    pub allow_other_shard: bool,
    /// MySQL user replicas connect to the primary as
    #[arg(long, default_value = "cairn_repl")]
    pub replication_user: String,
    /// File holding the replication user's password (else $CAIRN_REPLICATION_PASSWORD)
    #[arg(long)]
    pub replication_password_file: Option<PathBuf>,
    /// TTL of the agent's lease; Health vanishes this long after the agent dies
    #[arg(long, default_value = "10s", value_parser = parse_dur)]
    pub health_ttl: Duration,
    /// How often Health is written
    #[arg(long, default_value = "2s", value_parser = parse_dur)]
    pub health_interval: Duration,
    /// A running job's progress is written into its record at most this often
    #[arg(long, default_value = "10s", value_parser = parse_dur)]
    pub job_progress_interval: Duration,
    /// Size of the InnoDB buffer pool of mysqld
    #[arg(long, default_value = "128M")]
    pub innodb_buffer_pool_size: String,
}

/// `cairn coordinator`.
#[derive(Debug, Clone, Args)]
pub struct CoordinatorArgs {
    /// HTTP port (/healthz, /metrics, /api/v1/status)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Identity in the election (default: hostname-pid)
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub encryption: EncryptionArgs,
    /// Leadership lease TTL: a dead or frozen leader is replaced within it
    #[arg(long, default_value = "10s", value_parser = parse_dur)]
    pub lease_ttl: Duration,
    /// How often backup storage and the catalog in topo are compared
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    pub reconcile_interval: Duration,
    /// Replicas lagging more than this are not backed up
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    pub max_lag: Duration,
    /// Shards of a keyspace-wide run start spread over this window
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    pub stagger_window: Duration,
    /// A job no agent takes within this is failed (and retried)
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    pub pending_timeout: Duration,
    /// A running job is failed (and retried) past this
    #[arg(long, default_value = "6h", value_parser = parse_dur)]
    pub job_timeout: Duration,
    /// A running job whose tablet lost its Health is failed (and retried) after this
    /// long (its agent, cut off from etcd, stops the job first)
    #[arg(long, default_value = "10s", value_parser = parse_dur)]
    pub lost_health_grace: Duration,
    /// Attempts of one scheduled backup, the first included
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Wait before retrying a failed scheduled backup (doubled for each further try)
    #[arg(long, default_value = "5s", value_parser = parse_dur)]
    pub retry_delay: Duration,
    /// Finished jobs are deleted from topo after this long
    #[arg(long, default_value = "168h", value_parser = parse_dur)]
    pub job_history: Duration,
    /// CANCELLED jobs, and manual jobs that failed before they started, are deleted
    /// after this long (at most --job-history)
    #[arg(long, default_value = "24h", value_parser = parse_dur)]
    pub cancelled_job_history: Duration,
    /// Schedules whose slots come closer together than this are not run
    #[arg(long, env = "CAIRN_MIN_SCHEDULE_PERIOD", default_value = "5m", value_parser = parse_dur)]
    pub min_schedule_period: Duration,
    /// Incomplete backups older than this are removed by retention
    #[arg(long, default_value = "24h", value_parser = parse_dur)]
    pub incomplete_grace: Duration,
    /// Cron expression for etcd snapshots
    #[arg(long)]
    pub topo_snapshot_cron: Option<String>,
    /// Number of etcd snapshots kept
    #[arg(long, default_value_t = 7)]
    pub topo_snapshot_keep: u32,
}

/// `cairn get-tablets`.
#[derive(Debug, Clone, Args)]
pub struct GetTabletsArgs {
    #[arg(long, value_parser = parse_keyspace)]
    pub keyspace: Option<String>,
    #[arg(long, value_parser = parse_shard, allow_hyphen_values = true)]
    pub shard: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// `cairn get-shard`.
#[derive(Debug, Clone, Args)]
pub struct GetShardArgs {
    #[arg(value_parser = parse_ks_shard)]
    pub keyspace_shard: KeyspaceShard,
    #[arg(long)]
    pub json: bool,
}

/// `cairn init-shard-primary`.
#[derive(Debug, Clone, Args)]
pub struct InitShardPrimaryArgs {
    #[arg(value_parser = parse_ks_shard)]
    pub keyspace_shard: KeyspaceShard,
    #[arg(value_parser = parse_alias)]
    pub alias: TabletAlias,
    /// Return once the Shard record is written
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the tablet to become PRIMARY
    #[arg(long, default_value = "60s", value_parser = parse_dur)]
    pub wait_timeout: Duration,
}

/// `cairn jobs`.
#[derive(Debug, Clone, Args)]
pub struct JobsArgs {
    #[arg(long, value_parser = parse_keyspace)]
    pub keyspace: Option<String>,
    #[arg(long, value_parser = parse_shard, allow_hyphen_values = true)]
    pub shard: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TopoCommand {
    /// Save an etcd snapshot to FILE, verifying its integrity hash
    Snapshot { file: PathBuf },
}

/// Rewrites Vitess/Go-style flag spellings into clap's: `-flag_name[=v]` and
/// `--flag_name[=v]` become `--flag-name[=v]`. Single-letter short flags, values
/// (anything not starting with a dash and a letter, e.g. `-80`) and everything after
/// `--` are left alone.
pub fn normalize_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(a);
            continue;
        }
        if a == "--" {
            passthrough = true;
            out.push(a);
            continue;
        }
        let body = if let Some(b) = a.strip_prefix("--") {
            b
        } else if let Some(b) = a.strip_prefix('-') {
            // `-x` stays a short flag; `-80` is a value.
            if b.len() < 2 || !b.starts_with(|c: char| c.is_ascii_alphabetic()) {
                out.push(a);
                continue;
            }
            b
        } else {
            out.push(a);
            continue;
        };
        if !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
            out.push(a);
            continue;
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let name = name.replace('_', "-");
        out.push(match value {
            Some(v) => format!("--{name}={v}"),
            None => format!("--{name}"),
        });
    }
    out
}

#[cfg(test)]
mod tests;
