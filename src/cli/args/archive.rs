//! The `archive` subcommands' arguments: continuous binlog archiving of a
//! keyspace's shards. Parsed and validated by clap (bad input: exit 2).

use std::time::Duration;

use clap::{Args, Subcommand};

use super::help;

use crate::common::duration::parse_duration;
use crate::coordinator::schedule::{parse_target, Target};

/// The shortest `--interval`: a segment a second at most.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Archive the binary log of a keyspace's shards (or one shard) continuously
    #[command(long_about = help::ARCHIVE_SET)]
    Set(ArchiveSetArgs),
    /// List archived shards with their archived window and loss window
    #[command(long_about = help::ARCHIVE_LIST)]
    List {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Stop archiving a keyspace's shards (or one shard); stored segments stay
    #[command(long_about = help::ARCHIVE_REMOVE)]
    Remove {
        /// KS or KS/SHARD
        #[arg(value_parser = parse_archive_target, allow_hyphen_values = true)]
        target: Target,
    },
}

/// `cairn archive set`.
#[derive(Debug, Clone, Args)]
pub struct ArchiveSetArgs {
    /// KS (every shard it has now) or KS/SHARD
    #[arg(value_parser = parse_archive_target, allow_hyphen_values = true)]
    pub target: Target,
    /// How often what arrived is stored as a segment (at least 1s)
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_archive_target(s: &str) -> Result<Target, String> {
    parse_target(s).map_err(|e| e.to_string())
}

/// A duration of at least [`MIN_INTERVAL`].
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < MIN_INTERVAL {
        return Err(format!(
            "--interval {s:?} is shorter than the minimum of 1s"
        ));
    }
    Ok(d)
}
