//! Table tests of the incremental backup decisions: the start position, which
//! files, and the positions recorded.

use super::*;
use crate::mysql::binlog::Transaction;

fn p(s: &str) -> Vec<Gtid> {
    parse_gtid_list(s).unwrap()
}

fn head(name: &str, list: &str) -> BinlogHead {
    BinlogHead {
        name: name.into(),
        gtid_list: p(list),
    }
}

/// A closed file with `txns` (GTID, start time, commit time).
fn summary(list: &str, txns: &[(&str, u32, u32)]) -> BinlogSummary {
    BinlogSummary {
        gtid_list: p(list),
        has_gtid_list: true,
        transactions: txns
            .iter()
            .map(|(g, a, b)| Transaction {
                gtid: p(g)[0],
                started: *a,
                committed: *b,
                start: 0,
                end: 0,
            })
            .collect(),
        complete_len: 100,
        read_len: 100,
        closed: true,
        rotated_to: None,
        server_version: String::new(),
    }
}

#[test]
fn from_pos_parsing() {
    let ok = [
        ("auto", FromPos::Auto),
        ("MariaDB/0-1-5,1-2-9", FromPos::Position(p("0-1-5,1-2-9"))),
        ("MariaDB/", FromPos::Position(vec![])),
        (
            "2026-11-25.140300.zone1-0000000101",
            FromPos::Backup("2026-11-25.140300.zone1-0000000101".into()),
        ),
    ];
    for (s, want) in ok {
        let got = parse_from_pos(s).unwrap();
        assert_eq!(got, want, "{s}");
        assert_eq!(parse_from_pos(&got.to_string()).unwrap(), want, "{s} again");
    }
    // (input, words the error must hold)
    let bad = [
        ("MariaDB/0-1", "invalid position"),
        ("MariaDB/0-1-x", "invalid position"),
        (
            "MySQL56/3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
            "MySQL56",
        ),
        ("0-1-5", "MariaDB/0-1-5"),
        ("a b", "backup name"),
        ("", "backup name"),
        ("..", "backup name"),
        ("x/y", "not supported"),
    ];
    for (s, words) in bad {
        let e = parse_from_pos(s).unwrap_err();
        assert!(e.contains(words), "{s:?}: {e}");
    }
}

#[test]
fn resolving_the_start() {
    use crate::backup::storage::BackupInfo;
    let mk = |name: &str, secs: i64, pos: &str, incr: bool| {
        let t = Utc.timestamp_opt(secs, 0).unwrap();
        let mut m = Manifest {
            backup_name: name.into(),
            backup_method: BackupMethod::Builtin,
            position: pos.into(),
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
            compression_engine: super::super::manifest::CompressionEngine::Zstd,
            file_entries: vec![],
            total_size: 0,
            stored_size: 0,
            stream_mode: None,
            encryption: None,
            encryption_recipients: vec![],
            flavor: "MariaDB".into(),
            format_version: FORMAT_VERSION_INCREMENTAL,
            incremental: Default::default(),
        };
        m.incremental.is_incremental = incr;
        BackupInfo::with_manifest(name, m, 1)
    };
    let backups = vec![
        mk("full", 100, "MariaDB/0-1-5", false),
        mk("incr", 200, "MariaDB/0-1-9", true),
        BackupInfo::incomplete("half", 1),
    ];
    // Auto: the newest complete backup, incremental or not.
    assert_eq!(
        resolve_from(&FromPos::Auto, &backups).unwrap(),
        (p("0-1-9"), Some("incr".into()))
    );
    assert_eq!(
        resolve_from(&FromPos::Backup("full".into()), &backups).unwrap(),
        (p("0-1-5"), Some("full".into()))
    );
    assert_eq!(
        resolve_from(&FromPos::Position(p("0-1-7")), &[]).unwrap(),
        (p("0-1-7"), None)
    );
    let e = resolve_from(&FromPos::Auto, &backups[2..]).unwrap_err();
    assert!(e.contains("take a full backup first"), "{e}");
    let e = resolve_from(&FromPos::Backup("nope".into()), &backups).unwrap_err();
    assert!(e.contains("not in this shard"), "{e}");
    let e = resolve_from(&FromPos::Backup("half".into()), &backups).unwrap_err();
    assert!(e.contains("incomplete"), "{e}");
}

#[test]
fn choosing_the_files() {
    let heads = vec![
        head("b.1", "0-1-3"),
        head("b.2", "0-1-5"),
        head("b.3", "0-1-5"), // an empty file between two flushes
        head("b.4", "0-1-9"),
        head("b.5", "0-1-12"), // active
    ];
    let exec = p("0-1-12");
    // (requested, plan)
    let cases = [
        ("0-1-3", Plan::Copy { first: 0 }),
        ("0-1-4", Plan::Copy { first: 0 }),
        ("0-1-5", Plan::Copy { first: 2 }),
        ("0-1-7", Plan::Copy { first: 2 }),
        ("0-2-9", Plan::Copy { first: 3 }), // another server wrote seq 9 of domain 0
        ("0-1-11", Plan::Copy { first: 3 }),
        ("0-1-12", Plan::Empty),
    ];
    for (req, want) in cases {
        assert_eq!(choose_files(&p(req), &exec, &heads), Ok(want), "{req}");
    }
    // Purged: the oldest file starts after the position.
    let e = choose_files(&p("0-1-1"), &exec, &heads).unwrap_err();
    assert!(e.contains("purged"), "{e}");
    assert!(e.contains("b.1"), "{e}");
    assert!(e.contains("domain 0 sequences 2 to 3"), "{e}");
    let e = choose_files(&p(""), &exec, &heads).unwrap_err();
    assert!(e.contains("domain 0 sequences 1 to 3"), "{e}");
    // Ahead of the server, or another history.
    let e = choose_files(&p("0-1-13"), &exec, &heads).unwrap_err();
    assert!(e.contains("not in this server's history"), "{e}");
    assert!(e.contains("domain 0 sequence 13"), "{e}");
    let e = choose_files(&p("0-1-5,7-1-1"), &exec, &heads).unwrap_err();
    assert!(e.contains("domain 7 sequence 1"), "{e}");
    // A server whose binlogs were never purged starts from nothing.
    let fresh = vec![head("b.1", ""), head("b.2", "0-1-4")];
    assert_eq!(
        choose_files(&p(""), &p("0-1-4"), &fresh),
        Ok(Plan::Copy { first: 0 })
    );
    assert!(choose_files(&p(""), &p(""), &[]).is_err());
}

#[test]
fn describing_the_copy() {
    let heads = vec![
        head("b.1", "0-1-3"),
        head("b.2", "0-1-5"),
        head("b.3", "0-1-8,1-2-1"),
    ];
    let copied = vec![
        (
            "b.1".to_string(),
            summary("0-1-3", &[("0-1-4", 100, 101), ("0-1-5", 102, 103)]),
        ),
        (
            "b.2".to_string(),
            summary(
                "0-1-5",
                &[
                    ("0-1-6", 110, 111),
                    ("1-2-1", 112, 113),
                    ("0-1-8", 114, 115),
                ],
            ),
        ),
    ];
    let d = describe(&p("0-1-4"), &heads, 0, &copied).unwrap();
    assert_eq!(d.from_position, p("0-1-3"));
    assert_eq!(d.position, p("0-1-8,1-2-1"));
    assert_eq!(d.purged, p("0-1-3"));
    assert_eq!(d.details.first_timestamp, utc(100));
    assert_eq!(d.details.first_timestamp_binlog, "b.1");
    assert_eq!(d.details.last_timestamp, utc(115));
    assert_eq!(d.details.last_timestamp_binlog, "b.2");
    // Domain 1 is new in these files; had its first transaction been 1-2-4,
    // the files would not hold 1..3, which the position lacks.
    let mut later = copied.clone();
    later[1].1.transactions[1].gtid.seq = 4;
    let e = describe(&p("0-1-4"), &heads, 0, &later).unwrap_err();
    assert!(e.contains("domain 1 sequences 1 to 3"), "{e}");
    // (requested, Ok(from_position) or Err(words))
    let reset = vec![head("b.1", ""), head("b.2", "0-1-12")];
    let after_reset = vec![(
        "b.1".to_string(),
        summary("", &[("0-1-11", 100, 100), ("0-1-12", 101, 101)]),
    )];
    let cases: [(&str, Result<&str, &str>); 3] = [
        ("0-1-10", Ok("0-1-10")),
        ("0-1-10,3-1-7", Ok("0-1-10")),
        ("0-1-5", Err("domain 0 sequences 6 to 10")),
    ];
    for (req, want) in cases {
        let got = describe(&p(req), &reset, 0, &after_reset);
        match want {
            Ok(from) => {
                let d = got.unwrap();
                assert_eq!(d.from_position, p(from), "{req}");
                // Domains of the position the reset binlogs forgot are kept.
                assert!(position_contains(&d.position, &p(req)), "{req}");
                assert!(position_contains(&d.position, &p("0-1-12")), "{req}");
            }
            Err(words) => {
                let e = got.unwrap_err();
                assert!(e.contains(words), "{req}: {e}");
                assert!(e.contains("restored"), "{req}: {e}");
            }
        }
    }
    // A file that is not closed is never stored.
    let mut open = copied.clone();
    open[1].1.closed = false;
    let e = describe(&p("0-1-4"), &heads, 0, &open).unwrap_err();
    assert!(e.contains("not closed"), "{e}");
    // No transaction at all cannot be described.
    let empty = vec![("b.1".to_string(), summary("0-1-3", &[]))];
    let two = vec![head("b.1", "0-1-3"), head("b.2", "0-1-3")];
    assert!(describe(&p("0-1-3"), &two, 0, &empty).is_err());
}
