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
    /// The condition every write carries.
    fence: Fence,
}

impl Topo {
    /// A writer whose writes carry `fence` (see [`Fenced`]).
    pub fn fenced(&self, fence: &Fence) -> Fenced<'_> {
        Fenced {
            topo: self,
            fence: fence.clone(),
        }
    }

    /// deprecated: use `Topo::fenced`.
    pub async fn create_fenced<T: Serialize>(
        &self,
        fence: &Fence,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64> {
        self.fenced(fence).create(key, value, lease).await
    }

    /// deprecated: use `Topo::fenced`.
    pub async fn update_fenced<T: Serialize>(
        &self,
        fence: &Fence,
        key: &str,
        value: &T,
        version: i64,
    ) -> Result<i64> {
        self.fenced(fence).update(key, value, version).await
    }

    /// deprecated: use `Topo::fenced`.
    pub async fn put_fenced<T: Serialize>(
        &self,
        fence: &Fence,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64> {
        self.fenced(fence).put(key, value, lease).await
    }

    /// deprecated: use `Topo::fenced`.
    pub async fn delete_fenced(
        &self,
        fence: &Fence,
        key: &str,
        version: Option<i64>,
    ) -> Result<()> {
        self.fenced(fence).delete(key, version).await
    }

    /// deprecated: use `Topo::fenced`.
    pub async fn update_with_fenced<T, F>(
        &self,
        fence: &Fence,
        key: &str,
        f: F,
    ) -> Result<Option<Versioned<T>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Result<Option<T>>,
    {
        self.fenced(fence).update_with(key, f).await
    }
}

impl Fenced<'_> {
    /// The fence every write carries.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// [`Topo::create`] while the fence holds.
    pub async fn create<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64> {
        self.topo
            .create_in(Some(&self.fence), key, value, lease)
            .await
    }

    /// [`Topo::update`] while the fence holds.
    pub async fn update<T: Serialize>(&self, key: &str, value: &T, version: i64) -> Result<i64> {
        self.topo
            .update_in(Some(&self.fence), key, value, version)
            .await
    }

    /// [`Topo::put`] while the fence holds.
    pub async fn put<T: Serialize>(&self, key: &str, value: &T, lease: Option<i64>) -> Result<i64> {
        self.topo.put_in(Some(&self.fence), key, value, lease).await
    }

    /// [`Topo::delete`] while the fence holds.
    pub async fn delete(&self, key: &str, version: Option<i64>) -> Result<()> {
        self.topo.delete_in(Some(&self.fence), key, version).await
    }

    /// [`Topo::create_if_absent`] while the fence holds.
    pub async fn create_if_absent<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<bool> {
        self.topo
            .create_if_absent_in(Some(&self.fence), key, value, lease)
            .await
    }

    /// [`Topo::delete_if_exists`] while the fence holds.
    pub async fn delete_if_exists(&self, key: &str) -> Result<bool> {
        self.topo.delete_if_exists_in(Some(&self.fence), key).await
    }

    /// [`Topo::update_with`] whose write happens only while the fence holds.
    pub async fn update_with<T, F>(&self, key: &str, f: F) -> Result<Option<Versioned<T>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Result<Option<T>>,
    {
        self.topo.update_with_in(key, f, Some(&self.fence)).await
    }
}
