//! The compressor and hasher in front of storage: one attempt at storing one
//! file or stream, blocking, on a worker thread. The [`Stored`] stats come from
//! this attempt's own hasher, so a retried file never carries a stale hash; an
//! [`AttemptError`] says whether a retry can help. Also the bounded pool of
//! zstdmt workers the big files of one copy share.
//!
//! The layers, top to bottom: source, read ahead on its own thread (see
//! `read_ahead`) → compressor → `Seal` (age's streaming encryptor, or nothing)
//! → buffer → `HashingSink` (hash, BLAKE3 unless told otherwise, and count of
//! exactly what storage accepts) → storage. With recipients configured, the
//! sink checks the stored bytes start as an age file before the file counts as
//! stored.
//!
//! May call: the pipeline's types, [`crate::backup::storage::FileSink`],
//! [`crate::backup::encryption`].

use std::io::{self, BufWriter, Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::anyhow;
use tokio_util::sync::CancellationToken;

use super::hash::ContentHasher;
use super::read_ahead::{for_each_chunk, ChunkError};
use super::{Cancelled, Compression, Progress, BUF_SIZE};
use crate::backup::encryption::{Recipients, AGE_MAGIC};
use crate::backup::manifest::HashAlgorithm;
use crate::backup::storage::FileSink;

/// Stats of one stored file, taken from the attempt that stored it.
#[derive(Debug)]
pub(super) struct Stored {
    /// Original bytes read.
    pub(super) size: u64,
    /// Bytes that reached storage.
    pub(super) stored_size: u64,
    /// Hex digest of exactly those bytes.
    pub(super) hash: String,
    /// The algorithm of `hash`.
    pub(super) hash_algorithm: HashAlgorithm,
}

/// Why a single attempt failed; decides whether a retry can help.
#[derive(Debug)]
pub(super) enum AttemptError {
    /// Reading the source failed: retrying would read the same thing.
    Source(anyhow::Error),
    /// Storage (or the compressor writing into it) failed: worth a retry.
    Sink(anyhow::Error),
    /// What would be stored breaks a rule (plaintext with encryption configured):
    /// a retry would do the same.
    Refused(anyhow::Error),
    /// Cancelled.
    Cancelled,
}

impl AttemptError {
    pub(super) fn into_anyhow(self) -> anyhow::Error {
        match self {
            AttemptError::Source(e) | AttemptError::Sink(e) | AttemptError::Refused(e) => e,
            AttemptError::Cancelled => anyhow::Error::new(Cancelled),
        }
    }
}

/// Bounded pool of zstdmt workers shared by the files of one copy.
#[derive(Debug)]
pub(super) struct ThreadBudget {
    /// Workers not lent out.
    free: AtomicU32,
}

impl ThreadBudget {
    /// A pool of `threads` workers.
    pub(super) fn new(threads: u32) -> Arc<Self> {
        Arc::new(Self {
            free: AtomicU32::new(threads),
        })
    }

    /// Takes up to `want` workers (maybe 0).
    pub(super) fn take(self: &Arc<Self>, want: u32) -> ThreadLease {
        let mut got = 0;
        let _ = self
            .free
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                got = f.min(want);
                Some(f - got)
            });
        ThreadLease {
            budget: self.clone(),
            n: got,
        }
    }
}

/// Workers lent to one file; returned on drop.
pub(super) struct ThreadLease {
    /// The pool to return them to.
    budget: Arc<ThreadBudget>,
    /// How many.
    pub(super) n: u32,
}

impl Drop for ThreadLease {
    fn drop(&mut self) {
        self.budget.free.fetch_add(self.n, Ordering::SeqCst);
    }
}

/// Hashes and counts what passes into storage; remembers storage errors so they
/// can be told from compressor errors.
struct HashingSink {
    /// The storage file.
    inner: Box<dyn FileSink>,
    /// Hash of the bytes accepted by `inner`.
    hasher: ContentHasher,
    /// Bytes accepted by `inner`.
    count: u64,
    /// The first bytes accepted (up to the length of the age magic), to prove
    /// an encrypted file is one.
    head: Vec<u8>,
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Hash exactly what storage accepted, nothing more.
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.head.len() < AGE_MAGIC.len() {
            let take = (AGE_MAGIC.len() - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The encryption layer between the compressor and storage's buffer.
enum Seal {
    /// Stored as the compressor wrote it.
    Clear(BufWriter<HashingSink>),
    /// An age file (STREAM: 64 KiB chunks, each authenticated).
    Age(age::stream::StreamWriter<BufWriter<HashingSink>>),
}

impl Write for Seal {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Seal::Clear(w) => w.write(buf),
            Seal::Age(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Seal::Clear(w) => w.write_all(buf),
            Seal::Age(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Seal::Clear(w) => w.flush(),
            Seal::Age(w) => w.flush(),
        }
    }
}

impl Seal {
    /// Ends the age file (its last chunk) and flushes the buffer into the sink.
    fn finish(self) -> io::Result<HashingSink> {
        let buffered = match self {
            Seal::Clear(w) => w,
            Seal::Age(w) => w.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())
    }
}

/// The compressor in front of storage.
enum Encoder {
    /// No compression.
    Plain(Seal),
    /// zstd (single- or multithreaded).
    Zstd(zstd::stream::write::Encoder<'static, Seal>),
    /// LZ4 frames.
    Lz4(lz4_flex::frame::FrameEncoder<Seal>),
}

impl Encoder {
    fn new(
        sink: HashingSink,
        compression: Compression,
        encryption: Option<&Recipients>,
        mt_workers: u32,
        buf_size: usize,
    ) -> io::Result<Self> {
        let buffered = BufWriter::with_capacity(buf_size, sink);
        let buffered = match encryption {
            None => Seal::Clear(buffered),
            Some(r) => Seal::Age(r.encrypt(buffered)?),
        };
        Ok(match compression {
            Compression::None => Encoder::Plain(buffered),
            Compression::Zstd { level, .. } => {
                let mut enc = zstd::stream::write::Encoder::new(buffered, level)?;
                if mt_workers > 0 {
                    enc.multithread(mt_workers)?;
                }
                Encoder::Zstd(enc)
            }
            Compression::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max4MB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                Encoder::Lz4(lz4_flex::frame::FrameEncoder::with_frame_info(
                    info, buffered,
                ))
            }
        })
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.write_all(buf),
            Encoder::Zstd(w) => w.write_all(buf),
            Encoder::Lz4(w) => w.write_all(buf),
        }
    }

    /// Ends the compressed stream (and the age file) and flushes everything
    /// into the sink.
    fn finish(self) -> io::Result<HashingSink> {
        let sealed = match self {
            Encoder::Plain(w) => w,
            Encoder::Zstd(w) => w.finish()?,
            Encoder::Lz4(w) => w.finish().map_err(io::Error::other)?,
        };
        sealed.finish()
    }
}

/// How one attempt encodes what it reads.
pub(super) struct Encoding<'a> {
    /// Compression of the stored bytes.
    pub(super) compression: Compression,
    /// Encrypt to these recipients (`None`: plaintext).
    pub(super) encryption: Option<&'a Recipients>,
    /// zstdmt workers lent to this attempt (0: single-threaded).
    pub(super) mt_workers: u32,
    /// Size of the read buffers and of the buffer in front of storage.
    pub(super) buf_size: usize,
    /// Hash algorithm of the stored bytes.
    pub(super) hash: HashAlgorithm,
    /// Read on a thread of its own, ahead of the rest (see [`read_ahead_for`]).
    pub(super) read_ahead: bool,
}

/// Whether a source of `size` bytes (`None`: a stream of unknown length) is
/// read ahead on a thread of its own, when `enabled`: not for one that fits in
/// two buffers, where a thread costs more than the overlap gains.
pub(super) fn read_ahead_for(enabled: bool, size: Option<u64>) -> bool {
    enabled && size.is_none_or(|s| s > 2 * BUF_SIZE as u64)
}

/// Copies `reader` through the compressor (and the encryptor, with
/// `encryption`) into `sink`. Blocking; runs on a worker thread (and, reading
/// ahead, one more for the reads). The returned stats come from this attempt's
/// own hasher.
pub(super) fn compress_into(
    reader: &mut (dyn Read + Send),
    sink: Box<dyn FileSink>,
    how: &Encoding<'_>,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<Stored, AttemptError> {
    let encryption = how.encryption;
    let sink = HashingSink {
        inner: sink,
        hasher: ContentHasher::new(how.hash),
        count: 0,
        head: Vec::with_capacity(AGE_MAGIC.len()),
    };
    let mut enc = Encoder::new(
        sink,
        how.compression,
        encryption,
        how.mt_workers,
        how.buf_size,
    )
    .map_err(|e| AttemptError::Sink(anyhow!(e).context("setting up the compressor")))?;
    let mut size = 0u64;
    let result = (|| {
        if cancel.is_cancelled() {
            return Err(AttemptError::Cancelled);
        }
        let copied = for_each_chunk(reader, how.buf_size, how.read_ahead, |chunk| {
            if cancel.is_cancelled() {
                return Err(AttemptError::Cancelled);
            }
            enc.write_all(chunk)
                .map_err(|e| AttemptError::Sink(anyhow!(e).context("writing to storage")))?;
            size += chunk.len() as u64;
            progress
                .bytes_done
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Ok(())
        });
        match copied {
            Ok(()) => {}
            Err(ChunkError::Source(e)) => {
                return Err(AttemptError::Source(anyhow!(e).context("reading")))
            }
            Err(ChunkError::Consumer(e)) => return Err(e),
        }
        let sink = enc
            .finish()
            .map_err(|e| AttemptError::Sink(anyhow!(e).context("writing to storage")))?;
        let HashingSink {
            inner,
            mut hasher,
            count,
            head,
        } = sink;
        check_sealed(encryption.is_some(), &head).map_err(AttemptError::Refused)?;
        let stored = inner
            .finish()
            .map_err(|e| AttemptError::Sink(anyhow!(e).context("finishing the stored file")))?;
        if stored != count {
            return Err(AttemptError::Sink(anyhow!(
                "storage reports {stored} bytes stored, the pipeline wrote {count}"
            )));
        }
        Ok(Stored {
            size,
            stored_size: count,
            hash: hasher.finish_hex(),
            hash_algorithm: hasher.algorithm(),
        })
    })();
    if result.is_err() {
        // This attempt's bytes no longer count: a retry reads them again.
        progress.bytes_done.fetch_sub(size, Ordering::Relaxed);
    }
    result
}

/// With encryption configured, the stored bytes must start as an age file: the
/// last guard against storing plaintext because a layer was left out. The file
/// is then dropped unfinished (abandoned), never referenced by a MANIFEST.
fn check_sealed(encrypted: bool, head: &[u8]) -> anyhow::Result<()> {
    if encrypted && head != AGE_MAGIC {
        anyhow::bail!(
            "refusing to store plaintext: encryption is configured but the stored bytes are not an age file"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_bigger_than_two_buffers_are_read_ahead() {
        let b = BUF_SIZE as u64;
        // (enabled, size, read ahead)
        let cases = [
            (true, None, true),
            (true, Some(0), false),
            (true, Some(2 * b), false),
            (true, Some(2 * b + 1), true),
            (true, Some(u64::MAX), true),
            (false, None, false),
            (false, Some(u64::MAX), false),
        ];
        for (enabled, size, want) in cases {
            assert_eq!(read_ahead_for(enabled, size), want, "{enabled} {size:?}");
        }
    }

    #[test]
    fn only_age_files_pass_when_encrypting() {
        let sealed = b"age-encryption.org/v1\n-> X25519 abc";
        // (encrypted, first bytes stored, allowed)
        let cases: [(bool, &[u8], bool); 6] = [
            (true, &sealed[..AGE_MAGIC.len()], true),
            (true, b"\x28\xb5\x2f\xfd", false),
            (true, b"", false),
            (true, &sealed[..10], false),
            (false, b"\x28\xb5\x2f\xfd", true),
            (false, b"", true),
        ];
        for (encrypted, head, ok) in cases {
            assert_eq!(
                check_sealed(encrypted, head).is_ok(),
                ok,
                "{encrypted} {head:?}"
            );
        }
    }
}
