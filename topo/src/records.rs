//! The typed records kept in etcd, as JSON. Field names are snake_case and stable:
//! operators read them with `etcdctl get --prefix`, and the CLI's `--json` output
//! reuses them. New fields are added with `#[serde(default)]` so older records
//! still parse.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engines::BackupMethod;
use crate::names::TabletAlias;

/// The role a tablet plays in its shard (Vitess's TabletType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TabletType {
    Primary,
    Replica,
    Rdonly,
    Spare,
    Experimental,
    Backup,
    Restore,
    Drained,
}

impl TabletType {
    /// Upper-case name, as printed everywhere.
    pub fn as_str(self) -> &'static str {
        match self {
            TabletType::Primary => "PRIMARY",
            TabletType::Replica => "REPLICA",
            TabletType::Rdonly => "RDONLY",
            TabletType::Spare => "SPARE",
            TabletType::Experimental => "EXPERIMENTAL",
            TabletType::Backup => "BACKUP",
            TabletType::Restore => "RESTORE",
            TabletType::Drained => "DRAINED",
        }
    }

    /// Types that replicate from the primary and may serve reads or be backed up.
    pub fn is_replica_type(self) -> bool {
        matches!(
            self,
            TabletType::Replica | TabletType::Rdonly | TabletType::Spare | TabletType::Experimental
        )
    }
}

impl fmt::Display for TabletType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TabletType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "PRIMARY" | "MASTER" => TabletType::Primary,
            "REPLICA" => TabletType::Replica,
            "RDONLY" | "BATCH" => TabletType::Rdonly,
            "SPARE" => TabletType::Spare,
            "EXPERIMENTAL" => TabletType::Experimental,
            "BACKUP" => TabletType::Backup,
            "RESTORE" => TabletType::Restore,
            "DRAINED" => TabletType::Drained,
            _ => return Err(format!("unknown tablet type {s:?}")),
        })
    }
}

/// A logical database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keyspace {
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// One slice of a keyspace: who its primary is and what its newest backup is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    pub keyspace: String,
    pub name: String,
    /// Set by `init-shard-primary`; every other tablet of the shard replicates from it.
    #[serde(default)]
    pub primary_alias: Option<TabletAlias>,
    /// When the current primary took over.
    #[serde(default)]
    pub primary_term_start_time: Option<DateTime<Utc>>,
    /// Name of the newest complete backup, kept for the status page and for seeds.
    #[serde(default)]
    pub latest_backup: Option<String>,
    /// Backup time of `latest_backup`.
    #[serde(default)]
    pub latest_backup_time: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A tablet's registration. Outlives the agent (Health does not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tablet {
    pub alias: TabletAlias,
    pub hostname: String,
    /// Address mysqld listens on for replication and clients.
    pub mysql_host: String,
    pub mysql_port: u16,
    /// The agent's HTTP port (`/healthz`, `/metrics`).
    pub port: u16,
    pub keyspace: String,
    pub shard: String,
    /// Current type; BACKUP/RESTORE while a job runs.
    #[serde(rename = "type")]
    pub tablet_type: TabletType,
    /// The type to return to after BACKUP/RESTORE or on restart (`--init-tablet-type`
    /// or PRIMARY once promoted).
    pub base_type: TabletType,
    /// The mysqld flavor, e.g. `MariaDB`.
    #[serde(default)]
    pub flavor: String,
    /// The data directory of the tablet (local to its host).
    #[serde(default)]
    pub tablet_dir: String,
    pub started_at: DateTime<Utc>,
}

/// Health, written under the agent's lease every few seconds; it disappears when the
/// agent dies, which is how everyone else learns that it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Health {
    pub mysqld_up: bool,
    pub replication_io_running: bool,
    pub replication_sql_running: bool,
    /// `None` when unknown (not replicating, or mysqld down).
    pub replication_lag_seconds: Option<u64>,
    /// The flavor-prefixed executed GTID position, e.g. `MariaDB/0-101-42`.
    pub gtid_position: Option<String>,
    /// Whether the tablet serves its type (not in BACKUP/RESTORE, mysqld up).
    pub serving: bool,
    /// Id of the job this tablet is running, if any.
    #[serde(default)]
    pub busy_job: Option<String>,
    /// Last error the agent saw (mysqld start, replication), for operators.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The backup a running restore reads (retention must keep it).
    #[serde(default)]
    pub restoring_backup: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The last error that stopped a replication thread. Kept until replication has
    /// run cleanly for a while after it: while present the replica is failing (not
    /// healthy, never picked for a backup), whatever the threads say right now.
    #[serde(default)]
    pub replication_error: Option<ReplicationError>,
    /// Since when both replication threads have run without interruption, as the
    /// agent saw them; `None` while they are stopped (or not a replica).
    #[serde(default)]
    pub replication_clean_since: Option<DateTime<Utc>>,
    /// Bytes free (to the agent's user) on the file system holding the tablet
    /// directory, rounded down to a step (1/64 of the file system, at most 1 GiB)
    /// so it does not change at every write. Drills are placed by it; `None`:
    /// unknown (an older agent, or statvfs failed).
    #[serde(default)]
    pub data_free_bytes: Option<u64>,
    /// A primary's oldest binlog still on disk, as the position before it
    /// (`MariaDB/<gtid-list>`: the `Gtid_list` event at its head; transactions
    /// at or before it in each domain were purged). `None` on a replica, or
    /// when unknown. The coordinator compares it with the archive's position:
    /// binlogs purged before they were archived are a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_oldest_position: Option<String>,
}

impl Health {
    /// Both replication threads are running.
    pub fn replicating(&self) -> bool {
        self.replication_io_running && self.replication_sql_running
    }

    /// Replication stopped on an error and has not yet run cleanly for long enough
    /// since (see [`Health::replication_error`]).
    pub fn replication_failing(&self) -> bool {
        self.replication_error.is_some()
    }
}

/// An error that stopped a replication thread, as mysqld reported it
/// (`Last_SQL_Errno`/`Last_SQL_Error` or `Last_IO_Errno`/`Last_IO_Error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationError {
    /// The thread that stopped: `sql` or `io`.
    pub thread: String,
    /// mysqld's error number (e.g. 1062 for a duplicate key); 0 when it gave none.
    pub errno: u32,
    /// mysqld's error message.
    pub message: String,
    /// When the agent last saw a thread stopped on this error.
    pub seen_at: DateTime<Utc>,
}

impl fmt::Display for ReplicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let thread = self.thread.to_ascii_uppercase();
        if self.errno == 0 {
            write!(f, "{thread} thread: {}", self.message)
        } else {
            write!(f, "{thread} thread error {}: {}", self.errno, self.message)
        }
    }
}

/// A backup's metadata in topo; the same fields as `list-backups --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub name: String,
    pub keyspace: String,
    pub shard: String,
    pub tablet_alias: String,
    pub engine: BackupMethod,
    pub backup_time: DateTime<Utc>,
    #[serde(default)]
    pub finished_time: Option<DateTime<Utc>>,
    pub position: String,
    pub size_bytes: u64,
    pub complete: bool,
    /// The schedule that took the backup (from its MANIFEST): only its retention
    /// rule prunes it. `None` for a manual backup, and in records written before
    /// the field existed.
    #[serde(default)]
    pub schedule: Option<String>,
    /// `complete`, or `unreadable` once the catalog reconciler found the backup's
    /// MANIFEST, or a file it lists, unreadable in storage: the record is kept
    /// (only an operator removes the backup), `complete` is false, and the backup
    /// is never a shard's latest. Records written before the field: complete.
    #[serde(default)]
    pub state: BackupRecordState,
    /// Why the backup is unreadable (`state: unreadable`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// An incremental backup (binary logs from `from_position` to `position`):
    /// never a shard's latest backup, never a seed. Records written before the
    /// field: full backups.
    #[serde(default)]
    pub incremental: bool,
    /// Incremental only: its files hold every transaction after this position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_position: Option<String>,
    /// Incremental only: when its first transaction started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<DateTime<Utc>>,
    /// Incremental only: when its last transaction committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<DateTime<Utc>>,
    /// When a restore drill of this backup last succeeded (it came up, every
    /// table checked, at the recorded position). Absent: never proved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    /// The last drill's measured recovery time in seconds: download, restore,
    /// apply, start and check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_seconds: Option<f64>,
    /// The last drill's outcome; absent: never drilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_result: Option<DrillResult>,
    /// Why the last drill failed (`drill_result: failed`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_error: Option<String>,
    /// The backup's files as restored (the sum of its MANIFEST's file sizes),
    /// which a drill's disk need is computed from. Absent in records written
    /// before the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_bytes: Option<u64>,
}

impl BackupRecord {
    /// The record of a complete full backup of which nothing else is known: not
    /// scheduled, not incremental, never drilled, no finish time, size 0.
    /// Everything else is set with struct update syntax
    /// (`BackupRecord { size_bytes, ..BackupRecord::full(…) }`), so a new field
    /// is added here once rather than at every place that builds a record.
    pub fn full(
        name: impl Into<String>,
        keyspace: impl Into<String>,
        shard: impl Into<String>,
        tablet_alias: impl Into<String>,
        engine: BackupMethod,
        backup_time: DateTime<Utc>,
        position: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            keyspace: keyspace.into(),
            shard: shard.into(),
            tablet_alias: tablet_alias.into(),
            engine,
            backup_time,
            finished_time: None,
            position: position.into(),
            size_bytes: 0,
            complete: true,
            schedule: None,
            state: BackupRecordState::Complete,
            error: None,
            incremental: false,
            from_position: None,
            first_timestamp: None,
            last_timestamp: None,
            verified_at: None,
            drill_seconds: None,
            drill_result: None,
            drill_error: None,
            restored_bytes: None,
        }
    }
}

/// How a backup's last restore drill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillResult {
    Succeeded,
    Failed,
}

/// Whether a catalogued backup can be restored, as the catalog last found it in
/// storage (the spelling `list-backups --json` uses for the same states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupRecordState {
    /// Its MANIFEST is readable and restorable and its files are all there.
    #[default]
    Complete,
    /// Its MANIFEST (or a file it lists) can no longer be read or restored.
    Unreadable,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobKind {
    Backup,
    Restore,
    /// Continuous binlog archiving of a shard: long-running, placed and moved by
    /// the coordinator, stopped by making it final (CANCELLED).
    Archive,
    /// A restore drill: the backup `backup_name` restored into a scratch
    /// directory beside a serving tablet, started on its own mysqld, checked and
    /// thrown away; the outcome goes into the backup's record.
    Drill,
}

/// Lifecycle of a job: PENDING → RUNNING → SUCCEEDED | FAILED (or CANCELLED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    /// The job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Bytes moved so far, for progress bars and the status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct JobProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// A backup, restore or drill addressed to one tablet. Written by the CLI or the
/// coordinator, taken and finished by the tablet's agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub keyspace: String,
    pub shard: String,
    pub tablet_alias: TabletAlias,
    pub state: JobState,
    /// The backup written (backup) or read (restore). A backup is named when its
    /// agent takes the job (PENDING → RUNNING), before anything is stored, so a
    /// RUNNING backup job always names the backup in flight.
    #[serde(default)]
    pub backup_name: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// 1 for the first try; the coordinator increments it on retry.
    #[serde(default = "one")]
    pub attempt: u32,
    /// Back up a PRIMARY anyway.
    #[serde(default)]
    pub allow_primary: bool,
    /// Engine override; `None` means the tablet's default.
    #[serde(default)]
    pub engine: Option<BackupMethod>,
    /// Copy concurrency override.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Restore: newest backup at or before this time (`YYYY-MM-DD.HHMMSS`).
    #[serde(default)]
    pub backup_timestamp: Option<String>,
    /// The lease of the agent that took the job; if that lease is gone the job is dead.
    #[serde(default)]
    pub owner_lease: Option<i64>,
    /// Which schedule created the job, if any.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub progress: JobProgress,
    /// How long the job may stay PENDING before it is failed as "tablet did not take it".
    #[serde(default)]
    pub pending_timeout_seconds: Option<u64>,
    /// The schedule slot this job belongs to (dedupes runs across coordinator
    /// failovers: one job per schedule, slot and shard).
    #[serde(default)]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The failed job this one retries (so a retry is created once).
    #[serde(default)]
    pub retry_of: Option<String>,
    /// Tablets that already failed this run (retries go elsewhere).
    #[serde(default)]
    pub excluded_tablets: Vec<TabletAlias>,
    /// Backup: take an incremental backup (binary logs) from this point, as
    /// `backup --incremental-from-pos` was given it: `auto`, `MariaDB/<gtids>`
    /// or a backup name. `None`: a full backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_from_pos: Option<String>,
    /// What a SUCCEEDED job has to say beyond its backup name: an incremental
    /// backup with nothing new to store succeeds with this and no backup name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Restore only: a point-in-time restore's target and, once the agent planned
    /// or ran it, the chain it chose and where it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<PointInTime>,
}

/// A point-in-time restore, as its job asks for it and reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointInTime {
    /// `--restore-to-pos`: `MariaDB/<gtid-list>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to_pos: Option<String>,
    /// `--restore-to-timestamp`: `YYYY-MM-DDTHH:MM:SSZ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to_timestamp: Option<String>,
    /// `--dry-run`: plan and report the chain, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Written by the agent: the chain, one line per backup and the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
    /// Written by the agent when done: the position the tablet holds
    /// (`MariaDB/<gtid-list>`) and the last applied transaction's commit time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_to: Option<String>,
}

fn one() -> u32 {
    1
}

impl Job {
    /// A fresh job id: sortable by creation time, unique by a random suffix.
    pub fn new_id(kind: JobKind) -> String {
        let k = match kind {
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
            JobKind::Archive => "archive",
            JobKind::Drill => "drill",
        };
        format!(
            "{}-{k}-{:08x}",
            Utc::now().format("%Y%m%dT%H%M%S%3f"),
            rand::random::<u32>()
        )
    }

    /// A PENDING job for `alias` with a fresh id and every option at its default;
    /// the caller fills in what it wants before writing it.
    pub fn pending(kind: JobKind, keyspace: &str, shard: &str, alias: &TabletAlias) -> Job {
        Job {
            id: Job::new_id(kind),
            kind,
            keyspace: keyspace.to_string(),
            shard: shard.to_string(),
            tablet_alias: alias.clone(),
            state: JobState::Pending,
            backup_name: None,
            error: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            attempt: 1,
            allow_primary: false,
            engine: None,
            concurrency: None,
            backup_timestamp: None,
            owner_lease: None,
            schedule: None,
            progress: JobProgress::default(),
            pending_timeout_seconds: None,
            scheduled_for: None,
            retry_of: None,
            excluded_tablets: vec![],
            incremental_from_pos: None,
            message: None,
            point_in_time: None,
        }
    }
}

/// A backup schedule (coordinator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    /// `KS` or `KS/SHARD`.
    pub target: String,
    #[serde(default)]
    pub keep_count: Option<u32>,
    #[serde(default)]
    pub keep_for_seconds: Option<u64>,
    #[serde(default)]
    pub backup_engine: Option<BackupMethod>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub last_run: Option<DateTime<Utc>>,
    #[serde(default)]
    pub next_run: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Runs the coordinator did not take, counted instead of recorded one by one:
    /// each shard of a slot given up (no eligible tablet until the slot's give-up
    /// time, or the shard's previous backup still running), and each time the
    /// schedule itself was refused (below `--min-schedule-period`, or a cron or
    /// target that does not parse), once per refusal.
    #[serde(default)]
    pub skipped_runs: u64,
    /// Why the last skipped run was skipped, in one line.
    #[serde(default)]
    pub last_skip_reason: Option<String>,
    /// When the last run was skipped.
    #[serde(default)]
    pub last_skip_at: Option<DateTime<Utc>>,
    /// Each run takes an incremental backup (binary logs) from the newest
    /// backup of the shard (`--incremental-from-pos auto`) instead of a full one.
    #[serde(default)]
    pub incremental: bool,
    /// `--drill-cron`: a restore drill of the newest complete full backup of
    /// each targeted shard runs on this cron (a DRILL job per shard and slot,
    /// the same misfire and skip rules as the backups). `None`: no drills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_cron: Option<String>,
    /// The drill slot last run (or skipped), as `last_run` for backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_last_run: Option<DateTime<Utc>>,
    /// The drill slot waited for, as `next_run` for backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_next_run: Option<DateTime<Utc>>,
    /// `--drill-to-now`: each scheduled drill also applies the chain of
    /// incrementals and archived binlogs up to the newest archived transaction
    /// (as `cairn drill --to-now`).
    #[serde(default)]
    pub drill_to_now: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablet_type_round_trips_upper_case() {
        let j = serde_json::to_string(&TabletType::Rdonly).unwrap();
        assert_eq!(j, "\"RDONLY\"");
        assert_eq!(
            "replica".parse::<TabletType>().unwrap(),
            TabletType::Replica
        );
        assert!("leader".parse::<TabletType>().is_err());
        assert!(!TabletType::Backup.is_replica_type());
    }

    #[test]
    fn old_health_records_parse_and_replication_errors_print() {
        let h: Health = serde_json::from_str(
            r#"{"mysqld_up":true,"replication_io_running":true,
            "replication_sql_running":true,"replication_lag_seconds":0,
            "gtid_position":null,"serving":true,"updated_at":null}"#,
        )
        .unwrap();
        assert!(h.replicating() && !h.replication_failing());
        assert_eq!(h.replication_clean_since, None);
        let e = ReplicationError {
            thread: "sql".into(),
            errno: 1062,
            message: "Duplicate entry '7' for key 'PRIMARY'".into(),
            seen_at: Utc::now(),
        };
        assert_eq!(
            e.to_string(),
            "SQL thread error 1062: Duplicate entry '7' for key 'PRIMARY'"
        );
        let h = Health {
            replication_error: Some(e.clone()),
            ..h
        };
        assert!(h.replication_failing());
        let back: Health = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back.replication_error, Some(e));
    }

    #[test]
    fn old_schedule_records_without_skip_counters_parse() {
        let s = r#"{"name":"nightly","cron":"0 2 * * *","target":"ks",
            "created_at":"2026-01-01T00:00:00Z"}"#;
        let s: Schedule = serde_json::from_str(s).unwrap();
        assert_eq!(s.skipped_runs, 0);
        assert_eq!(s.last_skip_reason, None);
        assert_eq!(s.last_skip_at, None);
        assert!(!s.paused);
    }

    #[test]
    fn old_job_records_without_new_fields_parse() {
        let j = r#"{"id":"j1","kind":"BACKUP","keyspace":"ks","shard":"0",
            "tablet_alias":"zone1-0000000101","state":"PENDING",
            "created_at":"2026-01-01T00:00:00Z"}"#;
        let job: Job = serde_json::from_str(j).unwrap();
        assert_eq!(job.attempt, 1);
        assert_eq!(job.tablet_alias.uid, 101);
    }
}
