//! Table tests of the catalog's pure decisions: the latest backup and the
//! reconcile plan.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::backup::manifest::{Manifest, FORMAT_VERSION};
use cairn_topo::{BackupMethod, CompressionEngine};

fn at(sec: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, sec).unwrap()
}

fn record(name: &str, sec: u32, complete: bool) -> BackupRecord {
    BackupRecord {
        finished_time: Some(at(sec)),
        size_bytes: 10,
        complete,
        restored_bytes: Some(0),
        ..BackupRecord::full(
            name,
            "ks",
            "0",
            "zone1-0000000101",
            BackupMethod::Builtin,
            at(sec),
            "MariaDB/0-1-1",
        )
    }
}

fn manifest(name: &str, sec: u32) -> Manifest {
    Manifest {
        backup_name: name.into(),
        backup_method: BackupMethod::Builtin,
        position: "MariaDB/0-1-1".into(),
        purged_position: String::new(),
        backup_time: at(sec),
        finished_time: at(sec),
        server_uuid: String::new(),
        tablet_alias: "zone1-0000000101".into(),
        hostname: String::new(),
        keyspace: "ks".into(),
        shard: "0".into(),
        schedule: None,
        mysql_version: String::new(),
        upgrade_safe: false,
        compression_engine: CompressionEngine::None,
        file_entries: vec![],
        total_size: 0,
        stored_size: 0,
        stream_mode: None,
        encryption: None,
        encryption_recipients: vec![],
        flavor: "MariaDB".into(),
        format_version: FORMAT_VERSION,
        incremental: Default::default(),
    }
}

/// A backup in storage: complete ones carry their MANIFEST.
fn stored(name: &str, sec: u32, complete: bool) -> BackupInfo {
    if complete {
        BackupInfo::with_manifest(name, manifest(name, sec), 10)
    } else {
        BackupInfo::incomplete(name, 10)
    }
}

#[test]
fn latest_is_the_newest_complete_record() {
    let cases: Vec<(&str, Vec<BackupRecord>, Option<&str>)> = vec![
        ("empty catalog", vec![], None),
        ("only incomplete", vec![record("a", 1, false)], None),
        (
            "newest by time, whatever the order",
            vec![
                record("b", 5, true),
                record("a", 9, true),
                record("c", 1, true),
            ],
            Some("a"),
        ),
        (
            "an incomplete newer one is skipped",
            vec![record("a", 1, true), record("b", 9, false)],
            Some("a"),
        ),
        (
            "same time: the greater name",
            vec![record("b", 5, true), record("a", 5, true)],
            Some("b"),
        ),
    ];
    for (what, records, want) in cases {
        assert_eq!(
            latest_backup(&records).map(|r| r.name.as_str()),
            want,
            "{what}"
        );
    }
}

#[test]
fn the_latest_is_restorable_now() {
    let unreadable = |n: &str| BackupInfo::unreadable(n, "bad", 10);
    // (what, records, storage now, latest)
    type Case<'a> = (&'a str, Vec<BackupRecord>, Vec<BackupInfo>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("nothing", vec![], vec![], None),
        (
            "in step: the newest",
            vec![record("a", 1, true), record("b", 2, true)],
            vec![stored("a", 1, true), stored("b", 2, true)],
            Some("b"),
        ),
        (
            "the newest record's MANIFEST went bad: the older one",
            vec![record("a", 1, true), record("b", 2, true)],
            vec![stored("a", 1, true), unreadable("b")],
            Some("a"),
        ),
        (
            "every one went bad: none",
            vec![record("a", 1, true), record("b", 2, true)],
            vec![unreadable("a"), unreadable("b")],
            None,
        ),
        (
            "gone from storage: never named",
            vec![record("a", 1, true), record("b", 2, true)],
            vec![stored("a", 1, true)],
            Some("a"),
        ),
        (
            "complete in storage but no record yet: not before it is catalogued",
            vec![record("a", 1, true)],
            vec![stored("a", 1, true), stored("b", 2, true)],
            Some("a"),
        ),
        (
            "a record marked unreadable whose backup reads again: not before it is re-marked",
            vec![record("a", 1, true), record("b", 2, false)],
            vec![stored("a", 1, true), stored("b", 2, true)],
            Some("a"),
        ),
    ];
    for (what, records, listed, want) in cases {
        assert_eq!(
            latest_restorable(&records, &listed).map(|r| r.name.as_str()),
            want,
            "{what}"
        );
    }
}

/// `r` with a drill's outcome recorded.
fn drilled(r: &BackupRecord) -> BackupRecord {
    BackupRecord {
        verified_at: Some(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
        drill_seconds: Some(12.5),
        drill_result: Some(cairn_topo::DrillResult::Failed),
        drill_error: Some("CHECK TABLE app.t: corrupt".into()),
        ..r.clone()
    }
}

#[test]
fn records_follow_their_backups_state() {
    let bad = BackupInfo::unreadable("b", "MANIFEST of backup ks/0/b: garbage", 10);
    let marked = BackupRecord {
        complete: false,
        state: BackupRecordState::Unreadable,
        error: Some("MANIFEST of backup ks/0/b: garbage".into()),
        ..record("b", 2, true)
    };
    // (what, storage, record in topo, record written)
    let cases: Vec<(&str, BackupInfo, BackupRecord, Option<BackupRecord>)> = vec![
        (
            "complete, in step",
            stored("b", 2, true),
            record("b", 2, true),
            None,
        ),
        (
            "became unreadable: marked with the error, kept",
            bad.clone(),
            record("b", 2, true),
            Some(marked.clone()),
        ),
        (
            "already marked: left alone",
            bad.clone(),
            marked.clone(),
            None,
        ),
        (
            "another error since: the new one",
            BackupInfo::unreadable("b", "stored file 3 (app/t.ibd) is missing from storage", 10),
            marked.clone(),
            Some(BackupRecord {
                error: Some("stored file 3 (app/t.ibd) is missing from storage".into()),
                ..marked.clone()
            }),
        ),
        (
            "readable again: complete afresh",
            stored("b", 2, true),
            marked.clone(),
            Some(record("b", 2, true)),
        ),
        (
            "readable again: what drills proved is kept",
            stored("b", 2, true),
            drilled(&marked),
            Some(drilled(&record("b", 2, true))),
        ),
        (
            "became unreadable: what drills proved is kept",
            bad.clone(),
            drilled(&record("b", 2, true)),
            Some(drilled(&marked)),
        ),
    ];
    for (what, b, r, want) in cases {
        let diff = plan_reconcile(
            "ks",
            "0",
            std::slice::from_ref(&b),
            std::slice::from_ref(&r),
        );
        assert!(
            diff.add.is_empty() && diff.remove.is_empty(),
            "{what}: {diff:?}"
        );
        let got = diff.update.into_iter().next();
        // Sizes come from the listing when written afresh.
        let got = got.map(|g| BackupRecord {
            size_bytes: 10,
            ..g
        });
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn reconcile_plan_follows_storage() {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let records = |v: &[&str]| v.iter().map(|n| record(n, 1, true)).collect::<Vec<_>>();
    // (what, in storage, records in topo, records to add, records to remove)
    type Case<'a> = (
        &'a str,
        Vec<BackupInfo>,
        Vec<BackupRecord>,
        Vec<&'a str>,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        ("both empty", vec![], vec![], vec![], vec![]),
        (
            "in step",
            vec![stored("a", 1, true)],
            records(&["a"]),
            vec![],
            vec![],
        ),
        (
            "a complete backup without a record is added",
            vec![stored("a", 1, true), stored("b", 2, true)],
            records(&["a"]),
            vec!["b"],
            vec![],
        ),
        (
            "an incomplete backup is never added",
            vec![stored("a", 1, false)],
            vec![],
            vec![],
            vec![],
        ),
        (
            "a record whose backup is gone is removed",
            vec![stored("a", 1, true)],
            records(&["a", "gone"]),
            vec![],
            vec!["gone"],
        ),
        (
            "a record whose backup is incomplete is removed",
            vec![stored("a", 1, false)],
            records(&["a"]),
            vec![],
            vec!["a"],
        ),
        (
            "a record whose MANIFEST is unreadable is kept",
            vec![BackupInfo::unreadable("a", "EIO", 10)],
            records(&["a"]),
            vec![],
            vec![],
        ),
        (
            "an unreadable backup is never added",
            vec![BackupInfo::unreadable("a", "EIO", 10)],
            vec![],
            vec![],
            vec![],
        ),
        (
            "cold storage copy and a vanished one at once",
            vec![stored("new", 3, true)],
            records(&["old"]),
            vec!["new"],
            vec!["old"],
        ),
    ];
    for (what, in_storage, in_topo, add, remove) in cases {
        let diff = plan_reconcile("ks", "0", &in_storage, &in_topo);
        let added: Vec<&str> = diff.add.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(added, add, "{what}: add");
        assert_eq!(diff.remove, names(&remove), "{what}: remove");
        assert_eq!(
            diff.is_empty(),
            add.is_empty() && remove.is_empty() && diff.update.is_empty(),
            "{what}"
        );
    }
}

#[test]
fn a_record_is_built_from_the_manifest() {
    let mut b = stored("a", 7, true);
    b.size_bytes = 1234;
    let r = record_of("ks", "0", &b).unwrap();
    assert_eq!(
        r,
        BackupRecord {
            size_bytes: 1234,
            ..record("a", 7, true)
        }
    );
    assert_eq!(record_of("ks", "0", &stored("a", 7, false)), None);
    // The owning schedule goes from the MANIFEST into the record.
    let mut owned = stored("a", 7, true);
    if let Some(m) = owned.manifest.as_mut() {
        m.schedule = Some("hourly".into());
    }
    assert_eq!(
        record_of("ks", "0", &owned).and_then(|r| r.schedule),
        Some("hourly".into())
    );
    // A MANIFEST without `complete` (it did not pass the storage's checks) is not enough.
    let mut half = stored("a", 7, true);
    half.complete = false;
    assert_eq!(record_of("ks", "0", &half), None);
}

#[test]
fn removed_found_anywhere() {
    for (record, storage, found) in [
        (false, false, false),
        (true, false, true),
        (false, true, true),
        (true, true, true),
    ] {
        assert_eq!(Removed { record, storage }.found(), found);
    }
}

#[test]
fn an_incremental_backup_is_never_the_latest() {
    let incr = |name: &str, sec: u32| BackupRecord {
        incremental: true,
        from_position: Some("MariaDB/0-1-1".into()),
        ..record(name, sec, true)
    };
    let records = vec![record("full", 1, true), incr("incr", 2)];
    assert_eq!(
        latest_backup(&records).map(|r| r.name.as_str()),
        Some("full")
    );
    let listed = vec![stored("full", 1, true), stored("incr", 2, true)];
    assert_eq!(
        latest_restorable(&records, &listed).map(|r| r.name.as_str()),
        Some("full")
    );
    let only_incr = vec![incr("incr", 2)];
    assert_eq!(latest_backup(&only_incr), None);
    assert_eq!(latest_restorable(&only_incr, &listed), None);
    // The record says what the MANIFEST says.
    let mut b = stored("i", 3, true);
    if let Some(m) = b.manifest.as_mut() {
        m.incremental.is_incremental = true;
        m.incremental.from_position = "MariaDB/0-1-5".into();
        m.incremental.details = Some(crate::backup::manifest::IncrementalDetails {
            first_timestamp: at(1),
            first_timestamp_binlog: "mysql-bin.000001".into(),
            last_timestamp: at(2),
            last_timestamp_binlog: "mysql-bin.000002".into(),
        });
    }
    let r = record_of("ks", "0", &b).unwrap();
    assert!(r.incremental);
    assert_eq!(r.from_position.as_deref(), Some("MariaDB/0-1-5"));
    assert_eq!(
        (r.first_timestamp, r.last_timestamp),
        (Some(at(1)), Some(at(2)))
    );
}
