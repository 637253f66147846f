//! Unit tests of the MANIFEST: names, timestamps, JSON, restorability.

use super::*;

fn sample() -> Manifest {
    let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
    let alias: TabletAlias = "zone1-101".parse().unwrap();
    let mut m = Manifest {
        backup_name: backup_name(t, &alias),
        backup_method: BackupMethod::Builtin,
        position: "MariaDB/0-101-42".into(),
        purged_position: "MariaDB/0-101-1".into(),
        backup_time: t,
        finished_time: t + chrono::Duration::seconds(30),
        server_uuid: "uuid".into(),
        tablet_alias: alias.to_string(),
        hostname: "host".into(),
        keyspace: "commerce".into(),
        shard: "-80".into(),
        schedule: None,
        mysql_version: "10.11.6-MariaDB".into(),
        upgrade_safe: false,
        compression_engine: CompressionEngine::Zstd,
        file_entries: vec![],
        total_size: 0,
        stored_size: 0,
        stream_mode: None,
        encryption: None,
        encryption_recipients: vec![],
        flavor: "MariaDB".into(),
        format_version: FORMAT_VERSION_PLAIN,
        incremental: Incremental::default(),
    };
    m.set_file_entries(vec![FileEntry {
        base: base::DATA.into(),
        name: "commerce/t.ibd".into(),
        stored_name: "0".into(),
        size: 100,
        stored_size: 40,
        hash: "ab".repeat(32),
        hash_algorithm: HASH_ALGORITHM_SHA256.into(),
    }]);
    m
}

#[test]
fn backup_name_round_trips() {
    let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
    let alias: TabletAlias = "zone1-101".parse().unwrap();
    let name = backup_name(t, &alias);
    assert_eq!(name, "2024-01-02.030405.zone1-0000000101");
    let (t2, a2) = parse_backup_name(&name).unwrap();
    assert_eq!(t2, t);
    assert_eq!(a2, alias);
    // Sub-second precision is dropped by the name.
    let t3 = t + chrono::Duration::milliseconds(999);
    assert_eq!(backup_name(t3, &alias), name);
}

#[test]
fn backup_name_parse_errors() {
    for bad in [
        "",
        "2024-01-02.030405",
        "2024-01-02.030405.zone1-101.x",
        "2024-01-02.030405.zone1",
        "2024-01-02.030405.zone1-abc",
        "2024-1-02.030405.zone1-101",
        "2024-01-02.30405.zone1-101",
        "2024-13-02.030405.zone1-101",
        "2024-02-30.030405.zone1-101",
        "2024-01-02.246060.zone1-101",
        "2024-01-02T030405.zone1-101",
        "x024-01-02.030405.zone1-101",
    ] {
        let err = parse_backup_name(bad);
        assert!(err.is_err(), "{bad:?} accepted");
    }
    assert!(parse_backup_name("2024-01-02.030405.zone1-101").is_ok());
}

#[test]
fn timestamp_parsing_is_strict() {
    let t = parse_backup_timestamp("2024-12-31.235959").unwrap();
    assert_eq!(t, Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 59).unwrap());
    for bad in [
        "2024-12-31",
        "2024-12-31.23595",
        "2024-12-31.2359590",
        " 2024-12-31.235959",
        "2024-12-31 235959",
        "+024-12-31.235959",
    ] {
        assert!(parse_backup_timestamp(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn manifest_json_uses_vitess_field_names_and_round_trips() {
    let m = sample();
    let json = String::from_utf8(m.to_json().unwrap()).unwrap();
    for field in [
        "\"BackupName\"",
        "\"BackupMethod\": \"builtin\"",
        "\"Position\": \"MariaDB/0-101-42\"",
        "\"BackupTime\": \"2024-01-02T03:04:05Z\"",
        "\"FinishedTime\": \"2024-01-02T03:04:35Z\"",
        "\"ServerUUID\"",
        "\"MySQLVersion\"",
        "\"CompressionEngine\": \"zstd\"",
        "\"FileEntries\"",
        "\"StoredName\": \"0\"",
        "\"HashAlgorithm\": \"sha256\"",
        "\"TotalSize\": 100",
        "\"StoredSize\": 40",
        "\"FormatVersion\": 1",
    ] {
        assert!(json.contains(field), "{field} missing in {json}");
    }
    assert!(!json.contains("StreamMode"));
    assert!(!json.contains("Incremental"), "{json}");
    assert!(!json.contains("FromPosition"), "{json}");
    let back = Manifest::from_json(json.as_bytes()).unwrap();
    assert_eq!(back, m);
    back.check_restorable().unwrap();
}

#[test]
fn the_owning_schedule_is_recorded_and_absent_means_manual() {
    let manual = sample();
    let json = String::from_utf8(manual.to_json().unwrap()).unwrap();
    assert!(!json.contains("Schedule"), "{json}");
    let mut owned = sample();
    owned.schedule = Some("hourly".into());
    let json = String::from_utf8(owned.to_json().unwrap()).unwrap();
    assert!(json.contains("\"Schedule\": \"hourly\""), "{json}");
    assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), owned);
    // A MANIFEST written before the field existed reads as manual.
    let mut v = serde_json::to_value(sample()).unwrap();
    v.as_object_mut().unwrap().remove("Schedule");
    let old: Manifest = serde_json::from_value(v).unwrap();
    assert_eq!(old.schedule, None);
}

#[test]
fn manifest_parsing_errors_and_vitess_leniency() {
    assert!(Manifest::from_json(b"{").is_err());
    assert!(Manifest::from_json(b"{}").is_err());
    let mut v = serde_json::to_value(sample()).unwrap();
    v["CompressionEngine"] = "pgzip".into();
    assert!(serde_json::from_value::<Manifest>(v.clone()).is_err());
    v["CompressionEngine"] = "lz4".into();
    // Vitess writes an empty BackupMethod for builtin.
    v["BackupMethod"] = "".into();
    v["BackupTime"] = "2024-01-02T05:04:05+02:00".into();
    let m: Manifest = serde_json::from_value(v).unwrap();
    assert_eq!(m.backup_method, BackupMethod::Builtin);
    assert_eq!(m.compression_engine, CompressionEngine::Lz4);
    assert_eq!(
        m.backup_time,
        Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
    );
}

#[test]
fn restorability_checks() {
    let mut m = sample();
    m.file_entries[0].hash.clear();
    assert!(m
        .check_restorable()
        .unwrap_err()
        .to_string()
        .contains("no valid sha256"));
    let mut m = sample();
    m.file_entries[0].hash_algorithm = "crc32".into();
    assert!(m.check_restorable().is_err());
    let mut m = sample();
    m.format_version = FORMAT_VERSION + 1;
    assert!(m.check_restorable().is_err());
    let mut m = sample();
    let e = m.file_entries[0].clone();
    m.file_entries.push(FileEntry {
        stored_name: "1".into(),
        ..e
    });
    assert!(m
        .check_restorable()
        .unwrap_err()
        .to_string()
        .contains("twice"));
    for bad in [
        "../x",
        "/etc/passwd",
        "a/../b",
        "",
        "./a",
        "a/./b",
        "a\0b",
        "a//b",
        "a/",
    ] {
        let mut m = sample();
        m.file_entries[0].name = bad.into();
        assert!(m.check_restorable().is_err(), "{bad:?} accepted");
    }
    for good in ["ibdata1", "db/t.ibd", "a/b/c.frm", "a..b/.c"] {
        assert!(check_relative_name(good).is_ok(), "{good:?} refused");
    }
}

#[test]
fn each_entry_is_checked_with_the_algorithm_it_names() {
    // (HashAlgorithm, hash, restorable, what the error says)
    let cases: [(&str, String, bool, &str); 8] = [
        ("sha256", "ab".repeat(32), true, ""),
        ("blake3", "ab".repeat(32), true, ""),
        ("blake3", "AB".repeat(32), true, ""),
        ("blake3", "ab".repeat(31), false, "no valid blake3 hash"),
        ("blake3", "zz".repeat(32), false, "no valid blake3 hash"),
        ("", "ab".repeat(32), false, "hash algorithm \"\""),
        ("BLAKE3", "ab".repeat(32), false, "verifies only"),
        ("crc32", "ab".repeat(32), false, "hash algorithm \"crc32\""),
    ];
    for (algorithm, hash, ok, says) in cases {
        let mut m = sample();
        m.file_entries[0].hash_algorithm = algorithm.into();
        m.file_entries[0].hash = hash;
        match m.check_restorable() {
            Ok(()) => assert!(ok, "{algorithm:?} accepted"),
            Err(e) => {
                assert!(!ok, "{algorithm:?} refused: {e}");
                assert!(e.to_string().contains(says), "{algorithm:?}: {e}");
            }
        }
    }
    // Mixed entries (as a backup never has, but a MANIFEST may say): each its own.
    let mut m = sample();
    let mut e = m.file_entries[0].clone();
    e.name = "commerce/u.ibd".into();
    e.stored_name = "1".into();
    e.hash_algorithm = HASH_ALGORITHM_BLAKE3.into();
    m.file_entries.push(e);
    m.check_restorable().unwrap();
    for a in [HashAlgorithm::Sha256, HashAlgorithm::Blake3] {
        assert_eq!(HashAlgorithm::parse(a.name()), Some(a));
    }
    assert_eq!(HashAlgorithm::default(), HashAlgorithm::Blake3);
}

#[test]
fn an_incremental_manifest_uses_vitess_names_and_round_trips() {
    let mut m = sample();
    let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 0, 0).unwrap();
    m.incremental = Incremental {
        is_incremental: true,
        from_position: "MariaDB/0-101-40".into(),
        from_backup: "2024-01-01.000000.zone1-0000000101".into(),
        details: Some(IncrementalDetails {
            first_timestamp: t,
            first_timestamp_binlog: "mysql-bin.000002".into(),
            last_timestamp: t + chrono::Duration::seconds(61),
            last_timestamp_binlog: "mysql-bin.000003".into(),
        }),
    };
    m.format_version = FORMAT_VERSION_INCREMENTAL;
    let json = String::from_utf8(m.to_json().unwrap()).unwrap();
    for field in [
        "\"Incremental\": true",
        "\"FromPosition\": \"MariaDB/0-101-40\"",
        "\"FromBackup\": \"2024-01-01.000000.zone1-0000000101\"",
        "\"FirstTimestamp\": \"2024-01-02T03:00:00Z\"",
        "\"FirstTimestampBinlog\": \"mysql-bin.000002\"",
        "\"LastTimestamp\": \"2024-01-02T03:01:01Z\"",
        "\"LastTimestampBinlog\": \"mysql-bin.000003\"",
    ] {
        assert!(json.contains(field), "{field} missing in {json}");
    }
    let back = Manifest::from_json(json.as_bytes()).unwrap();
    assert_eq!(back, m);
    assert!(back.is_incremental());
    back.check_restorable().unwrap();
    // Encryption does not lower the format an incremental needs.
    let mut e = m.clone();
    e.set_encryption(&["age1x".into()]);
    assert_eq!(e.format_version, FORMAT_VERSION_INCREMENTAL);
}
