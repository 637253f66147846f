//! [`orphaned_backup_outcome`]: what a restarted agent makes of the backup a job
//! of the previous agent names.

use super::*;
use crate::backup::manifest::{BackupMethod, CompressionEngine, FORMAT_VERSION};
use crate::backup::storage::StorageError;

fn manifest(format_version: u32) -> Manifest {
    let t = Utc::now();
    Manifest {
        backup_name: "b".into(),
        backup_method: BackupMethod::Xtrabackup,
        position: "MariaDB/0-1-1".into(),
        purged_position: String::new(),
        backup_time: t,
        finished_time: t,
        server_uuid: String::new(),
        tablet_alias: "zone1-0000000001".into(),
        schedule: None,
        hostname: String::new(),
        keyspace: "ks".into(),
        shard: "0".into(),
        mysql_version: "10.11.6-MariaDB".into(),
        upgrade_safe: true,
        compression_engine: CompressionEngine::Zstd,
        file_entries: vec![],
        total_size: 0,
        stored_size: 0,
        stream_mode: Some("xbstream".into()),
        encryption: None,
        encryption_recipients: vec![],
        flavor: "MariaDB".into(),
        format_version,
        incremental: Default::default(),
    }
}

#[test]
fn only_a_complete_backup_makes_an_orphaned_job_succeed() {
    // (what reading the MANIFEST gave, succeeds, words the error must contain)
    let io = || std::io::Error::other("disk on fire");
    let cases: Vec<(StorageResult<Manifest>, bool, &[&str])> = vec![
        (Ok(manifest(FORMAT_VERSION)), true, &[]),
        (
            Err(StorageError::NotFound("MANIFEST of backup b".into())),
            false,
            &["backup b has no MANIFEST", "incomplete", "never restored"],
        ),
        (
            Ok(manifest(FORMAT_VERSION + 1)),
            false,
            &["cannot be used", "newer", "never restored"],
        ),
        (
            Err(StorageError::Io {
                context: "reading MANIFEST".into(),
                error: io(),
            }),
            false,
            &["cannot be used", "disk on fire", "kept"],
        ),
    ];
    for (read, ok, words) in cases {
        let shown = format!("{read:?}");
        match orphaned_backup_outcome("b", read, AGENT_RESTARTED) {
            Ok(m) => {
                assert!(ok, "{shown}: succeeded");
                assert_eq!(m.backup_name, "b");
            }
            Err(why) => {
                assert!(!ok, "{shown}: failed: {why}");
                assert!(why.starts_with(AGENT_RESTARTED), "{why}");
                for w in words {
                    assert!(why.contains(w), "{shown}: {why:?} lacks {w:?}");
                }
            }
        }
    }
}
