//! Typed configurations built from the flags: the CLI is the only module that sees
//! clap structs; the layers below take these.

use std::sync::Arc;

use anyhow::{bail, Context};
use cairn_topo::TabletAlias;

use super::args::{CoordinatorArgs, StorageArg, StorageArgs, TabletArgs};
use crate::backup::engine::EngineConfig;
use crate::backup::pipeline::Compression;
use crate::backup::{BackupStorage, StorageConfig};
use crate::common::UsageError;
use crate::coordinator::config::CoordinatorConfig;
use crate::coordinator::schedule::parse_cron;
use crate::tablet::AgentConfig;

/// The storage the flags name. With `required`, a missing root is a usage error;
/// without, it means "no storage" (a tablet runs without one).
pub fn storage_config(s: &StorageArgs, required: bool) -> anyhow::Result<StorageConfig> {
    match s.backup_storage_implementation {
        StorageArg::File => match &s.file_backup_storage_root {
            Some(root) => Ok(StorageConfig::File { root: root.clone() }),
            None if required => Err(UsageError(
                "--file-backup-storage-root is required with --backup-storage-implementation file"
                    .into(),
            )
            .into()),
            None => Ok(StorageConfig::None),
        },
    }
}

fn resolve_password(args: &TabletArgs) -> anyhow::Result<String> {
    if let Some(file) = &args.replication_password_file {
        let s = std::fs::read_to_string(file)
            .with_context(|| format!("reading --replication-password-file {}", file.display()))?;
        let p = s.trim_end_matches(['\n', '\r']).to_string();
        if p.is_empty() {
            bail!("--replication-password-file {} is empty", file.display());
        }
        return Ok(p);
    }
    if let Ok(p) = std::env::var("CAIRN_REPLICATION_PASSWORD") {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    tracing::warn!(
        "no --replication-password-file and no CAIRN_REPLICATION_PASSWORD: using the built-in \
         replication password; set one in production"
    );
    Ok("cairn-replication".to_string())
}

/// The storage the flags name, opened; the commands that read storage need one.
pub fn open_storage(s: &StorageArgs) -> anyhow::Result<Arc<dyn BackupStorage>> {
    storage_config(s, true)?
        .open()
        .ok_or_else(|| UsageError("no backup storage configured".into()).into())
}

/// The agent configuration `cairn tablet`'s flags describe.
pub fn agent_config(args: &TabletArgs) -> anyhow::Result<AgentConfig> {
    let alias =
        TabletAlias::new(&args.cell, args.tablet_uid).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(AgentConfig {
        alias,
        keyspace: args.init_keyspace.clone(),
        shard: args.init_shard.clone(),
        base_type: args.init_tablet_type,
        tablet_dir: args.tablet_dir.clone(),
        mysql_port: args.mysql_port,
        mysql_bind_address: args.mysql_bind_address.clone(),
        hostname: args.tablet_hostname.clone().unwrap_or_else(|| {
            if args.mysql_bind_address == "0.0.0.0" {
                crate::common::hostname()
            } else {
                args.mysql_bind_address.clone()
            }
        }),
        repl_user: args.replication_user.clone(),
        repl_password: resolve_password(args)?,
        health_ttl: args.health_ttl,
        health_interval: args.health_interval,
        innodb_buffer_pool_size: args.innodb_buffer_pool_size.clone(),
        backup: EngineConfig {
            default_engine: args.backup_engine_implementation,
            compression: Compression::for_engine(args.compression_engine),
            concurrency: args.concurrency.max(1) as usize,
            xtrabackup_user: args.xtrabackup_user.clone(),
            xtrabackup_stream_mode: args.xtrabackup_stream_mode,
            xtrabackup_root_path: args.xtrabackup_root_path.clone(),
            work_dir: args.tablet_dir.clone(),
        },
        restore_from_backup: args.restore_from_backup,
        wait_for_backup_interval: args.wait_for_backup_interval,
        restore_from_backup_ts: args.restore_from_backup_ts.clone(),
        storage: storage_config(&args.storage, false)?,
        http_port: args.port,
    })
}

/// The coordinator configuration `cairn coordinator`'s flags describe.
pub fn coordinator_config(args: &CoordinatorArgs) -> anyhow::Result<CoordinatorConfig> {
    if let Some(expr) = &args.topo_snapshot_cron {
        parse_cron(expr).map_err(|e| UsageError(format!("--topo-snapshot-cron: {e}")))?;
    }
    Ok(CoordinatorConfig {
        id: args
            .id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", crate::common::hostname(), std::process::id())),
        lease_ttl: args.lease_ttl,
        reconcile_interval: args.reconcile_interval,
        max_lag_seconds: args.max_lag.as_secs(),
        stagger_window: args.stagger_window,
        pending_timeout: args.pending_timeout,
        job_timeout: args.job_timeout,
        max_attempts: args.max_attempts.max(1),
        retry_delay: args.retry_delay,
        job_history: args.job_history,
        incomplete_grace: args.incomplete_grace,
        snapshot_cron: args.topo_snapshot_cron.clone(),
        snapshot_keep: args.topo_snapshot_keep.max(1),
        storage: storage_config(&args.storage, true)?,
        http_port: args.port,
    })
}
