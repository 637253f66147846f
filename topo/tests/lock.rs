//! Shard locks and leader election against a real etcd: waiting, release on
//! unlock, revoke and expiry, and fencing of a deposed leader.

mod common;

use std::time::Duration;

use cairn_topo::TopoError;
use common::{setup, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_locker_waits_until_the_first_unlocks() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let first = topo
            .lock_shard("ks", "-80", "backup of zone1-101", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(first.is_held());
        assert!(first
            .key()
            .starts_with("/test/global/keyspaces/ks/shards/-80/locks/"));

        let t2 = topo.clone();
        let second = tokio::spawn(async move {
            t2.lock_shard("ks", "-80", "restore of zone1-102", Duration::from_secs(20))
                .await
        });
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!second.is_finished(), "second locker must wait");

        // A third one with a short timeout gives up, names the holder, and leaves
        // no key behind.
        let err = topo
            .lock_shard("ks", "-80", "third", Duration::from_millis(500))
            .await
            .err()
            .expect("third locker times out");
        assert!(matches!(err, TopoError::Timeout(_)), "{err}");
        assert!(err.to_string().contains("backup of zone1-101"), "{err}");

        // Another shard is independent.
        let other = topo
            .lock_shard("ks", "80-", "other", Duration::from_secs(2))
            .await
            .unwrap();
        other.unlock().await.unwrap();

        first.unlock().await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("second acquires after unlock")
            .unwrap()
            .unwrap();
        let (keys, _) = topo
            .list_raw("/test/global/keyspaces/ks/shards/-80/locks/")
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "only the holder's key: {keys:?}");
        assert_eq!(keys[0].0, second.key());
        second.unlock().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_is_released_when_the_holders_lease_is_revoked_or_expires() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        // Revoked behind the holder's back (an operator, or etcd expiring it).
        let first = topo
            .lock_shard("ks", "0", "first", Duration::from_secs(5))
            .await
            .unwrap();
        let mut raw = topo.raw_client_for_tests();
        raw.lease_revoke(first.lease_id()).await.unwrap();
        let second = topo
            .lock_shard_with_ttl("ks", "0", "second", Duration::from_secs(5), 2)
            .await
            .unwrap();

        // A holder that dies (no unlock, no keepalive) releases by TTL.
        drop(second);
        let t = tokio::time::Instant::now();
        let third = topo
            .lock_shard("ks", "0", "third", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(
            t.elapsed() > Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        third.unlock().await.unwrap();
        let fourth = topo
            .lock_shard("ks", "0", "fourth", Duration::from_secs(2))
            .await
            .unwrap();
        fourth.unlock().await.unwrap();
        drop(first);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_fences_a_deposed_leader() {
    within(90, async {
        let (_etcd, topo) = setup().await;
        let prefix = topo.keys().election();
        let job = "/test/global/jobs/j1";
        assert_eq!(topo.leader(&prefix).await.unwrap(), None);

        let lease1 = topo.lease(10).await.unwrap();
        let lease2 = topo.lease(10).await.unwrap();
        let one = topo
            .campaign(&prefix, "coord-1", lease1.id())
            .await
            .unwrap();
        assert_eq!(
            topo.leader(&prefix).await.unwrap().as_deref(),
            Some("coord-1")
        );
        assert!(one.is_held().await.unwrap());

        let (t2, p2, id2) = (topo.clone(), prefix.clone(), lease2.id());
        let two = tokio::spawn(async move { t2.campaign(&p2, "coord-2", id2).await });
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!two.is_finished(), "the second candidate must wait");

        let old_fence = one.fence();
        let v = topo.fenced(&old_fence).create(job, &1, None).await.unwrap();
        let v = topo.fenced(&old_fence).update(job, &2, v).await.unwrap();
        // The fence and the version are checked separately.
        assert!(matches!(
            topo.fenced(&old_fence).update(job, &3, v - 1).await,
            Err(TopoError::BadVersion(_))
        ));

        one.resign().await.unwrap();
        let two = tokio::time::timeout(Duration::from_secs(5), two)
            .await
            .expect("second candidate leads after resign")
            .unwrap()
            .unwrap();
        assert_eq!(
            topo.leader(&prefix).await.unwrap().as_deref(),
            Some("coord-2")
        );

        // The deposed leader's writes are refused, whatever they are.
        assert!(matches!(
            topo.fenced(&old_fence).update(job, &4, v).await,
            Err(TopoError::Fenced(_))
        ));
        assert!(matches!(
            topo.fenced(&old_fence).put(job, &4, None).await,
            Err(TopoError::Fenced(_))
        ));
        assert!(matches!(
            topo.fenced(&old_fence).delete(job, None).await,
            Err(TopoError::Fenced(_))
        ));
        assert!(matches!(
            topo.fenced(&old_fence)
                .update_with::<i32, _>(job, |n| Ok(n.map(|n| n + 1)))
                .await,
            Err(TopoError::Fenced(_))
        ));
        assert_eq!(topo.get::<i32>(job).await.unwrap().unwrap().value, 2);
        let fence2 = two.fence();
        let got = topo
            .fenced(&fence2)
            .update_with::<i32, _>(job, |n| Ok(n.map(|n| n + 10)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.value, 12);

        // The first candidate queues again behind the new leader.
        let (t1, p1, id1) = (topo.clone(), prefix.clone(), lease1.id());
        let again = tokio::spawn(async move { t1.campaign(&p1, "coord-1", id1).await });

        // The leader loses its lease: leadership ends, its fence fails.
        let lost = {
            let two = two.clone();
            tokio::spawn(async move { two.lost().await })
        };
        lease2.revoke().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), lost)
            .await
            .expect("loss is reported")
            .unwrap()
            .unwrap();
        assert!(!two.is_held().await.unwrap());
        assert!(matches!(
            topo.fenced(&fence2).put(job, &5, None).await,
            Err(TopoError::Fenced(_))
        ));
        let again = tokio::time::timeout(Duration::from_secs(5), again)
            .await
            .expect("first candidate leads again")
            .unwrap()
            .unwrap();
        assert_eq!(
            topo.leader(&prefix).await.unwrap().as_deref(),
            Some("coord-1")
        );
        topo.fenced(&again.fence())
            .put(job, &6, None)
            .await
            .unwrap();

        // A campaign on a lease that is gone fails at once.
        let gone = lease1.id();
        lease1.revoke().await.unwrap();
        assert!(matches!(
            topo.campaign(&prefix, "coord-1", gone).await,
            Err(TopoError::LeaseNotFound(id)) if id == gone
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_campaign_leaves_no_key_behind() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let prefix = topo.keys().election();
        let lease1 = topo.lease(10).await.unwrap();
        let lease2 = topo.lease(10).await.unwrap();
        let one = topo
            .campaign(&prefix, "coord-1", lease1.id())
            .await
            .unwrap();
        let (t2, p2, id2) = (topo.clone(), prefix.clone(), lease2.id());
        let two = tokio::spawn(async move { t2.campaign(&p2, "coord-2", id2).await });
        common::eventually(5, "second candidate queued", || async {
            topo.list_raw(&format!("{prefix}/")).await.unwrap().0.len() == 2
        })
        .await;
        two.abort();
        // lease2 is kept alive, so only the abandoned campaign's own cleanup can
        // remove the key; 20s leaves room for a loaded 2-core machine.
        common::eventually(20, "abandoned candidate key removed", || async {
            topo.list_raw(&format!("{prefix}/")).await.unwrap().0.len() == 1
        })
        .await;
        one.resign().await.unwrap();
        assert_eq!(topo.leader(&prefix).await.unwrap(), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_writes_are_fenced_too() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let prefix = topo.keys().election();
        let key = "/test/global/jobs/j2";
        let lease = topo.lease(10).await.unwrap();
        let leader = topo.campaign(&prefix, "coord-1", lease.id()).await.unwrap();
        let fence = leader.fence();

        let fenced = topo.fenced(&fence);
        assert!(fenced.create_if_absent(key, &1, None).await.unwrap());
        assert!(!fenced.create_if_absent(key, &2, None).await.unwrap());
        assert_eq!(topo.get::<i32>(key).await.unwrap().unwrap().value, 1);
        assert!(fenced.delete_if_exists(key).await.unwrap());
        assert!(!fenced.delete_if_exists(key).await.unwrap());
        assert!(topo.get::<i32>(key).await.unwrap().is_none());

        topo.put(key, &3, None).await.unwrap();
        leader.resign().await.unwrap();
        assert!(matches!(
            topo.fenced(&fence)
                .create_if_absent("/test/global/jobs/j3", &1, None)
                .await,
            Err(TopoError::Fenced(_))
        ));
        assert!(matches!(
            topo.fenced(&fence).delete_if_exists(key).await,
            Err(TopoError::Fenced(_))
        ));
        assert_eq!(topo.get::<i32>(key).await.unwrap().unwrap().value, 3);
    })
    .await;
}
