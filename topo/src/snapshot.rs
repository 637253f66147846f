//! etcd's maintenance snapshot as a stream of byte chunks, so callers outside
//! this crate never need the raw client. [`Topo::snapshot`] asks etcd for the
//! store revision, opens the snapshot stream (each under the request deadline)
//! and returns a [`SnapshotStream`]; [`SnapshotStream::next_chunk`] yields the
//! bytes in order. The stream is passed through untouched: etcd's layout (the
//! database, then its sha256 as the last 32 bytes) is the caller's to verify.
//!
//! Calls [`crate::conn`] (the client, the deadline).

use etcd_client::SnapshotStreaming;

use crate::conn::Topo;
use crate::error::{Result, TopoError};

/// An open etcd snapshot. Read it with [`SnapshotStream::next_chunk`] until
/// `Ok(None)`; no deadline is applied per chunk (wrap the call in one).
pub struct SnapshotStream {
    /// etcd's stream.
    stream: SnapshotStreaming,
    /// Store revision the snapshot holds at least (see [`SnapshotStream::revision`]).
    revision: i64,
    /// No chunk read yet.
    first: bool,
    /// `remaining_bytes` of the last chunk read.
    remaining: u64,
}

impl Topo {
    /// Opens etcd's maintenance snapshot. A status call first records the store
    /// revision; both calls run under the request deadline (a timeout is
    /// `Timeout`, naming which call did not answer).
    pub async fn snapshot(&self) -> Result<SnapshotStream> {
        let mut client = self.client();
        let deadline = self.request_timeout();
        let status = tokio::time::timeout(deadline, client.status())
            .await
            .map_err(|_| TopoError::Timeout(format!("status: no answer within {deadline:?}")))??;
        let revision = status.header().map_or(0, |h| h.revision());
        let stream = tokio::time::timeout(deadline, client.snapshot())
            .await
            .map_err(|_| TopoError::Timeout(format!("no stream within {deadline:?}")))??;
        Ok(SnapshotStream {
            stream,
            revision,
            first: true,
            remaining: 0,
        })
    }
}

impl SnapshotStream {
    /// The next chunk of the snapshot, in order; `Ok(None)` once etcd has sent
    /// everything.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(msg) = self.stream.message().await? else {
            return Ok(None);
        };
        if self.first {
            self.first = false;
            if let Some(r) = msg.header().map(|h| h.revision()).filter(|r| *r > 0) {
                self.revision = r;
            }
        }
        self.remaining = msg.remaining_bytes();
        Ok(Some(msg.blob().to_vec()))
    }

    /// The store revision the snapshot holds every change up to (at least): the
    /// snapshot's own response header once the first chunk is read, if it
    /// carries one, else the status call's made just before opening.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// What etcd said remains to be sent after the last chunk read (etcd's
    /// `remaining_bytes`; with the first chunk's length it tells the database
    /// size, which finds a stream that ends early).
    pub fn remaining_bytes(&self) -> u64 {
        self.remaining
    }
}
