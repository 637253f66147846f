//! Fault injection, compiled only with the `fault-injection` feature (tests and
//! benchmarks get it; a plain build of the binary never contains it):
//! [`FaultyStorage`] wraps any backend so that its writes (data files, MANIFEST,
//! blobs) fail once a shared byte budget is spent, or are paced to a rate (a slow
//! storage, for tests that must catch a backup in the middle). Reads, listings
//! and removals pass through untouched.
//!
//! May call: the storage module's trait and types; nothing else of the crate.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, ReadBuf};

use super::{
    BackupInfo, BackupStorage, BackupWriter, BlobInfo, BlobWritten, FileSink, ShardDir,
    StorageError, StorageResult,
};
use crate::backup::manifest::Manifest;

/// Variable: storage writes fail after this many bytes in total.
pub const FAIL_AFTER_BYTES_VAR: &str = "CAIRN_FAULT_STORAGE_FAIL_AFTER_BYTES";
/// Variable: storage writes are paced to this many bytes per second in total.
pub const BYTES_PER_SEC_VAR: &str = "CAIRN_FAULT_STORAGE_BYTES_PER_SEC";

/// Which faults to inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// Writes succeed until this many bytes were written in total, then fail.
    pub fail_after_bytes: Option<u64>,
    /// Writes are paced to this many bytes per second in total (0: no pacing).
    pub bytes_per_sec: Option<u64>,
}

impl FaultConfig {
    /// Writes fail after `n` bytes.
    pub fn fail_after(n: u64) -> Self {
        Self {
            fail_after_bytes: Some(n),
            bytes_per_sec: None,
        }
    }

    /// The faults asked for by [`FAIL_AFTER_BYTES_VAR`] and [`BYTES_PER_SEC_VAR`]
    /// (unset or unparsable: none).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Self {
            fail_after_bytes: var(FAIL_AFTER_BYTES_VAR),
            bytes_per_sec: var(BYTES_PER_SEC_VAR),
        }
    }

    /// Whether any fault is asked for.
    pub fn is_empty(&self) -> bool {
        self.fail_after_bytes.is_none() && self.bytes_per_sec.is_none()
    }
}

/// Byte budget and pace shared by every write through one [`FaultyStorage`].
#[derive(Debug)]
struct Budget {
    /// Bytes that may still be written before writes start failing.
    remaining: AtomicU64,
    /// The configured total, for the error message.
    total: u64,
    /// Write rate limit in bytes per second (0: none).
    bytes_per_sec: u64,
    /// When the pacing started counting.
    start: Instant,
    /// Bytes written since `start`.
    paced: AtomicU64,
}

impl Budget {
    fn new(faults: FaultConfig) -> Self {
        let total = faults.fail_after_bytes.unwrap_or(u64::MAX);
        Self {
            remaining: AtomicU64::new(total),
            total,
            bytes_per_sec: faults.bytes_per_sec.unwrap_or(0),
            start: Instant::now(),
            paced: AtomicU64::new(0),
        }
    }

    /// Takes up to `want` bytes from the budget; returns how many were granted.
    fn take(&self, want: usize) -> usize {
        let want = want as u64;
        let mut granted = 0;
        let _ = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                granted = r.min(want);
                Some(r - granted)
            });
        granted as usize
    }

    /// Gives back bytes granted but not written.
    fn give_back(&self, n: usize) {
        self.remaining.fetch_add(n as u64, Ordering::SeqCst);
    }

    /// Counts `written` bytes against the pace; returns how long the writer must
    /// wait to stay within it.
    fn pace(&self, written: usize) -> Option<Duration> {
        if self.bytes_per_sec == 0 {
            return None;
        }
        let total = self.paced.fetch_add(written as u64, Ordering::SeqCst) + written as u64;
        let due = Duration::from_secs_f64(total as f64 / self.bytes_per_sec as f64);
        due.checked_sub(self.start.elapsed())
            .filter(|d| !d.is_zero())
    }

    fn error(&self) -> io::Error {
        io::Error::other(format!(
            "injected storage failure after {} bytes ({FAIL_AFTER_BYTES_VAR})",
            self.total
        ))
    }

    /// Writes `buf` into `w` within the budget, then waits out the pace. Blocking.
    fn write(&self, w: &mut dyn Write, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.take(buf.len());
        if n == 0 {
            return Err(self.error());
        }
        let written = match w.write(&buf[..n]) {
            Ok(w) => w,
            Err(e) => {
                self.give_back(n);
                return Err(e);
            }
        };
        if written < n {
            self.give_back(n - written);
        }
        if let Some(wait) = self.pace(written) {
            std::thread::sleep(wait);
        }
        Ok(written)
    }
}

/// A backend whose writes fail or crawl as [`FaultConfig`] says; see the module
/// doc.
#[derive(Debug, Clone)]
pub struct FaultyStorage<S> {
    /// The real backend.
    inner: S,
    /// Shared by every writer, sink and blob of this storage (and its clones).
    budget: Arc<Budget>,
}

impl<S: BackupStorage> FaultyStorage<S> {
    /// `inner` with `faults` injected into its writes.
    pub fn new(inner: S, faults: FaultConfig) -> Self {
        Self {
            inner,
            budget: Arc::new(Budget::new(faults)),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: BackupStorage> BackupStorage for FaultyStorage<S> {
    fn list_shards(&self) -> BoxFuture<'_, StorageResult<Vec<ShardDir>>> {
        self.inner.list_shards()
    }

    fn list_backups<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
    ) -> BoxFuture<'a, StorageResult<Vec<BackupInfo>>> {
        self.inner.list_backups(keyspace, shard)
    }

    fn start_backup<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn BackupWriter>>> {
        Box::pin(async move {
            let inner = self.inner.start_backup(keyspace, shard, name).await?;
            Ok(Box::new(FaultyWriter {
                inner,
                budget: self.budget.clone(),
            }) as Box<dyn BackupWriter>)
        })
    }

    fn remove_backup<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<()>> {
        self.inner.remove_backup(keyspace, shard, name)
    }

    fn read_manifest<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Manifest>> {
        self.inner.read_manifest(keyspace, shard, name)
    }

    fn open_file<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
        stored_name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn Read + Send>>> {
        self.inner.open_file(keyspace, shard, name, stored_name)
    }

    fn put_blob<'a>(
        &'a self,
        dir: &'a str,
        name: &'a str,
        reader: Box<dyn AsyncRead + Send + Unpin + 'a>,
    ) -> BoxFuture<'a, StorageResult<BlobWritten>> {
        let reader = Box::new(BudgetedReader {
            inner: reader,
            budget: self.budget.clone(),
        });
        self.inner.put_blob(dir, name, reader)
    }

    fn list_blobs<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, StorageResult<Vec<BlobInfo>>> {
        self.inner.list_blobs(dir)
    }

    fn list_blobs_after<'a>(
        &'a self,
        dir: &'a str,
        after: &'a str,
    ) -> BoxFuture<'a, StorageResult<Vec<BlobInfo>>> {
        self.inner.list_blobs_after(dir, after)
    }

    fn open_blob<'a>(
        &'a self,
        dir: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn AsyncRead + Send + Unpin>>> {
        self.inner.open_blob(dir, name)
    }

    fn remove_blob<'a>(&'a self, dir: &'a str, name: &'a str) -> BoxFuture<'a, StorageResult<()>> {
        self.inner.remove_blob(dir, name)
    }
}

/// A backup being written through a [`FaultyStorage`].
struct FaultyWriter {
    /// The backend's writer.
    inner: Box<dyn BackupWriter>,
    /// The storage's budget.
    budget: Arc<Budget>,
}

impl BackupWriter for FaultyWriter {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn create_file<'a>(
        &'a self,
        stored_name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn FileSink>>> {
        Box::pin(async move {
            let inner = self.inner.create_file(stored_name).await?;
            Ok(Box::new(FaultySink {
                inner,
                budget: self.budget.clone(),
            }) as Box<dyn FileSink>)
        })
    }

    fn write_manifest<'a>(&'a self, manifest: &'a Manifest) -> BoxFuture<'a, StorageResult<()>> {
        Box::pin(async move {
            // The MANIFEST's bytes count like any other write; a MANIFEST that
            // does not fit is never written, as if the write had failed midway.
            let len = manifest.to_json().map(|j| j.len()).unwrap_or(0);
            if self.budget.take(len) < len {
                return Err(StorageError::io(
                    format!("writing the MANIFEST of backup {}", self.inner.name()),
                    self.budget.error(),
                ));
            }
            if let Some(wait) = self.budget.pace(len) {
                tokio::time::sleep(wait).await;
            }
            self.inner.write_manifest(manifest).await
        })
    }

    fn abort(&self) -> BoxFuture<'_, StorageResult<()>> {
        self.inner.abort()
    }
}

/// A stored file being written through a [`FaultyStorage`]. Dropping it drops
/// the backend's sink, so an unfinished file is abandoned there as usual.
struct FaultySink {
    /// The backend's sink.
    inner: Box<dyn FileSink>,
    /// The storage's budget.
    budget: Arc<Budget>,
}

impl Write for FaultySink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.budget.write(&mut self.inner, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl FileSink for FaultySink {
    fn finish(self: Box<Self>) -> StorageResult<u64> {
        self.inner.finish()
    }
}

/// A blob's content on its way into storage: every byte read counts against the
/// budget; once it is spent, reading fails, which fails the blob's write.
struct BudgetedReader<'a> {
    /// The blob's content.
    inner: Box<dyn AsyncRead + Send + Unpin + 'a>,
    /// The storage's budget.
    budget: Arc<Budget>,
}

impl AsyncRead for BudgetedReader<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if this.budget.take(n) < n {
                    return Poll::Ready(Err(this.budget.error()));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_grants_what_is_left() {
        assert!(FaultConfig::default().is_empty());
        assert!(!FaultConfig::fail_after(0).is_empty());
        let b = Budget::new(FaultConfig::fail_after(10));
        assert_eq!(b.take(6), 6);
        assert_eq!(b.take(6), 4);
        assert_eq!(b.take(1), 0);
        b.give_back(2);
        assert_eq!(b.take(5), 2);
    }

    #[test]
    fn writes_fail_after_the_budget_and_give_back_what_was_not_written() {
        let b = Budget::new(FaultConfig::fail_after(10));
        let mut out = Vec::new();
        assert_eq!(b.write(&mut out, &[1u8; 6]).unwrap(), 6);
        assert_eq!(b.write(&mut out, &[1u8; 6]).unwrap(), 4);
        let err = b.write(&mut out, &[1u8; 1]).unwrap_err();
        assert!(
            err.to_string().contains("injected storage failure"),
            "{err}"
        );
        assert_eq!(out.len(), 10);
        assert_eq!(b.write(&mut out, &[]).unwrap(), 0);
    }

    #[test]
    fn pace_asks_for_a_wait_only_when_ahead() {
        let b = Budget::new(FaultConfig {
            fail_after_bytes: None,
            bytes_per_sec: Some(1000),
        });
        let wait = b.pace(500).expect("500 bytes at 1000/s take time");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        let free = Budget::new(FaultConfig::default());
        assert_eq!(free.pace(1 << 30), None);
    }
}
