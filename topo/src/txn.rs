//! The conditional write: one etcd transaction guarding a put or delete with a
//! condition on the key ([`Cond`]) and, for the elected coordinator, a [`Fence`]
//! (a plain condition: "the leader's election key still has its create
//! revision"). When the guard fails, the same transaction reads the key and the
//! fence key, so the error names the real cause (`Fenced`, `NodeExists`,
//! `NoNode`, `BadVersion`).
//!
//! Versions are etcd `mod_revision`s: a record read at version `v` can be
//! replaced only while its `mod_revision` is still `v`.
//!
//! [`Topo::holds`] is the read-only sibling: a compare-only transaction that says
//! whether a key is unchanged and another still hangs on a lease.
//!
//! Calls [`crate::conn`] (the retried unary call), [`crate::retry`] and, with the
//! `fault-injection` feature, `fault` (writes made ambiguous).

use etcd_client::{
    Compare, CompareOp, DeleteOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use crate::conn::Topo;
use crate::error::{Result, TopoError};
use crate::retry::map_lease_error;

/// The condition under which a leader's writes may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The leader's election key.
    key: String,
    /// Its create revision when leadership was won; a re-created key (a new
    /// term) has another one, so an old fence fails.
    create_revision: i64,
}

impl Fence {
    /// A fence on `key` having been created at `create_revision`.
    pub fn new(key: impl Into<String>, create_revision: i64) -> Self {
        Self {
            key: key.into(),
            create_revision,
        }
    }

    /// The key whose existence the fence requires.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The create revision the key must still have.
    pub fn create_revision(&self) -> i64 {
        self.create_revision
    }

    /// The compares to add to a transaction.
    pub fn compares(&self) -> Vec<Compare> {
        vec![Compare::create_revision(
            self.key.as_str(),
            CompareOp::Equal,
            self.create_revision,
        )]
    }
}

/// What must hold of the target key for a conditional write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cond {
    /// The key does not exist.
    Absent,
    /// The key's mod_revision is this (0 = absent).
    ModRev(i64),
    /// The key exists (any version).
    Present,
    /// No condition on the key (a fence may still apply).
    Any,
}

/// The write of a conditional transaction.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    /// Put this value, attached to the lease if given.
    Put(Vec<u8>, Option<i64>),
    /// Delete the key.
    Delete,
}

impl Topo {
    /// One conditional transaction: the fence's compares and the key condition
    /// guard the write; when they fail, the else branch reads the key and the
    /// fence key in the same revision, so the error names the real cause.
    ///
    /// The transaction's future is boxed: it is large, and every write (and the
    /// callers' futures around it) would otherwise carry it inline.
    pub(crate) async fn cas(
        &self,
        key: &str,
        cond: Cond,
        write: Write,
        fence: Option<&Fence>,
    ) -> Result<i64> {
        Box::pin(self.cas_unboxed(key, cond, write, fence)).await
    }

    /// [`Topo::cas`], inline.
    async fn cas_unboxed(
        &self,
        key: &str,
        cond: Cond,
        write: Write,
        fence: Option<&Fence>,
    ) -> Result<i64> {
        let mut compares: Vec<Compare> = fence.map(|f| f.compares()).unwrap_or_default();
        match cond {
            Cond::Absent => compares.push(Compare::version(key, CompareOp::Equal, 0)),
            Cond::ModRev(v) => compares.push(Compare::mod_revision(key, CompareOp::Equal, v)),
            Cond::Present => compares.push(Compare::version(key, CompareOp::Greater, 0)),
            Cond::Any => {}
        }
        let lease = match &write {
            Write::Put(_, l) => *l,
            Write::Delete => None,
        };
        let op = match write {
            Write::Put(bytes, lease) => {
                let opts = match (lease, cond) {
                    (Some(l), _) => Some(PutOptions::new().with_lease(l)),
                    // Replacing a record read at a version keeps its lease (a
                    // tablet's Health stays ephemeral through updates).
                    (None, Cond::ModRev(v)) if v > 0 => Some(PutOptions::new().with_ignore_lease()),
                    (None, _) => None,
                };
                TxnOp::put(key, bytes, opts)
            }
            Write::Delete => TxnOp::delete(key, None::<DeleteOptions>),
        };
        let mut otherwise = vec![TxnOp::get(key, None)];
        if let Some(f) = fence {
            otherwise.push(TxnOp::get(f.key(), None));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(vec![op])
            .or_else(otherwise);
        let resp: TxnResponse = self
            .call("txn", |mut c| {
                let txn = txn.clone();
                #[cfg(feature = "fault-injection")]
                let key = key.to_string();
                async move {
                    let resp = c.txn(txn).await.map_err(|e| map_lease_error(e, lease))?;
                    #[cfg(feature = "fault-injection")]
                    if resp.succeeded() && crate::fault::take_ambiguous(&key) {
                        return Err(TopoError::Timeout(
                            "txn: injected fault: applied, then no answer".into(),
                        ));
                    }
                    Ok(resp)
                }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        if resp.succeeded() {
            return Ok(revision);
        }
        let reads = resp.op_responses();
        let first_kv = |i: usize| -> Option<KeyValue> {
            match reads.get(i) {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().cloned(),
                _ => None,
            }
        };
        if let Some(f) = fence {
            let held = first_kv(1).is_some_and(|kv| kv.create_revision() == f.create_revision());
            if !held {
                return Err(TopoError::Fenced(key.to_string()));
            }
        }
        let current = first_kv(0);
        Err(match (cond, current) {
            (Cond::Absent, _) => TopoError::NodeExists(key.to_string()),
            (Cond::ModRev(_), None) => TopoError::NoNode(key.to_string()),
            (Cond::ModRev(_), Some(_)) => TopoError::BadVersion(key.to_string()),
            (Cond::Present, None) => TopoError::NoNode(key.to_string()),
            // Only the fence could have failed, and it was seen holding: it changed
            // between compare and read, which one transaction rules out; report a
            // lost race so the caller re-reads.
            (Cond::Any | Cond::Present, _) => TopoError::BadVersion(key.to_string()),
        })
    }
}

impl Topo {
    /// Whether, at one revision, `key` still has the version (`mod_revision`)
    /// `version` and `lease_key` exists attached to lease `lease`. Writes nothing:
    /// a compare-only transaction, so every write that could change the answer is
    /// ordered after it. What a tablet checks immediately before an irreversible
    /// step (the swap of an in-place restore): its job unchanged since it read it,
    /// and its Health still on its lease, as etcd sees them.
    pub async fn holds(
        &self,
        key: &str,
        version: i64,
        lease_key: &str,
        lease: i64,
    ) -> Result<bool> {
        let txn = Txn::new().when(vec![
            Compare::mod_revision(key, CompareOp::Equal, version),
            Compare::lease(lease_key, CompareOp::Equal, lease),
        ]);
        let resp: TxnResponse = self
            .call("txn", |mut c| {
                let txn = txn.clone();
                async move { Ok(c.txn(txn).await?) }
            })
            .await?;
        Ok(resp.succeeded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_compares_the_create_revision() {
        let f = Fence::new("/e/1", 42);
        assert_eq!(f.key(), "/e/1");
        assert_eq!(f.create_revision(), 42);
        assert_eq!(f.compares().len(), 1);
    }
}
