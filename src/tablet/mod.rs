//! The tablet agent (Vitess's vttablet): one mysqld, its registration and health in
//! topo, replication from the shard primary, and the jobs addressed to it.
//!
//! - [`flavor`]: what differs between MariaDB and MySQL (SQL, tool names).
//! - [`mysqld`]: the mysqld process: initialise, start, adopt, stop, SQL helpers.
//! - [`agent`]: registration, health on a lease, following the shard primary,
//!   supervision and shutdown.

pub mod agent;
pub mod flavor;
pub mod http;
pub mod jobs;
pub mod mysqld;
pub mod restore;

use cairn_topo::TopoConfig;

use crate::cli::args::TabletArgs;

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(topo: TopoConfig, args: TabletArgs) -> anyhow::Result<()> {
    agent::run(topo, args).await
}
