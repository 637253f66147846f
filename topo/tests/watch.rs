//! Watches against a real etcd: no event lost across a restart or a freeze, and a
//! compaction gap reported with the full current state.

mod common;

use std::time::Duration;

use cairn_topo::{WatchEvent, WatchStream};
use common::{setup, within};

/// The next event, failing the test if none comes within `secs`.
async fn next_within(w: &mut WatchStream, secs: u64) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(secs), w.next())
        .await
        .unwrap_or_else(|_| panic!("no watch event within {secs}s"))
        .expect("watch stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_puts_and_deletes_from_a_read_revision() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let dir = "/test/global/jobs/";
        topo.put(&format!("{dir}old"), &1, None).await.unwrap();
        let (listed, rev) = topo.list_with_revision::<i32>(dir).await.unwrap();
        assert_eq!(listed.len(), 1);
        // A change between the list and the watch start is not missed.
        let v = topo.put(&format!("{dir}a"), &2, None).await.unwrap();
        let mut w = topo.watch(dir, true, rev + 1);
        topo.delete(&format!("{dir}old"), None).await.unwrap();
        // Not under the prefix: not seen.
        topo.put("/test/global/other", &3, None).await.unwrap();

        assert_eq!(
            next_within(&mut w, 5).await,
            WatchEvent::Put {
                key: format!("{dir}a"),
                value: b"2".to_vec(),
                mod_revision: v
            }
        );
        match next_within(&mut w, 5).await {
            WatchEvent::Delete { key, mod_revision } => {
                assert_eq!(key, format!("{dir}old"));
                assert!(mod_revision > v);
            }
            other => panic!("expected delete, got {other:?}"),
        }
        assert!(tokio::time::timeout(Duration::from_millis(300), w.next())
            .await
            .is_err());

        // A single-key watch from now.
        let mut one = topo.watch(&format!("{dir}a"), false, 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        topo.put(&format!("{dir}ab"), &4, None).await.unwrap();
        let v = topo.put(&format!("{dir}a"), &5, None).await.unwrap();
        assert_eq!(
            next_within(&mut one, 5).await,
            WatchEvent::Put {
                key: format!("{dir}a"),
                value: b"5".to_vec(),
                mod_revision: v
            }
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_loses_no_event_across_an_etcd_restart() {
    within(90, async {
        let (mut etcd, topo) = setup().await;
        let dir = "/test/global/schedules/";
        let mut w = topo.watch(dir, true, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;

        let mut written = Vec::new();
        for i in 0..10 {
            let key = format!("{dir}s{i:02}");
            let rev = topo.put(&key, &i, None).await.unwrap();
            written.push((key, rev));
        }
        // Read a few before the crash, leave the rest buffered or in flight.
        for (key, rev) in &written[..3] {
            match next_within(&mut w, 5).await {
                WatchEvent::Put {
                    key: k,
                    mod_revision,
                    ..
                } => assert_eq!((&k, mod_revision), (key, *rev)),
                other => panic!("{other:?}"),
            }
        }

        etcd.stop();
        tokio::time::sleep(Duration::from_millis(500)).await;
        etcd.start_again().await.unwrap();
        // Written right after the restart, while the watch is still reconnecting.
        for i in 10..20 {
            let key = format!("{dir}s{i:02}");
            let rev = topo.put(&key, &i, None).await.unwrap();
            written.push((key, rev));
        }
        let del = format!("{dir}s00");
        topo.delete(&del, None).await.unwrap();

        for (key, rev) in &written[3..] {
            match next_within(&mut w, 20).await {
                WatchEvent::Put {
                    key: k,
                    mod_revision,
                    ..
                } => assert_eq!((&k, mod_revision), (key, *rev)),
                other => panic!("expected put of {key}, got {other:?}"),
            }
        }
        match next_within(&mut w, 10).await {
            WatchEvent::Delete { key, .. } => assert_eq!(key, del),
            other => panic!("{other:?}"),
        }
        // Nothing duplicated.
        assert!(tokio::time::timeout(Duration::from_millis(500), w.next())
            .await
            .is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_recovers_after_a_freeze() {
    within(90, async {
        let (etcd, topo) = setup().await;
        let k = "/test/global/keyspaces/ks/Keyspace";
        let mut w = topo.watch(k, false, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r1 = topo.put(k, &1, None).await.unwrap();
        assert!(matches!(
            next_within(&mut w, 5).await,
            WatchEvent::Put { mod_revision, .. } if mod_revision == r1
        ));

        etcd.freeze().unwrap();
        // Longer than the client's HTTP/2 keepalive: the connection is dropped.
        tokio::time::sleep(Duration::from_secs(5)).await;
        etcd.thaw().unwrap();

        let r2 = topo.put(k, &2, None).await.unwrap();
        assert!(matches!(
            next_within(&mut w, 20).await,
            WatchEvent::Put { mod_revision, .. } if mod_revision == r2
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_reports_a_resync() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let dir = "/test/global/jobs/";
        let first = topo.put(&format!("{dir}a"), &0, None).await.unwrap();
        for i in 1..20 {
            topo.put(&format!("{dir}a"), &i, None).await.unwrap();
        }
        let b = topo.put(&format!("{dir}b"), &100, None).await.unwrap();
        topo.put(&format!("{dir}c"), &200, None).await.unwrap();
        topo.delete(&format!("{dir}c"), None).await.unwrap();
        let last_a = topo.put(&format!("{dir}a"), &20, None).await.unwrap();
        let (_, now) = topo.list_with_revision::<i32>(dir).await.unwrap();
        let mut raw = topo.raw_client_for_tests();
        raw.compact(now, None).await.unwrap();

        let mut w = topo.watch(dir, true, first + 1);
        match next_within(&mut w, 10).await {
            WatchEvent::Resync { revision, kvs } => {
                assert!(revision >= now);
                assert_eq!(
                    kvs,
                    vec![
                        (format!("{dir}a"), b"20".to_vec(), last_a),
                        (format!("{dir}b"), b"100".to_vec(), b),
                    ]
                );
            }
            other => panic!("expected a resync, got {other:?}"),
        }
        // And it goes on from there.
        let r = topo.put(&format!("{dir}d"), &1, None).await.unwrap();
        assert!(matches!(
            next_within(&mut w, 5).await,
            WatchEvent::Put { mod_revision, .. } if mod_revision == r
        ));

        // A single-key watch reports an absent key as an empty resync.
        let mut one = topo.watch(&format!("{dir}c"), false, first + 1);
        assert!(matches!(
            next_within(&mut one, 10).await,
            WatchEvent::Resync { kvs, .. } if kvs.is_empty()
        ));
    })
    .await;
}
