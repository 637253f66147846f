//! The spool of a binlog being streamed: reading what arrived of one file from the
//! archive's cursor on, without re-reading the part already archived. The window
//! read is the file's head (magic and `Format_description`, which says whether
//! events carry a CRC32) followed by the bytes from the cursor; its summary's
//! offsets are mapped back to the file's. Blocking; called on a blocking thread.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context};

use crate::mysql::binlog::{summarize, BinlogSummary};

/// What arrived of one spooled file from the cursor on.
pub(super) struct Window {
    /// The summary, in file offsets (transactions, `complete_len`, `read_len`).
    pub summary: BinlogSummary,
    /// End of the `Format_description` event (`u64::MAX` while it is not whole).
    pub header_end: u64,
    /// The file's bytes from `from` on (as read).
    pub bytes: Vec<u8>,
    /// Where `bytes` start in the file.
    pub from: u64,
    /// The file's length when read.
    pub file_len: u64,
}

impl Window {
    /// The file's bytes `[start, end)`, which must lie within the window.
    pub fn slice(&self, start: u64, end: u64) -> &[u8] {
        let a = (start - self.from) as usize;
        let b = (end - self.from) as usize;
        &self.bytes[a..b]
    }
}

/// Reads `path` from `offset` on, at most `max` bytes, and summarises it.
pub(super) fn read_window(path: &Path, offset: u64, max: u64) -> anyhow::Result<Window> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let file_len = f.metadata()?.len();
    let mut head = vec![0u8; 23.min(file_len as usize)];
    f.read_exact(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    // The first event's length, bytes 9..13 of its header after the 4-byte magic.
    let header_end = if head.len() >= 23 {
        4 + u64::from(u32::from_le_bytes([head[13], head[14], head[15], head[16]]))
    } else {
        0
    };
    if header_end == 0 || header_end > file_len || offset < header_end {
        // From the start: the whole (bounded) prefix.
        let n = file_len.min(max.max(header_end));
        let mut bytes = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(0))?;
        f.read_exact(&mut bytes)?;
        let summary = summarize(&bytes[..])?;
        // Not whole yet: nothing may be cut (see `plan_cut`).
        let header_end = if header_end != 0 && header_end <= file_len {
            header_end
        } else {
            u64::MAX
        };
        return Ok(Window {
            summary,
            header_end,
            bytes,
            from: 0,
            file_len,
        });
    }
    if offset > file_len {
        bail!(
            "{} is {file_len} bytes, shorter than the archive's cursor {offset}",
            path.display()
        );
    }
    let mut header = vec![0u8; header_end as usize];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut header)?;
    let n = (file_len - offset).min(max);
    let mut bytes = vec![0u8; n as usize];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut bytes)?;
    let mut summary = summarize(header.as_slice().chain(&bytes[..]))?;
    let map = |x: u64| x - header_end + offset;
    for t in &mut summary.transactions {
        t.start = map(t.start);
        t.end = map(t.end);
    }
    summary.complete_len = map(summary.complete_len.max(header_end));
    summary.read_len = map(summary.read_len.max(header_end));
    Ok(Window {
        summary,
        header_end,
        bytes,
        from: offset,
        file_len,
    })
}
