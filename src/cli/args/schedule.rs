//! The `schedule` subcommands' arguments: backup schedules (cron, target,
//! retention, incrementals, drills). Parsed and validated by clap (bad input:
//! exit 2); what a schedule does is `coordinator::schedule`'s.

use super::help;
use super::*;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create or replace a schedule
    #[command(long_about = help::SCHEDULE_SET)]
    Set(ScheduleSetArgs),
    /// List schedules
    #[command(long_about = help::SCHEDULE_LIST)]
    List {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Delete a schedule
    #[command(long_about = help::SCHEDULE_REMOVE)]
    Remove {
        /// Schedule to delete
        #[arg(value_parser = parse_schedule_name)]
        name: String,
    },
    /// Stop a schedule from firing, keeping it
    #[command(long_about = help::SCHEDULE_PAUSE)]
    Pause {
        /// Schedule to pause
        #[arg(value_parser = parse_schedule_name)]
        name: String,
    },
    /// Let a paused schedule fire again
    #[command(long_about = help::SCHEDULE_RESUME)]
    Resume {
        /// Schedule to resume
        #[arg(value_parser = parse_schedule_name)]
        name: String,
    },
    /// Apply a schedule's retention rule now (--dry-run: only show what would go)
    #[command(long_about = help::SCHEDULE_PRUNE)]
    Prune(SchedulePruneArgs),
}

/// `cairn schedule prune`.
#[derive(Debug, Clone, Args)]
pub struct SchedulePruneArgs {
    /// Schedule whose retention rule to apply
    #[arg(value_parser = parse_schedule_name)]
    pub name: String,
    /// Show what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Incomplete backups older than this are removed
    #[arg(long, default_value = "24h", value_parser = parse_dur)]
    pub incomplete_grace: Duration,
    /// Print what was (or would be) removed as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `cairn schedule set`.
#[derive(Debug, Clone, Args)]
pub struct ScheduleSetArgs {
    /// Name of the schedule (A-Z a-z 0-9 _ . -, at most 128)
    #[arg(value_parser = parse_schedule_name)]
    pub name: String,
    /// Cron with 5 or 6 fields (seconds first when 6)
    #[arg(long)]
    pub cron: String,
    /// KS or KS/SHARD
    #[arg(long)]
    pub target: String,
    /// Retention: keep this many newest complete backups per shard
    #[arg(long)]
    pub keep_count: Option<u32>,
    /// Retention: keep backups younger than this (e.g. 36h, 336h)
    #[arg(long, value_parser = parse_dur)]
    pub keep_for: Option<Duration>,
    /// Engine of each run (default: the tablet's)
    #[arg(long, value_enum)]
    pub backup_engine: Option<BackupMethod>,
    /// Each run takes an incremental backup (binary logs) from the newest backup
    /// of the shard, on the chosen healthy replica
    #[arg(long)]
    pub incremental: bool,
    /// Also run a restore drill of the newest complete full backup of each
    /// targeted shard on this cron (5 or 6 fields, like --cron)
    #[arg(long)]
    pub drill_cron: Option<String>,
    /// Each scheduled drill also applies the chain of incrementals and archived
    /// binlogs up to the newest archived transaction (as `cairn drill
    /// --to-now`); with neither it drills the full backup alone and says so.
    /// Needs --drill-cron
    #[arg(long)]
    pub drill_to_now: bool,
    /// Refuse a cron whose slots come closer together than this
    #[arg(long, env = "CAIRN_MIN_SCHEDULE_PERIOD", default_value = "5m", value_parser = parse_dur)]
    pub min_schedule_period: Duration,
}
