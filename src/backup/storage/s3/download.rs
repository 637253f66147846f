//! Reading one stored object for the blocking restore pipeline: [`S3Reader`], a
//! `Read` fed by an async task that fetches consecutive ranges of the object with
//! several ranged GETs in flight and yields their bytes in order, so the
//! pipeline's hash-as-you-read verification works unchanged. Memory per object:
//! the ranges in flight plus one queued and one being read.
//!
//! May call: `object_store`, the storage module's errors.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::error_chain;

/// Bytes of one ranged GET.
pub const RANGE_SIZE: u64 = 8 << 20;
/// Ranged GETs in flight per object being read.
pub const RANGES_IN_FLIGHT: usize = 3;

/// The ranges that cover an object of `size` bytes, in order. Pure.
pub fn ranges(size: u64, range_size: u64) -> impl Iterator<Item = Range<u64>> {
    let step = range_size.max(1);
    (0..size.div_ceil(step)).map(move |i| i * step..((i + 1) * step).min(size))
}

/// An object being read (see the module doc). Dropping it stops the fetches.
pub struct S3Reader {
    /// Fetched ranges, in order; an `Err` ends the object.
    rx: mpsc::Receiver<Result<Bytes, String>>,
    /// The range being read.
    cur: Bytes,
    /// Bytes handed out so far, and the object's size.
    read: u64,
    size: u64,
    /// `s3://bucket/key`, for messages.
    url: String,
    /// The fetching task, stopped on drop.
    task: JoinHandle<()>,
}

impl S3Reader {
    /// Starts fetching `key` (of `size` bytes) on `runtime`.
    pub(super) fn start(
        store: Arc<dyn ObjectStore>,
        runtime: &tokio::runtime::Handle,
        key: Path,
        size: u64,
        url: String,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1);
        let task = runtime.spawn(async move {
            let mut fetches = futures::stream::iter(ranges(size, RANGE_SIZE))
                .map(|r| {
                    let (store, key) = (store.clone(), key.clone());
                    async move {
                        let want = r.end - r.start;
                        let b = store
                            .get_range(&key, r.clone())
                            .await
                            .map_err(|e| error_chain(&e))?;
                        if b.len() as u64 != want {
                            return Err(format!(
                                "range {}..{} returned {} bytes (the object changed?)",
                                r.start,
                                r.end,
                                b.len()
                            ));
                        }
                        Ok(b)
                    }
                })
                .buffered(RANGES_IN_FLIGHT);
            while let Some(r) = fetches.next().await {
                let failed = r.is_err();
                if tx.send(r).await.is_err() || failed {
                    return;
                }
            }
        });
        Self {
            rx,
            cur: Bytes::new(),
            read: 0,
            size,
            url,
            task,
        }
    }
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.cur.is_empty() {
            if self.read >= self.size {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(io::Error::other(format!("reading {}: {e}", self.url))),
                None => {
                    return Err(io::Error::other(format!(
                        "reading {}: the download stopped after {} of {} bytes",
                        self.url, self.read, self.size
                    )))
                }
            }
        }
        let n = out.len().min(self.cur.len());
        self.cur.copy_to_slice(&mut out[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

impl Drop for S3Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_object_in_order() {
        let r = |size, step| ranges(size, step).collect::<Vec<_>>();
        assert!(r(0, 8).is_empty());
        assert_eq!(r(1, 8), vec![0..1]);
        assert_eq!(r(8, 8), vec![0..8]);
        assert_eq!(r(9, 8), vec![0..8, 8..9]);
        assert_eq!(r(20, 8), vec![0..8, 8..16, 16..20]);
        assert_eq!(r(3, 0), vec![0..1, 1..2, 2..3]);
    }
}
