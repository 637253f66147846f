//! A drill to now (`cairn drill --to-now`): the chain from the drilled full
//! backup to the newest archived transaction is planned with the
//! point-in-time planner ([`to_now_chain_input`], then
//! [`plan_chain_with_archive`]: a gap is a failure naming the missing GTIDs),
//! its binlogs are downloaded and verified into the scratch directory before
//! the full backup is restored, and once the scratch server is up they are
//! applied to it with the point-in-time restore's own code
//! ([`super::super::pitr::apply_chain`]). The tablet's own mysqld and its
//! `pitr-binlogs/` are never touched.
//!
//! Calls `backup` (pitr planner, drill), `mysql` (the scratch [`Mysqld`]),
//! `cairn-topo` (the archive record) and the agent's pitr helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use cairn_topo::ArchiveRecord;
use tokio_util::sync::CancellationToken;

use super::super::agent::Agent;
use super::super::pitr::{apply_chain, restored_to};
use super::checks;
use crate::backup::drill::to_now_chain_input;
use crate::backup::engine::Progress;
use crate::backup::manifest::Manifest;
use crate::backup::pitr::{format_position, plan_chain_with_archive, ApplyPlan, ChainPlan};
use crate::mysql::mysqld::Mysqld;

/// Where a drill to now keeps the chain's binlogs, under its scratch directory.
pub const BINLOGS: &str = "binlogs";

/// The binlogs' directory of a scratch directory.
pub fn binlog_root(scratch: &Path) -> PathBuf {
    scratch.join(BINLOGS)
}

/// Bytes of binlogs a chain applies (the incrementals' files, the archived
/// segments' source ranges). Pure.
pub fn chain_binlog_bytes(chain: &ChainPlan) -> u64 {
    let incs: u64 = chain.incrementals.iter().map(|m| m.total_size).sum();
    let archived: u64 = chain
        .archived
        .iter()
        .flat_map(|f| f.pieces.iter())
        .map(|p| p.segment.end.saturating_sub(p.from))
        .sum();
    incs.saturating_add(archived)
}

/// A chain with nothing to apply on its full backup: no incremental, no
/// archived binlog. Pure.
pub fn nothing_to_apply(chain: &ChainPlan) -> bool {
    chain.incrementals.is_empty() && chain.archived.is_empty()
}

/// What a drill to now with [`nothing_to_apply`] says in its outcome. Pure.
pub fn full_alone_note(m: &Manifest) -> String {
    format!(
        "to now: no incremental backup or archived binlog after backup {} (no archive, or \
         nothing written since it): the full backup alone was drilled, at {}",
        m.backup_name, m.position
    )
}

impl Agent {
    /// The chain from backup `m` up to the newest archived transaction of the
    /// shard (the archive record's position, or with no archive the newest
    /// incremental's): one line when it has a gap, naming the missing GTIDs.
    pub(in crate::tablet) async fn plan_drill_to_now(
        &self,
        m: &Manifest,
    ) -> anyhow::Result<ChainPlan> {
        let manifests = self.restorable_manifests().await?;
        let archive = self.archive_listing().await?;
        let key = self
            .topo
            .keys()
            .archive(&self.cfg.keyspace, &self.cfg.shard);
        let recorded = self
            .topo
            .get::<ArchiveRecord>(&key)
            .await
            .context("reading the shard's archive record")?
            .map(|r| r.value.state.position)
            .unwrap_or_default();
        let (chain, target) =
            to_now_chain_input(m, &manifests, &archive, &recorded).map_err(anyhow::Error::msg)?;
        plan_chain_with_archive(&chain, &archive, &target).map_err(anyhow::Error::msg)
    }

    /// [`Self::plan_drill_to_now`], logged and recorded in job `job_id`.
    pub(in crate::tablet) async fn plan_drill_chain(
        &self,
        job_id: &str,
        m: &Manifest,
    ) -> anyhow::Result<ChainPlan> {
        let chain = self
            .plan_drill_to_now(m)
            .await
            .context("planning the chain to now")?;
        let lines = chain.describe();
        for l in &lines {
            tracing::info!(backup = %m.backup_name, "drill to now, chain: {l}");
        }
        self.record_point_in_time(job_id, &lines, None).await;
        Ok(chain)
    }

    /// After [`apply_to_scratch`]: notes what was applied, records where the
    /// drill got in job `job_id`, and returns the position the checks expect
    /// (the chain's end).
    pub(in crate::tablet) async fn record_drill_reached(
        &self,
        job_id: &str,
        chain: Option<&ChainPlan>,
        plan: &ApplyPlan,
        notes: &mut Vec<String>,
    ) -> String {
        let reached = restored_to(plan);
        notes.push(format!(
            "applied {} binlog transactions to {reached}",
            plan.steps.iter().map(|s| s.transactions).sum::<usize>()
        ));
        let lines = chain.map(ChainPlan::describe).unwrap_or_default();
        self.record_point_in_time(job_id, &lines, Some(reached))
            .await;
        format_position(&plan.applied_to)
    }

    /// Downloads and verifies the chain's binlogs into `scratch/binlogs/` and
    /// decides what to apply.
    pub(in crate::tablet) async fn fetch_drill_chain(
        &self,
        scratch: &Path,
        chain: &ChainPlan,
        progress: Arc<Progress>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<ApplyPlan> {
        self.fetch_chain_into(&binlog_root(scratch), chain, progress, cancel)
            .await
            .context("fetching the chain's binlogs")
    }
}

/// On the scratch server just started on backup `m`'s data: checks the
/// restored position against the MANIFEST's, sets the MANIFEST's as the
/// server's replica position (as a point-in-time restore does), then applies
/// `plan` from `scratch/binlogs/` and checks where it ended.
pub async fn apply_to_scratch(
    srv: &Mysqld,
    scratch: &Path,
    m: &Manifest,
    plan: &ApplyPlan,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let restored = srv
        .gtid_position()
        .await
        .context("reading the restored position")?;
    checks::position_verdict(&restored, &m.position).map_err(|p| anyhow!("{p}"))?;
    srv.set_replication_position(&m.position)
        .await
        .context("setting the full backup's position before the apply")?;
    apply_chain(srv, &binlog_root(scratch), plan, cancel).await
}
