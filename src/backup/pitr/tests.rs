//! Table tests of the point-in-time planners.

use super::*;
use crate::backup::manifest::{CompressionEngine, IncrementalDetails, FORMAT_VERSION_PLAIN};
use crate::mysql::binlog::Transaction;

/// Seconds after a fixed epoch, as a UTC time.
fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
}

fn manifest(name: &str, method: BackupMethod, pos: &str, start: i64, end: i64) -> Manifest {
    Manifest {
        backup_name: name.into(),
        backup_method: method,
        position: format!("MariaDB/{pos}"),
        purged_position: String::new(),
        backup_time: at(start),
        finished_time: at(end),
        server_uuid: String::new(),
        tablet_alias: "zone1-0000000102".into(),
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
        format_version: FORMAT_VERSION_PLAIN,
        incremental: Default::default(),
    }
}

fn full(name: &str, pos: &str, t: i64) -> Manifest {
    manifest(name, BackupMethod::Builtin, pos, t, t + 30)
}

/// An incremental taken at `t` holding `from`..`pos` with events `first..last`.
fn inc(name: &str, from: &str, pos: &str, t: i64, first: i64, last: i64) -> Manifest {
    let mut m = manifest(name, BackupMethod::Builtin, pos, t, t + 1);
    m.incremental.is_incremental = true;
    m.incremental.from_position = format!("MariaDB/{from}");
    m.incremental.details = Some(IncrementalDetails {
        first_timestamp: at(first),
        first_timestamp_binlog: "mysql-bin.000001".into(),
        last_timestamp: at(last),
        last_timestamp_binlog: "mysql-bin.000002".into(),
    });
    m
}

fn pos(s: &str) -> RestoreTarget {
    RestoreTarget::Position(parse_gtid_list(s).unwrap())
}

/// The chain as `full+inc+inc`, or `ERR: <start of the error>`.
fn chain(ms: &[Manifest], t: &RestoreTarget) -> String {
    match plan_chain(ms, t) {
        Ok(p) => std::iter::once(p.full.backup_name.clone())
            .chain(p.incrementals.iter().map(|m| m.backup_name.clone()))
            .collect::<Vec<_>>()
            .join("+"),
        Err(e) => format!("ERR: {e}"),
    }
}

#[test]
fn chains_to_a_position_follow_vitess_rules() {
    let backups = vec![
        full("f1", "0-101-10", 0),
        inc("i1", "0-101-8", "0-101-20", 100, 10, 99),
        full("f2", "0-101-25", 200),
        inc("i2", "0-101-20", "0-101-30", 300, 150, 299),
        inc("i3", "0-101-30", "0-101-40", 400, 300, 399),
        // Overlaps i2 and reaches further: preferred from 0-101-25.
        inc("i4", "0-101-22", "0-101-45", 450, 200, 449),
    ];
    // (target, chain)
    let cases = [
        ("0-101-10", "f1"),
        ("0-101-15", "f1+i1"),
        ("0-101-20", "f1+i1"),
        ("0-101-25", "f2"),
        ("0-101-26", "f2+i4"),
        ("0-101-45", "f2+i4"),
        ("0-102-26", "f2+i4"), // same domain, the server is checked against the binlogs
    ];
    for (t, want) in cases {
        assert_eq!(chain(&backups, &pos(t)), want, "target {t}");
    }
    // Without i4 the chain goes through i2 and i3.
    let no_i4: Vec<Manifest> = backups[..5].to_vec();
    assert_eq!(chain(&no_i4, &pos("0-101-35")), "f2+i2+i3");
}

#[test]
fn chains_to_a_time_use_each_engines_moment() {
    let mut xb = manifest("x1", BackupMethod::Xtrabackup, "0-101-30", 250, 320);
    xb.finished_time = at(320);
    let backups = vec![
        full("f1", "0-101-10", 0),
        inc("i1", "0-101-10", "0-101-20", 100, 10, 99),
        xb,
        inc("i2", "0-101-20", "0-101-40", 400, 101, 399),
    ];
    let t = |s| RestoreTarget::Time(at(s));
    // (target second, chain)
    let cases = [
        (1, "f1+i1"),
        (99, "f1+i1"),
        (100, "f1+i1"),
        (101, "f1+i1+i2"),
        // The xtrabackup backup stands for its end (320), not its start (250).
        (300, "f1+i1+i2"),
        (321, "x1+i2"),
        (400, "x1+i2"),
    ];
    for (s, want) in cases {
        assert_eq!(chain(&backups, &t(s)), want, "target +{s}s");
    }
}

#[test]
fn chain_errors_say_what_is_missing_and_what_is_reachable() {
    let backups = vec![
        full("f1", "0-101-10", 100),
        inc("i1", "0-101-10", "0-101-20", 200, 110, 199),
        // A hole: 21..29 were purged before anything took them.
        inc("i2", "0-101-29", "0-101-40", 400, 300, 399),
    ];
    let cases = [
        (
            pos("0-101-35"),
            vec![
                "cannot reach MariaDB/0-101-35",
                "0-*-21..0-101-29",
                "i2",
                "nearest reachable point is MariaDB/0-101-20",
                "--restore-to-pos MariaDB/0-101-20",
            ],
        ),
        (pos("0-101-9"), vec!["before the oldest full backup, f1"]),
        (
            pos("1-101-9"),
            vec!["replication domain 1", "another shard"],
        ),
        (
            RestoreTarget::Time(at(50)),
            vec!["before the oldest full backup, f1"],
        ),
        (
            RestoreTarget::Time(at(100)),
            vec!["before the oldest full backup"],
        ),
        (
            RestoreTarget::Time(at(500)),
            vec![
                "cannot reach",
                "0-*-21..0-101-29",
                "nearest reachable point is MariaDB/0-101-20",
            ],
        ),
    ];
    for (t, wants) in cases {
        let got = chain(&backups, &t);
        for w in wants {
            assert!(got.contains(w), "{t}: {w:?} not in {got}");
        }
    }
    // A time after the newest backup's binlogs: nothing proves the chain covers it.
    let got = chain(&backups[..2], &RestoreTarget::Time(at(250)));
    assert!(
        got.contains("no backup holds the transactions after MariaDB/0-101-20"),
        "{got}"
    );
    assert_eq!(
        chain(&[], &pos("0-101-1")),
        "ERR: the shard has no complete full backup to start from"
    );
    // Incrementals alone are never a starting point.
    assert!(chain(&backups[1..2], &pos("0-101-15")).contains("no complete full backup"));
}

#[test]
fn the_dry_run_lines_name_every_backup_and_the_target() {
    let backups = vec![
        full("f1", "0-101-10", 0),
        inc("i1", "0-101-10", "0-101-20", 100, 10, 99),
    ];
    let p = plan_chain(&backups, &pos("0-101-15")).unwrap();
    let lines = p.describe();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("full        f1  builtin  MariaDB/0-101-10"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("i1  MariaDB/0-101-10 -> MariaDB/0-101-20  events "),
        "{lines:?}"
    );
    assert_eq!(lines[2], "target      MariaDB/0-101-15");
}

#[test]
fn targets_parse_strictly() {
    let now = at(1000);
    assert_eq!(
        parse_restore_to_pos("MariaDB/0-101-5,1-2-3").unwrap().len(),
        2
    );
    for bad in [
        "0-101-5",
        "MariaDB/",
        "MariaDB/0-101",
        "MySQL56/x",
        "MariaDB/0-1-2,0-1-3",
        "MariaDB/0-1-x",
    ] {
        assert!(parse_restore_to_pos(bad).is_err(), "{bad:?} accepted");
    }
    let ok = rfc3339(at(900));
    assert_eq!(parse_restore_to_timestamp(&ok, now).unwrap(), at(900));
    let future = parse_restore_to_timestamp(&rfc3339(at(1001)), now).unwrap_err();
    assert!(future.contains("in the future"), "{future}");
    for bad in [
        "2026-11-25 14:03:00Z",
        "2026-11-25T14:03:00",
        "2026-11-25T14:03:00+01:00",
        "2026-11-25T14:03:00.5Z",
        "2026-13-25T14:03:00Z",
        "2026-11-25T25:03:00Z",
    ] {
        assert!(
            parse_restore_to_timestamp(bad, now).is_err(),
            "{bad:?} accepted"
        );
    }
}

fn g(d: u32, srv: u32, seq: u64) -> Gtid {
    Gtid {
        domain: d,
        server: srv,
        seq,
    }
}

/// A binlog with `Gtid_list` `list` and one transaction per (seq, second).
fn binlog(list: &[Gtid], txs: &[(u64, u32)]) -> BinlogSummary {
    BinlogSummary {
        gtid_list: list.to_vec(),
        has_gtid_list: true,
        transactions: txs
            .iter()
            .map(|&(seq, t)| Transaction {
                gtid: g(0, 101, seq),
                started: t,
                committed: t,
                start: 0,
                end: 0,
            })
            .collect(),
        ..Default::default()
    }
}

fn downloaded() -> Vec<DownloadedIncremental> {
    vec![
        DownloadedIncremental {
            backup: "i1".into(),
            files: vec![
                (
                    "mysql-bin.000002".into(),
                    binlog(&[g(0, 101, 8)], &[(9, 100), (10, 101), (11, 102)]),
                ),
                (
                    "mysql-bin.000003".into(),
                    binlog(&[g(0, 101, 11)], &[(12, 103), (13, 103)]),
                ),
            ],
        },
        DownloadedIncremental {
            backup: "i2".into(),
            files: vec![
                (
                    "mysql-bin.000003".into(),
                    binlog(&[g(0, 101, 11)], &[(12, 103), (13, 103)]),
                ),
                (
                    "mysql-bin.000004".into(),
                    binlog(&[g(0, 101, 13)], &[(14, 105), (15, 106)]),
                ),
            ],
        },
    ]
}

/// The plan as `backup:file,file:start>stop:count;...=>applied`, or the error.
fn applied(full: &str, t: &RestoreTarget, incs: &[DownloadedIncremental]) -> String {
    match plan_apply(&parse_gtid_list(full).unwrap(), incs, t) {
        Ok(p) => {
            let steps: Vec<String> = p
                .steps
                .iter()
                .map(|s| {
                    format!(
                        "{}:{}:{}>{}:{}",
                        s.backup,
                        s.files.join(","),
                        format_gtid_list(&s.start),
                        format_gtid_list(&s.stop),
                        s.transactions
                    )
                })
                .collect();
            format!("{}=>{}", steps.join(";"), format_gtid_list(&p.applied_to))
        }
        Err(e) => format!("ERR: {e}"),
    }
}

#[test]
fn apply_plans_cut_at_the_target_and_skip_what_is_there() {
    let incs = downloaded();
    let t = |s: i64| RestoreTarget::Time(Utc.timestamp_opt(s, 0).unwrap());
    // (full backup position, target, plan)
    let cases = [
        ("0-101-10", pos("0-101-10"), "=>0-101-10"),
        ("0-101-10", pos("0-101-12"), "i1:mysql-bin.000002,mysql-bin.000003:0-101-10>0-101-12:2=>0-101-12"),
        // Files wholly before the start are not passed; the second backup's copy of
        // 000003 is skipped, its 000004 continues from where the first ended.
        ("0-101-11", pos("0-101-15"), "i1:mysql-bin.000003:0-101-11>0-101-13:2;i2:mysql-bin.000004:0-101-13>0-101-15:2=>0-101-15"),
        // Time: transactions committed before the second, the second excluded.
        ("0-101-10", t(103), "i1:mysql-bin.000002:0-101-10>0-101-11:1=>0-101-11"),
        ("0-101-10", t(105), "i1:mysql-bin.000002,mysql-bin.000003:0-101-10>0-101-13:3=>0-101-13"),
        ("0-101-10", t(107), "i1:mysql-bin.000002,mysql-bin.000003:0-101-10>0-101-13:3;i2:mysql-bin.000004:0-101-13>0-101-15:2=>0-101-15"),
        // 0-101-11 committed in the target second itself: excluded.
        ("0-101-10", t(102), "=>0-101-10"),
    ];
    for (f, target, want) in cases {
        assert_eq!(
            applied(f, &target, &incs),
            want,
            "full {f}, target {target}"
        );
    }
}

#[test]
fn apply_plans_refuse_holes_overshoots_and_foreign_gtids() {
    let incs = downloaded();
    let t = |s: i64| RestoreTarget::Time(Utc.timestamp_opt(s, 0).unwrap());
    let cases = [
        // The full backup already holds 0-101-10, committed at 101.
        (
            "0-101-10",
            t(101),
            "full backup already holds transaction 0-101-10",
        ),
        // Another server's GTID at a sequence this shard wrote as 0-101-12.
        (
            "0-101-10",
            pos("0-102-12"),
            "0-102-12 is not in this shard's history: its backups reach 0-101-12",
        ),
        // The binlogs start after what the full backup holds.
        (
            "0-101-5",
            pos("0-101-12"),
            "GTIDs 0-*-6..0-101-8 are missing",
        ),
    ];
    for (f, target, want) in cases {
        let got = applied(f, &target, &incs);
        assert!(got.contains(want), "full {f}, target {target}: {got}");
    }
    // A sequence that jumps inside a file is a hole too.
    let holed = vec![DownloadedIncremental {
        backup: "i9".into(),
        files: vec![(
            "mysql-bin.000002".into(),
            binlog(&[g(0, 101, 8)], &[(9, 100), (11, 101)]),
        )],
    }];
    let got = applied("0-101-8", &pos("0-101-11"), &holed);
    assert!(got.contains("jumps from 0-101-9 to 0-101-11"), "{got}");
}
