//! Reading ahead: a source is read on its own thread into a small, fixed set of
//! buffers while the caller compresses, hashes and writes the chunks read
//! before, so reading (a disk wait, or a page-cache copy) overlaps the rest of
//! the pipeline instead of alternating with it. Memory stays bounded: at most
//! [`READ_AHEAD_BUFFERS`] buffers of one size per source, recycled.
//!
//! May call: `std` only.

use std::io::{self, Read};
use std::sync::mpsc;

/// Buffers in flight per source when reading ahead: one being filled, the rest
/// queued or being consumed.
pub const READ_AHEAD_BUFFERS: usize = 4;

/// Why [`for_each_chunk`] stopped early.
#[derive(Debug)]
pub(super) enum ChunkError<E> {
    /// Reading the source failed.
    Source(io::Error),
    /// The consumer returned an error (it saw no further chunk).
    Consumer(E),
}

/// Reads `reader` to its end in chunks of at most `buf_size` bytes and hands
/// each, in order, to `consume`. With `ahead`, a scoped thread reads up to
/// [`READ_AHEAD_BUFFERS`] chunks ahead of `consume`; without, both alternate on
/// the calling thread. Either way the first error ends the loop, and nothing is
/// still reading when this returns.
pub(super) fn for_each_chunk<E>(
    reader: &mut (dyn Read + Send),
    buf_size: usize,
    ahead: bool,
    mut consume: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), ChunkError<E>> {
    let buf_size = buf_size.max(1);
    if !ahead {
        let mut buf = vec![0u8; buf_size];
        loop {
            match read_some(reader, &mut buf).map_err(ChunkError::Source)? {
                0 => return Ok(()),
                n => consume(&buf[..n]).map_err(ChunkError::Consumer)?,
            }
        }
    }
    std::thread::scope(|s| {
        // Filled buffers (with their length; 0 is the end) to the consumer, and
        // used ones back to the reader. The reader never holds more than
        // READ_AHEAD_BUFFERS buffers' worth of allocations in total.
        let (full_tx, full_rx) =
            mpsc::sync_channel::<io::Result<(Vec<u8>, usize)>>(READ_AHEAD_BUFFERS);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        s.spawn(move || {
            let mut allocated = 0;
            loop {
                let mut buf = match free_rx.try_recv() {
                    Ok(b) => b,
                    Err(_) if allocated < READ_AHEAD_BUFFERS => {
                        allocated += 1;
                        vec![0u8; buf_size]
                    }
                    Err(_) => match free_rx.recv() {
                        Ok(b) => b,
                        // The consumer stopped.
                        Err(_) => return,
                    },
                };
                let read = read_some(reader, &mut buf).map(|n| (buf, n));
                let last = !matches!(read, Ok((_, n)) if n > 0);
                // A failed send means the consumer stopped: nothing more to do.
                if full_tx.send(read).is_err() || last {
                    return;
                }
            }
        });
        let result = loop {
            match full_rx.recv() {
                Ok(Ok((_, 0))) => break Ok(()),
                Ok(Ok((buf, n))) => {
                    if let Err(e) = consume(&buf[..n]) {
                        break Err(ChunkError::Consumer(e));
                    }
                    // The reader may have ended (an error it sent is next).
                    let _ = free_tx.send(buf);
                }
                Ok(Err(e)) => break Err(ChunkError::Source(e)),
                Err(_) => {
                    break Err(ChunkError::Source(io::Error::other(
                        "the read-ahead thread ended without reaching the end of the source",
                    )))
                }
            }
        };
        // Unblock a reader waiting to send a chunk or for a free buffer; the
        // scope then waits for it (at most the read it is in).
        drop(full_rx);
        drop(free_tx);
        result
    })
}

/// One read into `buf`, retried when interrupted; 0 only at the end.
fn read_some(reader: &mut (dyn Read + Send), buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source of `len` bytes (`i as u8`) read in pieces of at most `piece`,
    /// failing with `fail_at` once that many bytes were read.
    struct Source {
        pos: usize,
        len: usize,
        piece: usize,
        fail_at: Option<usize>,
        interrupted: bool,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            if self.fail_at.is_some_and(|f| self.pos >= f) {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.piece).min(self.len - self.pos);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = (self.pos + i) as u8;
            }
            self.pos += n;
            Ok(n)
        }
    }

    fn source(len: usize, piece: usize, fail_at: Option<usize>) -> Source {
        Source {
            pos: 0,
            len,
            piece,
            fail_at,
            interrupted: false,
        }
    }

    #[test]
    fn chunks_arrive_whole_and_in_order_with_and_without_read_ahead() {
        // (length, read piece, buffer size)
        let cases = [
            (0, 7, 16),
            (1, 7, 16),
            (100_000, 7, 16),
            (100_000, 4096, 1000),
            (1 << 20, 1 << 20, 64 << 10),
        ];
        for (len, piece, buf) in cases {
            for ahead in [false, true] {
                let mut got = Vec::new();
                let mut chunks = 0;
                for_each_chunk::<()>(&mut source(len, piece, None), buf, ahead, |c| {
                    assert!(!c.is_empty() && c.len() <= buf);
                    got.extend_from_slice(c);
                    chunks += 1;
                    Ok(())
                })
                .unwrap();
                let want: Vec<u8> = (0..len).map(|i| i as u8).collect();
                assert!(got == want, "{len} {piece} {buf} ahead={ahead}");
                assert!(chunks >= len.div_ceil(buf));
            }
        }
    }

    #[test]
    fn errors_end_the_loop_on_either_side() {
        for ahead in [false, true] {
            // A source error after some chunks: those were consumed, then the error.
            let mut seen = 0;
            let err =
                for_each_chunk::<()>(&mut source(1 << 20, 1000, Some(5000)), 1000, ahead, |c| {
                    seen += c.len();
                    Ok(())
                })
                .unwrap_err();
            assert!(matches!(err, ChunkError::Source(ref e) if e.to_string() == "disk on fire"));
            assert_eq!(seen, 5000, "ahead={ahead}");
            // A consumer error stops the reader too (a large source is not read
            // to its end: the call returns at once).
            let mut calls = 0;
            let err = for_each_chunk(&mut source(1 << 30, 1 << 16, None), 1 << 16, ahead, |_| {
                calls += 1;
                if calls == 3 {
                    Err("full")
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
            assert!(matches!(err, ChunkError::Consumer("full")));
            assert_eq!(calls, 3);
        }
    }
}
