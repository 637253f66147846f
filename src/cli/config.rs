//! Typed configurations built from the flags: the CLI is the only module that sees
//! clap structs; the layers below take these.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_topo::TabletAlias;

use super::args::{CoordinatorArgs, EncryptionArgs, StorageArg, StorageArgs, TabletArgs};
use crate::backup::encryption::{parse_recipients_file, Identities, Recipients};
use crate::backup::engine::EngineConfig;
use crate::backup::pipeline::Compression;
use crate::backup::storage::S3Config;
use crate::backup::{BackupStorage, StorageConfig};
use crate::common::UsageError;
use crate::coordinator::config::CoordinatorConfig;
use crate::coordinator::schedule::parse_cron;
use crate::tablet::AgentConfig;

/// The storage the flags name. With `required`, a missing root is a usage error;
/// without, it means "no storage" (a tablet runs without one). `s3` always needs
/// its bucket, and `--s3-*` flags without `s3` are refused rather than ignored.
pub fn storage_config(s: &StorageArgs, required: bool) -> anyhow::Result<StorageConfig> {
    match s.backup_storage_implementation {
        StorageArg::File => {
            if let Some(flag) = s3_flag_given(s) {
                return Err(
                    UsageError(format!("{flag} needs --backup-storage-implementation s3")).into(),
                );
            }
            match &s.file_backup_storage_root {
                Some(root) => Ok(StorageConfig::File { root: root.clone() }),
                None if required => Err(UsageError(
                    "--file-backup-storage-root is required with --backup-storage-implementation \
                     file (no backup storage is configured; for object storage: \
                     --backup-storage-implementation s3 --s3-backup-storage-bucket NAME)"
                        .into(),
                )
                .into()),
                None => Ok(StorageConfig::None),
            }
        }
        StorageArg::S3 => Ok(StorageConfig::S3(s3_config(s)?)),
    }
}

/// The first `--s3-*` flag given (not at its default), if any.
fn s3_flag_given(s: &StorageArgs) -> Option<&'static str> {
    [
        (
            s.s3_backup_storage_bucket.is_some(),
            "--s3-backup-storage-bucket",
        ),
        (
            s.s3_backup_storage_root.is_some(),
            "--s3-backup-storage-root",
        ),
        (
            s.s3_backup_aws_endpoint.is_some(),
            "--s3-backup-aws-endpoint",
        ),
        (s.s3_backup_force_path_style, "--s3-backup-force-path-style"),
        (s.s3_backup_aws_retries.is_some(), "--s3-backup-aws-retries"),
        (
            s.s3_backup_server_side_encryption.is_some(),
            "--s3-backup-server-side-encryption",
        ),
    ]
    .into_iter()
    .find(|(given, _)| *given)
    .map(|(_, flag)| flag)
}

/// The `s3` settings the flags give, checked (the error names the flag).
fn s3_config(s: &StorageArgs) -> Result<S3Config, UsageError> {
    let bucket = s.s3_backup_storage_bucket.clone().ok_or_else(|| {
        UsageError(
            "--s3-backup-storage-bucket is required with --backup-storage-implementation s3".into(),
        )
    })?;
    S3Config {
        root: s.s3_backup_storage_root.clone().unwrap_or_default(),
        region: s.s3_backup_aws_region.clone(),
        endpoint: s.s3_backup_aws_endpoint.clone(),
        force_path_style: s.s3_backup_force_path_style,
        retries: s
            .s3_backup_aws_retries
            .filter(|r| *r >= 0)
            .map(|r| r as u32),
        server_side_encryption: s.s3_backup_server_side_encryption,
        ..S3Config::new(bucket)
    }
    .validate()
    .map_err(UsageError)
}

/// `storage` with `concurrency` part uploads in flight (the `s3` backend's bound).
fn with_concurrency(storage: StorageConfig, concurrency: u32) -> StorageConfig {
    match storage {
        StorageConfig::S3(cfg) => StorageConfig::S3(S3Config {
            concurrency: concurrency.max(1) as usize,
            ..cfg
        }),
        other => other,
    }
}

/// The recipients the encryption flags name (`None`: no encryption), validated
/// and proven able to encrypt. An unreadable or empty recipients file, or a line
/// that is not an age X25519 public key, is a usage error naming the flag:
/// configured but unusable encryption never starts, so nothing is stored in
/// plaintext by accident.
pub fn encryption_recipients(a: &EncryptionArgs) -> Result<Option<Arc<Recipients>>, UsageError> {
    let mut keys = a.backup_encryption_recipient.clone();
    if let Some(f) = &a.backup_encryption_recipients_file {
        let flag = format!("--backup-encryption-recipients-file {}", f.display());
        let text = std::fs::read_to_string(f)
            .map_err(|e| UsageError(format!("{flag}: cannot read it: {e}")))?;
        let listed =
            parse_recipients_file(&text).map_err(|why| UsageError(format!("{flag}: {why}")))?;
        if listed.is_empty() {
            return Err(UsageError(format!("{flag}: lists no recipient")));
        }
        keys.extend(listed);
    }
    if keys.is_empty() {
        return Ok(None);
    }
    Recipients::new(&keys)
        .map(|r| Some(Arc::new(r)))
        .map_err(|why| UsageError(format!("--backup-encryption-recipient: {why}")))
}

/// The identities `--backup-encryption-identity-file` holds (`None` without the
/// flag). An unreadable file, or one without a valid X25519 identity, is a usage
/// error naming the flag; the error never quotes the file's content.
pub fn encryption_identities(file: Option<&Path>) -> Result<Option<Arc<Identities>>, UsageError> {
    let Some(f) = file else {
        return Ok(None);
    };
    let flag = format!("--backup-encryption-identity-file {}", f.display());
    let text = std::fs::read_to_string(f)
        .map_err(|e| UsageError(format!("{flag}: cannot read it: {e}")))?;
    Identities::parse(&text, &f.display().to_string())
        .map(|ids| Some(Arc::new(ids)))
        .map_err(|why| UsageError(format!("{flag}: {why}")))
}

/// The replication password the flags or `CAIRN_REPLICATION_PASSWORD` give, if any.
fn given_password(args: &TabletArgs) -> anyhow::Result<Option<String>> {
    if let Some(file) = &args.replication_password_file {
        let s = std::fs::read_to_string(file)
            .with_context(|| format!("reading --replication-password-file {}", file.display()))?;
        let p = s.trim_end_matches(['\n', '\r']).to_string();
        if p.is_empty() {
            bail!("--replication-password-file {} is empty", file.display());
        }
        return Ok(Some(p));
    }
    Ok(std::env::var(REPLICATION_PASSWORD_VAR)
        .ok()
        .filter(|p| !p.is_empty()))
}

/// The environment variable that may carry the replication password.
const REPLICATION_PASSWORD_VAR: &str = "CAIRN_REPLICATION_PASSWORD";

/// The password used when none is given: fine for a mysqld only reachable on loopback.
const BUILT_IN_REPLICATION_PASSWORD: &str = "cairn-replication";

/// Whether `addr` (a `--mysql-bind-address`) only accepts connections from this host.
fn is_loopback(addr: &str) -> bool {
    if addr.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    addr.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses the built-in replication password once mysqld listens beyond loopback:
/// anyone who can reach the port would know the replication account's password.
fn check_replication_password(bind_address: &str, given: bool) -> Result<(), UsageError> {
    if given || is_loopback(bind_address) {
        return Ok(());
    }
    Err(UsageError(format!(
        "--mysql-bind-address {bind_address} is not a loopback address: set the replication \
         password with --replication-password-file or {REPLICATION_PASSWORD_VAR} (the \
         built-in one is only allowed on loopback)"
    )))
}

fn resolve_password(args: &TabletArgs) -> anyhow::Result<String> {
    let given = given_password(args)?;
    check_replication_password(&args.mysql_bind_address, given.is_some())?;
    if let Some(p) = given {
        return Ok(p);
    }
    tracing::warn!(
        "no --replication-password-file and no {REPLICATION_PASSWORD_VAR}: using the built-in \
         replication password (mysqld listens on loopback only); set one in production"
    );
    Ok(BUILT_IN_REPLICATION_PASSWORD.to_string())
}

/// The storage the flags name, opened; the commands that read storage need one.
pub fn open_storage(s: &StorageArgs) -> anyhow::Result<Arc<dyn BackupStorage>> {
    storage_config(s, true)?
        .open()
        .context("opening the backup storage")?
        .ok_or_else(|| UsageError("no backup storage configured".into()).into())
}

/// The storage the flags name, opened, or `None` when no storage flag (nor its
/// `CAIRN_…` variable) is given at all: for commands that can do without
/// (`list-backups` lists the catalog in etcd instead). Half-given storage (`s3`
/// without a bucket, `--s3-*` flags without `s3`) is still a usage error.
pub fn open_storage_if_configured(
    s: &StorageArgs,
) -> anyhow::Result<Option<Arc<dyn BackupStorage>>> {
    storage_config(s, false)?
        .open()
        .context("opening the backup storage")
}

/// Refuses durations and counts that would make the agent misbehave (a zero health
/// interval spins; a lease shorter than 2 s expires between keepalives).
fn check_tablet_flags(a: &TabletArgs) -> Result<(), UsageError> {
    at_least(
        "--health-interval",
        a.health_interval,
        Duration::from_millis(100),
    )?;
    at_least("--health-ttl", a.health_ttl, Duration::from_secs(2))?;
    if a.health_interval >= a.health_ttl {
        return Err(UsageError(format!(
            "--health-interval ({}) must be shorter than --health-ttl ({})",
            human(a.health_interval),
            human(a.health_ttl)
        )));
    }
    at_least(
        "--job-progress-interval",
        a.job_progress_interval,
        Duration::from_millis(100),
    )?;
    if a.concurrency == 0 {
        return Err(UsageError("--concurrency must be at least 1".into()));
    }
    let to_point = a.restore_to_pos.is_some() || a.restore_to_timestamp.is_some();
    if to_point && !a.restore_from_backup {
        return Err(UsageError(
            "--restore-to-pos and --restore-to-timestamp need --restore-from-backup".into(),
        ));
    }
    if to_point && a.restore_from_backup_ts.is_some() {
        return Err(UsageError(
            "--restore-from-backup-ts cannot be combined with --restore-to-pos or --restore-to-timestamp: the chain picks its own full backup".into(),
        ));
    }
    if to_point && !a.wait_for_backup_interval.is_zero() {
        return Err(UsageError(
            "--wait-for-backup-interval cannot be combined with --restore-to-pos or --restore-to-timestamp: a point needs backups that exist".into(),
        ));
    }
    Ok(())
}

/// The point `cairn tablet` restores to, if asked (flags already checked).
fn restore_target(
    a: &TabletArgs,
) -> Result<Option<crate::backup::pitr::RestoreTarget>, UsageError> {
    if a.restore_to_pos.is_none() && a.restore_to_timestamp.is_none() {
        return Ok(None);
    }
    crate::tablet::pitr::target_of(
        a.restore_to_pos.as_deref(),
        a.restore_to_timestamp.as_deref(),
        chrono::Utc::now(),
    )
    .map(Some)
    .map_err(|e| UsageError(format!("{e:#}")))
}

/// Refuses coordinator flags that contradict each other or would spin.
fn check_coordinator_flags(a: &CoordinatorArgs) -> Result<(), UsageError> {
    at_least("--lease-ttl", a.lease_ttl, Duration::from_secs(2))?;
    at_least(
        "--reconcile-interval",
        a.reconcile_interval,
        Duration::from_millis(100),
    )?;
    at_least(
        "--pending-timeout",
        a.pending_timeout,
        Duration::from_secs(1),
    )?;
    at_least("--job-timeout", a.job_timeout, Duration::from_secs(1))?;
    at_least("--job-history", a.job_history, Duration::from_secs(1))?;
    // Without a grace a job cut off from etcd could be retried elsewhere while its
    // agent is still stopping it; a grace as long as the job timeout never fails it.
    at_least(
        "--lost-health-grace",
        a.lost_health_grace,
        Duration::from_secs(1),
    )?;
    if a.lost_health_grace >= a.job_timeout {
        return Err(UsageError(format!(
            "--lost-health-grace ({}) must be shorter than --job-timeout ({})",
            human(a.lost_health_grace),
            human(a.job_timeout)
        )));
    }
    at_least(
        "--cancelled-job-history",
        a.cancelled_job_history,
        Duration::from_secs(1),
    )?;
    at_least(
        "--min-schedule-period",
        a.min_schedule_period,
        Duration::from_secs(1),
    )?;
    if a.max_attempts == 0 {
        return Err(UsageError(
            "--max-attempts must be at least 1 (the first try)".into(),
        ));
    }
    if a.topo_snapshot_keep == 0 {
        return Err(UsageError("--topo-snapshot-keep must be at least 1".into()));
    }
    // A backup still being written is incomplete; retention must never take it for an
    // abandoned one, so the grace outlasts any job.
    if a.incomplete_grace <= a.job_timeout {
        return Err(UsageError(format!(
            "--incomplete-grace ({}) must be longer than --job-timeout ({}): a backup in \
             flight would otherwise be pruned as abandoned",
            human(a.incomplete_grace),
            human(a.job_timeout)
        )));
    }
    Ok(())
}

fn at_least(flag: &str, value: Duration, min: Duration) -> Result<(), UsageError> {
    if value < min {
        return Err(UsageError(format!(
            "{flag} must be at least {}",
            human(min)
        )));
    }
    Ok(())
}

/// A duration spelled as a flag takes it (`100ms`, `30s`, `1m30s`, `2h30m`).
fn human(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h{m}m"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// The agent configuration `cairn tablet`'s flags describe.
pub fn agent_config(args: &TabletArgs) -> anyhow::Result<AgentConfig> {
    check_tablet_flags(args)?;
    // Unusable encryption refuses to start before anything else is said or done.
    let encryption = encryption_recipients(&args.encryption)?;
    let identities = encryption_identities(args.backup_encryption_identity_file.as_deref())?;
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
        job_progress_interval: args.job_progress_interval,
        innodb_buffer_pool_size: args.innodb_buffer_pool_size.clone(),
        backup: EngineConfig {
            default_engine: args.backup_engine_implementation,
            compression: Compression::for_engine(args.compression_engine),
            concurrency: args.concurrency.max(1) as usize,
            xtrabackup_user: args.xtrabackup_user.clone(),
            xtrabackup_stream_mode: args.xtrabackup_stream_mode,
            xtrabackup_root_path: args.xtrabackup_root_path.clone(),
            work_dir: args.tablet_dir.clone(),
            allow_other_shard: args.allow_other_shard,
            encryption,
            identities,
        },
        restore_from_backup: args.restore_from_backup,
        wait_for_backup_interval: args.wait_for_backup_interval,
        restore_from_backup_ts: args.restore_from_backup_ts.clone(),
        restore_to: restore_target(args)?,
        storage: with_concurrency(storage_config(&args.storage, false)?, args.concurrency),
        http_port: args.port,
    })
}

/// The coordinator configuration `cairn coordinator`'s flags describe.
pub fn coordinator_config(args: &CoordinatorArgs) -> anyhow::Result<CoordinatorConfig> {
    check_coordinator_flags(args)?;
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
        lost_health_grace: args.lost_health_grace,
        max_attempts: args.max_attempts.max(1),
        retry_delay: args.retry_delay,
        job_history: args.job_history,
        cancelled_job_history: args.cancelled_job_history,
        min_schedule_period: args.min_schedule_period,
        incomplete_grace: args.incomplete_grace,
        snapshot_cron: args.topo_snapshot_cron.clone(),
        snapshot_keep: args.topo_snapshot_keep.max(1),
        storage: storage_config(&args.storage, true)?,
        encryption: encryption_recipients(&args.encryption)?,
        http_port: args.port,
    })
}

#[cfg(test)]
#[path = "config/storage_tests.rs"]
mod storage_tests;

#[cfg(test)]
mod tests;
