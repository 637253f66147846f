use age::secrecy::ExposeSecret;

use super::*;

fn g(domain: u32, server: u32, seq: u64) -> Gtid {
    Gtid {
        domain,
        server,
        seq,
    }
}

/// A segment of server 101 with transactions `first..=last` of domain 0.
fn seg(
    number: u64,
    file_index: u64,
    start: u64,
    end: u64,
    txns: Option<(u64, u64)>,
) -> SegmentName {
    SegmentName {
        number,
        server_id: 101,
        file_index,
        start,
        end,
        first_ts: txns.map(|(a, _)| 1_000 + a as u32),
        last_ts: txns.map(|(_, b)| 1_000 + b as u32),
        first_gtid: txns.map(|(a, _)| g(0, 101, a)),
        last_gtid: txns.map(|(_, b)| g(0, 101, b)),
        compression: CompressionEngine::Zstd,
        encrypted: false,
        moved_head: false,
    }
}

#[test]
fn names_round_trip_and_sort_in_archive_order() {
    let cases = [
        (
            seg(42, 3, 4, 1377, Some((7, 9))),
            "0000000042.101.3.4.1377.1007.1009.0-101-7.0-101-9.binlog.zst",
        ),
        (
            SegmentName {
                encrypted: true,
                compression: CompressionEngine::None,
                ..seg(0, 1, 0, 256, None)
            },
            "0000000000.101.1.0.256.x.x.x.x.binlog.age",
        ),
        (
            SegmentName {
                encrypted: true,
                compression: CompressionEngine::Lz4,
                ..seg(7, 2, 256, 300, Some((1, 1)))
            },
            "0000000007.101.2.256.300.1001.1001.0-101-1.0-101-1.binlog.lz4.age",
        ),
        (
            SegmentName {
                moved_head: true,
                ..seg(8, 3, 0, 300, None)
            },
            "0000000008.101.3.0.300.x.x.x.x.binlogh.zst",
        ),
    ];
    for (s, want) in cases {
        assert_eq!(s.format(), want);
        assert_eq!(SegmentName::parse(want).unwrap(), s, "{want}");
    }
    // The longest name a segment can have still fits a blob name.
    let big = SegmentName {
        number: u64::MAX / 10,
        server_id: u32::MAX,
        file_index: 999_999,
        start: u64::MAX / 2,
        end: u64::MAX,
        first_ts: Some(u32::MAX),
        last_ts: Some(u32::MAX),
        first_gtid: Some(g(u32::MAX, u32::MAX, u64::MAX)),
        last_gtid: Some(g(u32::MAX, u32::MAX, u64::MAX)),
        compression: CompressionEngine::Zstd,
        encrypted: true,
        moved_head: false,
    };
    crate::backup::storage::validate_blob_name(&big.format()).unwrap();
    let a = seg(9, 1, 0, 10, None).format();
    let b = seg(10, 1, 10, 20, None).format();
    assert!(a < b, "names sort by number");
}

#[test]
fn names_that_are_not_segments_are_refused() {
    for bad in [
        "",
        "etcd-1.db",
        "0000000001.101.1.4.10.x.x.x.x",
        "0000000001.101.1.4.10.x.x.x.x.binlog.gz",
        "0000000001.101.1.10.4.x.x.x.x.binlog",
        "0000000001.abc.1.4.10.x.x.x.x.binlog",
        "0000000001.101.1.4.10.y.x.x.x.binlog",
        "0000000001.101.1.4.10.x.x.0-1.x.binlog",
        "0000000001.101.1.4.10.x.x.x.x.binlog.age.zst",
        "0000000001.101.1.4.10.x.x.x.x.binlogh",
        "0000000001.101.1.0.10.1.1.0-1-1.0-1-1.binlogh",
    ] {
        assert!(SegmentName::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn binlog_file_indexes() {
    for (file, want) in [
        ("mysql-bin.000003", Some(3)),
        ("mysql-bin.1000000", Some(1_000_000)),
        ("a.b.000010", Some(10)),
        ("mysql-bin", None),
        ("mysql-bin.", None),
        ("mysql-bin.00x1", None),
    ] {
        assert_eq!(binlog_file_index(file), want, "{file}");
    }
}

#[test]
fn resume_starts_after_what_storage_holds() {
    let other = SegmentName {
        server_id: 102,
        ..seg(5, 9, 0, 900, Some((20, 25)))
    };
    // (stored segments, source, want)
    let cases: Vec<(Vec<SegmentName>, u32, ResumePoint)> = vec![
        (
            vec![],
            101,
            ResumePoint {
                next_number: 0,
                file: None,
            },
        ),
        (
            vec![
                seg(0, 1, 0, 400, Some((1, 2))),
                seg(1, 1, 400, 800, Some((3, 4))),
            ],
            101,
            ResumePoint {
                next_number: 2,
                file: Some((101, 1, 800)),
            },
        ),
        (
            // A new file started: resume in the newest file.
            vec![
                seg(0, 1, 0, 400, Some((1, 2))),
                seg(1, 1, 400, 450, None),
                seg(2, 2, 0, 300, Some((3, 3))),
            ],
            101,
            ResumePoint {
                next_number: 3,
                file: Some((101, 2, 300)),
            },
        ),
        (
            // Another source archived since: numbers go on, the source's point stays.
            vec![seg(0, 1, 0, 400, Some((1, 2))), other.clone()],
            101,
            ResumePoint {
                next_number: 6,
                file: Some((101, 1, 400)),
            },
        ),
        (
            vec![seg(0, 1, 0, 400, Some((1, 2))), other],
            103,
            ResumePoint {
                next_number: 6,
                file: None,
            },
        ),
    ];
    for (segs, sid, want) in cases {
        assert_eq!(resume_point(&segs, sid), want, "{segs:?}");
    }
}

#[test]
fn lookups_by_gtid_and_time() {
    let segs = vec![
        seg(0, 1, 0, 256, None),
        seg(1, 1, 256, 900, Some((1, 5))),
        seg(2, 1, 900, 1200, Some((6, 6))),
        seg(3, 2, 0, 700, Some((7, 9))),
    ];
    // (gtid seq, segment number)
    for (seq, want) in [
        (1, Some(1)),
        (5, Some(1)),
        (6, Some(2)),
        (9, Some(3)),
        (10, None),
        (0, None),
    ] {
        assert_eq!(
            find_by_gtid(&segs, g(0, 101, seq)).map(|s| s.number),
            want,
            "seq {seq}"
        );
    }
    assert_eq!(find_by_gtid(&segs, g(1, 101, 3)), None, "another domain");
    // (time, first segment with a transaction committed after it)
    for (ts, want) in [
        (0, Some(1)),
        (1_004, Some(1)),
        (1_005, Some(2)),
        (1_006, Some(3)),
        (1_009, None),
    ] {
        assert_eq!(find_by_time(&segs, ts).map(|s| s.number), want, "ts {ts}");
    }
    let file1: Vec<u64> = file_segments(&segs, 101, 1)
        .iter()
        .map(|s| s.number)
        .collect();
    assert_eq!(file1, vec![0, 1, 2]);
    assert!(file_segments(&segs, 102, 1).is_empty());
}

#[test]
fn holes_between_segments_are_gaps_except_after_a_moved_head() {
    let moved_head = SegmentName {
        moved_head: true,
        ..seg(4, 3, 0, 300, None)
    };
    // (segments, holes as (from, to))
    type Case = (Vec<SegmentName>, Vec<(u64, u64)>);
    let cases: Vec<Case> = vec![
        (
            vec![seg(0, 1, 0, 256, None), seg(1, 1, 256, 900, Some((1, 5)))],
            vec![],
        ),
        (
            vec![seg(0, 1, 0, 256, None), seg(1, 1, 300, 900, Some((1, 5)))],
            vec![(256, 300)],
        ),
        (
            vec![
                seg(0, 1, 0, 500, Some((1, 2))),
                seg(1, 1, 600, 900, Some((3, 5))),
            ],
            vec![(500, 600)],
        ),
        (
            vec![moved_head, seg(5, 3, 1000, 1400, Some((9, 9)))],
            vec![],
        ),
    ];
    for (segs, want) in cases {
        let got: Vec<(u64, u64)> = gaps(&segs).iter().map(|g| (g.from, g.to)).collect();
        assert_eq!(got, want, "{segs:?}");
    }
}

#[test]
fn segments_encode_and_decode_with_every_compression_and_encryption() {
    let id = age::x25519::Identity::generate();
    let recipients = Arc::new(Recipients::new(&[id.to_public().to_string()]).unwrap());
    let text = format!("{}\n", id.to_string().expose_secret());
    let identities = Identities::parse(&text, "test").unwrap();
    let bytes: Vec<u8> = (0..10_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    for compression in [
        CompressionEngine::Zstd,
        CompressionEngine::Lz4,
        CompressionEngine::None,
    ] {
        for encrypted in [false, true] {
            let name = SegmentName {
                compression,
                encrypted,
                ..seg(1, 1, 100, 100 + bytes.len() as u64, Some((1, 1)))
            };
            let stored =
                encode_segment(&bytes, compression, encrypted.then_some(&recipients)).unwrap();
            let back = decode_segment(&name, &stored, Some(&identities)).unwrap();
            assert_eq!(back, bytes, "{compression:?} {encrypted}");
            if encrypted {
                assert!(decode_segment(&name, &stored, None).is_err());
            }
            let mut corrupt = stored.clone();
            let mid = corrupt.len() / 2;
            corrupt[mid] ^= 0x55;
            if compression != CompressionEngine::None || encrypted {
                assert!(
                    decode_segment(&name, &corrupt, Some(&identities)).is_err(),
                    "{compression:?} {encrypted}: a flipped byte went unnoticed"
                );
            }
            let short = SegmentName {
                end: name.end - 1,
                ..name
            };
            assert!(decode_segment(&short, &stored, Some(&identities)).is_err());
        }
    }
}
