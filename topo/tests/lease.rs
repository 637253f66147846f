//! Leases against a real etcd: kept alive past their TTL, noticed lost when etcd
//! freezes, re-granted after it thaws.

mod common;

use std::time::Duration;

use common::{eventually, setup, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_kept_alive_past_its_ttl() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let lease = topo.lease(2).await.unwrap();
        let k = "/test/zone1/tablets/zone1-0000000101/Health";
        topo.put(k, &"serving", Some(lease.id())).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let st = lease.state();
        assert!(st.alive);
        assert_eq!(st.generation, 0);
        assert!(topo.get::<String>(k).await.unwrap().is_some());

        // Dropping the handle stops the keepalive: the key expires with the TTL.
        drop(lease);
        eventually(6, "key expires after the handle is dropped", || async {
            topo.get::<String>(k).await.unwrap().is_none()
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_lost_while_etcd_is_frozen_is_regranted_after_thaw() {
    within(90, async {
        let (etcd, topo) = setup().await;
        let lease = topo.lease(2).await.unwrap();
        let mut states = lease.subscribe();
        let old = lease.state();
        assert!(old.alive);

        etcd.freeze().unwrap();
        let t = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), states.wait_for(|s| !s.alive))
            .await
            .expect("loss noticed while frozen")
            .unwrap();
        // Noticed within about one TTL, while etcd is still frozen.
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        assert!(!lease.is_alive());
        // Let etcd's own clock run past the TTL too.
        tokio::time::sleep(Duration::from_secs(1)).await;
        etcd.thaw().unwrap();

        let new = *tokio::time::timeout(
            Duration::from_secs(20),
            states.wait_for(|s| s.alive && s.generation == old.generation + 1),
        )
        .await
        .expect("re-granted after thaw")
        .unwrap();
        assert_ne!(new.id, old.id);
        assert_eq!(lease.id(), new.id);

        // The new lease works; the old one is gone.
        let k = "/test/zone1/tablets/zone1-0000000101/Health";
        topo.put(k, &"serving", Some(new.id)).await.unwrap();
        let raw = topo.raw_client_for_tests();
        eventually(10, "old lease expired or revoked", || {
            let mut raw = raw.clone();
            async move {
                raw.lease_time_to_live(old.id, None)
                    .await
                    .is_ok_and(|r| r.ttl() <= 0)
            }
        })
        .await;
        lease.revoke().await.unwrap();
        assert!(topo.get::<String>(k).await.unwrap().is_none());
    })
    .await;
}
