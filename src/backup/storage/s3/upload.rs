//! Writing one stored file into S3 from the blocking copy pipeline: [`S3Sink`], a
//! `Write` that fills part buffers and hands them over a bounded channel to an
//! async uploader, which sends them as a multipart upload with several parts in
//! flight (bounded by a semaphore shared by every upload of the process), each
//! part retried on its own by the client. A file smaller than one part is one
//! plain PUT. The multipart upload is aborted on any failure, and when the sink is
//! dropped without `finish`.
//!
//! Memory per file: the part being filled, one part in the channel and one taken
//! by the uploader waiting for a slot; plus, across the process, the parts in
//! flight (the semaphore). Part sizes grow with the part number
//! ([`part_size`]), so a 5 TB file fits in S3's 10,000 parts while a file below
//! 8 GiB never needs a buffer above [`MIN_PART_SIZE`].
//!
//! May call: `object_store`, the storage module's bookkeeping and errors.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutPayload};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::super::bookkeeping::{FileState, WriterState};
use super::super::{FileSink, StorageError, StorageResult};
use super::error_chain;
use crate::common::lock;

/// Size of the first parts of every upload (S3's minimum is 5 MiB).
pub const MIN_PART_SIZE: usize = 8 << 20;
/// Parts of one size before the size doubles.
pub const PARTS_PER_STEP: u64 = 1000;
/// S3's largest part.
pub const MAX_PART_SIZE: usize = 5 << 30;
/// S3's most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// Size of part `index` (0-based): [`MIN_PART_SIZE`], doubled every
/// [`PARTS_PER_STEP`] parts, at most [`MAX_PART_SIZE`]. Pure.
pub fn part_size(index: u64) -> usize {
    let step = (index / PARTS_PER_STEP).min(20) as u32;
    MIN_PART_SIZE
        .checked_shl(step)
        .unwrap_or(MAX_PART_SIZE)
        .min(MAX_PART_SIZE)
}

/// Bytes one upload can hold in `parts` parts of the [`part_size`] schedule. Pure.
pub fn capacity(parts: u64) -> u64 {
    let mut total = 0u64;
    let mut done = 0u64;
    while done < parts {
        let n = (PARTS_PER_STEP - done % PARTS_PER_STEP).min(parts - done);
        total = total.saturating_add(n * part_size(done) as u64);
        done += n;
    }
    total
}

/// What the sink sends the uploader.
enum Msg {
    /// The next part's bytes.
    Part(Bytes),
    /// Every byte was sent: complete the upload.
    Finish,
}

/// Everything an upload needs, shared by the writer's sinks.
#[derive(Clone)]
pub(super) struct UploadCtx {
    /// The client.
    pub store: Arc<dyn ObjectStore>,
    /// Part uploads in flight across the process.
    pub slots: Arc<Semaphore>,
    /// The runtime the uploaders run on.
    pub runtime: tokio::runtime::Handle,
}

/// Starts the uploader of `key` (`url` for messages) and returns its sink.
pub(super) fn start(
    ctx: UploadCtx,
    key: Path,
    url: String,
    stored_name: String,
    state: Arc<Mutex<WriterState>>,
) -> S3Sink {
    let (tx, rx) = mpsc::channel(1);
    let (done_tx, done_rx) = oneshot::channel();
    let (store, slots) = (ctx.store.clone(), ctx.slots.clone());
    let u = url.clone();
    ctx.runtime.spawn(async move {
        let r = upload(store, slots, key, rx).await;
        if let Err(e) = &r {
            tracing::warn!(object = %u, error = %e, "S3 upload failed or abandoned; aborted");
        }
        let _ = done_tx.send(r);
    });
    S3Sink {
        buf: Vec::new(),
        parts: 0,
        tx: Some(tx),
        done: Some(done_rx),
        url,
        stored_name,
        written: 0,
        finished: false,
        state,
    }
}

/// The uploader: one PUT for a file of one part, else a multipart upload with
/// parts in flight bounded by `slots`. Aborts the multipart upload on any error
/// and when the sink goes away without `Finish`.
async fn upload(
    store: Arc<dyn ObjectStore>,
    slots: Arc<Semaphore>,
    key: Path,
    mut rx: mpsc::Receiver<Msg>,
) -> Result<(), String> {
    let first = match rx.recv().await {
        None => return Err("abandoned before any byte was sent".into()),
        Some(Msg::Finish) => Bytes::new(),
        Some(Msg::Part(b)) => match rx.recv().await {
            None => return Err("abandoned before the upload was finished".into()),
            Some(Msg::Finish) => b,
            Some(Msg::Part(second)) => {
                let mut up = store
                    .put_multipart_opts(&key, PutMultipartOptions::default())
                    .await
                    .map_err(|e| format!("starting the multipart upload: {}", error_chain(&e)))?;
                let r = parts(&mut *up, &slots, [b, second], &mut rx).await;
                return match r {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        if let Err(ae) = up.abort().await {
                            tracing::warn!(error = %error_chain(&ae),
                                    "aborting the multipart upload failed; retention cleans it");
                        }
                        Err(e)
                    }
                };
            }
        },
    };
    store
        .put(&key, PutPayload::from(first))
        .await
        .map(|_| ())
        .map_err(|e| error_chain(&e))
}

/// Sends the parts of a multipart upload in order, at most `slots` at a time
/// across the process, and completes it on `Finish`.
async fn parts(
    up: &mut dyn MultipartUpload,
    slots: &Arc<Semaphore>,
    first: [Bytes; 2],
    rx: &mut mpsc::Receiver<Msg>,
) -> Result<(), String> {
    let mut inflight = FuturesUnordered::new();
    let mut pending: Vec<Bytes> = first.into_iter().rev().collect();
    loop {
        let part = match pending.pop() {
            Some(p) => p,
            None => {
                let msg = tokio::select! {
                    m = rx.recv() => m,
                    Some(r) = inflight.next(), if !inflight.is_empty() => {
                        r?;
                        continue;
                    }
                };
                match msg {
                    Some(Msg::Part(p)) => p,
                    Some(Msg::Finish) => break,
                    None => return Err("abandoned before the upload was finished".into()),
                }
            }
        };
        let permit = loop {
            tokio::select! {
                p = slots.clone().acquire_owned() => {
                    break p.map_err(|_| "upload slots closed".to_string())?;
                }
                Some(r) = inflight.next(), if !inflight.is_empty() => r?,
            }
        };
        let fut = up.put_part(PutPayload::from(part));
        inflight.push(async move {
            let r = fut
                .await
                .map_err(|e| format!("uploading a part: {}", error_chain(&e)));
            drop(permit);
            r
        });
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    up.complete()
        .await
        .map(|_| ())
        .map_err(|e| format!("completing the multipart upload: {}", error_chain(&e)))
}

/// A stored file being written into S3 (see the module doc).
pub(super) struct S3Sink {
    /// The part being filled.
    buf: Vec<u8>,
    /// Parts handed to the uploader so far.
    parts: u64,
    /// To the uploader; `None` once it is known to have stopped.
    tx: Option<mpsc::Sender<Msg>>,
    /// The uploader's outcome.
    done: Option<oneshot::Receiver<Result<(), String>>>,
    /// `s3://bucket/key`, for messages.
    url: String,
    /// Its stored name, the key into the writer's state.
    stored_name: String,
    /// Bytes written so far.
    written: u64,
    /// Set by `finish`, so Drop knows the file was not abandoned.
    finished: bool,
    /// The writer's bookkeeping.
    state: Arc<Mutex<WriterState>>,
}

impl S3Sink {
    /// The uploader's error, once it stopped (blocking).
    fn uploader_error(&mut self) -> String {
        self.tx = None;
        match self.done.take().map(|d| d.blocking_recv()) {
            Some(Ok(Err(e))) => e,
            Some(Ok(Ok(()))) => "the uploader stopped early".into(),
            Some(Err(_)) => "the uploader task died".into(),
            None => "the upload already failed".into(),
        }
    }

    fn send(&mut self, msg: Msg) -> io::Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.blocking_send(msg).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        let e = self.uploader_error();
        Err(io::Error::other(format!("uploading {}: {e}", self.url)))
    }

    fn send_part(&mut self) -> io::Result<()> {
        let part = std::mem::take(&mut self.buf);
        self.parts += 1;
        self.send(Msg::Part(Bytes::from(part)))
    }
}

impl Write for S3Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.parts >= MAX_PARTS {
            return Err(io::Error::other(format!(
                "uploading {}: larger than S3's {MAX_PARTS} parts allow",
                self.url
            )));
        }
        let size = part_size(self.parts);
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(size);
        }
        let n = data.len().min(size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == size {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl FileSink for S3Sink {
    fn finish(mut self: Box<Self>) -> StorageResult<u64> {
        let ctx = format!("uploading {}", self.url);
        if !self.buf.is_empty() {
            self.send_part()
                .map_err(|e| StorageError::io(ctx.clone(), e))?;
        }
        self.send(Msg::Finish)
            .map_err(|e| StorageError::io(ctx.clone(), e))?;
        self.tx = None;
        let outcome = match self.done.take().map(|d| d.blocking_recv()) {
            Some(Ok(r)) => r,
            _ => Err("the uploader task died".into()),
        };
        outcome.map_err(|e| StorageError::io(ctx, io::Error::other(e)))?;
        self.finished = true;
        lock(&self.state)
            .files
            .insert(self.stored_name.clone(), FileState::Finished(self.written));
        Ok(self.written)
    }
}

impl Drop for S3Sink {
    fn drop(&mut self) {
        // Closing the channel without `Finish` makes the uploader abort.
        self.tx = None;
        if !self.finished {
            lock(&self.state).abandon(&self.stored_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn part_sizes_grow_so_five_terabytes_fit() {
        for (index, want) in [
            (0, 8 * MIB),
            (999, 8 * MIB),
            (1000, 16 * MIB),
            (1999, 16 * MIB),
            (2000, 32 * MIB),
            (9999, 4096 * MIB),
            (20_000, MAX_PART_SIZE),
            (u64::MAX, MAX_PART_SIZE),
        ] {
            assert_eq!(part_size(index), want, "part {index}");
        }
        assert!(part_size(MAX_PARTS - 1) >= 5 * MIB);
        assert!((0..MAX_PARTS).all(|i| part_size(i) <= MAX_PART_SIZE));
        // A 5 TB file stays below S3's 10,000 parts.
        assert!(capacity(MAX_PARTS) >= 5_000_000_000_000);
        // Files below 8000 MiB never use a part above the minimum.
        assert_eq!(capacity(1000), 8000 * MIB as u64);
        assert_eq!(capacity(1001), 8000 * MIB as u64 + 16 * MIB as u64);
        assert_eq!(capacity(0), 0);
    }
}
