//! Table tests of the chain check.

use super::*;
use cairn_topo::CompressionEngine;

fn g(s: &str) -> Vec<Gtid> {
    crate::mysql::gtid::parse_gtid_list(s).unwrap()
}

fn seg(number: u64, file: u64, start: u64, end: u64, gtids: Option<(&str, &str)>) -> SegmentName {
    let one = |s: &str| g(s)[0];
    SegmentName {
        number,
        server_id: 101,
        file_index: file,
        start,
        end,
        first_ts: gtids.map(|_| 1_764_108_000),
        last_ts: gtids.map(|_| 1_764_108_001),
        first_gtid: gtids.map(|(a, _)| one(a)),
        last_gtid: gtids.map(|(_, b)| one(b)),
        compression: CompressionEngine::Zstd,
        encrypted: false,
        moved_head: false,
    }
}

fn full(name: &str, pos: &str) -> FullPoint {
    FullPoint {
        name: name.into(),
        position: g(pos),
    }
}

#[test]
fn incrementals_hold_from_exclusive_to_inclusive_per_domain() {
    let p = incremental_pieces("i1", &g("0-1-10,1-1-3"), &g("0-1-20,1-1-3,2-1-4"), None);
    let got: Vec<(u32, u64, u64)> = p.iter().map(|p| (p.domain, p.lo, p.hi)).collect();
    assert_eq!(got, vec![(0, 11, 20), (2, 1, 4)]);
    assert_eq!(p[0].label, "incremental i1");
}

#[test]
fn segments_join_into_runs_and_break_at_a_missing_one() {
    // (segments with damage, want (domain, lo, hi, damaged) pieces)
    let good = |s: SegmentName| (s, None);
    type Segs = Vec<(SegmentName, Option<String>)>;
    type Pieces = Vec<(u32, u64, u64, bool)>;
    let cases: Vec<(Segs, Pieces)> = vec![
        // Contiguous: one run.
        (
            vec![
                good(seg(0, 1, 0, 100, None)),
                good(seg(1, 1, 100, 200, Some(("0-101-1", "0-101-5")))),
                good(seg(2, 1, 200, 300, Some(("0-101-6", "0-101-9")))),
            ],
            vec![(0, 1, 9, false)],
        ),
        // Segment 2 (6..8) missing: two runs.
        (
            vec![
                good(seg(1, 1, 100, 200, Some(("0-101-1", "0-101-5")))),
                good(seg(3, 1, 300, 400, Some(("0-101-9", "0-101-12")))),
            ],
            vec![(0, 1, 5, false), (0, 9, 12, false)],
        ),
        // Segment 2 damaged: two runs and the damaged piece.
        (
            vec![
                good(seg(1, 1, 100, 200, Some(("0-101-1", "0-101-5")))),
                (
                    seg(2, 1, 200, 300, Some(("0-101-6", "0-101-8"))),
                    Some("checksum".into()),
                ),
                good(seg(3, 1, 300, 400, Some(("0-101-9", "0-101-12")))),
            ],
            vec![(0, 6, 8, true), (0, 1, 5, false), (0, 9, 12, false)],
        ),
        // A compacted segment beside the small ones it replaces: one run.
        (
            vec![
                good(seg(1, 1, 100, 200, Some(("0-101-1", "0-101-5")))),
                good(seg(2, 1, 200, 300, Some(("0-101-6", "0-101-8")))),
                good(seg(3, 1, 100, 300, Some(("0-101-1", "0-101-8")))),
                good(seg(4, 1, 300, 400, Some(("0-101-9", "0-101-9")))),
            ],
            vec![(0, 1, 9, false)],
        ),
        // Two domains interleaved in one segment: the last extends its domain.
        (
            vec![
                good(seg(1, 1, 100, 200, Some(("0-101-1", "1-101-4")))),
                good(seg(2, 1, 200, 300, Some(("0-101-2", "1-101-6")))),
            ],
            vec![(0, 1, 2, false), (1, 4, 6, false)],
        ),
    ];
    for (i, (segs, want)) in cases.into_iter().enumerate() {
        let got: Vec<(u32, u64, u64, bool)> = segment_pieces("ks", "0", &segs)
            .iter()
            .map(|p| (p.domain, p.lo, p.hi, p.damaged.is_some()))
            .collect();
        assert_eq!(got, want, "case {i}");
    }
}

#[test]
fn chains_name_their_holes() {
    let inc = |n: &str, from: &str, to: &str| incremental_pieces(n, &g(from), &g(to), None);
    let f = full("full1", "0-1-10");
    // (pieces, end, want: (status, words each problem line holds))
    let cases: Vec<(Vec<Piece>, &str, Status, Vec<&str>)> = vec![
        // Nothing after the full backup: nothing to check.
        (vec![], "0-1-10", Status::Ok, vec![]),
        // Two incrementals back to back.
        (
            [inc("i1", "0-1-10", "0-1-20"), inc("i2", "0-1-20", "0-1-30")].concat(),
            "0-1-30",
            Status::Ok,
            vec![],
        ),
        // An incremental that starts before the full backup still counts.
        (inc("i1", "0-1-5", "0-1-30"), "0-1-30", Status::Ok, vec![]),
        // The middle one is missing.
        (
            [inc("i1", "0-1-10", "0-1-20"), inc("i3", "0-1-30", "0-1-40")].concat(),
            "0-1-40",
            Status::Failure,
            vec!["GTIDs 0-*-21..0-*-30 are in no good"],
        ),
        // The middle one is damaged: named.
        (
            [
                inc("i1", "0-1-10", "0-1-20"),
                incremental_pieces("i2", &g("0-1-20"), &g("0-1-30"), Some("1 missing".into())),
                inc("i3", "0-1-30", "0-1-40"),
            ]
            .concat(),
            "0-1-40",
            Status::Failure,
            vec![
                "0-*-21..0-*-30",
                "incremental i2 held 0-*-21..0-*-30 but is damaged: 1 missing",
            ],
        ),
        // The tail is missing (the archive record knows of 0-1-45).
        (
            inc("i1", "0-1-10", "0-1-40"),
            "0-1-45",
            Status::Failure,
            vec!["GTIDs 0-*-41..0-*-45"],
        ),
        // A second domain with no piece at all.
        (
            inc("i1", "0-1-10", "0-1-40"),
            "0-1-40,1-2-3",
            Status::Failure,
            vec!["GTIDs 1-*-1..1-*-3"],
        ),
        // Incrementals then archived segments, overlapping.
        (
            [
                inc("i1", "0-1-10", "0-1-20"),
                vec![Piece {
                    label: "segments".into(),
                    object: None,
                    domain: 0,
                    lo: 15,
                    hi: 50,
                    damaged: None,
                }],
            ]
            .concat(),
            "0-1-50",
            Status::Ok,
            vec![],
        ),
    ];
    for (i, (pieces, end, status, words)) in cases.into_iter().enumerate() {
        let r = check_chain(&f, None, &pieces, &g(end));
        assert_eq!(r.status, status, "case {i}: {r:?}");
        assert_eq!(r.problems.is_empty(), words.is_empty(), "case {i}: {r:?}");
        for w in words {
            assert!(
                r.problems.iter().any(|p| p.message.contains(w)),
                "case {i}: no problem with {w:?}: {r:?}"
            );
        }
        assert!(r
            .problems
            .iter()
            .all(|p| p.message.contains("chain from full1")));
    }
}

#[test]
fn a_hole_before_a_newer_full_backup_is_a_warning() {
    let fulls = [full("old", "0-1-10"), full("new", "0-1-30")];
    let pieces = [
        incremental_pieces("i1", &g("0-1-10"), &g("0-1-20"), None),
        incremental_pieces("i2", &g("0-1-30"), &g("0-1-40"), None),
    ]
    .concat();
    let r = check_chains(&fulls, &pieces, &g("0-1-40"));
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].full, "old");
    assert_eq!(r[0].status, Status::Warning, "{r:?}");
    assert!(r[0].problems[0].message.contains("0-*-21..0-*-30"));
    assert!(r[0].problems[0]
        .message
        .contains("full backup new restores"));
    assert_eq!(r[0].reaches, "0-*-20");
    assert_eq!(r[1].status, Status::Ok, "{r:?}");
    assert_eq!(r[1].reaches, "0-*-40");
    // The newest full backup's chain breaking is a failure.
    let r = check_chains(&fulls, &pieces, &g("0-1-41"));
    assert_eq!(r[1].status, Status::Failure);
}

#[test]
fn byte_holes_in_the_archive() {
    let mut moved = seg(5, 2, 0, 50, None);
    moved.moved_head = true;
    // (segments, want (file, from, to))
    type Holes = Vec<(u64, u64, u64)>;
    let cases: Vec<(Vec<SegmentName>, Holes)> = vec![
        (
            vec![seg(0, 1, 0, 100, None), seg(1, 1, 100, 200, None)],
            vec![],
        ),
        (
            vec![seg(0, 1, 0, 100, None), seg(2, 1, 150, 200, None)],
            vec![(1, 100, 150)],
        ),
        // Head missing.
        (vec![seg(1, 1, 100, 200, None)], vec![(1, 0, 100)]),
        // A moved head then a later segment: no hole.
        (vec![moved.clone(), seg(6, 2, 300, 400, None)], vec![]),
        // A compacted segment covering small ones.
        (
            vec![
                seg(0, 1, 0, 100, None),
                seg(1, 1, 100, 200, None),
                seg(2, 1, 200, 300, None),
                seg(3, 1, 0, 300, None),
                seg(4, 1, 300, 400, None),
            ],
            vec![],
        ),
        // …even after the small ones in the middle are gone.
        (
            vec![
                seg(0, 1, 0, 100, None),
                seg(3, 1, 0, 300, None),
                seg(4, 1, 300, 400, None),
            ],
            vec![],
        ),
    ];
    for (i, (segs, want)) in cases.into_iter().enumerate() {
        let got: Vec<(u64, u64, u64)> = byte_holes(&segs)
            .iter()
            .map(|h| (h.file_index, h.from, h.to))
            .collect();
        assert_eq!(got, want, "case {i}");
    }
    let p = archive_structure(
        "ks",
        "0",
        &[seg(0, 1, 0, 100, None), seg(2, 1, 150, 200, None)],
    );
    assert_eq!(p[0].status, Status::Failure);
    assert!(
        p[0].message
            .contains("bytes 100..150 of binlog file 1 of server 101"),
        "{:?}",
        p
    );
    assert!(p[0].message.contains("0000000000.101.1.0.100"), "{:?}", p);
}
