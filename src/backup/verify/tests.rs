//! Table tests of the verdicts.

use super::*;

fn entry(stored: &str, size: u64, hash: &str) -> FileEntry {
    FileEntry {
        base: "Data".into(),
        name: format!("db/{stored}.ibd"),
        stored_name: stored.into(),
        size: size * 2,
        stored_size: size,
        hash: hash.into(),
        hash_algorithm: "blake3".into(),
    }
}

#[test]
fn objects_are_judged_by_size_then_hash() {
    let e = entry("3", 100, "abcd");
    // (observed, None when fine or a word the failure must hold)
    let cases: Vec<(Observed, Option<&str>)> = vec![
        (Ok((100, "abcd".into())), None),
        (Ok((100, "ABCD".into())), None),
        (Ok((99, "abcd".into())), Some("99 bytes")),
        (Ok((100, "ffff".into())), Some("blake3 ffff")),
        (Err("NotFound".into()), Some("cannot be read: NotFound")),
    ];
    for (observed, want) in cases {
        let got = judge_object("b1", &e, &observed);
        match (want, got) {
            (None, None) => {}
            (Some(word), Some(p)) => {
                assert_eq!(p.status, Status::Failure);
                assert_eq!(p.object.as_deref(), Some("b1/3"));
                assert!(p.message.contains(word), "{} lacks {word}", p.message);
                assert!(p.message.contains("db/3.ibd"), "{}", p.message);
            }
            (want, got) => panic!("{observed:?}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn listing_states_become_warnings_or_failures() {
    let p = judge_listing(&BackupInfo::incomplete("b1", 10));
    assert_eq!(worst(&p), Status::Warning);
    let p = judge_listing(&BackupInfo::unreadable("b2", "MANIFEST does not parse", 10));
    assert_eq!(worst(&p), Status::Failure);
    assert!(p[0].message.contains("b2: MANIFEST does not parse"));
    let complete = BackupInfo {
        state: BackupState::Complete,
        complete: true,
        ..BackupInfo::incomplete("b3", 10)
    };
    assert!(judge_listing(&complete).is_empty());
}

#[test]
fn freshness_allows_the_period_plus_the_usual_duration() {
    let day = Duration::from_secs(86_400);
    let min = Duration::from_secs(60);
    // (age of the newest good backup, fails)
    let cases = [
        (Some(Duration::from_secs(3600)), false),
        (Some(day), false),
        (Some(day + 30 * min), false),
        (Some(day + 31 * min), true),
        (None, true),
    ];
    for (age, fails) in cases {
        let got = judge_freshness("nightly", age, day, 30 * min);
        assert_eq!(got.is_some(), fails, "{age:?}");
        if let Some(p) = got {
            assert_eq!(p.status, Status::Failure);
            assert!(p.message.contains("nightly"), "{}", p.message);
        }
    }
    assert_eq!(worst(&[]), Status::Ok);
}

#[test]
fn segments_are_judged_by_their_format() {
    use crate::backup::binlog_archive::{encode_segment, SegmentName};
    use cairn_topo::CompressionEngine;
    let bytes = vec![7u8; 1000];
    let name = |compression, encrypted, end| SegmentName {
        number: 1,
        server_id: 101,
        file_index: 1,
        start: 0,
        end,
        first_ts: None,
        last_ts: None,
        first_gtid: None,
        last_gtid: None,
        compression,
        encrypted,
        moved_head: false,
    };
    let zst = encode_segment(&bytes, CompressionEngine::Zstd, None).unwrap();
    let lz4 = encode_segment(&bytes, CompressionEngine::Lz4, None).unwrap();
    let mut flipped = zst.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1; // the content checksum
    let age = b"age-encryption.org/v1\n-> X25519 abc\n".to_vec();
    // (segment, stored bytes, a word the problem holds, or None when good)
    let cases: Vec<(SegmentName, Vec<u8>, Option<&str>)> = vec![
        (
            name(CompressionEngine::Zstd, false, 1000),
            zst.clone(),
            None,
        ),
        (name(CompressionEngine::Lz4, false, 1000), lz4.clone(), None),
        (
            name(CompressionEngine::None, false, 1000),
            bytes.clone(),
            None,
        ),
        (
            name(CompressionEngine::Zstd, false, 999),
            zst.clone(),
            Some("its name says 999"),
        ),
        (
            name(CompressionEngine::Zstd, false, 1000),
            zst[..zst.len() - 3].to_vec(),
            Some("zstd"),
        ),
        (
            name(CompressionEngine::Zstd, false, 1000),
            flipped,
            Some("zstd"),
        ),
        (
            name(CompressionEngine::None, false, 1000),
            bytes[..10].to_vec(),
            Some("holds 10 bytes"),
        ),
        (name(CompressionEngine::Zstd, true, 1000), age.clone(), None),
        (
            name(CompressionEngine::Zstd, true, 1000),
            zst.clone(),
            Some("not an age file"),
        ),
        (
            name(CompressionEngine::Zstd, true, 1000),
            Vec::new(),
            Some("not an age file"),
        ),
    ];
    for (i, (n, stored, want)) in cases.into_iter().enumerate() {
        let got = segments::judge_segment(&n, &stored);
        match (want, &got) {
            (None, None) => {}
            (Some(w), Some(m)) => assert!(m.contains(w), "case {i}: {m}"),
            _ => panic!("case {i}: want {want:?}, got {got:?}"),
        }
    }
}
