//! Table tests of the compaction planner.

use super::*;

fn seg(number: u64, file: u64, start: u64, end: u64, last_ts: Option<u32>) -> SegmentName {
    let g = |seq: u64| crate::mysql::gtid::Gtid {
        domain: 0,
        server: 101,
        seq,
    };
    SegmentName {
        number,
        server_id: 101,
        file_index: file,
        start,
        end,
        first_ts: last_ts.map(|t| t - 1),
        last_ts,
        first_gtid: last_ts.map(|_| g(number * 10)),
        last_gtid: last_ts.map(|_| g(number * 10 + 9)),
        compression: CompressionEngine::Zstd,
        encrypted: false,
        moved_head: false,
    }
}

fn policy(max_bytes: u64) -> Policy {
    Policy {
        now: 10_000,
        min_age_secs: 100,
        max_bytes,
        compression: CompressionEngine::Zstd,
        encrypted: false,
    }
}

/// (number of the merged segment, start, end, sources' numbers)
fn merges(plan: &CompactionPlan) -> Vec<(u64, u64, u64, Vec<u64>)> {
    plan.merges
        .iter()
        .map(|m| {
            (
                m.merged.number,
                m.merged.start,
                m.merged.end,
                m.sources.iter().map(|s| s.number).collect(),
            )
        })
        .collect()
}

#[test]
fn runs_of_old_adjacent_segments_are_merged() {
    let old = Some(1_000);
    let young = Some(9_950);
    // (segments, max bytes, want merges)
    type Merges = Vec<(u64, u64, u64, Vec<u64>)>;
    let cases: Vec<(Vec<SegmentName>, u64, Merges)> = vec![
        // Head, three old ones, the newest: all but the newest.
        (
            vec![
                seg(0, 1, 0, 100, None),
                seg(1, 1, 100, 200, old),
                seg(2, 1, 200, 300, old),
                seg(3, 1, 300, 400, old),
                seg(4, 1, 400, 500, old),
            ],
            1 << 20,
            vec![(0, 0, 400, vec![0, 1, 2, 3])],
        ),
        // A young one breaks the run; a lone old one is not merged.
        (
            vec![
                seg(1, 1, 100, 200, old),
                seg(2, 1, 200, 300, old),
                seg(3, 1, 300, 400, young),
                seg(4, 1, 400, 500, old),
                seg(5, 1, 500, 600, young),
            ],
            1 << 20,
            vec![(1, 100, 300, vec![1, 2])],
        ),
        // A hole breaks the run; so does another file.
        (
            vec![
                seg(1, 1, 100, 200, old),
                seg(2, 1, 250, 300, old),
                seg(3, 1, 300, 400, old),
                seg(4, 2, 0, 100, old),
                seg(5, 2, 100, 200, old),
                seg(6, 2, 200, 300, old),
            ],
            1 << 20,
            vec![(2, 250, 400, vec![2, 3]), (4, 0, 200, vec![4, 5])],
        ),
        // The size limit cuts runs.
        (
            vec![
                seg(1, 1, 0, 100, old),
                seg(2, 1, 100, 200, old),
                seg(3, 1, 200, 300, old),
                seg(4, 1, 300, 400, old),
                seg(5, 1, 400, 500, old),
            ],
            200,
            vec![(1, 0, 200, vec![1, 2]), (3, 200, 400, vec![3, 4])],
        ),
    ];
    for (i, (segs, max, want)) in cases.into_iter().enumerate() {
        let plan = plan_compaction(&segs, &policy(max));
        assert_eq!(merges(&plan), want, "case {i}");
        assert!(plan.covered.is_empty(), "case {i}");
    }
}

#[test]
fn merged_names_describe_the_run() {
    let segs = vec![
        seg(0, 1, 0, 100, None),
        seg(1, 1, 100, 200, Some(1_000)),
        seg(2, 1, 200, 300, Some(1_200)),
        seg(3, 1, 300, 400, Some(1_300)),
    ];
    let plan = plan_compaction(&segs, &policy(1 << 20));
    let m = &plan.merges[0].merged;
    assert_eq!((m.first_ts, m.last_ts), (Some(999), Some(1_200)));
    assert_eq!(m.first_gtid.unwrap().seq, 10);
    assert_eq!(m.last_gtid.unwrap().seq, 29);
    // It parses back: the same naming as any segment.
    assert_eq!(&SegmentName::parse(&m.format()).unwrap(), m);
}

#[test]
fn leftovers_of_an_interrupted_compaction_are_removed_and_readers_pick_one() {
    let old = Some(1_000);
    let mut merged = seg(1, 1, 100, 300, old);
    merged.first_gtid = seg(1, 1, 0, 0, old).first_gtid;
    let segs = vec![
        seg(0, 1, 0, 100, None),
        seg(1, 1, 100, 200, old),
        seg(2, 1, 200, 300, old),
        merged.clone(),
        seg(3, 1, 300, 400, old),
    ];
    let plan = plan_compaction(&segs, &policy(1 << 20));
    let covered: Vec<u64> = plan.covered.iter().map(|(s, _)| s.number).collect();
    assert_eq!(covered, vec![1, 2]);
    assert!(plan.covered.iter().all(|(_, big)| *big == merged));
    // The head and the merged one join; the newest (3) stays.
    assert_eq!(merges(&plan), vec![(0, 0, 300, vec![0, 1])]);
    // A reader sees each byte once.
    let cover: Vec<(u64, u64)> = covering_segments(&segs)
        .iter()
        .map(|s| (s.start, s.end))
        .collect();
    assert_eq!(cover, vec![(0, 100), (100, 300), (300, 400)]);
}
