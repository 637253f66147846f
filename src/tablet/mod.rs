//! The tablet agent (Vitess's vttablet): one mysqld, its registration and health in
//! topo, replication from the shard primary, and the jobs addressed to it. Calls
//! `backup`, `mysql`, `common` and `cairn-topo`; never `cli` or `coordinator`.
//!
//! - [`config`]: [`AgentConfig`], the agent's settings as the CLI resolved them.
//! - [`agent`]: the [`agent::Agent`] its loops share, its reported status, and the
//!   small operations all rooms use (publish the Tablet record, errors, storage).
//! - [`startup`]: the `cairn tablet` entry point: registration, the restore-at-start
//!   decision, the loops, and the clean stop.
//! - [`role`]: primary or replica as the Shard record says: the pure role decision,
//!   the thin reconcile that applies it, and the Shard watch.
//! - [`replication`]: a replica's replication history and the pure decisions on it:
//!   failing or not, and when to restart stopped threads (backoff).
//! - [`health`]: Health on the lease, the health and lease loops, mysqld gauges.
//! - [`disk`]: the tablet directory's free disk, rounded for Health (drills are
//!   placed by it) and exact for a drill's own check.
//! - [`fence`]: what ties a job to the agent's lease: claims read back, jobs
//!   stopped when the lease is lost, the check before a restore's swap, orphans.
//! - [`jobs`]: the job runner: take, run, report, finish backup and restore jobs;
//!   return the tablet to service after each.
//! - [`incremental`]: the incremental backup job: binary logs only, the tablet
//!   keeps serving.
//! - [`archive`]: the ARCHIVE job: the primary's binlog streamed to a spool and
//!   stored as segments every interval; resumes from storage; follows the primary.
//! - `publish`: how often progress and Health are written (pure decisions).
//! - [`drill`]: the DRILL job: a backup restored into a scratch directory with
//!   its own mysqld beside the serving tablet, checked, thrown away; the outcome
//!   into the backup's record.
//! - [`restore`]: restores at start (choose the seed, wait for one) and in place.
//! - [`pitr`]: restores to a point (a GTID position or a second): the chain
//!   planned, its binlogs fetched and applied, the tablet held DRAINED.
//! - [`recovery`]: at every start, what an interrupted restore left is rolled back
//!   or redone.
//! - [`http`]: `/healthz` and `/metrics`.

pub mod agent;
pub mod archive;
pub mod config;
pub mod disk;
pub mod drill;
pub mod fence;
pub mod health;
pub mod http;
pub mod incremental;
pub mod jobs;
pub mod pitr;
mod publish;
pub mod recovery;
pub mod replication;
pub mod restore;
pub mod role;
pub mod startup;

use cairn_topo::TopoConfig;

pub use config::AgentConfig;

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(topo: TopoConfig, cfg: AgentConfig) -> anyhow::Result<()> {
    startup::run(topo, cfg).await
}
