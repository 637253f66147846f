//! Verifying what comes out of storage: [`VerifiedReader`], the one reader in
//! the backup module that hashes every stored byte, decompresses, and fails its
//! last read with an [`IntegrityError`] when the bytes or sizes differ from the
//! MANIFEST entry.
//!
//! May call: the pipeline's types, [`crate::backup::manifest`].

use std::io::{self, BufReader, Read};

use sha2::{Digest, Sha256};

use super::{buf_size_for, IntegrityError};
use crate::backup::manifest::{CompressionEngine, FileEntry};

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
    /// The MANIFEST entry being checked against.
    pub fn entry(&self) -> &FileEntry {
        &self.entry
    }

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
pub(super) fn io_to_anyhow(e: io::Error) -> anyhow::Error {
    match integrity_error(&e) {
        Some(ie) => anyhow::Error::new(ie.clone()),
        None => anyhow::Error::new(e),
    }
}
