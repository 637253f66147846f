//! MariaDB binary log files as data: walk the events of a binlog (a whole file, or
//! the growing head of one being written) and say what it holds — the GTID state
//! before it (its `Gtid_list` event), every transaction's GTID, time and byte range,
//! and where the last complete transaction ends. Point-in-time recovery builds on
//! this: incremental backups record the first and last timestamps of the files they
//! copy, the archiver cuts segments at transaction boundaries, and restores find the
//! files that reach a target. Pure: reads from any `Read`, no server, no files.
//!
//! The format (binlog v4, as MariaDB 10.x writes it): the magic `\xfebin`, then
//! events, each a 19-byte header (timestamp, type, server_id, length, next position,
//! flags) and a body; when the `Format_description` event says so, every later event
//! ends with a CRC32, which is checked (for the `Format_description` event, as
//! the server computes it: without the header's "in use" flag, which the server
//! clears in place when it closes the file). A transaction starts at a `GTID` event and
//! ends at its `XID` event, at a `COMMIT`/`ROLLBACK` query, or after its one event
//! when the GTID is standalone (DDL). Encrypted binlogs are refused.
//!
//! May call: [`super::gtid`]; nothing else of the crate.

use std::io::{self, Read};

use super::gtid::{merge_gtid_lists, Gtid};

/// The four bytes every binlog file starts with.
pub const BINLOG_MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// Length of an event header in binlog v4.
const HEADER_LEN: usize = 19;
/// Larger than any event MariaDB writes (`max_allowed_packet` is at most 1 GiB).
const MAX_EVENT_LEN: u32 = 1 << 30;

/// Event type codes this module looks at.
mod kind {
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const GTID: u8 = 162;
    pub const GTID_LIST: u8 = 163;
    pub const START_ENCRYPTION: u8 = 164;
}

/// Offset of the flags in an event header.
const FLAGS_OFFSET: usize = 17;
/// Header flag of a `Format_description` event: the file is open (being
/// written, or its server crashed). Not covered by the checksum.
const FL_BINLOG_IN_USE: u8 = 1;

/// `flags2` bit of a GTID event: a transaction of one event and no COMMIT (DDL).
const FL_STANDALONE: u8 = 1;
/// `Format_description` checksum algorithm meaning CRC32.
const CHECKSUM_CRC32: u8 = 1;

/// Why a binlog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BinlogError {
    /// The source failed.
    #[error("reading binlog: {0}")]
    Io(#[from] io::Error),
    /// Not a binlog file at all.
    #[error("not a binlog file (no \\xfebin magic at its start)")]
    NotBinlog,
    /// An event that cannot be what MariaDB writes.
    #[error("binlog corrupt at byte {offset}: {why}")]
    Corrupt {
        /// Where the bad event starts.
        offset: u64,
        /// What is wrong with it.
        why: String,
    },
    /// `encrypt_binlog` is on: cairn cannot read the events.
    #[error("binlog is encrypted (encrypt_binlog=ON): cannot read its events")]
    Encrypted,
}

/// One transaction found in a binlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Its GTID.
    pub gtid: Gtid,
    /// When it started (its GTID event's timestamp), Unix seconds.
    pub started: u32,
    /// When it committed (its last event's timestamp), Unix seconds.
    pub committed: u32,
    /// Byte offset of its GTID event.
    pub start: u64,
    /// Byte offset just past its last event.
    pub end: u64,
}

/// What a binlog (or the complete part of one still being written) holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinlogSummary {
    /// The binlog state before this file: its `Gtid_list` event, one GTID per
    /// (domain, server) that wrote before. Empty if the file has none yet.
    pub gtid_list: Vec<Gtid>,
    /// Whether the file holds a `Gtid_list` event (every MariaDB ≥ 10.0 binlog does).
    pub has_gtid_list: bool,
    /// The complete transactions, in file order.
    pub transactions: Vec<Transaction>,
    /// Bytes from the file's start that end at an event boundary with no
    /// transaction open: a prefix that is a valid binlog on its own.
    pub complete_len: u64,
    /// Bytes read in all (may end in a partial event or an open transaction).
    pub read_len: u64,
    /// The file ended with a `Rotate` or `Stop` event: the server closed it.
    pub closed: bool,
    /// The next file's name from a closing `Rotate` event.
    pub rotated_to: Option<String>,
    /// The server version from the `Format_description` event.
    pub server_version: String,
}

impl BinlogSummary {
    /// The newest GTID per domain after this file's complete transactions: the
    /// `Gtid_list` merged with every transaction.
    pub fn end_position(&self) -> Vec<Gtid> {
        let seen: Vec<Gtid> = self.transactions.iter().map(|t| t.gtid).collect();
        merge_gtid_lists(&[self.gtid_list.clone(), seen])
    }

    /// The first transaction's start time, if any.
    pub fn first_timestamp(&self) -> Option<u32> {
        self.transactions.first().map(|t| t.started)
    }

    /// The last transaction's commit time, if any.
    pub fn last_timestamp(&self) -> Option<u32> {
        self.transactions.iter().map(|t| t.committed).max()
    }
}

/// One raw event: its header fields and body (checksum removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Byte offset of the event in the file.
    pub offset: u64,
    /// Unix seconds from the header.
    pub timestamp: u32,
    /// Event type code.
    pub kind: u8,
    /// server_id of the server that wrote it.
    pub server_id: u32,
    /// The body, without header and checksum.
    pub body: Vec<u8>,
}

/// Reads events one at a time from a binlog; tolerates a partial last event (a file
/// still being written) by stopping before it.
pub struct EventReader<R> {
    src: R,
    offset: u64,
    crc32: bool,
    done: bool,
}

impl<R: Read> EventReader<R> {
    /// Checks the magic and positions the reader on the first event.
    pub fn new(mut src: R) -> Result<Self, BinlogError> {
        let mut magic = [0u8; 4];
        if read_full(&mut src, &mut magic)? < 4 || magic != BINLOG_MAGIC {
            return Err(BinlogError::NotBinlog);
        }
        Ok(Self {
            src,
            offset: 4,
            crc32: false,
            done: false,
        })
    }

    /// Byte offset of the next event (= bytes consumed so far).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next whole event, or `None` at the end (or before a partial event).
    pub fn next_event(&mut self) -> Result<Option<Event>, BinlogError> {
        if self.done {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        let got = read_full(&mut self.src, &mut header)?;
        if got < HEADER_LEN {
            self.done = true;
            return Ok(None);
        }
        let at = self.offset;
        let corrupt = |why: String| BinlogError::Corrupt { offset: at, why };
        let timestamp = u32_at(&header, 0);
        let kind = header[4];
        let server_id = u32_at(&header, 5);
        let len = u32_at(&header, 9);
        if !(HEADER_LEN as u32..=MAX_EVENT_LEN).contains(&len) {
            return Err(corrupt(format!("event length {len} out of range")));
        }
        let mut rest = vec![0u8; len as usize - HEADER_LEN];
        if read_full(&mut self.src, &mut rest)? < rest.len() {
            self.done = true;
            return Ok(None);
        }
        if kind == kind::FORMAT_DESCRIPTION {
            // binlog_version(2) server_version(50) created(4) header_len(1)
            // post-header lengths … checksum_alg(1) checksum(4).
            if rest.len() < 57 + 5 {
                return Err(corrupt("Format_description event too short".into()));
            }
            self.crc32 = rest[rest.len() - 5] == CHECKSUM_CRC32;
        }
        if self.crc32 {
            if rest.len() < 4 {
                return Err(corrupt("event too short for its checksum".into()));
            }
            let body_len = rest.len() - 4;
            let want = u32_at(&rest, body_len);
            let mut hasher = crc32fast::Hasher::new();
            let mut summed = header;
            if kind == kind::FORMAT_DESCRIPTION {
                // The server sets "in use" on an open file's Format_description
                // event and clears it on close, in place: its checksum is always
                // over the header without that flag.
                summed[FLAGS_OFFSET] &= !FL_BINLOG_IN_USE;
            }
            hasher.update(&summed);
            hasher.update(&rest[..body_len]);
            let got = hasher.finalize();
            if got != want {
                return Err(corrupt(format!(
                    "checksum mismatch (stored {want:08x}, computed {got:08x})"
                )));
            }
            rest.truncate(body_len);
        }
        if kind == kind::START_ENCRYPTION {
            return Err(BinlogError::Encrypted);
        }
        self.offset += u64::from(len);
        Ok(Some(Event {
            offset: at,
            timestamp,
            kind,
            server_id,
            body: rest,
        }))
    }
}

/// Reads a whole binlog (or the readable head of one being written) and summarises it.
pub fn summarize<R: Read>(src: R) -> Result<BinlogSummary, BinlogError> {
    let mut reader = EventReader::new(src)?;
    let mut out = BinlogSummary {
        complete_len: 4,
        read_len: 4,
        ..Default::default()
    };
    // The open transaction, and whether it ends after its next event (standalone).
    let mut open: Option<(Transaction, bool)> = None;
    while let Some(ev) = reader.next_event()? {
        let end = reader.offset();
        out.read_len = end;
        let corrupt = |why: &str| BinlogError::Corrupt {
            offset: ev.offset,
            why: why.to_string(),
        };
        if let Some((mut txn, standalone)) = open.take() {
            txn.committed = txn.committed.max(ev.timestamp);
            txn.end = end;
            let closes = standalone
                || ev.kind == kind::XID
                || (ev.kind == kind::QUERY && is_commit_or_rollback(&ev.body));
            if ev.kind == kind::GTID {
                return Err(corrupt("GTID event inside an open transaction"));
            }
            if closes {
                out.transactions.push(txn);
                out.complete_len = end;
            } else {
                open = Some((txn, standalone));
            }
            continue;
        }
        match ev.kind {
            kind::GTID => {
                // seq_no(8) domain_id(4) flags2(1) …
                if ev.body.len() < 13 {
                    return Err(corrupt("GTID event too short"));
                }
                let gtid = Gtid {
                    domain: u32_at(&ev.body, 8),
                    server: ev.server_id,
                    seq: u64_at(&ev.body, 0),
                };
                let standalone = ev.body[12] & FL_STANDALONE != 0;
                let txn = Transaction {
                    gtid,
                    started: ev.timestamp,
                    committed: ev.timestamp,
                    start: ev.offset,
                    end,
                };
                open = Some((txn, standalone));
                continue;
            }
            kind::GTID_LIST => {
                out.gtid_list = parse_gtid_list_event(&ev.body).map_err(|w| corrupt(&w))?;
                out.has_gtid_list = true;
            }
            kind::FORMAT_DESCRIPTION => {
                let v = ev.body.get(2..52).unwrap_or_default();
                let v = v.split(|b| *b == 0).next().unwrap_or_default();
                out.server_version = String::from_utf8_lossy(v).into_owned();
            }
            kind::ROTATE => {
                out.closed = true;
                // position(8) then the next file's name.
                out.rotated_to = ev
                    .body
                    .get(8..)
                    .map(|n| String::from_utf8_lossy(n).into_owned());
            }
            kind::STOP => out.closed = true,
            _ => {}
        }
        out.complete_len = end;
    }
    Ok(out)
}

/// The `Gtid_list` event at the head of a binlog (the binlog state before the
/// file), reading only up to it: `None` when the file has none before its first
/// transaction (or is too short yet to hold one). Cheap on a large or growing file.
pub fn read_gtid_list<R: Read>(src: R) -> Result<Option<Vec<Gtid>>, BinlogError> {
    let mut reader = EventReader::new(src)?;
    while let Some(ev) = reader.next_event()? {
        match ev.kind {
            kind::GTID_LIST => {
                return parse_gtid_list_event(&ev.body).map(Some).map_err(|why| {
                    BinlogError::Corrupt {
                        offset: ev.offset,
                        why,
                    }
                })
            }
            kind::GTID => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// Decodes a `Gtid_list` event body: count (low 28 bits) then
/// `domain(4) server(4) seq(8)` per entry.
fn parse_gtid_list_event(body: &[u8]) -> Result<Vec<Gtid>, String> {
    if body.len() < 4 {
        return Err("Gtid_list event too short".into());
    }
    let count = (u32_at(body, 0) & 0x0fff_ffff) as usize;
    let need = 4 + count * 16;
    if body.len() < need {
        return Err(format!(
            "Gtid_list event holds {count} GTIDs but is too short"
        ));
    }
    Ok((0..count)
        .map(|i| {
            let at = 4 + i * 16;
            Gtid {
                domain: u32_at(body, at),
                server: u32_at(body, at + 4),
                seq: u64_at(body, at + 8),
            }
        })
        .collect())
}

/// Whether a Query event's statement is `COMMIT` or `ROLLBACK` (what ends a
/// transaction on a non-transactional engine or an empty one).
fn is_commit_or_rollback(body: &[u8]) -> bool {
    // thread_id(4) exec_time(4) db_len(1) error_code(2) status_vars_len(2)
    // status_vars db NUL query
    if body.len() < 13 {
        return false;
    }
    let db_len = body[8] as usize;
    let vars_len = u16::from_le_bytes([body[11], body[12]]) as usize;
    let query_at = 13 + vars_len + db_len + 1;
    let Some(query) = body.get(query_at..) else {
        return false;
    };
    let q = String::from_utf8_lossy(query);
    let q = q.trim().trim_end_matches(';').trim();
    q.eq_ignore_ascii_case("COMMIT") || q.eq_ignore_ascii_case("ROLLBACK")
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_full<R: Read>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
