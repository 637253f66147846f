//! The copy pipeline between a server's files and backup storage: read →
//! compress (zstd, possibly multithreaded; lz4 frames; or none) → sha256 of the
//! stored bytes → storage, and back: storage → sha256 check → decompress → disk.
//!
//! Owns speed and integrity of the bytes, nothing else: which files to copy and
//! what the MANIFEST says beyond the file entries is the engines' business.
//!
//! - Parallel across files (`concurrency`), largest first, so one huge tablespace
//!   does not start last; within a big file zstd runs multithreaded (zstdmt) out
//!   of a bounded worker budget, so even a single ibdata1 keeps every core busy.
//! - Memory is bounded: fixed buffers per file (1 MiB) plus zstd's windows, never
//!   a whole file.
//! - Fail fast: the first error cancels every other file and is returned with the
//!   file it concerns; workers are awaited before returning, so nothing is still
//!   writing when the caller aborts the backup.
//! - A [`FileEntry`] is built only from the attempt that stored the bytes, from
//!   that attempt's own hasher, so a retried file can never carry a stale or empty
//!   hash (Vitess #19338).
//! - Restores verify the sha256 of every stored byte and both sizes; a mismatch is
//!   an [`IntegrityError`] naming the file, and the partly written file is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::manifest::{
    base, check_relative_name, CompressionEngine, FileEntry, Manifest, HASH_ALGORITHM_SHA256,
};
use super::storage::{create_dirs_0700, BackupStorage, BackupWriter, FileSink};

/// Size of read buffers and of the buffer in front of storage.
const BUF_SIZE: usize = 1 << 20;
/// Smallest buffer: small files get small buffers (thousands of `.frm` files
/// would otherwise each pay for zeroing a full-size one).
const MIN_BUF_SIZE: usize = 64 << 10;

/// Buffer size for a file of `size` bytes.
fn buf_size_for(size: u64) -> usize {
    usize::try_from(size.saturating_add(1))
        .unwrap_or(BUF_SIZE)
        .clamp(MIN_BUF_SIZE, BUF_SIZE)
}
/// Files at least this big get zstdmt workers (when the budget has some free).
pub const ZSTD_MT_MIN_SIZE: u64 = 32 << 20;

/// How stored bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd at `level` (1 is fast and good); `threads` is the total number of
    /// zstdmt workers the whole copy may use for big files (0: never multithread).
    Zstd {
        /// zstd compression level (negative levels are faster still).
        level: i32,
        /// Worker budget shared by all big files of one copy.
        threads: u32,
    },
    /// LZ4 frames: less ratio, less CPU.
    Lz4,
    /// Stored as is.
    None,
}

impl Compression {
    /// zstd level 1 with one worker per core: the default.
    pub fn default_zstd() -> Self {
        Compression::Zstd {
            level: 1,
            threads: default_threads(),
        }
    }

    /// The settings for an engine named on the command line.
    pub fn for_engine(engine: CompressionEngine) -> Self {
        match engine {
            CompressionEngine::Zstd => Self::default_zstd(),
            CompressionEngine::Lz4 => Compression::Lz4,
            CompressionEngine::None => Compression::None,
        }
    }

    /// The engine name that goes into the MANIFEST.
    pub fn engine(&self) -> CompressionEngine {
        match self {
            Compression::Zstd { .. } => CompressionEngine::Zstd,
            Compression::Lz4 => CompressionEngine::Lz4,
            Compression::None => CompressionEngine::None,
        }
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self::default_zstd()
    }
}

/// Cores available to this process (at least 1).
pub fn default_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Options of one copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Compression of the stored bytes.
    pub compression: Compression,
    /// Files copied at the same time (`--concurrency`; Vitess's default is 4).
    pub concurrency: usize,
    /// Extra attempts per file after a storage write error (Vitess: 1). Source
    /// read errors, cancellation and integrity errors are never retried.
    pub retries_per_file: u32,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            compression: Compression::default(),
            concurrency: 4,
            retries_per_file: 1,
        }
    }
}

/// Progress of a copy, shared with whoever displays it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of original data processed so far (read on backup, written on restore).
    pub bytes_done: AtomicU64,
    /// Bytes of original data to process; grows as copies are started.
    pub bytes_total: AtomicU64,
}

impl Progress {
    /// A fresh counter, ready to share.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Bytes processed so far.
    pub fn done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    /// Bytes to process.
    pub fn total(&self) -> u64 {
        self.bytes_total.load(Ordering::Relaxed)
    }
}

/// A file of the server to back up.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where to read it.
    pub path: PathBuf,
    /// Its name relative to the data directory: where the restore puts it.
    pub name: String,
    /// Which part of the server it belongs to (see [`base`]).
    pub base: String,
    /// Its expected size: for scheduling (largest first) and progress.
    pub size: u64,
}

/// The copy was cancelled (by the caller, or because another file failed).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("copy cancelled")]
pub struct Cancelled;

/// Stored data does not match its MANIFEST entry: the backup must not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} mismatch for {name} in backup {backup}: expected {expected}, got {actual}")]
pub struct IntegrityError {
    /// The backup the file belongs to.
    pub backup: String,
    /// The file's name (relative to the data directory, or the stream's name).
    pub name: String,
    /// What did not match: `hash`, `stored size` or `size`.
    pub kind: &'static str,
    /// What the MANIFEST says.
    pub expected: String,
    /// What was found.
    pub actual: String,
}

/// Stats of one stored file, taken from the attempt that stored it.
#[derive(Debug)]
struct Stored {
    /// Original bytes read.
    size: u64,
    /// Bytes that reached storage.
    stored_size: u64,
    /// Hex sha256 of exactly those bytes.
    hash: String,
}

/// Why a single attempt failed; decides whether a retry can help.
#[derive(Debug)]
enum AttemptError {
    /// Reading the source failed: retrying would read the same thing.
    Source(anyhow::Error),
    /// Storage (or the compressor writing into it) failed: worth a retry.
    Sink(anyhow::Error),
    /// Cancelled.
    Cancelled,
}

impl AttemptError {
    fn into_anyhow(self) -> anyhow::Error {
        match self {
            AttemptError::Source(e) | AttemptError::Sink(e) => e,
            AttemptError::Cancelled => anyhow::Error::new(Cancelled),
        }
    }
}

/// Bounded pool of zstdmt workers shared by the files of one copy.
#[derive(Debug)]
struct ThreadBudget {
    /// Workers not lent out.
    free: AtomicU32,
}

impl ThreadBudget {
    /// Takes up to `want` workers (maybe 0).
    fn take(self: &Arc<Self>, want: u32) -> ThreadLease {
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
struct ThreadLease {
    /// The pool to return them to.
    budget: Arc<ThreadBudget>,
    /// How many.
    n: u32,
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
    /// sha256 of the bytes accepted by `inner`.
    hasher: Sha256,
    /// Bytes accepted by `inner`.
    count: u64,
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Hash exactly what storage accepted, nothing more.
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressor in front of storage.
enum Encoder {
    /// No compression.
    Plain(BufWriter<HashingSink>),
    /// zstd (single- or multithreaded).
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<HashingSink>>),
    /// LZ4 frames.
    Lz4(lz4_flex::frame::FrameEncoder<BufWriter<HashingSink>>),
}

impl Encoder {
    fn new(
        sink: HashingSink,
        compression: Compression,
        mt_workers: u32,
        buf_size: usize,
    ) -> io::Result<Self> {
        let buffered = BufWriter::with_capacity(buf_size, sink);
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

    /// Ends the compressed stream and flushes everything into the sink.
    fn finish(self) -> io::Result<HashingSink> {
        let buffered = match self {
            Encoder::Plain(w) => w,
            Encoder::Zstd(w) => w.finish()?,
            Encoder::Lz4(w) => w.finish().map_err(io::Error::other)?,
        };
        buffered.into_inner().map_err(|e| e.into_error())
    }
}

/// Copies `reader` through the compressor into `sink`. Blocking; runs on a
/// worker thread. The returned stats come from this attempt's own hasher.
fn compress_into(
    reader: &mut dyn Read,
    sink: Box<dyn FileSink>,
    compression: Compression,
    mt_workers: u32,
    buf_size: usize,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<Stored, AttemptError> {
    let sink = HashingSink {
        inner: sink,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut enc = Encoder::new(sink, compression, mt_workers, buf_size)
        .map_err(|e| AttemptError::Sink(anyhow!(e).context("setting up the compressor")))?;
    let mut buf = vec![0u8; buf_size];
    let mut size = 0u64;
    let result = (|| {
        loop {
            if cancel.is_cancelled() {
                return Err(AttemptError::Cancelled);
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(AttemptError::Source(anyhow!(e).context("reading"))),
            };
            enc.write_all(&buf[..n])
                .map_err(|e| AttemptError::Sink(anyhow!(e).context("writing to storage")))?;
            size += n as u64;
            progress.bytes_done.fetch_add(n as u64, Ordering::Relaxed);
        }
        let sink = enc
            .finish()
            .map_err(|e| AttemptError::Sink(anyhow!(e).context("writing to storage")))?;
        let HashingSink {
            inner,
            hasher,
            count,
        } = sink;
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
            hash: hex::encode(hasher.finalize()),
        })
    })();
    if result.is_err() {
        // This attempt's bytes no longer count: a retry reads them again.
        progress.bytes_done.fetch_sub(size, Ordering::Relaxed);
    }
    result
}

/// Opens a source file for sequential reading.
fn open_source(path: &Path) -> io::Result<File> {
    let f = File::open(path)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // Advisory read-ahead hint; the result does not matter.
        // SAFETY: the fd is valid for the lifetime of `f`.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
    }
    Ok(f)
}

/// Copies one source file into storage as `stored_name`, retrying storage errors.
async fn backup_one(
    writer: &dyn BackupWriter,
    stored_name: String,
    src: SourceFile,
    opts: &CopyOptions,
    budget: Arc<ThreadBudget>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<FileEntry> {
    let ctx = || {
        format!(
            "backing up {} ({}) as {} in backup {}",
            src.name,
            src.path.display(),
            stored_name,
            writer.name()
        )
    };
    let mut attempt = 0;
    loop {
        if cancel.is_cancelled() {
            return Err(anyhow::Error::new(Cancelled)).with_context(ctx);
        }
        let result = async {
            let sink = writer
                .create_file(&stored_name)
                .await
                .map_err(|e| AttemptError::Sink(e.into()))?;
            let (src, progress, cancel, budget) = (
                src.clone(),
                progress.clone(),
                cancel.clone(),
                budget.clone(),
            );
            let compression = opts.compression;
            tokio::task::spawn_blocking(move || {
                let mut f = open_source(&src.path)
                    .map_err(|e| AttemptError::Source(anyhow!(e).context("opening")))?;
                let lease = match compression {
                    Compression::Zstd { threads, .. } if src.size >= ZSTD_MT_MIN_SIZE => {
                        budget.take(threads)
                    }
                    _ => budget.take(0),
                };
                let stored = compress_into(
                    &mut f,
                    sink,
                    compression,
                    lease.n,
                    buf_size_for(src.size),
                    &progress,
                    &cancel,
                )?;
                if stored.size != src.size {
                    tracing::warn!(file = %src.name, expected = src.size, read = stored.size,
                        "file size changed while it was backed up");
                }
                Ok(stored)
            })
            .await
            .map_err(|e| AttemptError::Sink(anyhow!("copy worker failed: {e}")))?
        }
        .await;
        match result {
            // The entry comes from the attempt that stored the bytes (#19338).
            Ok(stored) => {
                return Ok(FileEntry {
                    base: src.base.clone(),
                    name: src.name.clone(),
                    stored_name,
                    size: stored.size,
                    stored_size: stored.stored_size,
                    hash: stored.hash,
                    hash_algorithm: HASH_ALGORITHM_SHA256.to_string(),
                })
            }
            Err(AttemptError::Sink(e))
                if attempt < opts.retries_per_file && !cancel.is_cancelled() =>
            {
                attempt += 1;
                tracing::warn!(file = %src.name, attempt, error = %format!("{e:#}"),
                    "storage error; retrying the file");
            }
            Err(e) => return Err(e.into_anyhow()).with_context(ctx),
        }
    }
}

/// Runs `tasks` with at most `concurrency` at a time; the first error cancels
/// `cancel` (which the tasks watch) and is returned once every started task has
/// ended. Results come back indexed as the tasks were.
async fn run_fail_fast<T, F>(
    tasks: Vec<(usize, F)>,
    n: usize,
    concurrency: usize,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<T>>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut first_err: Option<anyhow::Error> = None;
    let mut stream = futures::stream::iter(
        tasks
            .into_iter()
            .map(|(i, fut)| async move { (i, fut.await) }),
    )
    .buffer_unordered(concurrency.max(1));
    while let Some((i, r)) = stream.next().await {
        match r {
            Ok(v) => results[i] = Some(v),
            Err(e) => {
                // Prefer the real cause over the cancellations it triggers.
                let replace = match &first_err {
                    None => true,
                    Some(prev) => {
                        prev.downcast_ref::<Cancelled>().is_some()
                            && e.downcast_ref::<Cancelled>().is_none()
                    }
                };
                if replace {
                    first_err = Some(e);
                }
                cancel.cancel();
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| anyhow!("internal error: a copy task produced no result")))
        .collect()
}

/// Backs up `files` into `writer`: stored names are `0, 1, …` in input order,
/// and so are the returned entries, ready for the MANIFEST. Does not write the
/// MANIFEST and does not abort on error: the caller (the engine) decides.
pub async fn backup_files(
    writer: &dyn BackupWriter,
    files: Vec<SourceFile>,
    opts: &CopyOptions,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<Vec<FileEntry>> {
    let mut seen = std::collections::HashSet::new();
    for f in &files {
        check_relative_name(&f.name)?;
        if !seen.insert(f.name.as_str()) {
            bail!(
                "file {} is listed twice for backup {}",
                f.name,
                writer.name()
            );
        }
    }
    let n = files.len();
    progress
        .bytes_total
        .fetch_add(files.iter().map(|f| f.size).sum(), Ordering::Relaxed);
    let threads = match opts.compression {
        Compression::Zstd { threads, .. } => threads,
        _ => 0,
    };
    let budget = Arc::new(ThreadBudget {
        free: AtomicU32::new(threads),
    });
    let cancel = cancel.child_token();
    let mut order: Vec<(usize, SourceFile)> = files.into_iter().enumerate().collect();
    // Largest first (stable: equal sizes keep input order).
    order.sort_by_key(|o| std::cmp::Reverse(o.1.size));
    let tasks = order
        .into_iter()
        .map(|(i, f)| {
            let fut = backup_one(
                writer,
                i.to_string(),
                f,
                opts,
                budget.clone(),
                progress.clone(),
                cancel.clone(),
            );
            (i, fut)
        })
        .collect();
    run_fail_fast(tasks, n, opts.concurrency, &cancel).await
}

/// Backs up one stream (e.g. `mariabackup --stream=xbstream` stdout) as stored
/// file `0` with base `Stream`. zstd uses all `threads` as zstdmt workers. The
/// caller must check that the producer succeeded before writing the MANIFEST:
/// a producer that dies looks like a short stream here. `progress.bytes_total`
/// is left alone (a stream's length is unknown in advance).
pub async fn backup_stream<R: Read + Send + 'static>(
    writer: &dyn BackupWriter,
    mut reader: R,
    name: &str,
    opts: &CopyOptions,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<FileEntry> {
    check_relative_name(name)?;
    let stored_name = "0";
    let ctx = || format!("backing up stream {name} in backup {}", writer.name());
    let sink = writer.create_file(stored_name).await.with_context(ctx)?;
    let compression = opts.compression;
    let mt = match compression {
        Compression::Zstd { threads, .. } => threads,
        _ => 0,
    };
    let stored = tokio::task::spawn_blocking(move || {
        compress_into(
            &mut reader,
            sink,
            compression,
            mt,
            BUF_SIZE,
            &progress,
            &cancel,
        )
    })
    .await
    .map_err(|e| anyhow!("copy worker failed: {e}"))
    .with_context(ctx)?
    .map_err(AttemptError::into_anyhow)
    .with_context(ctx)?;
    Ok(FileEntry {
        base: base::STREAM.to_string(),
        name: name.to_string(),
        stored_name: stored_name.to_string(),
        size: stored.size,
        stored_size: stored.stored_size,
        hash: stored.hash,
        hash_algorithm: HASH_ALGORITHM_SHA256.to_string(),
    })
}

/// Hashes and counts every stored byte read.
struct HashingReader {
    /// The stored file.
    inner: Box<dyn Read + Send>,
    /// sha256 of the bytes read so far.
    hasher: Sha256,
    /// Bytes read so far.
    count: u64,
    /// Set when `inner` failed: the error is storage's, not corruption.
    failed: bool,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(e)
            }
        }
    }
}

/// The decompressor behind the hash check.
enum Decoder {
    /// Stored as is.
    Plain(BufReader<HashingReader>),
    /// zstd frames.
    Zstd(zstd::stream::read::Decoder<'static, BufReader<HashingReader>>),
    /// LZ4 frames.
    Lz4(lz4_flex::frame::FrameDecoder<BufReader<HashingReader>>),
}

impl Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
            Decoder::Lz4(r) => r.read(buf),
        }
    }

    fn into_inner(self) -> BufReader<HashingReader> {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Zstd(r) => r.finish(),
            Decoder::Lz4(r) => r.into_inner(),
        }
    }
}

/// A stored file's decompressed content, verified: the final read (the one that
/// would return 0) returns an error instead if the stored bytes' sha256 or
/// sizes differ from the MANIFEST entry. The error wraps an [`IntegrityError`]
/// (see [`integrity_error`]). Data is handed out before the end is reached, so a
/// consumer must treat a failed final read as "everything read is garbage".
pub struct VerifiedReader {
    /// The decoder, taken when the end (or an error) is reached.
    decoder: Option<Decoder>,
    /// The MANIFEST entry being checked against.
    entry: FileEntry,
    /// The backup's name, for messages.
    backup: String,
    /// Decompressed bytes handed out.
    out: u64,
    /// Set once verification passed: further reads return 0.
    verified: bool,
}

impl VerifiedReader {
    /// Wraps a stored file opened from storage.
    pub fn new(
        stored: Box<dyn Read + Send>,
        entry: &FileEntry,
        engine: CompressionEngine,
        backup: &str,
    ) -> io::Result<Self> {
        let hashing = BufReader::with_capacity(
            buf_size_for(entry.stored_size),
            HashingReader {
                inner: stored,
                hasher: Sha256::new(),
                count: 0,
                failed: false,
            },
        );
        let decoder = match engine {
            CompressionEngine::None => Decoder::Plain(hashing),
            CompressionEngine::Zstd => {
                Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(hashing)?)
            }
            CompressionEngine::Lz4 => Decoder::Lz4(lz4_flex::frame::FrameDecoder::new(hashing)),
        };
        Ok(Self {
            decoder: Some(decoder),
            entry: entry.clone(),
            backup: backup.to_string(),
            out: 0,
            verified: false,
        })
    }

    fn mismatch(&self, kind: &'static str, expected: String, actual: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            IntegrityError {
                backup: self.backup.clone(),
                name: self.entry.name.clone(),
                kind,
                expected,
                actual,
            },
        )
    }

    /// Reads the rest of the stored bytes and checks hash, then sizes. `decode_err`
    /// is the decoder's complaint, if any: reported only when the hash matches
    /// (which would mean a bug, not corruption).
    fn finish(&mut self, decode_err: Option<io::Error>) -> io::Result<()> {
        let Some(decoder) = self.decoder.take() else {
            return Err(io::Error::other("read after a failed verification"));
        };
        let mut rest = decoder.into_inner();
        let drained = io::copy(&mut rest, &mut io::sink());
        let hashing = rest.into_inner();
        drained?;
        let got = hex::encode(hashing.hasher.finalize());
        if !got.eq_ignore_ascii_case(&self.entry.hash) {
            return Err(self.mismatch("hash", self.entry.hash.clone(), got));
        }
        if hashing.count != self.entry.stored_size {
            return Err(self.mismatch(
                "stored size",
                self.entry.stored_size.to_string(),
                hashing.count.to_string(),
            ));
        }
        if let Some(e) = decode_err {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "decompressing {} in backup {} (its hash matches): {e}",
                    self.entry.name, self.backup
                ),
            ));
        }
        if self.out != self.entry.size {
            return Err(self.mismatch("size", self.entry.size.to_string(), self.out.to_string()));
        }
        self.verified = true;
        Ok(())
    }
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified || buf.is_empty() {
            return Ok(0);
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Err(io::Error::other("read after a failed verification"));
        };
        match decoder.read(buf) {
            Ok(0) => {
                self.finish(None)?;
                Ok(0)
            }
            Ok(n) => {
                self.out += n as u64;
                if self.out > self.entry.size {
                    // More data than the MANIFEST says: stop before handing it out.
                    // `finish` reports the size mismatch (or a hash mismatch).
                    self.finish(None)?;
                    return Err(io::Error::other("internal error: oversize data verified"));
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let storage_failed = match self.decoder.as_mut() {
                    Some(Decoder::Plain(r)) => r.get_ref().failed,
                    Some(Decoder::Zstd(r)) => r.get_ref().get_ref().failed,
                    Some(Decoder::Lz4(r)) => r.get_ref().get_ref().failed,
                    None => false,
                };
                if storage_failed {
                    self.decoder = None;
                    return Err(e);
                }
                match self.finish(Some(e)) {
                    Err(e) => Err(e),
                    Ok(()) => Err(io::Error::other("internal error: decode error lost")),
                }
            }
        }
    }
}

/// The [`IntegrityError`] inside an I/O error from a [`VerifiedReader`], if any.
pub fn integrity_error(e: &io::Error) -> Option<&IntegrityError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<IntegrityError>())
}

/// Turns an I/O error into anyhow, keeping an [`IntegrityError`] as the root so
/// callers can `downcast_ref` it.
fn io_to_anyhow(e: io::Error) -> anyhow::Error {
    match integrity_error(&e) {
        Some(ie) => anyhow::Error::new(ie.clone()),
        None => anyhow::Error::new(e),
    }
}

/// Creates `path` for writing, 0600, never following a symlink there.
fn create_dest(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Restores one stored file to `dest`. Blocking.
fn restore_one_blocking(
    stored: Box<dyn Read + Send>,
    entry: &FileEntry,
    engine: CompressionEngine,
    backup: &str,
    dest: &Path,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut reader = VerifiedReader::new(stored, entry, engine, backup)?;
    let mut out = create_dest(dest).with_context(|| format!("creating {}", dest.display()))?;
    let result = (|| {
        copy_verified(
            &mut reader,
            &mut out,
            buf_size_for(entry.size),
            progress,
            cancel,
        )
        .with_context(|| format!("writing {}", dest.display()))?;
        out.sync_all()
            .with_context(|| format!("fsync {}", dest.display()))
    })();
    if result.is_err() {
        // Never leave unverified data where a server could pick it up.
        drop(out);
        let _ = fs::remove_file(dest);
    }
    result
}

/// Copies a verifying reader to `out` until its end, counting progress; the
/// reader's integrity error (on its last read) ends the copy as an error.
fn copy_verified(
    reader: &mut impl Read,
    out: &mut impl Write,
    buf_size: usize,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; buf_size];
    let mut total = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(anyhow::Error::new(Cancelled));
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_to_anyhow(e)),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
        progress.bytes_done.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Restores every file of a backup into `dest_dir/<Name>`, verifying each
/// stored file's sha256 and sizes against `manifest`, decompressing with the
/// MANIFEST's engine, `concurrency` files at a time. Refuses unsafe names before
/// writing anything. On error, the first failure (naming the file) is returned
/// after every worker stopped; files already restored stay, the failing one is
/// removed, and the caller must treat the directory as garbage. Restored files
/// are 0600 and new directories 0700, owned by this process's user.
#[allow(clippy::too_many_arguments)]
pub async fn restore_files(
    storage: &dyn BackupStorage,
    keyspace: &str,
    shard: &str,
    backup_name: &str,
    manifest: &Manifest,
    dest_dir: &Path,
    concurrency: usize,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    manifest.check_restorable()?;
    let engine = manifest.compression_engine;
    progress.bytes_total.fetch_add(
        manifest.file_entries.iter().map(|e| e.size).sum(),
        Ordering::Relaxed,
    );
    // Parent directories first, once, so workers never race creating them.
    let mut dirs: Vec<PathBuf> = vec![dest_dir.to_path_buf()];
    for e in &manifest.file_entries {
        if let Some(p) = Path::new(&e.name).parent() {
            if !p.as_os_str().is_empty() {
                dirs.push(dest_dir.join(p));
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    {
        let dirs = dirs.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for d in &dirs {
                create_dirs_0700(d).with_context(|| format!("creating {}", d.display()))?;
            }
            Ok(())
        })
        .await??;
    }
    let cancel = cancel.child_token();
    let mut order: Vec<(usize, &FileEntry)> = manifest.file_entries.iter().enumerate().collect();
    order.sort_by_key(|o| std::cmp::Reverse(o.1.size));
    let tasks = order
        .into_iter()
        .map(|(i, entry)| {
            let (progress, cancel) = (progress.clone(), cancel.clone());
            let dest = dest_dir.join(&entry.name);
            let fut = async move {
                let ctx = || format!("restoring {} from backup {backup_name}", entry.name);
                if cancel.is_cancelled() {
                    return Err(anyhow::Error::new(Cancelled)).with_context(ctx);
                }
                let stored = storage
                    .open_file(keyspace, shard, backup_name, &entry.stored_name)
                    .await
                    .with_context(ctx)?;
                let (entry2, backup) = (entry.clone(), backup_name.to_string());
                tokio::task::spawn_blocking(move || {
                    restore_one_blocking(
                        stored, &entry2, engine, &backup, &dest, &progress, &cancel,
                    )
                })
                .await
                .map_err(|e| anyhow!("restore worker failed: {e}"))
                .and_then(|r| r)
                .with_context(ctx)
            };
            (i, fut)
        })
        .collect();
    run_fail_fast::<(), _>(tasks, manifest.file_entries.len(), concurrency, &cancel).await?;
    // Make the new directory entries durable too.
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for d in dirs.iter().rev() {
            File::open(d)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("fsync {}", d.display()))?;
        }
        Ok(())
    })
    .await??;
    Ok(())
}

/// Opens the single `Stream` entry of a backup as a [`VerifiedReader`] (e.g. to
/// feed `mbstream -x` yourself).
pub async fn open_stream(
    storage: &dyn BackupStorage,
    keyspace: &str,
    shard: &str,
    backup_name: &str,
    manifest: &Manifest,
) -> anyhow::Result<VerifiedReader> {
    manifest.check_restorable()?;
    let streams: Vec<&FileEntry> = manifest
        .file_entries
        .iter()
        .filter(|e| e.base == base::STREAM)
        .collect();
    let [entry] = streams[..] else {
        bail!(
            "backup {backup_name} has {} stream entries, expected exactly one",
            streams.len()
        );
    };
    let stored = storage
        .open_file(keyspace, shard, backup_name, &entry.stored_name)
        .await
        .with_context(|| format!("opening stream {} of backup {backup_name}", entry.name))?;
    Ok(VerifiedReader::new(
        stored,
        entry,
        manifest.compression_engine,
        backup_name,
    )?)
}

/// Pipes the verified, decompressed stream of a backup into `out` (e.g. the
/// stdin of `mbstream -x`) and returns `out` and the bytes written. The hash is
/// only known at the end: on an error (an [`IntegrityError`] root for corrupt
/// data) the consumer has already seen garbage and must be treated as failed.
#[allow(clippy::too_many_arguments)]
pub async fn restore_stream<W: Write + Send + 'static>(
    storage: &dyn BackupStorage,
    keyspace: &str,
    shard: &str,
    backup_name: &str,
    manifest: &Manifest,
    mut out: W,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<(W, u64)> {
    let mut reader = open_stream(storage, keyspace, shard, backup_name, manifest).await?;
    progress
        .bytes_total
        .fetch_add(reader.entry.size, Ordering::Relaxed);
    let name = reader.entry.name.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<(W, u64)> {
        let total = copy_verified(&mut reader, &mut out, BUF_SIZE, &progress, &cancel)
            .context("writing the restored stream")?;
        out.flush().context("flushing the restored stream")?;
        Ok((out, total))
    })
    .await
    .map_err(|e| anyhow!("restore worker failed: {e}"))?
    .with_context(|| format!("restoring stream {name} from backup {backup_name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{BackupMethod, FORMAT_VERSION};
    use crate::backup::storage::{FaultConfig, FaultyStorage, FileStorage, MANIFEST_FILE};
    use chrono::Utc;
    use rand::{Rng, RngCore, SeedableRng};

    const NAME: &str = "2024-01-02.030405.zone1-0000000101";

    /// A small datadir: empty files, nested dirs, random and compressible data,
    /// one file big enough to take the zstdmt path.
    fn make_source(dir: &Path) -> Vec<SourceFile> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut specs: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("db1/empty.frm", vec![]),
            ("db1/small.frm", b"tiny".to_vec()),
            ("db1/deep/er/t.ibd", {
                let mut v = vec![0u8; 3 << 20];
                rng.fill_bytes(&mut v);
                v
            }),
            ("ib_logfile0", {
                // Compressible: repetitive text with some noise.
                let mut v = Vec::with_capacity(5 << 20);
                while v.len() < (5 << 20) + 12345 {
                    v.extend_from_slice(b"INSERT INTO t VALUES (");
                    v.extend_from_slice(rng.random_range(0..100000u32).to_string().as_bytes());
                    v.extend_from_slice(b", 'some text that repeats');\n");
                }
                v
            }),
        ];
        let mut big = vec![0u8; (ZSTD_MT_MIN_SIZE + (1 << 20) + 17) as usize];
        for (i, chunk) in big.chunks_mut(4096).enumerate() {
            if i % 3 == 0 {
                rng.fill_bytes(chunk);
            }
        }
        specs.push(("ibdata1", big));
        specs
            .into_iter()
            .map(|(name, data)| {
                let path = dir.join(name);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, &data).unwrap();
                SourceFile {
                    path,
                    name: name.to_string(),
                    base: if name.starts_with("ib") {
                        base::INNODB_DATA.into()
                    } else {
                        base::DATA.into()
                    },
                    size: data.len() as u64,
                }
            })
            .collect()
    }

    fn manifest_for(entries: Vec<FileEntry>, engine: CompressionEngine) -> Manifest {
        let now = Utc::now();
        let mut m = Manifest {
            backup_name: NAME.into(),
            backup_method: BackupMethod::Builtin,
            position: "MariaDB/0-1-5".into(),
            purged_position: String::new(),
            backup_time: now,
            finished_time: now,
            server_uuid: String::new(),
            tablet_alias: "zone1-0000000101".into(),
            hostname: String::new(),
            keyspace: "ks".into(),
            shard: "0".into(),
            mysql_version: String::new(),
            upgrade_safe: false,
            compression_engine: engine,
            file_entries: vec![],
            total_size: 0,
            stored_size: 0,
            stream_mode: None,
            flavor: "MariaDB".into(),
            format_version: FORMAT_VERSION,
        };
        m.set_file_entries(entries);
        m
    }

    fn opts(compression: Compression) -> CopyOptions {
        CopyOptions {
            compression,
            concurrency: 3,
            retries_per_file: 1,
        }
    }

    async fn backup(
        st: &dyn BackupStorage,
        src: Vec<SourceFile>,
        c: Compression,
    ) -> anyhow::Result<Manifest> {
        let w = st.start_backup("ks", "0", NAME).await?;
        let progress = Progress::new();
        match backup_files(
            &*w,
            src,
            &opts(c),
            progress.clone(),
            CancellationToken::new(),
        )
        .await
        {
            Ok(entries) => {
                assert_eq!(progress.done(), progress.total());
                let m = manifest_for(entries, c.engine());
                w.write_manifest(&m).await?;
                Ok(m)
            }
            Err(e) => {
                w.abort().await?;
                Err(e)
            }
        }
    }

    fn assert_same_tree(src: &[SourceFile], dest: &Path) {
        for f in src {
            let a = fs::read(&f.path).unwrap();
            let b = fs::read(dest.join(&f.name)).unwrap();
            assert!(a == b, "{} differs after restore", f.name);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trip_every_compression() {
        for c in [
            Compression::Zstd {
                level: 1,
                threads: 2,
            },
            Compression::Zstd {
                level: 3,
                threads: 0,
            },
            Compression::Lz4,
            Compression::None,
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let src = make_source(&tmp.path().join("src"));
            let st = FileStorage::new(tmp.path().join("store"));
            let m = backup(&st, src.clone(), c).await.unwrap();
            // Stored names follow input order, whatever the scheduling order.
            for (i, (e, f)) in m.file_entries.iter().zip(&src).enumerate() {
                assert_eq!(e.stored_name, i.to_string());
                assert_eq!(e.name, f.name);
                assert_eq!(e.size, f.size);
                let stored = fs::read(
                    tmp.path()
                        .join("store/ks/0")
                        .join(NAME)
                        .join(&e.stored_name),
                )
                .unwrap();
                assert_eq!(stored.len() as u64, e.stored_size);
                assert_eq!(hex::encode(Sha256::digest(&stored)), e.hash);
            }
            if c != Compression::None {
                assert!(m.stored_size < m.total_size, "{c:?} did not compress");
            }
            let m2 = st.read_manifest("ks", "0", NAME).await.unwrap();
            assert_eq!(m2.file_entries, m.file_entries);
            let dest = tmp.path().join("restore");
            let progress = Progress::new();
            restore_files(
                &st,
                "ks",
                "0",
                NAME,
                &m2,
                &dest,
                2,
                progress.clone(),
                CancellationToken::new(),
            )
            .await
            .unwrap();
            assert_eq!(progress.done(), m.total_size);
            assert_same_tree(&src, &dest);
            let md = fs::metadata(dest.join("db1/small.frm")).unwrap();
            assert_eq!(md.permissions().mode() & 0o777, 0o600);
            let md = fs::metadata(dest.join("db1/deep/er")).unwrap();
            assert_eq!(md.permissions().mode() & 0o777, 0o700);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupted_byte_is_a_hash_mismatch_naming_the_file() {
        for c in [
            Compression::default_zstd(),
            Compression::Lz4,
            Compression::None,
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let src = make_source(&tmp.path().join("src"));
            let st = FileStorage::new(tmp.path().join("store"));
            let m = backup(&st, src, c).await.unwrap();
            let e = m
                .file_entries
                .iter()
                .find(|e| e.name == "ib_logfile0")
                .unwrap();
            let p = tmp
                .path()
                .join("store/ks/0")
                .join(NAME)
                .join(&e.stored_name);
            let mut bytes = fs::read(&p).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x40;
            fs::write(&p, &bytes).unwrap();
            let dest = tmp.path().join("restore");
            let err = restore_files(
                &st,
                "ks",
                "0",
                NAME,
                &m,
                &dest,
                2,
                Progress::new(),
                CancellationToken::new(),
            )
            .await
            .unwrap_err();
            let msg = format!("{err:#}");
            let ie = err
                .downcast_ref::<IntegrityError>()
                .unwrap_or_else(|| panic!("{c:?}: not an integrity error: {msg}"));
            assert_eq!(ie.kind, "hash");
            assert!(
                msg.contains("hash mismatch for ib_logfile0 in backup 2024-01-02"),
                "{msg}"
            );
            assert!(
                !dest.join("ib_logfile0").exists(),
                "corrupt file left behind"
            );
        }
    }

    #[tokio::test]
    async fn truncated_or_extended_files_are_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let src = make_source(&tmp.path().join("src"));
        let st = FileStorage::new(tmp.path().join("store"));
        let m = backup(&st, src, Compression::default_zstd()).await.unwrap();
        let e = m
            .file_entries
            .iter()
            .find(|e| e.name == "db1/small.frm")
            .unwrap();
        let p = tmp
            .path()
            .join("store/ks/0")
            .join(NAME)
            .join(&e.stored_name);
        let orig = fs::read(&p).unwrap();
        for bad in [
            orig[..orig.len() - 1].to_vec(),
            [&orig[..], b"x"].concat(),
            vec![],
        ] {
            fs::write(&p, &bad).unwrap();
            let err = restore_files(
                &st,
                "ks",
                "0",
                NAME,
                &m,
                &tmp.path().join("r"),
                2,
                Progress::new(),
                CancellationToken::new(),
            )
            .await
            .unwrap_err();
            assert!(err.downcast_ref::<IntegrityError>().is_some(), "{err:#}");
            assert!(format!("{err:#}").contains("db1/small.frm"), "{err:#}");
        }
        // A MANIFEST that lies about the original size is caught too.
        fs::write(&p, &orig).unwrap();
        let mut m2 = m.clone();
        for e in &mut m2.file_entries {
            if e.name == "db1/small.frm" {
                e.size += 1;
            }
        }
        let err = restore_files(
            &st,
            "ks",
            "0",
            NAME,
            &m2,
            &tmp.path().join("r2"),
            2,
            Progress::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.downcast_ref::<IntegrityError>().unwrap().kind, "size");
    }

    #[tokio::test]
    async fn unsafe_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = make_source(&tmp.path().join("src"));
        let st = FileStorage::new(tmp.path().join("store"));
        let m = backup(&st, src.clone(), Compression::None).await.unwrap();
        for bad in ["../escape", "/abs", "a/../../b"] {
            let mut m2 = m.clone();
            m2.file_entries[1].name = bad.into();
            let dest = tmp.path().join("r");
            assert!(restore_files(
                &st,
                "ks",
                "0",
                NAME,
                &m2,
                &dest,
                2,
                Progress::new(),
                CancellationToken::new()
            )
            .await
            .is_err());
            assert!(!dest.exists(), "{bad}: restore wrote before refusing");
        }
        let mut bad_src = src.clone();
        bad_src[0].name = "../x".into();
        let st2 = FileStorage::new(tmp.path().join("store2"));
        assert!(backup(&st2, bad_src, Compression::None).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn storage_failure_midway_fails_and_abort_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let src = make_source(&tmp.path().join("src"));
        let st = FaultyStorage::new(
            FileStorage::new(tmp.path().join("store")),
            FaultConfig::fail_after(4 << 20),
        );
        let err = backup(&st, src, Compression::None).await.unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("injected storage failure"), "{msg}");
        assert!(msg.contains("backing up "), "{msg}");
        assert!(err.downcast_ref::<Cancelled>().is_none(), "{msg}");
        let l = st.list_backups("ks", "0").await.unwrap();
        assert!(l.iter().all(|b| !b.complete));
        assert!(l.is_empty());
    }

    #[tokio::test]
    async fn missing_source_fails_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut src = make_source(&tmp.path().join("src"));
        fs::remove_file(&src[2].path).unwrap();
        src[2].size = 0;
        let st = FileStorage::new(tmp.path().join("store"));
        let err = backup(&st, src, Compression::Lz4).await.unwrap_err();
        assert!(format!("{err:#}").contains("db1/small.frm"), "{err:#}");
    }

    #[tokio::test]
    async fn cancellation_stops_the_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let src = make_source(&tmp.path().join("src"));
        let st = FileStorage::new(tmp.path().join("store"));
        let w = st.start_backup("ks", "0", NAME).await.unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = backup_files(&*w, src, &opts(Compression::Lz4), Progress::new(), cancel)
            .await
            .unwrap_err();
        assert!(err.downcast_ref::<Cancelled>().is_some(), "{err:#}");
    }

    /// A writer whose first attempt at stored file `0` fails after some bytes:
    /// the retry must produce the hash of what the retry wrote (Vitess #19338).
    struct FlakyWriter {
        inner: Box<dyn BackupWriter>,
        failed_once: std::sync::atomic::AtomicBool,
    }

    struct FlakySink {
        inner: Box<dyn FileSink>,
        budget: usize,
    }

    impl Write for FlakySink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::Error::other("flaky storage"));
            }
            let n = buf.len().min(self.budget);
            self.budget -= n;
            self.inner.write(&buf[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    impl FileSink for FlakySink {
        fn finish(self: Box<Self>) -> crate::backup::storage::StorageResult<u64> {
            self.inner.finish()
        }
    }

    impl BackupWriter for FlakyWriter {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn create_file<'a>(
            &'a self,
            stored_name: &'a str,
        ) -> futures::future::BoxFuture<'a, crate::backup::storage::StorageResult<Box<dyn FileSink>>>
        {
            Box::pin(async move {
                let sink = self.inner.create_file(stored_name).await?;
                if stored_name == "0" && !self.failed_once.swap(true, Ordering::SeqCst) {
                    return Ok(Box::new(FlakySink {
                        inner: sink,
                        budget: 100_000,
                    }) as Box<dyn FileSink>);
                }
                Ok(sink)
            })
        }
        fn write_manifest<'a>(
            &'a self,
            manifest: &'a Manifest,
        ) -> futures::future::BoxFuture<'a, crate::backup::storage::StorageResult<()>> {
            self.inner.write_manifest(manifest)
        }
        fn abort(
            &self,
        ) -> futures::future::BoxFuture<'_, crate::backup::storage::StorageResult<()>> {
            self.inner.abort()
        }
    }

    #[tokio::test]
    async fn retried_file_carries_the_hash_of_what_was_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let mut src = make_source(&tmp.path().join("src"));
        // Put the big random file first so it is stored as `0`.
        src.swap(0, 3);
        let st = FileStorage::new(tmp.path().join("store"));
        let w = FlakyWriter {
            inner: st.start_backup("ks", "0", NAME).await.unwrap(),
            failed_once: Default::default(),
        };
        let c = Compression::default_zstd();
        let entries = backup_files(
            &w,
            src.clone(),
            &opts(c),
            Progress::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(w.failed_once.load(Ordering::SeqCst));
        let m = manifest_for(entries, c.engine());
        assert!(m.file_entries.iter().all(|e| e.hash.len() == 64));
        w.write_manifest(&m).await.unwrap();
        let dest = tmp.path().join("r");
        restore_files(
            &st,
            "ks",
            "0",
            NAME,
            &m,
            &dest,
            2,
            Progress::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_same_tree(&src, &dest);
        // Without retries the same failure fails the backup.
        let st2 = FileStorage::new(tmp.path().join("store2"));
        let w = FlakyWriter {
            inner: st2.start_backup("ks", "0", NAME).await.unwrap(),
            failed_once: Default::default(),
        };
        let mut o = opts(c);
        o.retries_per_file = 0;
        let err = backup_files(&w, src, &o, Progress::new(), CancellationToken::new())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("flaky storage"), "{err:#}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_round_trip_and_corruption() {
        for c in [
            Compression::default_zstd(),
            Compression::Lz4,
            Compression::None,
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let mut data = vec![0u8; 9 << 20];
            rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut data[..3 << 20]);
            let st = FileStorage::new(tmp.path().join("store"));
            let w = st.start_backup("ks", "0", NAME).await.unwrap();
            let progress = Progress::new();
            let entry = backup_stream(
                &*w,
                io::Cursor::new(data.clone()),
                "backup.xbstream",
                &opts(c),
                progress.clone(),
                CancellationToken::new(),
            )
            .await
            .unwrap();
            assert_eq!(progress.done(), data.len() as u64);
            assert_eq!(entry.base, base::STREAM);
            assert_eq!(entry.size, data.len() as u64);
            let mut m = manifest_for(vec![entry], c.engine());
            m.backup_method = BackupMethod::Xtrabackup;
            m.stream_mode = Some("xbstream".into());
            w.write_manifest(&m).await.unwrap();
            let (out, n) = restore_stream(
                &st,
                "ks",
                "0",
                NAME,
                &m,
                Vec::new(),
                Progress::new(),
                CancellationToken::new(),
            )
            .await
            .unwrap();
            assert_eq!(n, data.len() as u64);
            assert!(out == data);
            // Corrupt the last stored byte: the stream fails at its end.
            let p = tmp.path().join("store/ks/0").join(NAME).join("0");
            let mut bytes = fs::read(&p).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            fs::write(&p, &bytes).unwrap();
            let err = restore_stream(
                &st,
                "ks",
                "0",
                NAME,
                &m,
                Vec::new(),
                Progress::new(),
                CancellationToken::new(),
            )
            .await
            .unwrap_err();
            assert!(
                format!("{err:#}").contains("hash mismatch for backup.xbstream"),
                "{c:?}: {err:#}"
            );
            assert!(tmp
                .path()
                .join("store/ks/0")
                .join(NAME)
                .join(MANIFEST_FILE)
                .exists());
        }
    }
}
