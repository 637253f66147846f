//! Backup engines as the tablet agent sees them: which engine, what it needs, and
//! the two operations every engine has: take a backup of a mysqld, and restore a
//! backup into a staging directory that becomes a data directory.
//!
//! May call: the engines ([`super::builtin`], [`super::xtrabackup`]), their
//! parameters ([`super::params`]), [`super::external`], storage and MANIFEST
//! types, [`crate::mysql`].
//!
//! The agent owns the bracket around a backup (tablet type, replication, restarting
//! mysqld whatever happens); an engine only does its body. Around every restore this
//! room checks that the MANIFEST fits the restoring tablet ([`check_manifest_fits`],
//! pure) before anything is touched, and leaves the restored directory owner-only
//! whatever the engine. Data the data directory only points to (symlinks, InnoDB
//! `DATA DIRECTORY` tables) is refused by [`check_before_backup`] before the
//! tablet leaves service, and by the restore when a backup holds it anyway.

use super::manifest::{BackupMethod, Manifest};
pub use super::params::{BackupParams, EngineConfig, RestoreParams};
pub use super::pipeline::Progress;
use super::storage::BackupStorage;
use super::{builtin, external, xtrabackup};
use crate::mysql::mysqld::Mysqld;

/// Whether the tablet leaves service (type BACKUP) while `method` runs.
pub fn drains(method: BackupMethod) -> bool {
    matches!(method, BackupMethod::Builtin)
}

/// Refuses a backup by `method` of the data directory `data_dir` when it would
/// miss data that lies elsewhere (see [`super::external`]): called before the
/// tablet leaves service, so a refused backup never stops mysqld.
pub fn check_before_backup(method: BackupMethod, data_dir: &std::path::Path) -> anyhow::Result<()> {
    external::check_data_dir(method, data_dir, &builtin::is_backed_up)
}

/// Takes a backup with `method`. Builtin leaves mysqld shut down (the caller
/// restarts it); xtrabackup leaves it running. On error nothing complete is left in
/// storage.
pub async fn backup(
    method: BackupMethod,
    mysqld: &mut Mysqld,
    storage: &dyn BackupStorage,
    p: &BackupParams,
    cfg: &EngineConfig,
) -> anyhow::Result<Manifest> {
    match method {
        BackupMethod::Builtin => builtin::backup(mysqld, storage, p).await,
        BackupMethod::Xtrabackup => xtrabackup::backup(mysqld, storage, p, cfg).await,
    }
}

/// Restores the backup `p` names into `p.staging`, verifying every byte; on
/// success `staging` is a data directory mysqld can start on.
/// Refuses before anything is touched a MANIFEST that does not fit: another
/// keyspace/shard (unless `--allow-other-shard`), a newer server version, or an
/// encrypted backup this tablet's identities cannot open.
pub async fn restore_to_staging(p: RestoreParams<'_>) -> anyhow::Result<()> {
    check_manifest_fits(
        p.manifest,
        p.keyspace,
        p.shard,
        p.server_version,
        p.cfg.allow_other_shard,
    )
    .map_err(|why| anyhow::anyhow!("backup {} refused: {why}", p.manifest.backup_name))?;
    external::check_entries(p.manifest)
        .map_err(|why| anyhow::anyhow!("backup {} refused: {why}", p.manifest.backup_name))?;
    check_decryptable(&p).await?;
    let staging = p.staging.to_path_buf();
    let name = p.manifest.backup_name.clone();
    match p.manifest.backup_method {
        BackupMethod::Builtin => builtin::restore(p).await?,
        BackupMethod::Xtrabackup => xtrabackup::restore(p).await?,
    }
    // An online backup may have caught a DATA DIRECTORY table created meanwhile.
    external::check_restored(&staging, &name)?;
    owner_only(&staging)
}

/// Proves the tablet's identities open the backup `p` names (nothing to prove
/// for a plaintext one) before anything is touched; the error names the
/// recipients needed. Reads only the age header of one stored file.
pub async fn check_decryptable(p: &RestoreParams<'_>) -> anyhow::Result<()> {
    super::pipeline::check_decryptable(p.stored()).await
}

/// Whether a backup described by `m` may be restored on a tablet of
/// `keyspace/shard` whose mysqld is `server_version`: the same keyspace and shard
/// (unless `allow_other_shard`), and a server at least as new as the one that took
/// it (major release: the first two numbers; MariaDB cannot start on data of a
/// newer release). An unknown version on either side is not refused. An
/// incremental backup (binary logs) is always refused: it is no data directory. Pure.
pub fn check_manifest_fits(
    m: &Manifest,
    keyspace: &str,
    shard: &str,
    server_version: &str,
    allow_other_shard: bool,
) -> Result<(), String> {
    if m.is_incremental() {
        return Err(format!(
            "it is an incremental backup (binary logs after {}), not a full one: it cannot seed a tablet",
            m.incremental.from_position
        ));
    }
    if (m.keyspace != keyspace || m.shard != shard) && !allow_other_shard {
        return Err(format!(
            "its MANIFEST names shard {}/{}, this tablet is in {keyspace}/{shard} (restore it anyway with --allow-other-shard)",
            m.keyspace, m.shard
        ));
    }
    if let (Some(theirs), Some(ours)) = (
        major_release(&m.mysql_version),
        major_release(server_version),
    ) {
        if theirs > ours {
            return Err(format!(
                "it was taken by server version {}, newer than this tablet's {server_version}",
                m.mysql_version
            ));
        }
    }
    Ok(())
}

/// `(major, minor)` of a version string such as `10.11.6-MariaDB`.
fn major_release(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Makes a restored data directory owner-only: directories 0700, files without
/// group or other bits (mysqld runs as the agent's user).
fn owner_only(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if meta.is_dir() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} owner-only", dir.display()))?;
        for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let e = e.with_context(|| format!("listing {}", dir.display()))?;
            owner_only(&e.path())?;
        }
    } else if meta.is_file() {
        let mode = meta.permissions().mode() & 0o700;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} owner-only", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(ks: &str, shard: &str, version: &str) -> Manifest {
        let t = chrono::Utc::now();
        Manifest {
            backup_name: "b".into(),
            backup_method: BackupMethod::Builtin,
            position: "MariaDB/0-1-1".into(),
            purged_position: String::new(),
            backup_time: t,
            finished_time: t,
            server_uuid: String::new(),
            tablet_alias: "zone1-0000000001".into(),
            schedule: None,
            hostname: String::new(),
            keyspace: ks.into(),
            shard: shard.into(),
            mysql_version: version.into(),
            upgrade_safe: false,
            compression_engine: super::super::manifest::CompressionEngine::Zstd,
            file_entries: vec![],
            total_size: 0,
            stored_size: 0,
            stream_mode: None,
            encryption: None,
            encryption_recipients: vec![],
            flavor: "MariaDB".into(),
            format_version: super::super::manifest::FORMAT_VERSION,
            incremental: Default::default(),
        }
    }

    #[test]
    fn manifest_fits_table() {
        // (MANIFEST keyspace, shard, version; allow other shard; server version; ok)
        let cases = [
            ("ks", "0", "10.11.6-MariaDB", false, "10.11.6-MariaDB", true),
            ("ks", "0", "10.11.6-MariaDB", false, "10.11.9", true),
            ("ks", "0", "10.6.1-MariaDB", false, "10.11.6", true),
            ("ks", "0", "11.4.2-MariaDB", false, "10.11.6", false),
            ("ks", "0", "10.11.6", false, "10.6.20", false),
            ("ks", "0", "", false, "10.11.6", true),
            ("ks", "0", "11.4.2", false, "", true),
            ("ks", "1", "10.11.6", false, "10.11.6", false),
            ("other", "0", "10.11.6", false, "10.11.6", false),
            ("ks", "1", "10.11.6", true, "10.11.6", true),
            ("ks", "1", "11.4.2", true, "10.11.6", false),
        ];
        let mut incr = manifest("ks", "0", "10.11.6");
        incr.incremental.is_incremental = true;
        let e = check_manifest_fits(&incr, "ks", "0", "10.11.6", true).unwrap_err();
        assert!(e.contains("incremental"), "{e}");
        for (ks, shard, version, allow, server, ok) in cases {
            let m = manifest(ks, shard, version);
            let got = check_manifest_fits(&m, "ks", "0", server, allow);
            assert_eq!(
                got.is_ok(),
                ok,
                "{ks}/{shard} {version} on {server}, allow {allow}: {got:?}"
            );
        }
    }

    #[test]
    fn restored_dirs_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("staging");
        std::fs::create_dir_all(top.join("app")).unwrap();
        std::fs::write(top.join("app/t.ibd"), b"x").unwrap();
        for p in [&top, &top.join("app"), &top.join("app/t.ibd")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        owner_only(&top).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&top), 0o700);
        assert_eq!(mode(&top.join("app")), 0o700);
        assert_eq!(mode(&top.join("app/t.ibd")), 0o700 & 0o755);
    }
}
