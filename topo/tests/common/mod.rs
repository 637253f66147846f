//! Shared by the integration tests: a real etcd per test, a connected store, and
//! a deadline around every test body so a hung etcd fails the test instead of
//! hanging the run.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use cairn_topo::testkit::EtcdServer;
use cairn_topo::Topo;

/// Logs of the code under test, shown for failing tests (`RUST_LOG` overrides).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("cairn_topo=debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Starts etcd and connects a store rooted at `/test`.
pub async fn setup() -> (EtcdServer, Topo) {
    init_tracing();
    let etcd = EtcdServer::start().await.expect("start etcd");
    let topo = Topo::connect(&etcd.config("/test"), Some(Duration::from_secs(10)))
        .await
        .expect("connect");
    (etcd, topo)
}

/// Runs a test body under a deadline.
pub async fn within<F: Future<Output = ()>>(secs: u64, body: F) {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {secs}s"));
}

/// Polls `cond` every 50ms until it holds or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not within {secs}s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
