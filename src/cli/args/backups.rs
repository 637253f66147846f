//! The arguments of the commands that take, list, remove, restore and verify
//! backups (`backup`, `backup-shard`, `list-backups`, `remove-backup`,
//! `restore-from-backup`, `verify`, `drill`). Parsed and validated by clap (bad input: exit 2);
//! the parsers they share live in the parent module.

use std::time::Duration;

use clap::Args;

use super::{
    parse_alias, parse_backup_name, parse_backup_ts, parse_dur, parse_incremental_from,
    parse_ks_shard, parse_restore_to_pos, parse_restore_to_timestamp, KeyspaceShard, StorageArgs,
};
use cairn_topo::{BackupMethod, TabletAlias};

/// The flags of a backup job, shared by `backup` and `backup-shard`: the same
/// names, defaults and meaning on both.
#[derive(Debug, Clone, Args)]
pub struct JobFlags {
    /// Allow backing up a PRIMARY (backup-shard: only when no replica is eligible)
    #[arg(long)]
    pub allow_primary: bool,
    /// Engine for this backup (default: the tablet's)
    #[arg(long, value_enum)]
    pub backup_engine: Option<BackupMethod>,
    /// Files copied in parallel (default: the tablet's --concurrency)
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Write the job, print its id and return without waiting
    #[arg(long)]
    pub no_wait: bool,
    /// Fail a job no agent takes within this time
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    pub pending_timeout: Duration,
    /// Print the outcome as JSON (job, backup_name, tablet_alias)
    #[arg(long)]
    pub json: bool,
    /// An incremental backup (binary logs) from this point: `auto` (the newest
    /// complete backup of the shard), `MariaDB/<gtid-list>`, or a backup's name
    #[arg(long, value_parser = parse_incremental_from)]
    pub incremental_from_pos: Option<String>,
}

/// `cairn backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Tablet to back up (CELL-UID)
    #[arg(value_parser = parse_alias)]
    pub alias: TabletAlias,
    #[command(flatten)]
    pub job: JobFlags,
}

/// `cairn backup-shard`.
#[derive(Debug, Clone, Args)]
pub struct BackupShardArgs {
    /// Shard to back up (KEYSPACE/SHARD)
    #[arg(value_parser = parse_ks_shard)]
    pub keyspace_shard: KeyspaceShard,
    /// Replicas lagging more than this are not eligible
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    pub max_lag: Duration,
    #[command(flatten)]
    pub job: JobFlags,
}

/// `cairn list-backups`.
#[derive(Debug, Clone, Args)]
pub struct ListBackupsArgs {
    /// Shard whose backups to list (KEYSPACE/SHARD)
    #[arg(value_parser = parse_ks_shard)]
    pub keyspace_shard: KeyspaceShard,
    /// Only the most recent N (still oldest first)
    #[arg(long, short = 'l')]
    pub limit: Option<usize>,
    /// Print JSON: one object per backup, the fields of its record
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `cairn remove-backup`.
#[derive(Debug, Clone, Args)]
pub struct RemoveBackupArgs {
    /// Shard the backup belongs to (KEYSPACE/SHARD)
    #[arg(value_parser = parse_ks_shard)]
    pub keyspace_shard: KeyspaceShard,
    /// Name of the backup to delete, as list-backups prints it
    #[arg(value_parser = parse_backup_name)]
    pub name: String,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `cairn restore-from-backup`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// Tablet to restore in place (CELL-UID); never a PRIMARY
    #[arg(value_parser = parse_alias)]
    pub alias: TabletAlias,
    /// Newest backup at or before this time (YYYY-MM-DD.HHMMSS, UTC)
    #[arg(long, short = 't', value_parser = parse_backup_ts, conflicts_with_all = ["restore_to_pos", "restore_to_timestamp"])]
    pub backup_timestamp: Option<String>,
    /// Restore up to and including these GTIDs (MariaDB/<gtid-list>); the tablet
    /// ends DRAINED with replication stopped
    #[arg(long, value_parser = parse_restore_to_pos, conflicts_with = "restore_to_timestamp")]
    pub restore_to_pos: Option<String>,
    /// Restore every transaction committed before this second
    /// (YYYY-MM-DDTHH:MM:SSZ, UTC); the tablet ends DRAINED with replication stopped
    #[arg(long, value_parser = parse_restore_to_timestamp)]
    pub restore_to_timestamp: Option<String>,
    /// With --restore-to-pos/--restore-to-timestamp: print the chain of backups
    /// the restore would use and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Write the job, print its id and return without waiting
    #[arg(long)]
    pub no_wait: bool,
    /// Fail a job no agent takes within this time
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    pub pending_timeout: Duration,
}

/// `cairn verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Shard whose backups to check (KEYSPACE/SHARD)
    #[arg(value_parser = parse_ks_shard)]
    pub keyspace_shard: KeyspaceShard,
    /// Only this backup (and no shard-level age check)
    #[arg(long, value_parser = parse_backup_name)]
    pub backup: Option<String>,
    /// Objects read at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Print the report as JSON (per backup, chain and archive: status and problems)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `cairn drill`.
#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// Shard whose backup to drill (KEYSPACE/SHARD)
    #[arg(value_parser = parse_ks_shard)]
    pub keyspace_shard: KeyspaceShard,
    /// The backup to drill (default: the newest complete full backup of the shard)
    #[arg(long, value_parser = parse_backup_name)]
    pub backup: Option<String>,
    /// Also apply the chain of incrementals and archived binlogs up to the newest archived transaction
    #[arg(long)]
    pub to_now: bool,
    /// Replicas lagging more than this are not eligible
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    pub max_lag: Duration,
    /// Write the job, print its id and return without waiting
    #[arg(long)]
    pub no_wait: bool,
    /// Fail a job no agent takes within this time
    #[arg(long, default_value = "30s", value_parser = parse_dur)]
    pub pending_timeout: Duration,
    /// Print the outcome as JSON (job, backup, tablet, result, seconds, message)
    #[arg(long)]
    pub json: bool,
}
