//! Table tests of a shard's recoverable window and gaps.

use cairn_topo::CompressionEngine;
use chrono::TimeZone;

use super::*;

const EPOCH: i64 = 1_790_000_000;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(EPOCH + s, 0).unwrap()
}

fn record(name: &str, pos: &str, t: i64) -> BackupRecord {
    BackupRecord {
        finished_time: Some(at(t + 5)),
        size_bytes: 1,
        ..BackupRecord::full(
            name,
            "ks",
            "0",
            "zone1-0000000101",
            BackupMethod::Builtin,
            at(t),
            format!("MariaDB/{pos}"),
        )
    }
}

fn inc(name: &str, from: &str, pos: &str, t: i64) -> BackupRecord {
    BackupRecord {
        incremental: true,
        from_position: Some(format!("MariaDB/{from}")),
        last_timestamp: Some(at(t - 1)),
        ..record(name, pos, t)
    }
}

/// Segment `n` of file `idx`, bytes `a..b`, transactions `x..=y` committed at +seq.
fn seg(n: u64, idx: u64, a: u64, b: u64, x: u64, y: u64) -> SegmentName {
    let g = |seq| Gtid {
        domain: 0,
        server: 101,
        seq,
    };
    SegmentName {
        number: n,
        server_id: 101,
        file_index: idx,
        start: a,
        end: b,
        first_ts: Some((EPOCH + x as i64) as u32),
        last_ts: Some((EPOCH + y as i64) as u32),
        first_gtid: Some(g(x)),
        last_gtid: Some(g(y)),
        compression: CompressionEngine::Zstd,
        encrypted: false,
        moved_head: false,
    }
}

fn archive() -> Vec<SegmentName> {
    vec![
        seg(0, 1, 0, 300, 1, 30),
        seg(1, 1, 300, 500, 31, 60),
        seg(2, 2, 0, 400, 61, 90),
        seg(3, 2, 400, 600, 91, 120),
    ]
}

fn without(n: u64) -> Vec<SegmentName> {
    archive().into_iter().filter(|s| s.number != n).collect()
}

/// (what, backups, segments, from, to, missing GTIDs of each gap)
type Case<'a> = (
    &'static str,
    Vec<&'a BackupRecord>,
    Vec<SegmentName>,
    Option<i64>,
    Option<i64>,
    Vec<&'static str>,
);

#[test]
fn the_window_runs_from_the_oldest_full_backup_to_the_newest_archived_transaction() {
    let f1 = record("f1", "0-101-20", 20);
    let f2 = record("f2", "0-101-80", 80);
    let mut bad = record("f0", "0-101-5", 5);
    bad.state = BackupRecordState::Unreadable;
    bad.complete = false;
    // (what, backups, segments, from, to, missing GTIDs of each gap)
    let cases: Vec<Case> = vec![
        (
            "archived, no hole",
            vec![&f1, &f2],
            archive(),
            Some(20),
            Some(120),
            vec![],
        ),
        (
            "an unreadable backup does not count",
            vec![&bad, &f1],
            archive(),
            Some(20),
            Some(120),
            vec![],
        ),
        (
            "no full backup: no window",
            vec![],
            archive(),
            None,
            None,
            vec![],
        ),
        (
            "no archive: up to the newest backup",
            vec![&f1, &f2],
            vec![],
            Some(20),
            Some(80),
            vec![],
        ),
        (
            "a segment missing mid-file",
            vec![&f1],
            without(1),
            Some(20),
            Some(120),
            vec!["0-*-31..0-*-60"],
        ),
        (
            "a file's last segment missing",
            vec![&f1],
            without(3),
            Some(20),
            Some(90),
            vec![],
        ),
        (
            "a file's head missing",
            vec![&f1],
            without(2),
            Some(20),
            Some(120),
            vec!["0-*-61..0-*-90"],
        ),
        (
            "a hole the oldest full backup covers",
            vec![&f2],
            without(1),
            Some(80),
            Some(120),
            vec![],
        ),
    ];
    for (what, backups, segs, from, to, want) in cases {
        let r = recoverability(&backups, &segs, &[]);
        assert_eq!(r.recoverable_from, from.map(at), "{what}");
        assert_eq!(r.recoverable_to, to.map(at), "{what}");
        let got: Vec<&str> = r.gaps.iter().map(|g| g.missing_gtids.as_str()).collect();
        assert_eq!(got, want, "{what}: {:?}", r.gaps);
    }
    let r = recoverability(&[&f1], &archive(), &[]);
    assert_eq!(r.window_seconds(), Some(100.0));
}

#[test]
fn a_gap_before_the_archive_counts_unless_an_incremental_bridges_it() {
    let f1 = record("f1", "0-101-10", 10);
    let late: Vec<SegmentName> = archive()
        .into_iter()
        .filter(|s| s.file_index == 2)
        .collect();
    let r = recoverability(&[&f1], &late, &[]);
    assert_eq!(r.gaps.len(), 1, "{:?}", r.gaps);
    assert_eq!(r.gaps[0].missing_gtids, "0-*-11..0-*-60");
    assert!(
        r.gaps[0].detail.contains("oldest full backup f1"),
        "{:?}",
        r.gaps
    );
    let i1 = inc("i1", "0-101-10", "0-101-40", 41);
    let i2 = inc("i2", "0-101-40", "0-101-60", 61);
    assert_eq!(recoverability(&[&f1, &i1, &i2], &late, &[]).gaps, vec![]);
    assert_eq!(recoverability(&[&f1, &i1], &late, &[]).gaps.len(), 1);
    // A hole between segments an incremental holds is no gap.
    let i3 = inc("i3", "0-101-25", "0-101-70", 71);
    assert_eq!(recoverability(&[&f1, &i3], &without(1), &[]).gaps, vec![]);
}

#[test]
fn newest_segments_missing_from_storage_are_a_gap() {
    let f1 = record("f1", "0-101-20", 20);
    let pos = |s: &str| parse_gtid_list(s).unwrap();
    assert_eq!(
        recoverability(&[&f1], &archive(), &pos("0-101-120")).gaps,
        vec![]
    );
    let r = recoverability(&[&f1], &without(3), &pos("0-101-120"));
    let got: Vec<&str> = r.gaps.iter().map(|g| g.missing_gtids.as_str()).collect();
    assert_eq!(got, vec!["0-*-91..0-*-120"], "{:?}", r.gaps);
}

#[test]
fn binlogs_purged_before_they_were_archived_are_a_gap_in_any_domain() {
    let pos = |s: &str| parse_gtid_list(s).unwrap();
    let f1 = record("f1", "0-101-20,1-7-5", 20);
    let f1_one = record("f1", "0-101-20", 20);
    let i1 = inc("i1", "0-101-120,1-7-5", "0-101-200,1-7-9", 300);
    let i2 = inc("i2", "0-101-20,1-7-5", "0-101-50,1-7-5", 60);
    // (backups, segments, archive record position, primary's oldest binlog
    // position, missing GTIDs)
    type Case<'a> = (
        Vec<&'a BackupRecord>,
        Vec<SegmentName>,
        &'a str,
        &'a str,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        // Nothing purged, or only what the archive holds.
        (vec![&f1], archive(), "0-101-120,1-7-5", "", vec![]),
        (
            vec![&f1],
            archive(),
            "0-101-120,1-7-5",
            "0-101-120,1-7-5",
            vec![],
        ),
        (
            vec![&f1],
            archive(),
            "0-101-120,1-7-5",
            "0-101-100,0-102-7",
            vec![],
        ),
        // The archive stopped at 120; the primary purged to 150.
        (
            vec![&f1],
            archive(),
            "0-101-120,1-7-5",
            "0-101-150",
            vec!["0-*-121..0-*-150"],
        ),
        // One transaction.
        (
            vec![&f1],
            archive(),
            "0-101-120",
            "0-101-121",
            vec!["0-*-121"],
        ),
        // The Gtid_list names servers; the newest of a domain counts.
        (
            vec![&f1],
            archive(),
            "0-101-120",
            "0-101-150,0-102-160",
            vec!["0-*-121..0-*-160"],
        ),
        // Another domain purged past the archive, the first one not.
        (
            vec![&f1],
            archive(),
            "0-101-120,1-7-5",
            "0-101-110,1-7-12",
            vec!["1-*-6..1-*-12"],
        ),
        // Both domains.
        (
            vec![&f1],
            archive(),
            "0-101-120,1-7-5",
            "0-101-130,1-7-12",
            vec!["0-*-121..0-*-130", "1-*-6..1-*-12"],
        ),
        // A domain the archive and the backups never saw.
        (
            vec![&f1_one],
            archive(),
            "0-101-120",
            "0-101-100,2-9-4",
            vec!["2-*-1..2-*-4"],
        ),
        // The record lags the stored segments: those count.
        (
            vec![&f1],
            archive(),
            "0-101-90,1-7-5",
            "0-101-120,1-7-5",
            vec![],
        ),
        // An incremental from the archive's end bridges it (both domains).
        (
            vec![&f1, &i1],
            archive(),
            "0-101-120,1-7-5",
            "0-101-150,1-7-9",
            vec![],
        ),
        (
            vec![&f1, &i1],
            archive(),
            "0-101-120,1-7-5",
            "0-101-250,1-7-9",
            vec!["0-*-201..0-*-250"],
        ),
        // No full backup: nothing is recoverable, no gap to speak of.
        (vec![], archive(), "0-101-120", "0-101-150,2-9-4", vec![]),
        (vec![&i1], archive(), "0-101-120", "0-101-150", vec![]),
        // No archive yet: the oldest full backup and its incrementals hold up to 50.
        (vec![&f1, &i2], vec![], "", "0-101-40,1-7-5", vec![]),
        (
            vec![&f1, &i2],
            vec![],
            "",
            "0-101-70,1-7-5",
            vec!["0-*-51..0-*-70"],
        ),
    ];
    for (backups, segs, archived, oldest, want) in cases {
        let got = purged_gaps(&backups, &segs, &pos(archived), &pos(oldest));
        let missing: Vec<&str> = got.iter().map(|g| g.missing_gtids.as_str()).collect();
        assert_eq!(
            missing, want,
            "archived {archived}, primary oldest {oldest}: {got:?}"
        );
        for g in &got {
            assert!(
                g.detail
                    .contains("purged on the primary before they were archived")
                    && g.detail.contains(&g.missing_gtids),
                "{g:?}"
            );
        }
    }
}

#[test]
fn segments_are_listed_in_full_the_first_time_and_now_and_then_else_only_the_new_ones() {
    let t0 = Instant::now();
    let every = Duration::from_secs(300);
    // Listed in full at t0.
    let listed = |segments: Vec<SegmentName>| Listed {
        at: t0,
        full_at: t0,
        compacted_at: Some(at(0)),
        segments,
    };
    let newest = NextList::After(seg(3, 2, 400, 600, 91, 120));
    // (previous listing, seconds since t0, next)
    let cases = [
        (None, 0, NextList::Full),
        (Some(listed(archive())), 3, newest.clone()),
        (Some(listed(archive())), 299, newest),
        (Some(listed(archive())), 300, NextList::Full),
        // Nothing known yet: in full.
        (Some(listed(vec![])), 3, NextList::Full),
    ];
    for (prev, since, want) in cases {
        let now = t0 + Duration::from_secs(since);
        assert_eq!(
            next_list(prev.as_ref(), now, every, Some(at(0))),
            want,
            "{since}"
        );
    }
    // A compaction since the last full listing: in full again.
    let l = listed(archive());
    for compacted in [Some(at(5)), None] {
        assert_eq!(next_list(Some(&l), t0, every, compacted), NextList::Full);
    }
    // Of equal numbers (a compacted segment beside its first source), the
    // greatest name.
    let merged = seg(0, 1, 0, 500, 1, 60);
    let l = listed(vec![seg(0, 1, 0, 300, 1, 30), merged.clone()]);
    let want = if merged.format() > seg(0, 1, 0, 300, 1, 30).format() {
        merged
    } else {
        seg(0, 1, 0, 300, 1, 30)
    };
    assert_eq!(
        next_list(Some(&l), t0, every, Some(at(0))),
        NextList::After(want)
    );
}

#[test]
fn new_segments_are_added_to_the_known_ones_once_in_archive_order() {
    let all = archive();
    let known = all[..2].to_vec();
    let got = merge_listing(&known, vec![all[3].clone(), all[2].clone(), all[1].clone()]);
    assert_eq!(got, all);
    assert_eq!(merge_listing(&all, vec![]), all);
    assert_eq!(merge_listing(&[], all.clone()), all);
}
