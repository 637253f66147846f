//! Verifying what comes out of storage: [`VerifiedReader`], the one reader in
//! the backup module that hashes every stored byte, decrypts (age, when the
//! MANIFEST says so), decompresses, and fails its last read with an
//! [`IntegrityError`] when the bytes or sizes differ from the MANIFEST entry.
//!
//! The layers, bottom to top: storage → `Tap` (hash, in the algorithm the
//! entry names, and count of every stored byte, shared so the rest can be drained and hashed whatever the layers above
//! hold) → buffer → `Opened` (age's streaming decryptor, or nothing) →
//! decompressor.
//!
//! May call: the pipeline's types, [`crate::backup::manifest`],
//! [`crate::backup::encryption`].

use std::io::{self, BufReader, Read};
use std::sync::{Arc, Mutex};

use super::hash::ContentHasher;
use super::{buf_size_for, IntegrityError};
use crate::backup::encryption::Identities;
use crate::backup::manifest::{CompressionEngine, FileEntry, HashAlgorithm};

/// Hashes and counts every stored byte read.
struct TapState {
    /// The stored file.
    inner: Box<dyn Read + Send>,
    /// Hash of the bytes read so far, in the entry's algorithm.
    hasher: ContentHasher,
    /// Bytes read so far.
    count: u64,
    /// Set when `inner` failed: the error is storage's, not corruption.
    failed: bool,
}

/// The stored file as read by the layers above, hashing on the way; cloned so
/// [`VerifiedReader`] keeps a handle to drain the rest at the end.
#[derive(Clone)]
struct Tap(Arc<Mutex<TapState>>);

impl Tap {
    fn lock(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut t = self.lock();
        match t.inner.read(buf) {
            Ok(n) => {
                t.hasher.update(&buf[..n]);
                t.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    t.failed = true;
                }
                Err(e)
            }
        }
    }
}

/// The decryption layer: the stored bytes as they are, or an age file opened.
enum Opened {
    /// Stored without encryption.
    Clear(BufReader<Tap>),
    /// An age file; each chunk is authenticated as it is read.
    Age(Box<age::stream::StreamReader<BufReader<Tap>>>),
}

impl Read for Opened {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Opened::Clear(r) => r.read(buf),
            Opened::Age(r) => r.read(buf),
        }
    }
}

/// The decompressor behind the hash check.
enum Decoder {
    /// Stored as is.
    Plain(Opened),
    /// zstd frames.
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<Opened>>>),
    /// LZ4 frames.
    Lz4(Box<lz4_flex::frame::FrameDecoder<Opened>>),
}

impl Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
            Decoder::Lz4(r) => r.read(buf),
        }
    }
}

/// A stored file's decompressed content, verified: the final read (the one that
/// would return 0) returns an error instead if the stored bytes' hash (in the
/// algorithm the entry names) or sizes differ from the MANIFEST entry. The error wraps an [`IntegrityError`]
/// (see [`integrity_error`]). Data is handed out before the end is reached, so a
/// consumer must treat a failed final read as "everything read is garbage".
pub struct VerifiedReader {
    /// The decoder, taken when the end (or an error) is reached.
    decoder: Option<Decoder>,
    /// The bottom of the stack, for draining and the final hash.
    tap: Tap,
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
    /// The MANIFEST entry being checked against.
    pub fn entry(&self) -> &FileEntry {
        &self.entry
    }

    /// Wraps a stored file opened from storage. With `identities`, the file is an
    /// age file: its header is read here (blocking) and must open with one of
    /// them. Without, the stored bytes are the compressed ones. An entry naming
    /// a hash algorithm this code cannot verify is refused before anything is
    /// read.
    pub fn new(
        stored: Box<dyn Read + Send>,
        entry: &FileEntry,
        engine: CompressionEngine,
        identities: Option<&Identities>,
        backup: &str,
    ) -> io::Result<Self> {
        let algorithm = HashAlgorithm::parse(&entry.hash_algorithm).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "cannot verify {} of backup {backup}: unknown hash algorithm {:?}",
                    entry.name, entry.hash_algorithm
                ),
            )
        })?;
        let tap = Tap(Arc::new(Mutex::new(TapState {
            inner: stored,
            hasher: ContentHasher::new(algorithm),
            count: 0,
            failed: false,
        })));
        let buffered = BufReader::with_capacity(buf_size_for(entry.stored_size), tap.clone());
        let opened = match identities {
            None => Opened::Clear(buffered),
            Some(ids) => Opened::Age(Box::new(ids.decrypt(buffered).map_err(|why| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("cannot decrypt {} of backup {backup}: {why}", entry.name),
                )
            })?)),
        };
        let decoder = match engine {
            CompressionEngine::None => Decoder::Plain(opened),
            CompressionEngine::Zstd => {
                Decoder::Zstd(Box::new(zstd::stream::read::Decoder::new(opened)?))
            }
            CompressionEngine::Lz4 => {
                Decoder::Lz4(Box::new(lz4_flex::frame::FrameDecoder::new(opened)))
            }
        };
        Ok(Self {
            decoder: Some(decoder),
            tap,
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
    /// is the decrypter's or decoder's complaint, if any: reported only when the
    /// hash matches (which would mean a bug, not corruption).
    fn finish(&mut self, decode_err: Option<io::Error>) -> io::Result<()> {
        if self.decoder.take().is_none() {
            return Err(io::Error::other("read after a failed verification"));
        }
        // What the layers above buffered is hashed already; hash the rest.
        let mut rest = self.tap.clone();
        io::copy(&mut rest, &mut io::sink())?;
        let (got, count) = {
            let mut t = self.tap.lock();
            (t.hasher.finish_hex(), t.count)
        };
        if !got.eq_ignore_ascii_case(&self.entry.hash) {
            return Err(self.mismatch("hash", self.entry.hash.clone(), got));
        }
        if count != self.entry.stored_size {
            return Err(self.mismatch(
                "stored size",
                self.entry.stored_size.to_string(),
                count.to_string(),
            ));
        }
        if let Some(e) = decode_err {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "decrypting or decompressing {} in backup {} (its hash matches): {e}",
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
                let storage_failed = self.tap.lock().failed;
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
pub(super) fn io_to_anyhow(e: io::Error) -> anyhow::Error {
    match integrity_error(&e) {
        Some(ie) => anyhow::Error::new(ie.clone()),
        None => anyhow::Error::new(e),
    }
}
