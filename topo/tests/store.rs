//! The store against a real etcd: typed CAS outcomes, read-modify-write under
//! contention, unreadable records, leases on writes, connecting to a late etcd,
//! the compare-only `holds` check, and what an ambiguous write (applied, answer
//! lost) looks like to its caller.

mod common;

use std::time::{Duration, Instant};

use cairn_topo::testkit::EtcdServer;
use cairn_topo::{Topo, TopoError};
use common::{setup, within};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rec {
    n: u64,
    who: String,
}

fn rec(n: u64) -> Rec {
    Rec {
        n,
        who: "test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_outcomes_are_typed() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let k = "/test/global/jobs/j1";

        let v1 = topo.create(k, &rec(1), None).await.unwrap();
        assert!(matches!(
            topo.create(k, &rec(9), None).await,
            Err(TopoError::NodeExists(key)) if key == k
        ));
        let got = topo.get::<Rec>(k).await.unwrap().unwrap();
        assert_eq!((got.value.n, got.version), (1, v1));

        let v2 = topo.update(k, &rec(2), v1).await.unwrap();
        assert!(v2 > v1);
        assert!(matches!(
            topo.update(k, &rec(3), v1).await,
            Err(TopoError::BadVersion(_))
        ));
        assert_eq!(topo.get::<Rec>(k).await.unwrap().unwrap().value.n, 2);

        assert!(matches!(
            topo.delete(k, Some(v1)).await,
            Err(TopoError::BadVersion(_))
        ));
        topo.delete(k, Some(v2)).await.unwrap();
        assert!(matches!(
            topo.delete(k, Some(v2)).await,
            Err(TopoError::NoNode(_))
        ));
        assert!(matches!(
            topo.update(k, &rec(4), v2).await,
            Err(TopoError::NoNode(_))
        ));
        // Unconditional delete of a missing key is fine.
        topo.delete(k, None).await.unwrap();
        assert!(topo.get::<Rec>(k).await.unwrap().is_none());

        // Unconditional put creates and overwrites.
        let p1 = topo.put(k, &rec(5), None).await.unwrap();
        let p2 = topo.put(k, &rec(6), None).await.unwrap();
        assert!(p2 > p1);
        let (got, rev) = topo.get_with_revision::<Rec>(k).await.unwrap();
        assert_eq!(got.unwrap().version, p2);
        assert!(rev >= p2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_with_under_contention_loses_no_increment() {
    within(90, async {
        let (_etcd, topo) = setup().await;
        let k = "/test/global/counter";
        let per_task = 25u64;
        let mut tasks = Vec::new();
        for t in 0..2 {
            let topo = topo.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_task {
                    topo.update_with::<Rec, _>(k, |cur| {
                        let n = cur.map_or(0, |r| r.n);
                        Ok(Some(Rec {
                            n: n + 1,
                            who: format!("task{t}"),
                        }))
                    })
                    .await
                    .expect("update_with");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let got = topo.get::<Rec>(k).await.unwrap().unwrap();
        assert_eq!(got.value.n, 2 * per_task);

        // Leaving it unchanged returns the current record and writes nothing.
        let same = topo
            .update_with::<Rec, _>(k, |_| Ok(None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(same, got);
        assert!(topo
            .update_with::<Rec, _>("/test/global/absent", |_| Ok(None))
            .await
            .unwrap()
            .is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_record_is_bad_record_for_get_and_skipped_by_list() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let dir = "/test/global/schedules/";
        topo.create(&format!("{dir}a"), &rec(1), None)
            .await
            .unwrap();
        topo.create(&format!("{dir}c"), &rec(3), None)
            .await
            .unwrap();
        let bad = format!("{dir}b");
        let mut raw = topo.raw_client_for_tests();
        raw.put(bad.as_str(), vec![0xff, b'{', b'x'], None)
            .await
            .unwrap();
        raw.put(format!("{dir}d"), r#"{"n": "not a number"}"#, None)
            .await
            .unwrap();

        match topo.get::<Rec>(&bad).await {
            Err(TopoError::BadRecord { key, reason }) => {
                assert_eq!(key, bad);
                assert!(!reason.is_empty());
            }
            other => panic!("expected BadRecord, got {other:?}"),
        }
        let listed = topo.list::<Rec>(dir).await.unwrap();
        let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec![format!("{dir}a"), format!("{dir}c")]);
        assert_eq!(listed[1].1.value.n, 3);

        // A read-modify-write refuses to overwrite what it cannot read.
        assert!(matches!(
            topo.update_with::<Rec, _>(&bad, |_| Ok(Some(rec(0)))).await,
            Err(TopoError::BadRecord { .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_keys_go_with_their_lease() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let lease = topo.lease(10).await.unwrap();
        let k = "/test/zone1/tablets/zone1-0000000101/Health";
        let v = topo.create(k, &rec(1), Some(lease.id())).await.unwrap();
        assert!(topo.get::<Rec>(k).await.unwrap().is_some());
        // Updates keep the lease.
        topo.update(k, &rec(2), v).await.unwrap();
        topo.update_with::<Rec, _>(k, |r| Ok(r.map(|r| rec(r.n + 1))))
            .await
            .unwrap();
        lease.revoke().await.unwrap();
        assert!(topo.get::<Rec>(k).await.unwrap().is_none());

        // Writing on a lease that does not exist is a typed error.
        assert!(matches!(
            topo.put(k, &rec(2), Some(0x1234)).await,
            Err(TopoError::LeaseNotFound(0x1234))
        ));
        assert!(matches!(
            topo.create(k, &rec(2), Some(0x1234)).await,
            Err(TopoError::LeaseNotFound(0x1234))
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_checks_the_version_and_the_lease_together() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let lease = topo.lease(10).await.unwrap();
        let other = topo.lease(10).await.unwrap();
        let job = "/test/global/jobs/held";
        let health = "/test/zone1/tablets/zone1-0000000101/Health";
        let v = topo.create(job, &rec(1), None).await.unwrap();
        topo.put(health, &rec(1), Some(lease.id())).await.unwrap();
        assert!(topo.holds(job, v, health, lease.id()).await.unwrap());
        // Health on another lease, or gone: not held.
        assert!(!topo.holds(job, v, health, other.id()).await.unwrap());
        // The job changed since it was read: not held.
        let v2 = topo.update(job, &rec(2), v).await.unwrap();
        assert!(!topo.holds(job, v, health, lease.id()).await.unwrap());
        assert!(topo.holds(job, v2, health, lease.id()).await.unwrap());
        // The lease revoked (Health deleted with it): not held.
        let id = lease.id();
        lease.revoke().await.unwrap();
        assert!(!topo.holds(job, v2, health, id).await.unwrap());
        // Nothing was written by the checks.
        assert_eq!(topo.get::<Rec>(job).await.unwrap().unwrap().version, v2);
    })
    .await;
}

/// The fault the agent tests use: the write lands, its answer is replaced by a
/// timeout, and the unary retry then sees its own write as a lost race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_write_lands_and_reports_a_lost_race() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let k = "/test/global/jobs/ambiguous-1";
        cairn_topo::fault::set_ambiguous_writes("ambiguous-1", 1);
        assert!(matches!(
            topo.create(k, &rec(1), None).await,
            Err(TopoError::NodeExists(_))
        ));
        let got = topo.get::<Rec>(k).await.unwrap().unwrap();
        assert_eq!(got.value, rec(1), "the create landed");
        cairn_topo::fault::set_ambiguous_writes("ambiguous-1", 1);
        assert!(matches!(
            topo.update(k, &rec(2), got.version).await,
            Err(TopoError::BadVersion(_))
        ));
        assert_eq!(topo.get::<Rec>(k).await.unwrap().unwrap().value, rec(2));
        // Spent: the next write is plain.
        let v = topo.get::<Rec>(k).await.unwrap().unwrap().version;
        topo.update(k, &rec(3), v).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_waits_for_a_late_etcd_and_gives_up_when_told() {
    within(60, async {
        common::init_tracing();
        let mut etcd = EtcdServer::start().await.unwrap();
        let cfg = etcd.config("/test");
        etcd.stop();

        let t = Instant::now();
        let err = Topo::connect(&cfg, Some(Duration::from_secs(1)))
            .await
            .err()
            .expect("no etcd: connect must give up");
        assert!(matches!(err, TopoError::Timeout(_)), "{err}");
        assert!(err.to_string().contains(&etcd.endpoint()), "{err}");
        assert!(t.elapsed() < Duration::from_secs(8));

        let pending = tokio::spawn(async move { Topo::connect(&cfg, None).await });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!pending.is_finished());
        etcd.start_again().await.unwrap();
        let topo = pending.await.unwrap().unwrap();
        topo.put("/test/x", &rec(1), None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_time_out_on_a_frozen_etcd() {
    within(60, async {
        let (etcd, topo) = setup().await;
        topo.put("/test/x", &rec(1), None).await.unwrap();
        etcd.freeze().unwrap();
        let t = Instant::now();
        let r = topo.get::<Rec>("/test/x").await;
        etcd.thaw().unwrap();
        assert!(r.as_ref().is_err_and(|e| e.is_transient()), "{r:?}");
        // Bounded: a few attempts of the 3s request deadline, not forever.
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        common::eventually(10, "etcd answers after thaw", || async {
            topo.get::<Rec>("/test/x").await.is_ok()
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_with_user_and_password_file() {
    within(60, async {
        let (etcd, topo) = setup().await;
        let mut raw = topo.raw_client_for_tests();
        raw.user_add("root", "rootpw", None).await.unwrap();
        raw.user_grant_role("root", "root").await.unwrap();
        raw.user_add("cairn", "s3cret", None).await.unwrap();
        raw.role_add("cairn").await.unwrap();
        raw.role_grant_permission(
            "cairn",
            etcd_client::Permission::read_write("/test/").with_prefix(),
        )
        .await
        .unwrap();
        raw.user_grant_role("cairn", "cairn").await.unwrap();
        raw.auth_enable().await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let mut cfg = etcd.config("/test");
        cfg.user = Some("cairn".into());
        cfg.password_file = Some(pw.clone());
        let authed = Topo::connect(&cfg, Some(Duration::from_secs(5)))
            .await
            .unwrap();
        authed.put("/test/global/x", &rec(1), None).await.unwrap();
        assert_eq!(
            authed
                .get::<Rec>("/test/global/x")
                .await
                .unwrap()
                .unwrap()
                .value,
            rec(1)
        );

        // A wrong password is an answer, not a reason to retry forever.
        std::fs::write(&pw, "wrong\n").unwrap();
        let t = Instant::now();
        let err = Topo::connect(&cfg, None).await.err().expect("bad password");
        assert!(!err.is_transient(), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_lists_are_paged_and_complete() {
    within(120, async {
        let (_etcd, topo) = setup().await;
        let mut client = topo.raw_client_for_tests();
        let n = 2 * cairn_topo::store::LIST_PAGE as usize + 321;
        let ops: Vec<etcd_client::TxnOp> = (0..n)
            .map(|i| {
                etcd_client::TxnOp::put(
                    format!("/test/big/{i:06}"),
                    format!("{{\"n\":{i},\"who\":\"x\"}}"),
                    None,
                )
            })
            .collect();
        for chunk in ops.chunks(100) {
            client
                .txn(etcd_client::Txn::new().and_then(chunk.to_vec()))
                .await
                .unwrap();
        }
        // A key just past the prefix must not be listed.
        topo.put("/test/bigger", &rec(0), None).await.unwrap();
        let (raw, rev) = topo.list_raw("/test/big/").await.unwrap();
        assert_eq!(raw.len(), n);
        assert!(rev > 0);
        assert!(raw.windows(2).all(|w| w[0].0 < w[1].0), "sorted by key");
        let typed = topo.list::<Rec>("/test/big/").await.unwrap();
        assert_eq!(typed.len(), n);
        assert_eq!(typed[n - 1].1.value.n, (n - 1) as u64);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_if_absent_and_delete_if_exists_are_idempotent() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let k = "/test/global/jobs/idem";
        assert!(topo.create_if_absent(k, &1, None).await.unwrap());
        assert!(!topo.create_if_absent(k, &2, None).await.unwrap());
        assert_eq!(topo.get::<i32>(k).await.unwrap().unwrap().value, 1);
        assert!(topo.delete_if_exists(k).await.unwrap());
        assert!(!topo.delete_if_exists(k).await.unwrap());
        assert!(topo.get::<i32>(k).await.unwrap().is_none());

        // On a lease: the created key goes with it.
        let lease = topo.lease(10).await.unwrap();
        assert!(topo
            .create_if_absent(k, &3, Some(lease.id()))
            .await
            .unwrap());
        lease.revoke().await.unwrap();
        assert!(topo.get::<i32>(k).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_streams_the_database_and_its_hash() {
    within(60, async {
        let (_etcd, topo) = setup().await;
        let rev = topo.put("/test/global/jobs/s", &1, None).await.unwrap();
        let mut stream = topo.snapshot().await.unwrap();
        let mut bytes = Vec::new();
        let mut expected = None;
        while let Some(chunk) = stream.next_chunk().await.unwrap() {
            if expected.is_none() && !chunk.is_empty() {
                expected = Some(chunk.len() as u64 + stream.remaining_bytes());
            }
            bytes.extend_from_slice(&chunk);
        }
        assert!(stream.revision() >= rev, "{} < {rev}", stream.revision());
        // The database, then its sha256 (32 bytes).
        assert!(bytes.len() > 32);
        let db = expected.expect("a non-empty chunk") as usize;
        assert_eq!(bytes.len(), db + 32);
    })
    .await;
}
