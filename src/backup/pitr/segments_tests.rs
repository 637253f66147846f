//! Table tests of the archive's restore planner and hole finder.

use super::*;
use crate::mysql::gtid::parse_gtid_list;
use cairn_topo::CompressionEngine;
use chrono::TimeZone;

const EPOCH: u32 = 1_790_000_000;

/// Segment `number` of server `sid`'s file `idx`, bytes `start..end`, holding
/// domain-0 transactions `a..=b` written by `gsrv` (committed at EPOCH + seq).
fn sg(
    number: u64,
    sid: u32,
    idx: u64,
    start: u64,
    end: u64,
    tx: Option<(u64, u64)>,
) -> SegmentName {
    sgd(number, sid, idx, start, end, tx, 0)
}

fn sgd(
    number: u64,
    sid: u32,
    idx: u64,
    start: u64,
    end: u64,
    tx: Option<(u64, u64)>,
    domain: u32,
) -> SegmentName {
    let g = |seq| Gtid {
        domain,
        server: sid,
        seq,
    };
    SegmentName {
        number,
        server_id: sid,
        file_index: idx,
        start,
        end,
        first_ts: tx.map(|(a, _)| EPOCH + a as u32),
        last_ts: tx.map(|(_, b)| EPOCH + b as u32),
        first_gtid: tx.map(|(a, _)| g(a)),
        last_gtid: tx.map(|(_, b)| g(b)),
        compression: CompressionEngine::Zstd,
        encrypted: false,
        moved_head: false,
    }
}

fn head(number: u64, sid: u32, idx: u64, end: u64) -> SegmentName {
    SegmentName {
        moved_head: true,
        ..sg(number, sid, idx, 0, end, None)
    }
}

fn p(s: &str) -> Vec<Gtid> {
    parse_gtid_list(s).unwrap()
}

fn time(seq: u64) -> RestoreTarget {
    RestoreTarget::Time(Utc.timestamp_opt(i64::from(EPOCH) + seq as i64, 0).unwrap())
}

/// `sid/idx:n,n@from|…`, or `ERR: …`.
fn shape(r: Result<Vec<ArchivedFile>, Shortfall>) -> String {
    match r {
        Ok(files) => files
            .iter()
            .map(|f| {
                let ps: Vec<String> = f
                    .pieces
                    .iter()
                    .map(|p| {
                        if p.is_whole() {
                            p.segment.number.to_string()
                        } else {
                            format!("{}@{}", p.segment.number, p.from)
                        }
                    })
                    .collect();
                format!("{}/{}:{}", f.server_id, f.file_index, ps.join(","))
            })
            .collect::<Vec<_>>()
            .join("|"),
        Err(s) => format!(
            "ERR: {} => {}",
            s.hole,
            crate::mysql::gtid::format_gtid_list(&s.reaches)
        ),
    }
}

/// Two files of server 101: 1..9 in three segments, 10..15 in two.
fn archive() -> Vec<SegmentName> {
    vec![
        sg(0, 101, 1, 0, 300, Some((1, 3))),
        sg(1, 101, 1, 300, 500, Some((4, 6))),
        sg(2, 101, 1, 500, 700, Some((7, 9))),
        sg(3, 101, 2, 0, 400, Some((10, 12))),
        sg(4, 101, 2, 400, 600, Some((13, 15))),
    ]
}

/// (what, base, safe_at, target, plan)
type Case = (
    &'static str,
    &'static str,
    Option<DateTime<Utc>>,
    RestoreTarget,
    &'static str,
);

#[test]
fn segments_carry_the_restore_from_the_base_to_the_target() {
    let a = archive();
    let safe = |s: u64| Some(Utc.timestamp_opt(i64::from(EPOCH) + s as i64, 0).unwrap());
    let pos = |s: &str| RestoreTarget::Position(p(s));
    // (what, base, safe_at, target, plan)
    let cases: Vec<Case> = vec![
        ("mid-file: the head, then from the first new", "0-101-5", None, pos("0-101-8"), "101/1:0,1,2"),
        ("segments the base holds are left out", "0-101-6", None, pos("0-101-8"), "101/1:0,2"),
        ("a file the base holds is left out", "0-101-9", None, pos("0-101-14"), "101/2:3,4"),
        ("stops at the segment holding the target", "0-101-9", None, pos("0-101-11"), "101/2:3"),
        ("across files", "0-101-2", None, pos("0-101-13"), "101/1:0,1,2|101/2:3,4"),
        ("a time: up to the segment committing at or after it", "0-101-2", None, time(5), "101/1:0,1"),
        ("the base is the target", "0-101-15", None, pos("0-101-15"), ""),
        (
            "a time after the newest transaction, archive complete then",
            "0-101-9",
            safe(100),
            time(50),
            "101/2:3,4",
        ),
        (
            "a time after the newest transaction, not known complete",
            "0-101-9",
            None,
            time(50),
            "ERR: 2026-09-21T14:14:10Z is beyond what is archived: the newest archived \
             transaction (MariaDB/0-101-15) committed at 2026-09-21T14:13:35Z => 0-101-15",
        ),
        (
            "a position after the newest transaction",
            "0-101-9",
            safe(100),
            pos("0-101-20"),
            "ERR: MariaDB/0-101-20 is beyond what is archived: the archive holds \
             transactions up to MariaDB/0-101-15 and was known complete at 2026-09-21T14:15:00Z => 0-101-15",
        ),
    ];
    for (what, base, safe_at, target, want) in cases {
        assert_eq!(
            shape(plan_segments(&a, &p(base), safe_at, &target)),
            want,
            "{what}"
        );
    }
}

#[test]
fn overlapping_segments_never_put_a_byte_in_twice() {
    let mut a = archive();
    // Compacted: 4..9 in one segment next to the small ones it replaces.
    a.push(sg(20, 101, 1, 300, 700, Some((4, 9))));
    assert_eq!(
        shape(plan_segments(
            &a,
            &p("0-101-3"),
            None,
            &RestoreTarget::Position(p("0-101-9"))
        )),
        "101/1:0,20"
    );
    // Compacted 1..6 overlapping the other compacted one: a slice of it.
    let b = vec![
        sg(22, 101, 1, 0, 500, Some((1, 6))),
        sg(20, 101, 1, 300, 700, Some((4, 9))),
    ];
    let plan = plan_segments(
        &b,
        &p("0-101-1"),
        None,
        &RestoreTarget::Position(p("0-101-9")),
    );
    assert_eq!(shape(plan.clone()), "101/1:22,20@500");
    // The pieces tile the file: no byte twice, none missing.
    let f = &plan.unwrap()[0];
    let mut at = 0;
    for piece in &f.pieces {
        assert_eq!(piece.from, at);
        at = piece.segment.end;
    }
    assert_eq!(at, 700);
    assert!(archive_holes(&a, &[]).is_empty());
    assert!(archive_holes(&b, &[]).is_empty());
}

#[test]
fn a_failover_moved_head_is_no_hole() {
    let mut a = vec![
        sg(0, 101, 1, 0, 300, Some((1, 3))),
        sg(1, 101, 1, 300, 500, Some((4, 6))),
        head(2, 102, 4, 200),
        sg(3, 102, 4, 350, 600, Some((7, 9))),
        sg(4, 102, 4, 600, 800, Some((10, 12))),
    ];
    let target = RestoreTarget::Position(p("0-102-11"));
    assert_eq!(
        shape(plan_segments(&a, &p("0-101-2"), None, &target)),
        "101/1:0,1|102/4:2,3,4"
    );
    assert_eq!(
        shape(plan_segments(&a, &p("0-101-9"), None, &target)),
        "102/4:2,4"
    );
    assert!(archive_holes(&a, &[]).is_empty());
    // A moved head compacted later keeps its place in history (by time).
    a[2].number = 30;
    assert_eq!(
        shape(plan_segments(&a, &p("0-101-2"), None, &target)),
        "101/1:0,1|102/4:30,3,4"
    );
}

#[test]
fn holes_are_errors_naming_the_missing_gtids_and_the_reachable_point() {
    let pos = |s: &str| RestoreTarget::Position(p(s));
    let without =
        |n: u64| -> Vec<SegmentName> { archive().into_iter().filter(|s| s.number != n).collect() };
    let mut whole_file_gone: Vec<SegmentName> =
        without(3).into_iter().filter(|s| s.number != 4).collect();
    whole_file_gone.push(sg(5, 101, 3, 0, 300, Some((16, 18))));
    // (what, segments, base, target, error)
    let cases: Vec<(&str, Vec<SegmentName>, &str, RestoreTarget, &str)> = vec![
        (
            "a segment in the middle of a file",
            without(1),
            "0-101-2",
            pos("0-101-8"),
            "ERR: bytes 300..500 of binlog 1 of server 101 are in no segment: GTIDs \
             0-*-4..0-*-6 are missing => 0-101-3",
        ),
        (
            "a file's head",
            without(3),
            "0-101-9",
            pos("0-101-14"),
            "ERR: the head (bytes 0..400) of binlog 2 of server 101 are in no segment: \
             GTIDs 0-*-10..0-*-12 are missing => 0-101-9",
        ),
        (
            "a file's last segment",
            without(2),
            "0-101-5",
            pos("0-101-11"),
            "ERR: GTIDs 0-*-7..0-*-9 are in no backup and no archived segment (the archive \
             goes on at 0-101-10, binlog 2 of server 101) => 0-101-6",
        ),
        (
            "a whole file",
            whole_file_gone,
            "0-101-9",
            pos("0-101-17"),
            "ERR: GTIDs 0-*-10..0-*-15 are in no backup and no archived segment (the archive \
             goes on at 0-101-16, binlog 3 of server 101) => 0-101-9",
        ),
        (
            "the archive starts after the base",
            vec![sg(5, 101, 3, 0, 300, Some((16, 18)))],
            "0-101-3",
            time(17),
            "ERR: GTIDs 0-*-4..0-*-15 are in no backup and no archived segment (the archive \
             goes on at 0-101-16, binlog 3 of server 101) => 0-101-3",
        ),
    ];
    for (what, segs, base, target, want) in cases {
        assert_eq!(
            shape(plan_segments(&segs, &p(base), None, &target)),
            want,
            "{what}"
        );
    }
}

#[test]
fn several_domains_fetch_files_from_their_head() {
    // Domain 1 transactions between domain 0 ones: a name does not show them.
    let a = vec![
        sgd(0, 101, 1, 0, 300, Some((1, 3)), 0),
        sgd(1, 101, 1, 300, 500, Some((4, 6)), 0),
        sgd(2, 101, 1, 500, 700, Some((7, 9)), 0),
        sgd(3, 101, 1, 700, 900, Some((1, 2)), 1),
    ];
    // Nothing is skipped as "in the base"; the apply skips what is there.
    assert_eq!(
        shape(plan_segments(
            &a,
            &p("0-101-6,1-101-1"),
            None,
            &RestoreTarget::Position(p("0-101-9"))
        )),
        "101/1:0,1,2"
    );
    // A target in a domain the names do not reach: everything, the apply decides.
    assert_eq!(
        shape(plan_segments(
            &a,
            &p("0-101-6,1-101-1"),
            None,
            &RestoreTarget::Position(p("1-101-5"))
        )),
        "101/1:0,1,2,3"
    );
}

#[test]
fn holes_the_oldest_full_backup_covers_are_not_reported() {
    let without =
        |n: u64| -> Vec<SegmentName> { archive().into_iter().filter(|s| s.number != n).collect() };
    let desc = |hs: Vec<ArchiveHole>| hs.iter().map(ArchiveHole::describe).collect::<Vec<_>>();
    assert_eq!(archive_holes(&archive(), &[]), vec![]);
    assert_eq!(
        desc(archive_holes(&without(1), &p("0-101-2"))),
        vec!["bytes 300..500 of binlog 1 of server 101 are in no segment: GTIDs 0-*-4..0-*-6 are missing"]
    );
    assert_eq!(archive_holes(&without(1), &p("0-101-7")), vec![]);
    // A file's last segment gone: only the sequence numbers show it.
    assert_eq!(
        desc(archive_holes(&without(2), &[])),
        vec!["the segments after it of binlog 1 of server 101 are in no segment: GTIDs 0-*-7..0-*-9 are missing"]
    );
    // A missing head matters while the rest of its file is needed.
    assert_eq!(archive_holes(&without(3), &p("0-101-9")).len(), 1);
    assert_eq!(archive_holes(&without(3), &p("0-101-15")), vec![]);
}
