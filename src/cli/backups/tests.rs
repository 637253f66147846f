//! Table tests of the catalog-only rows of `list-backups` (no storage configured).

use cairn_topo::{BackupMethod, BackupRecord, BackupRecordState};
use chrono::TimeZone;

use super::*;

fn record(name: &str, complete: bool, state: BackupRecordState) -> BackupRecord {
    BackupRecord {
        name: name.into(),
        keyspace: "ks".into(),
        shard: "0".into(),
        tablet_alias: "zone1-0000000101".into(),
        engine: BackupMethod::Xtrabackup,
        backup_time: Utc.with_ymd_and_hms(2026, 11, 24, 5, 34, 19).unwrap(),
        finished_time: Some(Utc.with_ymd_and_hms(2026, 11, 24, 5, 35, 0).unwrap()),
        position: "MariaDB/0-101-7".into(),
        size_bytes: 1234,
        complete,
        schedule: Some("nightly".into()),
        state,
        error: (state == BackupRecordState::Unreadable).then(|| "stored file 3 is missing".into()),
        incremental: false,
        from_position: None,
        first_timestamp: None,
        last_timestamp: None,
        verified_at: None,
        drill_seconds: None,
        drill_result: None,
        drill_error: None,
        restored_bytes: None,
    }
}

#[test]
fn a_record_reads_as_the_row_storage_would_give() {
    // (complete, record state) -> (row state, row complete, error shown)
    let cases = [
        (
            true,
            BackupRecordState::Complete,
            BackupState::Complete,
            true,
            false,
        ),
        (
            false,
            BackupRecordState::Complete,
            BackupState::Incomplete,
            false,
            false,
        ),
        (
            false,
            BackupRecordState::Unreadable,
            BackupState::Unreadable,
            false,
            true,
        ),
        // A record that says unreadable is never shown complete.
        (
            true,
            BackupRecordState::Unreadable,
            BackupState::Unreadable,
            false,
            true,
        ),
    ];
    for (complete, state, want_state, want_complete, has_error) in cases {
        let r = record("2026-11-24.053419.zone1-0000000101", complete, state);
        let row = record_row(&r);
        let case = format!("{complete} {state:?}");
        assert_eq!(row.state, want_state, "{case}");
        assert_eq!(row.complete, want_complete, "{case}");
        assert_eq!(row.error.is_some(), has_error, "{case}");
        assert_eq!(row.name, r.name);
        assert_eq!((row.keyspace.as_str(), row.shard.as_str()), ("ks", "0"));
        assert_eq!(row.tablet_alias, "zone1-0000000101");
        assert_eq!(row.engine, "xtrabackup");
        assert_eq!(row.backup_time, Some(r.backup_time));
        assert_eq!(row.finished_time, r.finished_time);
        assert_eq!(row.position, "MariaDB/0-101-7");
        assert_eq!(row.size_bytes, 1234);
        assert!(row.in_topo);
        assert_eq!(row.schedule.as_deref(), Some("nightly"));
        // Not read from a MANIFEST: unknown, not "plaintext".
        assert_eq!(row.encryption, None);
    }
}

#[test]
fn the_json_of_a_catalog_row_has_the_contract_s_fields() {
    let row = record_row(&record("b", true, BackupRecordState::Complete));
    let v = serde_json::to_value(&row).unwrap();
    for field in [
        "name",
        "keyspace",
        "shard",
        "tablet_alias",
        "engine",
        "backup_time",
        "finished_time",
        "position",
        "size_bytes",
        "complete",
        "state",
        "in_topo",
    ] {
        assert!(v.get(field).is_some(), "{field} missing from {v}");
    }
    assert_eq!(v["state"], "complete");
    assert_eq!(v["complete"], true);
}

#[test]
fn the_note_says_storage_was_not_consulted_on_one_line() {
    assert!(STORAGE_NOT_CONSULTED.contains("storage was not consulted"));
    assert!(STORAGE_NOT_CONSULTED.contains("--file-backup-storage-root"));
    assert!(STORAGE_NOT_CONSULTED.contains("--s3-backup-storage-bucket"));
    assert!(!STORAGE_NOT_CONSULTED.contains('\n'));
}
