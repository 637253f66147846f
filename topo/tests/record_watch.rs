//! Typed watches against a real etcd: records decoded, a value that does not
//! parse surfaced as an error item, list-and-watch missing nothing, and a
//! compaction gap reported as a typed resync.

mod common;

use std::time::Duration;

use cairn_topo::{RecordEvent, RecordWatch, TopoError, Versioned};
use common::{setup, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rec {
    n: i32,
}

/// The next event, failing the test if none comes within `secs`.
async fn next_within<T: serde::de::DeserializeOwned>(
    w: &mut RecordWatch<T>,
    secs: u64,
) -> RecordEvent<T> {
    tokio::time::timeout(Duration::from_secs(secs), w.next())
        .await
        .unwrap_or_else(|_| panic!("no watch event within {secs}s"))
        .expect("watch stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_watch_decodes_records_and_surfaces_garbage() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let dir = "/test/global/schedules/";
        topo.put(&format!("{dir}a"), &Rec { n: 1 }, None)
            .await
            .unwrap();
        let (listed, mut w) = topo.list_and_watch::<Rec>(dir).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, format!("{dir}a"));
        assert_eq!(listed[0].1.value, Rec { n: 1 });

        let v = topo
            .put(&format!("{dir}b"), &Rec { n: 2 }, None)
            .await
            .unwrap();
        match next_within(&mut w, 5).await {
            RecordEvent::Put { key, record } => {
                assert_eq!(key, format!("{dir}b"));
                assert_eq!(
                    record.unwrap(),
                    Versioned {
                        value: Rec { n: 2 },
                        version: v
                    }
                );
            }
            other => panic!("expected a put, got {other:?}"),
        }

        // A value that does not parse is an error item, and the watch goes on.
        let mut raw = topo.raw_client_for_tests();
        raw.put(format!("{dir}bad"), "{garbage", None)
            .await
            .unwrap();
        match next_within(&mut w, 5).await {
            RecordEvent::Put {
                key,
                record: Err(TopoError::BadRecord { key: bad, .. }),
            } => {
                assert_eq!(key, format!("{dir}bad"));
                assert_eq!(bad, key);
            }
            other => panic!("expected a bad record, got {other:?}"),
        }

        topo.delete(&format!("{dir}a"), None).await.unwrap();
        match next_within(&mut w, 5).await {
            RecordEvent::Delete { key, revision } => {
                assert_eq!(key, format!("{dir}a"));
                assert!(revision > v);
            }
            other => panic!("expected a delete, got {other:?}"),
        }
        // Outside the prefix: not seen.
        topo.put("/test/global/jobs/x", &Rec { n: 3 }, None)
            .await
            .unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), w.next())
            .await
            .is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_watch_misses_no_change_after_the_list() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let dir = "/test/global/jobs/";
        let (listed, mut w) = topo.list_and_watch::<i32>(dir).await.unwrap();
        assert!(listed.is_empty());
        // Written right after the list, before the watch stream is up.
        let mut revs = Vec::new();
        for i in 0..5 {
            revs.push(topo.put(&format!("{dir}j{i}"), &i, None).await.unwrap());
        }
        for (i, rev) in revs.into_iter().enumerate() {
            match next_within(&mut w, 5).await {
                RecordEvent::Put { key, record } => {
                    assert_eq!(key, format!("{dir}j{i}"));
                    assert_eq!(
                        record.unwrap(),
                        Versioned {
                            value: i as i32,
                            version: rev
                        }
                    );
                }
                other => panic!("expected a put, got {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_gap_is_a_typed_resync() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let dir = "/test/global/jobs/";
        let first = topo.put(&format!("{dir}a"), &0, None).await.unwrap();
        let a = topo.put(&format!("{dir}a"), &1, None).await.unwrap();
        let mut raw = topo.raw_client_for_tests();
        let bad = raw
            .put(format!("{dir}b"), "not json", None)
            .await
            .unwrap()
            .header()
            .map_or(0, |h| h.revision());
        raw.compact(bad, None).await.unwrap();

        let mut w = topo.watch_records::<i32>(dir, first + 1);
        match next_within(&mut w, 10).await {
            RecordEvent::Resync { revision, records } => {
                assert!(revision >= bad);
                assert_eq!(records.len(), 2);
                assert_eq!(records[0].0, format!("{dir}a"));
                assert_eq!(
                    records[0].1.as_ref().unwrap(),
                    &Versioned {
                        value: 1,
                        version: a
                    }
                );
                assert_eq!(records[1].0, format!("{dir}b"));
                assert!(matches!(records[1].1, Err(TopoError::BadRecord { .. })));
            }
            other => panic!("expected a resync, got {other:?}"),
        }
    })
    .await;
}
