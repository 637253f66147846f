//! The typed store API on [`Topo`]: get and list (raw and typed, paged, at one
//! revision), create-if-absent, update-if-version, put, delete, read-modify-write,
//! and the idempotent `create_if_absent`/`delete_if_exists`. Every write is one
//! conditional transaction ([`crate::txn`]); the fenced variants of the same
//! writes are [`crate::fenced`]'s.
//!
//! A retried write is ambiguous when the first attempt timed out after etcd had
//! applied it: the retry then reports `NodeExists`/`BadVersion` for a write that
//! landed. Callers of conditional writes already handle those by re-reading.
//!
//! Calls [`crate::conn`], [`crate::txn`], [`crate::codec`] and [`crate::retry`].

use std::time::Duration;

use etcd_client::GetOptions;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

pub use crate::codec::Versioned;
use crate::codec::{decode, decode_versioned, encode};
pub use crate::conn::{Topo, TopoConfig};
use crate::error::{Result, TopoError};
use crate::retry::{contention_pauses, UPDATE_WITH_ATTEMPTS};
use crate::txn::{Cond, Fence, Write};

/// Keys per page of a list.
pub const LIST_PAGE: i64 = 2000;

/// The end of the key range covering every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the keyspace.
    vec![0]
}

impl Topo {
    /// Raw get of one key: (value, mod_revision) and the store revision it was read at.
    pub async fn get_raw(&self, key: &str) -> Result<(Option<(Vec<u8>, i64)>, i64)> {
        let mut resp = self
            .call("get", |mut c| {
                let key = key.to_string();
                async move { Ok(c.get(key, None).await?) }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let kv = resp.take_kvs().into_iter().next().map(|kv| {
            let m = kv.mod_revision();
            (kv.into_key_value().1, m)
        });
        Ok((kv, rev))
    }

    /// Raw list of a prefix sorted by key: (key, value, mod_revision) and the store
    /// revision it was read at (watch from revision + 1 to miss nothing). Read in
    /// pages of [`LIST_PAGE`] keys, all at the first page's revision, so a large
    /// topology (10,000 tablets) neither exceeds the gRPC message limit nor is
    /// read inconsistently.
    pub async fn list_raw(&self, prefix: &str) -> Result<(Vec<(String, Vec<u8>, i64)>, i64)> {
        let end = prefix_end(prefix.as_bytes());
        let mut out = Vec::new();
        let mut from: Vec<u8> = prefix.as_bytes().to_vec();
        let mut rev = 0i64;
        loop {
            let mut resp = self
                .call("list", |mut c| {
                    let (from, end) = (from.clone(), end.clone());
                    async move {
                        let mut opts = GetOptions::new().with_range(end).with_limit(LIST_PAGE);
                        if rev > 0 {
                            opts = opts.with_revision(rev);
                        }
                        Ok(c.get(from, Some(opts)).await?)
                    }
                })
                .await?;
            if rev == 0 {
                rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            let last = kvs.last().map(|kv| kv.key().to_vec());
            for kv in kvs {
                let m = kv.mod_revision();
                let (k, v) = kv.into_key_value();
                out.push((String::from_utf8_lossy(&k).into_owned(), v, m));
            }
            match (more, last) {
                (true, Some(mut last)) => {
                    last.push(0);
                    from = last;
                }
                _ => break,
            }
        }
        Ok((out, rev))
    }

    /// Typed get; `Ok(None)` when absent; `BadRecord` when it does not parse.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>> {
        Ok(self.get_with_revision(key).await?.0)
    }

    /// Typed get plus the store revision it was read at: watch from revision + 1
    /// to see every later change.
    pub async fn get_with_revision<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<(Option<Versioned<T>>, i64)> {
        let (kv, rev) = self.get_raw(key).await?;
        let rec = match kv {
            None => None,
            Some((bytes, version)) => Some(decode_versioned(key, &bytes, version)?),
        };
        Ok((rec, rev))
    }

    /// Typed list of a prefix, sorted by key. Records that do not parse are logged
    /// (warn, with the key) and skipped.
    pub async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Versioned<T>)>> {
        Ok(self.list_with_revision(prefix).await?.0)
    }

    /// [`Topo::list`] plus the store revision it was read at.
    pub async fn list_with_revision<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<(Vec<(String, Versioned<T>)>, i64)> {
        let (kvs, rev) = self.list_raw(prefix).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for (key, bytes, version) in kvs {
            match decode::<T>(&key, &bytes) {
                Ok(value) => out.push((key, Versioned { value, version })),
                Err(e) => warn!("skipping unreadable topo record: {e}"),
            }
        }
        Ok((out, rev))
    }

    /// Creates the key if absent (`NodeExists` otherwise); with a lease if given.
    pub async fn create<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64> {
        self.create_in(None, key, value, lease).await
    }

    /// Updates the key if its version is still `version` (`BadVersion` if changed,
    /// `NoNode` if gone). Returns the new version. The key keeps its lease, if
    /// any. Version 0 means "only if absent".
    pub async fn update<T: Serialize>(&self, key: &str, value: &T, version: i64) -> Result<i64> {
        self.update_in(None, key, value, version).await
    }

    /// Unconditional put, optionally attached to a lease (without one, the key
    /// is detached from any lease it had, as etcd's put does).
    pub async fn put<T: Serialize>(&self, key: &str, value: &T, lease: Option<i64>) -> Result<i64> {
        self.put_in(None, key, value, lease).await
    }

    /// Deletes the key; with `Some(version)` only if unchanged (`BadVersion`/`NoNode`).
    /// With `None` the delete is unconditional and a missing key is `Ok` (the
    /// caller wanted it gone, and it is).
    pub async fn delete(&self, key: &str, version: Option<i64>) -> Result<()> {
        self.delete_in(None, key, version).await
    }

    /// Creates the key unless a record is already there: `true` when this call
    /// created it, `false` when one existed (never an error for that). With a
    /// lease if given. A retried create whose first attempt landed reports
    /// `false`.
    pub async fn create_if_absent<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<bool> {
        self.create_if_absent_in(None, key, value, lease).await
    }

    /// Deletes the key if it exists: `true` when this call deleted it, `false`
    /// when it was absent.
    pub async fn delete_if_exists(&self, key: &str) -> Result<bool> {
        self.delete_if_exists_in(None, key).await
    }

    /// Read-modify-write with retry on `BadVersion`. `f` gets the current value
    /// (`None` if absent) and returns the new one, or `None` to leave it unchanged.
    /// Returns the record as it stands afterwards: the one written, or the current
    /// one when `f` left it unchanged (`None` if it is absent). A current record
    /// that does not parse is `BadRecord` (never overwritten blindly).
    pub async fn update_with<T, F>(&self, key: &str, f: F) -> Result<Option<Versioned<T>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Result<Option<T>>,
    {
        self.update_with_in(key, f, None).await
    }

    /// [`Topo::create`] under an optional fence.
    pub(crate) async fn create_in<T: Serialize>(
        &self,
        fence: Option<&Fence>,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64> {
        let bytes = encode(key, value)?;
        self.cas(key, Cond::Absent, Write::Put(bytes, lease), fence)
            .await
    }

    /// [`Topo::update`] under an optional fence.
    pub(crate) async fn update_in<T: Serialize>(
        &self,
        fence: Option<&Fence>,
        key: &str,
        value: &T,
        version: i64,
    ) -> Result<i64> {
        let bytes = encode(key, value)?;
        self.cas(key, Cond::ModRev(version), Write::Put(bytes, None), fence)
            .await
    }

    /// [`Topo::put`] under an optional fence.
    pub(crate) async fn put_in<T: Serialize>(
        &self,
        fence: Option<&Fence>,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64> {
        let bytes = encode(key, value)?;
        self.cas(key, Cond::Any, Write::Put(bytes, lease), fence)
            .await
    }

    /// [`Topo::delete`] under an optional fence.
    pub(crate) async fn delete_in(
        &self,
        fence: Option<&Fence>,
        key: &str,
        version: Option<i64>,
    ) -> Result<()> {
        let cond = version.map_or(Cond::Any, Cond::ModRev);
        self.cas(key, cond, Write::Delete, fence).await.map(|_| ())
    }

    /// [`Topo::create_if_absent`] under an optional fence.
    pub(crate) async fn create_if_absent_in<T: Serialize>(
        &self,
        fence: Option<&Fence>,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<bool> {
        match self.create_in(fence, key, value, lease).await {
            Ok(_) => Ok(true),
            Err(TopoError::NodeExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// [`Topo::delete_if_exists`] under an optional fence.
    pub(crate) async fn delete_if_exists_in(
        &self,
        fence: Option<&Fence>,
        key: &str,
    ) -> Result<bool> {
        match self.cas(key, Cond::Present, Write::Delete, fence).await {
            Ok(_) => Ok(true),
            Err(TopoError::NoNode(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// [`Topo::update_with`] under an optional fence.
    pub(crate) async fn update_with_in<T, F>(
        &self,
        key: &str,
        mut f: F,
        fence: Option<&Fence>,
    ) -> Result<Option<Versioned<T>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Result<Option<T>>,
    {
        let mut pauses = contention_pauses();
        for _ in 0..UPDATE_WITH_ATTEMPTS {
            let (current, _) = self.get_raw(key).await?;
            let (decoded, cond) = match &current {
                None => (None, Cond::Absent),
                Some((bytes, version)) => (Some(decode::<T>(key, bytes)?), Cond::ModRev(*version)),
            };
            let Some(new) = f(decoded)? else {
                return match current {
                    None => Ok(None),
                    Some((bytes, version)) => Ok(Some(decode_versioned(key, &bytes, version)?)),
                };
            };
            let bytes = encode(key, &new)?;
            match self.cas(key, cond, Write::Put(bytes, None), fence).await {
                Ok(version) => {
                    return Ok(Some(Versioned {
                        value: new,
                        version,
                    }))
                }
                Err(TopoError::BadVersion(_) | TopoError::NodeExists(_) | TopoError::NoNode(_)) => {
                    tokio::time::sleep(pauses.next().unwrap_or(Duration::from_millis(50))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(TopoError::BadVersion(format!(
            "{key} (still contended after {UPDATE_WITH_ATTEMPTS} read-modify-write attempts)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
