//! The fenced writer of the elected coordinator: [`Topo::fenced`] gives a
//! [`Fenced`] whose writes have exactly the signatures of the unfenced ones on
//! [`Topo`], and each happens only while the [`Fence`] holds (`Fenced` error
//! otherwise), so a deposed leader cannot write even before it notices.
//!
//! Calls [`crate::store`] (the writes under an optional fence).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::Versioned;
use crate::conn::Topo;
use crate::error::Result;
use crate::txn::Fence;

/// Writes that happen only while a fence holds. Cheap: borrows the store and
/// holds a copy of the fence.
#[derive(Clone)]
pub struct Fenced<'a> {
    /// The store written to.
    topo: &'a Topo,
    /// The condition every write carries (`None`: a plain writer, see
    /// [`Topo::writer`]).
    fence: Option<Fence>,
}

impl Topo {
    /// A writer whose writes carry `fence` (see [`Fenced`]).
    pub fn fenced(&self, fence: &Fence) -> Fenced<'_> {
        Fenced {
            topo: self,
            fence: Some(fence.clone()),
        }
    }

    /// A writer fenced when `fence` is given and plain otherwise, for code shared
    /// by the leader (fenced) and the admin commands (not).
    pub fn writer(&self, fence: Option<&Fence>) -> Fenced<'_> {
        Fenced {
            topo: self,
            fence: fence.cloned(),
        }
    }
}

impl<'a> Fenced<'a> {
    /// The store this writer writes to.
    pub fn topo(&self) -> &'a Topo {
        self.topo
    }

    /// The fence every write carries, if any.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// [`Topo::create`] while the fence holds.
    pub async fn create<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64> {
        self.topo
            .create_in(self.fence.as_ref(), key, value, lease)
            .await
    }

    /// [`Topo::update`] while the fence holds.
    pub async fn update<T: Serialize>(&self, key: &str, value: &T, version: i64) -> Result<i64> {
        self.topo
            .update_in(self.fence.as_ref(), key, value, version)
            .await
    }

    /// [`Topo::put`] while the fence holds.
    pub async fn put<T: Serialize>(&self, key: &str, value: &T, lease: Option<i64>) -> Result<i64> {
        self.topo
            .put_in(self.fence.as_ref(), key, value, lease)
            .await
    }

    /// [`Topo::delete`] while the fence holds.
    pub async fn delete(&self, key: &str, version: Option<i64>) -> Result<()> {
        self.topo.delete_in(self.fence.as_ref(), key, version).await
    }

    /// [`Topo::create_if_absent`] while the fence holds.
    pub async fn create_if_absent<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<bool> {
        self.topo
            .create_if_absent_in(self.fence.as_ref(), key, value, lease)
            .await
    }

    /// [`Topo::delete_if_exists`] while the fence holds.
    pub async fn delete_if_exists(&self, key: &str) -> Result<bool> {
        self.topo
            .delete_if_exists_in(self.fence.as_ref(), key)
            .await
    }

    /// [`Topo::update_with`] whose write happens only while the fence holds.
    pub async fn update_with<T, F>(&self, key: &str, f: F) -> Result<Option<Versioned<T>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Result<Option<T>>,
    {
        self.topo.update_with_in(key, f, self.fence.as_ref()).await
    }
}
