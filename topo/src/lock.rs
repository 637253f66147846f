//! Shard locks and leader election, both built from plain etcd transactions.
//!
//! Both work the same way (as Vitess and etcd's `concurrency` package do): each
//! contender creates its own key under a directory, attached to a lease; the
//! contender whose key has the lowest create revision holds the lock (or leads);
//! the others watch the key just ahead of theirs until it is deleted. A holder
//! that dies loses its key when its lease expires, which releases the next one.
//!
//! A leader's writes are fenced: [`Fence`] carries the compare "my election key
//! still has my create revision", which the store adds to the write's
//! transaction, so a deposed leader cannot write even if it has not noticed yet.
//! The fence itself is a plain condition of [`crate::txn`], re-exported here.
//!
//! Calls [`crate::lease`], [`crate::watch`], the store and [`crate::fenced`]
//! writes, [`crate::conn`] and [`crate::retry`].

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::conn::{key_string, Topo};
use crate::error::{Result, TopoError};
use crate::lease::LeaseHandle;
use crate::retry::map_lease_error;
pub use crate::txn::Fence;
use crate::watch::WatchEvent;

/// TTL of a shard lock's lease: how long a crashed holder blocks the shard.
pub const SHARD_LOCK_TTL_SECS: i64 = 30;

/// What a shard lock key holds, for an operator reading it with etcdctl.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockInfo {
    /// Who holds or waits for the lock and why.
    holder: String,
    /// When it was requested (RFC 3339, UTC).
    since: String,
}

/// A held shard lock. [`ShardLock::unlock`] releases it at once; dropping it
/// stops the keepalive, and etcd releases it when the TTL runs out.
pub struct ShardLock {
    /// The lock key under the shard's `locks/` directory.
    key: String,
    /// The lock's own lease (not re-granted: a lost lease is a lost lock).
    lease: LeaseHandle,
    /// `KEYSPACE/SHARD`, for messages.
    shard: String,
}

impl ShardLock {
    /// The lock key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease the lock hangs on.
    pub fn lease_id(&self) -> i64 {
        self.lease.id()
    }

    /// False once the lease was lost: the lock may be held by someone else now.
    pub fn is_held(&self) -> bool {
        self.lease.is_alive()
    }

    /// Releases the lock by revoking its lease (deleting the key).
    pub async fn unlock(self) -> Result<()> {
        debug!("unlocking shard {}", self.shard);
        self.lease.revoke().await
    }
}

/// A won election. Keep the lease alive (and watch its state) to keep leading.
#[derive(Clone)]
pub struct Leadership {
    /// The store, for checks and resign.
    topo: Topo,
    /// Our key under the election prefix.
    key: String,
    /// Its create revision: our term.
    create_revision: i64,
    /// The lease the key hangs on.
    lease_id: i64,
    /// Our candidate id (the value of the key).
    candidate_id: String,
}

impl Leadership {
    /// The condition to attach to every write made as leader.
    pub fn fence(&self) -> Fence {
        Fence::new(self.key.clone(), self.create_revision)
    }

    /// Our election key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Our create revision (the term).
    pub fn create_revision(&self) -> i64 {
        self.create_revision
    }

    /// The lease the leadership hangs on.
    pub fn lease_id(&self) -> i64 {
        self.lease_id
    }

    /// Our candidate id.
    pub fn candidate_id(&self) -> &str {
        &self.candidate_id
    }

    /// Asks etcd whether our key is still there with our create revision.
    pub async fn is_held(&self) -> Result<bool> {
        Ok(self.held_at().await?.0)
    }

    /// Whether we still lead, and the store revision that was read at.
    async fn held_at(&self) -> Result<(bool, i64)> {
        let resp = self
            .topo
            .call("get", |mut c| {
                let key = self.key.clone();
                async move { Ok(c.get(key, None).await?) }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let held = resp
            .kvs()
            .first()
            .is_some_and(|kv| kv.create_revision() == self.create_revision);
        Ok((held, rev))
    }

    /// Resolves when our key is gone (lease expired or revoked, resigned, deleted
    /// by an operator). Errors only if etcd cannot be read at the start.
    pub async fn lost(&self) -> Result<()> {
        let (held, rev) = self.held_at().await?;
        if !held {
            return Ok(());
        }
        let mut w = self.topo.watch(&self.key, false, rev + 1);
        while let Some(ev) = w.next().await {
            match ev {
                WatchEvent::Delete { .. } => return Ok(()),
                WatchEvent::Resync { kvs, .. } if kvs.is_empty() => return Ok(()),
                // A put keeps the key (and its create revision) unless it was
                // deleted and re-created in between; ask.
                WatchEvent::Resync { .. } | WatchEvent::Put { .. } => {
                    if !self.is_held().await? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives up leadership: deletes our key if it is still ours. The lease stays
    /// (it may carry other keys); the next candidate takes over at once.
    pub async fn resign(self) -> Result<()> {
        match self
            .topo
            .fenced(&self.fence())
            .delete(&self.key, None)
            .await
        {
            Ok(()) | Err(TopoError::Fenced(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Deletes a contender key if its acquisition is abandoned (the future dropped,
/// a timeout), so it does not win later behind its owner's back.
struct KeyGuard {
    /// The store to delete with.
    topo: Topo,
    /// The key to delete; `None` once acquisition succeeded.
    key: Option<String>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let topo = self.topo.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = topo.delete(&key, None).await {
                    warn!("cannot remove abandoned contender key {key}: {e}");
                }
            });
        }
    }
}

impl Topo {
    /// Locks a shard (waiting up to `timeout` for the holders ahead of us), on a
    /// lease of [`SHARD_LOCK_TTL_SECS`].
    pub async fn lock_shard(
        &self,
        ks: &str,
        shard: &str,
        holder_description: &str,
        timeout: Duration,
    ) -> Result<ShardLock> {
        self.lock_shard_with_ttl(ks, shard, holder_description, timeout, SHARD_LOCK_TTL_SECS)
            .await
    }

    /// [`Topo::lock_shard`] with a chosen lease TTL.
    pub async fn lock_shard_with_ttl(
        &self,
        ks: &str,
        shard: &str,
        holder_description: &str,
        timeout: Duration,
        ttl_secs: i64,
    ) -> Result<ShardLock> {
        let deadline = Instant::now() + timeout;
        let dir = self.keys().shard_locks_prefix(ks, shard);
        let lease = self.lease_with(ttl_secs, false).await?;
        let key = format!("{dir}{:016x}", lease.id());
        let info = LockInfo {
            holder: holder_description.to_string(),
            since: chrono::Utc::now().to_rfc3339(),
        };
        let value = serde_json::to_vec(&info).map_err(|e| TopoError::BadRecord {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let (my_rev, _) = self.join_queue(&key, value, lease.id()).await?;
        let waited = self
            .wait_for_turn(&dir, &key, my_rev, lease.id(), Some(deadline))
            .await;
        match waited {
            Ok(()) => Ok(ShardLock {
                key,
                lease,
                shard: format!("{ks}/{shard}"),
            }),
            Err(e) => {
                // Our key must not stay queued: revoke its lease.
                if let Err(re) = lease.revoke().await {
                    warn!("cannot release lock key {key} after failing to lock: {re}");
                }
                Err(match e {
                    TopoError::Timeout(who) => TopoError::Timeout(format!(
                        "cannot lock shard {ks}/{shard} within {timeout:?}: held by {who}"
                    )),
                    other => other,
                })
            }
        }
    }

    /// Campaigns under `election_prefix` with `candidate_id` as the value, on
    /// `lease_id` (the caller's lease, kept alive by its [`LeaseHandle`]).
    /// Blocks until elected; drop the future to stop campaigning (the key is
    /// then removed). A lease that is gone is `LeaseNotFound`.
    pub async fn campaign(
        &self,
        election_prefix: &str,
        candidate_id: &str,
        lease_id: i64,
    ) -> Result<Leadership> {
        let dir = format!("{}/", election_prefix.trim_end_matches('/'));
        let key = format!("{dir}{lease_id:016x}");
        let value = serde_json::to_vec(candidate_id).map_err(|e| TopoError::BadRecord {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        // Armed before the key is written: a campaign abandoned (its future
        // dropped) after etcd took the key but before the write's answer was
        // polled would otherwise leave the key queued for as long as the lease.
        let mut guard = KeyGuard {
            topo: self.clone(),
            key: Some(key.clone()),
        };
        let (my_rev, fresh) = self.join_queue(&key, value.clone(), lease_id).await?;
        if !fresh {
            // Re-campaign on the same lease: keep our place, refresh the value.
            self.put_raw(&key, value, lease_id).await?;
        }
        self.wait_for_turn(&dir, &key, my_rev, lease_id, None)
            .await?;
        guard.key = None;
        Ok(Leadership {
            topo: self.clone(),
            key,
            create_revision: my_rev,
            lease_id,
            candidate_id: candidate_id.to_string(),
        })
    }

    /// The current leader's candidate id under `election_prefix`, if any.
    pub async fn leader(&self, election_prefix: &str) -> Result<Option<String>> {
        let dir = format!("{}/", election_prefix.trim_end_matches('/'));
        let resp = self
            .call("get", |mut c| {
                let dir = dir.clone();
                async move {
                    Ok(c.get(
                        dir,
                        Some(
                            GetOptions::new()
                                .with_prefix()
                                .with_sort(SortTarget::Create, SortOrder::Ascend)
                                .with_limit(1),
                        ),
                    )
                    .await?)
                }
            })
            .await?;
        Ok(resp.kvs().first().map(|kv| candidate_value(kv.value())))
    }

    /// Creates our contender key if absent. Returns its create revision and
    /// whether we created it (false: it was already there, same lease).
    async fn join_queue(&self, key: &str, value: Vec<u8>, lease_id: i64) -> Result<(i64, bool)> {
        let txn = Txn::new()
            .when(vec![Compare::version(key, CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease_id)),
            )])
            .or_else(vec![TxnOp::get(key, None)]);
        let resp = self
            .call("txn", |mut c| {
                let txn = txn.clone();
                async move {
                    c.txn(txn)
                        .await
                        .map_err(|e| map_lease_error(e, Some(lease_id)))
                }
            })
            .await?;
        if resp.succeeded() {
            let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            return Ok((rev, true));
        }
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                if let Some(kv) = g.kvs().first() {
                    return Ok((kv.create_revision(), false));
                }
            }
        }
        // Deleted between compare and read is impossible in one txn; treat as a race.
        Err(TopoError::BadVersion(key.to_string()))
    }

    /// Plain put of raw bytes on a lease.
    async fn put_raw(&self, key: &str, value: Vec<u8>, lease_id: i64) -> Result<()> {
        self.call("put", |mut c| {
            let (key, value) = (key.to_string(), value.clone());
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease_id)))
                    .await
                    .map_err(|e| map_lease_error(e, Some(lease_id)))
            }
        })
        .await
        .map(|_| ())
    }

    /// Waits until no key under `dir` has a create revision below `my_rev`.
    /// Fails with `LeaseNotFound` if our own key vanished meanwhile, and with
    /// `Timeout(<who blocks us>)` at the deadline.
    async fn wait_for_turn(
        &self,
        dir: &str,
        my_key: &str,
        my_rev: i64,
        lease_id: i64,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let mut blocker_desc = String::from("another holder");
        loop {
            // One read of both: our key still there, and the nearest key ahead of us.
            let txn = Txn::new().and_then(vec![
                TxnOp::get(my_key, None),
                TxnOp::get(
                    dir,
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_max_create_revision(my_rev - 1)
                            .with_sort(SortTarget::Create, SortOrder::Descend)
                            .with_limit(1),
                    ),
                ),
                // The current holder, to name in a timeout error.
                TxnOp::get(
                    dir,
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_sort(SortTarget::Create, SortOrder::Ascend)
                            .with_limit(1),
                    ),
                ),
            ]);
            let step = async {
                let resp = self
                    .call("txn", |mut c| {
                        let txn = txn.clone();
                        async move { Ok(c.txn(txn).await?) }
                    })
                    .await?;
                let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                let reads = resp.op_responses();
                let kv_of = |i: usize| match reads.get(i) {
                    Some(TxnOpResponse::Get(g)) => g.kvs().first().cloned(),
                    _ => None,
                };
                let mine = kv_of(0);
                if mine.is_none_or(|kv| kv.create_revision() != my_rev) {
                    return Err(TopoError::LeaseNotFound(lease_id));
                }
                let Some(blocker) = kv_of(1) else {
                    return Ok(None);
                };
                let holder = kv_of(2).map_or_else(
                    || key_string(&blocker),
                    |h| format!("{} ({})", key_string(&h), describe_holder(h.value())),
                );
                Ok(Some((key_string(&blocker), holder, rev)))
            };
            let found = match deadline {
                Some(d) => match tokio::time::timeout_at(d, step).await {
                    Ok(r) => r?,
                    Err(_) => return Err(TopoError::Timeout(blocker_desc)),
                },
                None => step.await?,
            };
            let Some((blocker, holder, rev)) = found else {
                return Ok(());
            };
            debug!("{my_key} waits for {blocker}; held by {holder}");
            blocker_desc = holder;
            let gone = self.wait_deleted(&blocker, rev + 1);
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, gone).await.is_err() {
                        return Err(TopoError::Timeout(blocker_desc));
                    }
                }
                None => gone.await,
            }
        }
    }

    /// Resolves once `key` is deleted at or after `from_rev` (or seen absent
    /// after a compaction gap).
    async fn wait_deleted(&self, key: &str, from_rev: i64) {
        let mut w = self.watch(key, false, from_rev);
        while let Some(ev) = w.next().await {
            match ev {
                WatchEvent::Delete { .. } => return,
                WatchEvent::Resync { kvs, .. } if kvs.is_empty() => return,
                _ => {}
            }
        }
    }
}

/// The candidate id stored in an election key (a JSON string; raw text is
/// accepted too, so a key written by hand still names its owner).
fn candidate_value(bytes: &[u8]) -> String {
    serde_json::from_slice::<String>(bytes)
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned())
}

/// Who a lock or election key belongs to: a lock's holder description, or a
/// candidate id.
fn describe_holder(bytes: &[u8]) -> String {
    match serde_json::from_slice::<LockInfo>(bytes) {
        Ok(info) => format!("{}, since {}", info.holder, info.since),
        Err(_) => candidate_value(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_value_reads_json_or_text() {
        assert_eq!(candidate_value(br#""coord-1""#), "coord-1");
        assert_eq!(candidate_value(b"coord-2"), "coord-2");
        assert_eq!(
            describe_holder(br#"{"holder":"backup","since":"t"}"#),
            "backup, since t"
        );
        assert_eq!(describe_holder(br#""coord-1""#), "coord-1");
    }
}
