//! The builtin engine (Vitess's): with the tablet already out of service, stop
//! replication, record the GTID position, shut mysqld down, copy the data directory
//! through the compression/hashing pipeline, write the MANIFEST last. Restarting
//! mysqld and resuming replication belong to the caller, which does them whatever
//! happened here.
//!
//! Only the data directory's own regular files are copied: a symlink or an InnoDB
//! link file (`.isl`) among them fails the backup with the path and where it
//! points ([`super::external`]), never leaves it out quietly.
//!
//! May call: [`super::pipeline`], [`super::storage`], [`super::manifest`],
//! [`super::external`], [`crate::mysql`] (the mysqld it backs up).

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::external;
use super::manifest::{base, BackupMethod, Manifest};
use super::params::{BackupParams, RestoreParams};
use super::pipeline::{self, SourceFile};
use super::storage::BackupStorage;
use crate::mysql::mysqld::Mysqld;

/// How long a clean mysqld shutdown may take before it is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(300);

/// Whether a data-directory entry belongs in a backup. Binary and relay logs,
/// replication state, sockets, pid and log files and temporary tables describe the
/// source server, not the data: a restored server starts its own.
pub fn is_backed_up(rel: &str) -> bool {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    let top_level = !rel.contains('/');
    if top_level
        && (file.starts_with("mysql-bin.")
            || file.starts_with("relay-bin.")
            || matches!(
                file,
                "master.info"
                    | "relay-log.info"
                    | "multi-master.info"
                    | "ibtmp1"
                    | "mysql_upgrade_info"
            )
            || file.ends_with(".pid")
            || file.ends_with(".sock")
            || file.ends_with(".err")
            || file.ends_with(".log") && file != "ddl_recovery.log")
    {
        return false;
    }
    !file.starts_with("#sql")
}

/// Which part of the server a file is, for the MANIFEST.
fn base_of(rel: &str) -> &'static str {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    if !rel.contains('/') && (file.starts_with("ibdata") || file.starts_with("undo")) {
        base::INNODB_DATA
    } else if !rel.contains('/') && file.starts_with("ib_logfile") {
        base::INNODB_LOG
    } else {
        base::DATA
    }
}

/// Every file of the data directory to back up, with sizes. A symlink or an
/// `.isl` file among them is an error naming it (its data lies elsewhere).
pub fn list_data_files(data_dir: &Path) -> anyhow::Result<Vec<SourceFile>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) -> anyhow::Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            // Not followed: a link is reported, never walked through.
            let meta = entry
                .metadata()
                .with_context(|| format!("stat {}", path.display()))?;
            let rel = path
                .strip_prefix(root)
                .with_context(|| format!("{} outside the data directory", path.display()))?
                .to_string_lossy()
                .into_owned();
            if meta.is_dir() {
                walk(root, &path, out)?;
                continue;
            }
            if !is_backed_up(&rel) {
                continue;
            }
            if let Some(why) = external::classify(&path, &rel, meta.file_type())
                .and_then(|found| external::refusal(BackupMethod::Builtin, &found))
            {
                anyhow::bail!("{why}");
            }
            if meta.is_file() {
                out.push(SourceFile {
                    base: base_of(&rel).to_string(),
                    name: rel,
                    path,
                    size: meta.len(),
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(data_dir, data_dir, &mut out)?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The builtin backup body; see the module doc. mysqld is down when this returns,
/// successfully or not (the caller restarts it).
pub async fn backup(
    mysqld: &mut Mysqld,
    storage: &dyn BackupStorage,
    p: &BackupParams,
) -> anyhow::Result<Manifest> {
    if mysqld
        .replication_status()
        .await
        .context("reading replication status")?
        .is_some()
    {
        mysqld
            .stop_replication()
            .await
            .context("stopping replication")?;
    }
    let position = mysqld
        .position()
        .await
        .context("reading the GTID position")?;
    let version = mysqld.version().await.unwrap_or_default();
    tracing::info!(%position, "replication stopped; shutting mysqld down for the copy");
    mysqld
        .shutdown(SHUTDOWN_TIMEOUT)
        .await
        .context("shutting mysqld down")?;

    let data_dir = mysqld.data_dir();
    let files = list_data_files(&data_dir)?;
    let writer = storage
        .start_backup(&p.keyspace, &p.shard, &p.name)
        .await
        .with_context(|| format!("starting backup {} in storage", p.name))?;
    tracing::info!(files = files.len(), name = %p.name, "copying the data directory");
    let copied = pipeline::backup_files(
        writer.as_ref(),
        files,
        &p.copy,
        p.progress.clone(),
        p.cancel.clone(),
    )
    .await;
    let entries = match copied {
        Ok(e) => e,
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "could not remove the partial backup; it stays incomplete (no MANIFEST)");
            }
            return Err(e.context(format!("copying files into backup {}", p.name)));
        }
    };
    let manifest = p.manifest(
        BackupMethod::Builtin,
        position,
        version,
        mysqld.flavor().name(),
        entries,
    );
    if let Err(e) = writer.write_manifest(&manifest).await {
        let _ = writer.abort().await;
        return Err(anyhow::Error::new(e).context(format!("writing the MANIFEST of {}", p.name)));
    }
    Ok(manifest)
}

/// Restores a builtin backup: every file verified into `p.staging`.
pub async fn restore(p: RestoreParams<'_>) -> anyhow::Result<()> {
    pipeline::restore_files(
        p.stored(),
        p.staging,
        p.cfg.concurrency,
        p.progress,
        p.cancel,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_is_backed_up() {
        for keep in [
            "ibdata1",
            "ib_logfile0",
            "mysql/user.MAD",
            "app/t.ibd",
            "aria_log_control",
            "ddl_recovery.log",
            "undo001",
        ] {
            assert!(is_backed_up(keep), "{keep} should be backed up");
        }
        for skip in [
            "mysql-bin.000001",
            "mysql-bin.index",
            "relay-bin.000002",
            "master.info",
            "relay-log.info",
            "x.pid",
            "mysqld.err",
            "ibtmp1",
            "app/#sql-1234.ibd",
        ] {
            assert!(!is_backed_up(skip), "{skip} should not be backed up");
        }
        assert_eq!(base_of("ibdata1"), base::INNODB_DATA);
        assert_eq!(base_of("ib_logfile0"), base::INNODB_LOG);
        assert_eq!(base_of("app/t.ibd"), base::DATA);
    }

    #[test]
    fn the_walk_refuses_what_lies_elsewhere() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let (data, elsewhere) = (d.path().join("data"), d.path().join("elsewhere"));
        fs::create_dir_all(data.join("app")).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(data.join("app/t.ibd"), b"x").unwrap();
        // A link the backup would not copy anyway is no reason to refuse.
        symlink(&elsewhere, data.join("mysql-bin.000001")).unwrap();
        let names = |v: Vec<SourceFile>| v.into_iter().map(|f| f.name).collect::<Vec<_>>();
        assert_eq!(names(list_data_files(&data).unwrap()), ["app/t.ibd"]);
        symlink(&elsewhere, data.join("db1")).unwrap();
        let e = list_data_files(&data).unwrap_err().to_string();
        let want = format!(
            "{} is a symbolic link to {}",
            data.join("db1").display(),
            elsewhere.display()
        );
        assert!(e.contains(&want), "{e}");
        fs::remove_file(data.join("db1")).unwrap();
        fs::create_dir(data.join("db2")).unwrap();
        fs::write(data.join("db2/r.isl"), b"/mnt/y/db2/r.ibd").unwrap();
        let e = list_data_files(&data).unwrap_err().to_string();
        assert!(
            e.contains("table db2.r was created with DATA DIRECTORY"),
            "{e}"
        );
        assert!(e.contains("/mnt/y/db2/r.ibd"), "{e}");
    }
}
