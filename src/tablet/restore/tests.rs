//! Table tests of the restore decisions: which backup, and what a restore at
//! start does with it.

use super::*;
use crate::backup::manifest::{BackupMethod, CompressionEngine, FORMAT_VERSION};
use chrono::{TimeZone, Utc};

fn info(name: &str, secs: i64, complete: bool) -> BackupInfo {
    let t = Utc.timestamp_opt(secs, 0).unwrap();
    if !complete {
        return BackupInfo::incomplete(name, 1);
    }
    BackupInfo::with_manifest(
        name,
        Manifest {
            backup_name: name.into(),
            backup_method: BackupMethod::Builtin,
            position: "MariaDB/0-1-1".into(),
            purged_position: String::new(),
            backup_time: t,
            finished_time: t,
            server_uuid: String::new(),
            tablet_alias: "zone1-0000000001".into(),
            hostname: String::new(),
            keyspace: "ks".into(),
            shard: "0".into(),
            schedule: None,
            mysql_version: String::new(),
            upgrade_safe: false,
            compression_engine: CompressionEngine::Zstd,
            file_entries: vec![],
            total_size: 0,
            stored_size: 0,
            stream_mode: None,
            encryption: None,
            encryption_recipients: vec![],
            flavor: "MariaDB".into(),
            format_version: FORMAT_VERSION,
            incremental: Default::default(),
        },
        1,
    )
}

fn picked(c: SeedChoice) -> String {
    match c {
        SeedChoice::Backup(m) => m.backup_name,
        SeedChoice::NoBackup => "none".into(),
        SeedChoice::NoCompleteBackup(_) => "incomplete".into(),
    }
}

#[test]
fn an_incremental_backup_is_never_a_seed() {
    let incr = |name: &str, secs: i64| {
        let mut m = info(name, secs, true).manifest.unwrap();
        m.incremental.is_incremental = true;
        BackupInfo::with_manifest(name, m, 1)
    };
    let b = vec![info("full", 100, true), incr("incr", 200)];
    assert_eq!(picked(choose_backup(&b, None)), "full");
    assert_eq!(
        picked(choose_backup(&b, Some(Utc.timestamp_opt(250, 0).unwrap()))),
        "full"
    );
    // Only incrementals: never "start empty", and the reason says why.
    match choose_backup(&[incr("incr", 200)], None) {
        SeedChoice::NoCompleteBackup(why) => assert!(why.contains("1 incremental"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn newest_complete_backup_wins() {
    let b = vec![
        info("a", 100, true),
        info("b", 200, true),
        info("c", 300, false),
    ];
    assert_eq!(picked(choose_backup(&b, None)), "b");
    assert_eq!(
        picked(choose_backup(&b, Some(Utc.timestamp_opt(150, 0).unwrap()))),
        "a"
    );
    assert_eq!(
        picked(choose_backup(&b, Some(Utc.timestamp_opt(50, 0).unwrap()))),
        "incomplete"
    );
    assert_eq!(picked(choose_backup(&[], None)), "none");
    assert_eq!(
        picked(choose_backup(&[info("c", 300, false)], None)),
        "incomplete"
    );
    // Never an unreadable or unrestorable one, however new.
    let mut newer = info("d", 400, true).manifest.unwrap();
    newer.format_version = FORMAT_VERSION + 1;
    let b = vec![
        info("a", 100, true),
        BackupInfo::unreadable("e", "garbage", 1),
        BackupInfo::with_manifest("d", newer, 1),
    ];
    assert_eq!(picked(choose_backup(&b, None)), "a");
    assert_eq!(picked(choose_backup(&b[1..], None)), "incomplete");
}

#[test]
fn plan_seed_table() {
    let b = vec![info("a", 100, true)];
    let backup = || choose_backup(&b, None);
    let none = || SeedChoice::NoBackup;
    let incomplete = || SeedChoice::NoCompleteBackup("why".into());
    let step = |s: SeedStep| match s {
        SeedStep::Restore(m) => format!("restore {}", m.backup_name),
        SeedStep::StartEmpty => "start empty".into(),
        SeedStep::Refuse(why) => format!("refuse: {why}"),
        SeedStep::Wait(why) => format!("wait: {why}"),
    };
    // (choice, waiting allowed, step)
    let cases = [
        (backup(), false, "restore a"),
        (backup(), true, "restore a"),
        (none(), false, "start empty"),
        (none(), true, "wait: no backup yet"),
        (incomplete(), false, "refuse: why"),
        (incomplete(), true, "wait: why"),
    ];
    for (choice, wait, want) in cases {
        assert_eq!(
            step(plan_seed(choice.clone(), wait)),
            want,
            "{choice:?}, wait {wait}"
        );
    }
}

#[test]
fn a_refused_restore_names_why_the_newest_backups_are_unreadable() {
    let missing = "stored file 3 (app/t.ibd) is missing from storage";
    let b = vec![
        BackupInfo::incomplete("2026-01-01.000000.zone1-0000000101", 1),
        BackupInfo::unreadable("2026-01-02.000000.zone1-0000000101", "garbage", 1),
        BackupInfo::unreadable("2026-01-03.000000.zone1-0000000101", missing, 1),
    ];
    let SeedChoice::NoCompleteBackup(why) = choose_backup(&b, None) else {
        panic!("a backup was chosen");
    };
    assert!(
        why.contains("3 backup(s) exist but none is complete (2 unreadable"),
        "{why}"
    );
    // Newest first, each with its error.
    let want = format!("2026-01-03.000000.zone1-0000000101: {missing}; 2026-01-02.000000.zone1-0000000101: garbage");
    assert!(why.contains(&want), "{why}");
    assert!(!why.contains('\n'), "{why}");
    // Beyond three, the rest are counted.
    let many: Vec<BackupInfo> = (0..5)
        .map(|i| BackupInfo::unreadable(format!("2026-01-0{i}.000000.x"), "bad", 1))
        .collect();
    let SeedChoice::NoCompleteBackup(why) = choose_backup(&many, None) else {
        panic!("a backup was chosen");
    };
    assert!(why.contains("(and 2 more)"), "{why}");
    assert!(why.contains("2026-01-04.000000.x: bad"), "{why}");
    assert!(!why.contains("2026-01-01.000000.x"), "{why}");
}

#[test]
fn room_for_a_restore() {
    let mut m = info("a", 100, true).manifest.unwrap();
    let dir = std::path::Path::new("/t/101");
    // (total size of the files, free bytes, fits)
    let cases = [
        (0, 0, true),
        (1_000, 1_050, true),
        (1_000, 1_049, false),
        (1_000, 999, false),
        (64 << 20, 128 << 20, true),
        (u64::MAX, u64::MAX, true),
    ];
    for (total, free, fits) in cases {
        m.total_size = total;
        let got = check_room(&m, free, dir);
        assert_eq!(got.is_ok(), fits, "{total} in {free}: {got:?}");
        if let Err(why) = got {
            assert!(
                why.contains("not enough space in /t/101 to restore backup a"),
                "{why}"
            );
            assert!(why.contains(&format!("{free} are free")), "{why}");
        }
    }
}
