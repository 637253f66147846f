//! Where to cut what arrived of a source binlog file into segments: a pure
//! decision over the file's summary ([`crate::mysql::binlog::summarize`], offsets
//! of the source file) and the archive's cursor in it.
//!
//! - Only the complete part is cut (`complete_len`: no transaction open), so every
//!   segment ends at a transaction boundary.
//! - A file's first segment starts at 0 and is stored only once its
//!   `Format_description` event is whole (`header_end`).
//! - A segment holds at most `max_bytes` unless one transaction alone is larger:
//!   a burst becomes several segments, each read back whole by a restore.
//! - After a move to a new primary (`skip`: the position already archived from
//!   the old one), the transactions the archive already has are not stored again:
//!   the file's head `[0, first transaction)` is stored alone, then segments start
//!   at the first transaction not yet archived.

use crate::mysql::binlog::{BinlogSummary, Transaction};
use crate::mysql::gtid::{position_has, Gtid};

/// One segment to store: a byte range of the source file and its transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub start: u64,
    pub end: u64,
    pub txns: Vec<Transaction>,
    /// The file's head before transactions archived from another primary.
    pub moved_head: bool,
}

/// What to store, and where the cursor goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutPlan {
    pub pieces: Vec<Piece>,
    /// The cursor after storing every piece (transactions skipped included).
    pub offset: u64,
    /// A transaction not yet archived was reached: skipping is over.
    pub skip_done: bool,
}

/// Plans the segments of one source file from `offset` on. Pure.
pub fn plan_cut(
    s: &BinlogSummary,
    offset: u64,
    header_end: u64,
    skip: Option<&[Gtid]>,
    max_bytes: u64,
) -> CutPlan {
    let complete = s.complete_len;
    let mut plan = CutPlan {
        pieces: vec![],
        offset,
        skip_done: skip.is_none(),
    };
    if complete <= offset || (offset == 0 && complete < header_end) {
        return plan;
    }
    let txns: Vec<&Transaction> = s
        .transactions
        .iter()
        .filter(|t| t.start >= offset && t.end <= complete)
        .collect();
    let mut from = offset;
    let mut rest: &[&Transaction] = &txns;
    if let Some(pos) = skip {
        let had = rest
            .iter()
            .take_while(|t| position_has(pos, t.gtid))
            .count();
        let first_new = rest.get(had);
        if offset == 0 {
            let head_end = rest.first().map_or(complete, |t| t.start);
            plan.pieces.push(Piece {
                start: 0,
                end: head_end,
                txns: vec![],
                moved_head: true,
            });
            from = head_end;
        }
        match first_new {
            Some(t) => {
                from = t.start;
                plan.skip_done = true;
            }
            None => {
                // Everything complete so far is archived already.
                plan.offset = rest.last().map_or(from, |t| t.end).max(from);
                return plan;
            }
        }
        rest = &rest[had..];
    }
    let mut start = from;
    let mut held: Vec<Transaction> = vec![];
    for t in rest {
        if !held.is_empty() && t.end - start > max_bytes {
            let end = t.start;
            plan.pieces.push(Piece {
                start,
                end,
                txns: std::mem::take(&mut held),
                moved_head: false,
            });
            start = end;
        }
        held.push((*t).clone());
    }
    if complete > start {
        plan.pieces.push(Piece {
            start,
            end: complete,
            txns: held,
            moved_head: false,
        });
    }
    plan.offset = complete;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seq: u64, start: u64, end: u64) -> Transaction {
        Transaction {
            gtid: Gtid {
                domain: 0,
                server: 101,
                seq,
            },
            started: 1000 + seq as u32,
            committed: 1000 + seq as u32,
            start,
            end,
        }
    }

    fn summary(txns: Vec<Transaction>, complete: u64) -> BinlogSummary {
        BinlogSummary {
            transactions: txns,
            complete_len: complete,
            read_len: complete + 7,
            ..Default::default()
        }
    }

    /// (start, end, first seq..last seq)
    fn shape(p: &CutPlan) -> Vec<(u64, u64, Vec<u64>)> {
        p.pieces
            .iter()
            .map(|x| (x.start, x.end, x.txns.iter().map(|t| t.gtid.seq).collect()))
            .collect()
    }

    #[test]
    fn cuts_at_transaction_boundaries() {
        let txns = vec![t(1, 300, 400), t(2, 400, 500), t(3, 500, 900)];
        let pos = |seq| {
            vec![Gtid {
                domain: 0,
                server: 101,
                seq,
            }]
        };
        // (what, summary, offset, skip, max, pieces, new offset, skip_done)
        type Row = (
            &'static str,
            BinlogSummary,
            u64,
            Option<Vec<Gtid>>,
            u64,
            Vec<(u64, u64, Vec<u64>)>,
            u64,
            bool,
        );
        let rows: Vec<Row> = vec![
            (
                "a new file: header and transactions in one",
                summary(txns.clone(), 900),
                0,
                None,
                1 << 20,
                vec![(0, 900, vec![1, 2, 3])],
                900,
                true,
            ),
            (
                "the format description is not whole yet",
                summary(vec![], 4),
                0,
                None,
                1 << 20,
                vec![],
                0,
                true,
            ),
            (
                "nothing new",
                summary(txns.clone(), 900),
                900,
                None,
                1 << 20,
                vec![],
                900,
                true,
            ),
            (
                "from the cursor on, trailing events included",
                summary(txns.clone(), 950),
                400,
                None,
                1 << 20,
                vec![(400, 950, vec![2, 3])],
                950,
                true,
            ),
            (
                "a burst is split at max_bytes",
                summary(txns.clone(), 900),
                300,
                None,
                250,
                vec![(300, 500, vec![1, 2]), (500, 900, vec![3])],
                900,
                true,
            ),
            (
                "one transaction larger than max_bytes stays whole",
                summary(txns.clone(), 900),
                500,
                None,
                10,
                vec![(500, 900, vec![3])],
                900,
                true,
            ),
            (
                "a move: the head alone, then from the first new transaction",
                summary(txns.clone(), 900),
                0,
                Some(pos(1)),
                1 << 20,
                vec![(0, 300, vec![]), (400, 900, vec![2, 3])],
                900,
                true,
            ),
            (
                "a move: everything complete is archived already",
                summary(txns.clone(), 900),
                0,
                Some(pos(3)),
                1 << 20,
                vec![(0, 300, vec![])],
                900,
                false,
            ),
            (
                "a move, later in the file: still skipping",
                summary(txns.clone(), 900),
                300,
                Some(pos(2)),
                1 << 20,
                vec![(500, 900, vec![3])],
                900,
                true,
            ),
        ];
        for (what, s, offset, skip, max, want, want_offset, want_done) in rows {
            let p = plan_cut(&s, offset, 256, skip.as_deref(), max);
            assert_eq!(shape(&p), want, "{what}");
            assert_eq!(p.offset, want_offset, "{what}");
            assert_eq!(p.skip_done, want_done, "{what}");
            let heads: Vec<bool> = p.pieces.iter().map(|x| x.moved_head).collect();
            let want_heads: Vec<bool> = p
                .pieces
                .iter()
                .map(|x| skip.is_some() && x.start == 0)
                .collect();
            assert_eq!(heads, want_heads, "{what}: moved heads");
        }
    }
}
