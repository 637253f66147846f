//! The tablet agent (Vitess's vttablet): one mysqld, its registration and health in
//! topo, replication from the shard primary, and the jobs addressed to it.
//!
//! - [`agent`]: registration, health on a lease, following the shard primary,
//!   supervision and shutdown.

pub mod agent;
pub mod config;
pub mod http;
pub mod jobs;
pub mod restore;

use cairn_topo::TopoConfig;

pub use config::AgentConfig;

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(topo: TopoConfig, cfg: AgentConfig) -> anyhow::Result<()> {
    agent::run(topo, cfg).await
}
