//! Containment of an xbstream before `mbstream -x` sees it: [`XbstreamGuard`] sits
//! between the verified backup stream and the unpacker's stdin, reads each chunk's
//! header as it passes, and refuses (before forwarding that chunk) any path that could
//! land outside the staging directory: absolute, with `..`, `.` or empty segments, NUL,
//! or not UTF-8. The same rule as the builtin engine's file names
//! ([`crate::backup::manifest::check_relative_name`]). [`check_no_symlinks`] then
//! verifies the unpacked tree holds no symlink (the stream cannot make one; one found
//! means something other than the stream wrote there).
//!
//! The format (MariaDB's `xbstream`): chunks of `XBSTCK01`, a flags byte, a type byte
//! (`P` payload, `E` end of file), the path's length (u32 LE) and the path; a payload
//! chunk goes on with its length (u64 LE), offset (u64 LE), a checksum (u32) and the
//! data. Nothing else is accepted: mariabackup writes nothing else, and `mbstream`
//! stops at an entry it dislikes yet exits 0, which would leave a partial data
//! directory behind a "successful" unpack.
//!
//! Pure over `Write`; calls only `manifest` and std.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::backup::manifest::check_relative_name;

/// Every chunk starts with this.
const MAGIC: &[u8] = b"XBSTCK01";
/// Magic, flags, type, path length.
const HEADER_LEN: usize = MAGIC.len() + 1 + 1 + 4;
/// Payload length, offset, checksum.
const PAYLOAD_HEADER_LEN: usize = 8 + 8 + 4;
/// Longest path accepted (the builtin engine's limit).
const MAX_PATH: usize = 4096;

/// Where in a chunk the guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Collecting the fixed header (into `pending`).
    Header,
    /// Collecting a path of this length (after the header, into `pending`).
    Path { len: usize, payload: bool },
    /// Collecting a payload's length, offset and checksum (forwarded as they come).
    PayloadHeader,
    /// Passing this many payload bytes through.
    Payload(u64),
}

/// A `Write` that forwards an xbstream to `inner` once each chunk's path is checked.
/// Call [`XbstreamGuard::finish`] at the end: a stream cut inside a chunk is an error.
pub struct XbstreamGuard<W> {
    inner: W,
    part: Part,
    /// Header bytes of the current chunk not yet forwarded (held until the path passes).
    pending: Vec<u8>,
    /// Payload header bytes still to see.
    payload_header_left: usize,
    /// The current chunk's path (for the payload's length check and error messages).
    path: String,
    /// Chunks seen.
    chunks: u64,
}

fn refused(why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("refusing the xbstream: {why}"),
    )
}

impl<W: Write> XbstreamGuard<W> {
    pub fn new(inner: W) -> Self {
        XbstreamGuard {
            inner,
            part: Part::Header,
            pending: Vec::with_capacity(HEADER_LEN + 256),
            payload_header_left: 0,
            path: String::new(),
            chunks: 0,
        }
    }

    /// The inner writer, if the stream ended at a chunk boundary.
    pub fn finish(self) -> io::Result<W> {
        if self.part != Part::Header || !self.pending.is_empty() {
            return Err(refused(format!(
                "it ends inside a chunk (after {} chunks{})",
                self.chunks,
                if self.path.is_empty() {
                    String::new()
                } else {
                    format!(", in {:?}", self.path)
                }
            )));
        }
        Ok(self.inner)
    }

    /// Consumes as much of `data` as the current part takes; returns how much.
    fn step(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.part {
            Part::Header => {
                let take = (HEADER_LEN - self.pending.len()).min(data.len());
                self.pending.extend_from_slice(&data[..take]);
                if self.pending.len() == HEADER_LEN {
                    self.part = self.parse_header()?;
                }
                Ok(take)
            }
            Part::Path { len, payload } => {
                let take = (HEADER_LEN + len - self.pending.len()).min(data.len());
                self.pending.extend_from_slice(&data[..take]);
                if self.pending.len() == HEADER_LEN + len {
                    self.path = check_path(&self.pending[HEADER_LEN..])?;
                    self.inner.write_all(&self.pending)?;
                    self.pending.clear();
                    self.chunks += 1;
                    self.part = if payload {
                        self.payload_header_left = PAYLOAD_HEADER_LEN;
                        Part::PayloadHeader
                    } else {
                        Part::Header
                    };
                }
                Ok(take)
            }
            Part::PayloadHeader => {
                let take = self.payload_header_left.min(data.len());
                self.pending.extend_from_slice(&data[..take]);
                self.payload_header_left -= take;
                if self.payload_header_left == 0 {
                    let mut len = [0u8; 8];
                    len.copy_from_slice(&self.pending[..8]);
                    let len = u64::from_le_bytes(len);
                    self.inner.write_all(&self.pending)?;
                    self.pending.clear();
                    self.part = if len == 0 {
                        Part::Header
                    } else {
                        Part::Payload(len)
                    };
                }
                Ok(take)
            }
            Part::Payload(left) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                self.inner.write_all(&data[..take])?;
                let left = left - take as u64;
                self.part = if left == 0 {
                    Part::Header
                } else {
                    Part::Payload(left)
                };
                Ok(take)
            }
        }
    }

    /// Checks the fixed header in `pending`; the part that follows it.
    fn parse_header(&self) -> io::Result<Part> {
        let h = &self.pending;
        if &h[..MAGIC.len()] != MAGIC {
            return Err(refused(format!(
                "chunk {} does not start with {:?} (not an xbstream, or corrupt)",
                self.chunks + 1,
                String::from_utf8_lossy(MAGIC)
            )));
        }
        let kind = h[MAGIC.len() + 1];
        let payload = match kind {
            b'P' => true,
            b'E' => false,
            other => {
                return Err(refused(format!(
                    "chunk {} has unknown type {:#04x}",
                    self.chunks + 1,
                    other
                )))
            }
        };
        let mut len = [0u8; 4];
        len.copy_from_slice(&h[MAGIC.len() + 2..HEADER_LEN]);
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > MAX_PATH {
            return Err(refused(format!(
                "chunk {} has a path of {len} bytes",
                self.chunks + 1
            )));
        }
        Ok(Part::Path { len, payload })
    }
}

/// The path of a chunk, if it stays inside the directory it is unpacked into.
fn check_path(raw: &[u8]) -> io::Result<String> {
    let path = std::str::from_utf8(raw).map_err(|_| {
        refused(format!(
            "path {:?} is not UTF-8",
            String::from_utf8_lossy(raw)
        ))
    })?;
    check_relative_name(path).map_err(|e| refused(format!("{e}")))?;
    Ok(path.to_string())
}

impl<W: Write> Write for XbstreamGuard<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < data.len() {
            done += self.step(&data[done..])?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Refuses a tree holding a symlink anywhere below `dir` (not followed).
pub fn check_no_symlinks(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if kind.is_symlink() {
            let to = fs::read_link(&path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            anyhow::bail!(
                "{} is a symlink (to {to}); nothing unpacked from a backup may point outside its staging directory",
                path.display()
            );
        }
        if kind.is_dir() {
            check_no_symlinks(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
