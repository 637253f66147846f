//! MariaDB GTIDs as data: parse, format, merge and compare GTID lists (`0-1-5,1-2-9`). Pure,
//! no IO; used by [`super::flavor`] to build and compare positions. Calls nothing
//! else in the crate.

use std::collections::HashMap;
use std::fmt;

use anyhow::{bail, Context, Result};

/// One MariaDB GTID: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    /// Replication domain; each domain is an independent stream.
    pub domain: u32,
    /// server_id of the server that first wrote the event.
    pub server: u32,
    /// Sequence number within the domain; increases monotonically under gtid_strict_mode.
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// Parses a MariaDB GTID list (`0-1-5,1-2-9`; empty means "nothing executed").
pub fn parse_gtid_list(s: &str) -> Result<Vec<Gtid>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|part| {
            let part = part.trim();
            let mut it = part.splitn(3, '-');
            let (Some(d), Some(srv), Some(seq)) = (it.next(), it.next(), it.next()) else {
                bail!("invalid GTID {part:?}: want domain-server-sequence");
            };
            Ok(Gtid {
                domain: d
                    .parse()
                    .with_context(|| format!("invalid GTID domain in {part:?}"))?,
                server: srv
                    .parse()
                    .with_context(|| format!("invalid GTID server_id in {part:?}"))?,
                seq: seq
                    .parse()
                    .with_context(|| format!("invalid GTID sequence in {part:?}"))?,
            })
        })
        .collect()
}

/// Formats a GTID list, sorted by domain, the way MariaDB prints it.
pub fn format_gtid_list(gtids: &[Gtid]) -> String {
    let mut v = gtids.to_vec();
    v.sort();
    v.iter().map(Gtid::to_string).collect::<Vec<_>>().join(",")
}

/// Per domain, keeps the GTID with the highest sequence number across all lists.
///
/// Under gtid_strict_mode sequence numbers only grow within a domain, so this is the
/// latest executed GTID of each domain whichever list recorded it.
pub fn merge_gtid_lists(lists: &[Vec<Gtid>]) -> Vec<Gtid> {
    let mut by_domain: HashMap<u32, Gtid> = HashMap::new();
    for g in lists.iter().flatten() {
        by_domain
            .entry(g.domain)
            .and_modify(|cur| {
                if g.seq > cur.seq {
                    *cur = *g;
                }
            })
            .or_insert(*g);
    }
    let mut v: Vec<Gtid> = by_domain.into_values().collect();
    v.sort();
    v
}

/// Whether position `a` includes every transaction of position `b`: for each domain
/// of `b`, `a` has that domain at a sequence number at least as high. Positions are
/// "newest GTID per domain" lists (`gtid_binlog_pos`, a MANIFEST's `Position`);
/// under gtid_strict_mode a domain's sequence numbers only grow, so this is set
/// containment of the histories they stand for.
pub fn position_contains(a: &[Gtid], b: &[Gtid]) -> bool {
    let a = merge_gtid_lists(&[a.to_vec()]);
    merge_gtid_lists(&[b.to_vec()]).iter().all(|want| {
        a.iter()
            .any(|have| have.domain == want.domain && have.seq >= want.seq)
    })
}

/// The sequence number position `pos` holds for `domain` (0 when it has none).
pub fn seq_of(pos: &[Gtid], domain: u32) -> u64 {
    pos.iter()
        .filter(|g| g.domain == domain)
        .map(|g| g.seq)
        .max()
        .unwrap_or(0)
}

/// Whether `gtid` is already part of the history `pos` stands for.
pub fn position_has(pos: &[Gtid], gtid: Gtid) -> bool {
    seq_of(pos, gtid.domain) >= gtid.seq && pos.iter().any(|g| g.domain == gtid.domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_lists_parse_format_and_merge() {
        let a = parse_gtid_list("0-1-5, 1-2-9").unwrap();
        assert_eq!(
            a,
            vec![
                Gtid {
                    domain: 0,
                    server: 1,
                    seq: 5
                },
                Gtid {
                    domain: 1,
                    server: 2,
                    seq: 9
                }
            ]
        );
        assert_eq!(format_gtid_list(&a), "0-1-5,1-2-9");
        assert!(parse_gtid_list("").unwrap().is_empty());
        assert!(parse_gtid_list("0-1").is_err());
        assert!(parse_gtid_list("0-1-x").is_err());
        assert!(parse_gtid_list("0-1-5'; DROP").is_err());
        let b = parse_gtid_list("0-3-7,2-1-1").unwrap();
        assert_eq!(
            format_gtid_list(&merge_gtid_lists(&[a, b])),
            "0-3-7,1-2-9,2-1-1"
        );
    }

    #[test]
    fn containment_is_per_domain() {
        let p = |s: &str| parse_gtid_list(s).unwrap();
        // (a, b, a contains b)
        let cases = [
            ("0-1-5", "0-1-5", true),
            ("0-1-5", "0-1-4", true),
            ("0-1-5", "0-2-4", true), // another server wrote seq 4 of the same domain
            ("0-1-5", "0-1-6", false),
            ("0-1-5", "0-1-5,1-1-1", false), // domain 1 unknown to a
            ("0-1-5,1-1-3", "1-1-2", true),
            ("", "", true),
            ("0-1-1", "", true),
            ("", "0-1-1", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(position_contains(&p(a), &p(b)), want, "{a} ⊇ {b}");
        }
        let pos = p("0-1-5,2-3-9");
        let g = |d, s| Gtid {
            domain: d,
            server: 1,
            seq: s,
        };
        assert!(position_has(&pos, g(0, 5)));
        assert!(!position_has(&pos, g(0, 6)));
        assert!(!position_has(&pos, g(1, 1)));
        assert_eq!(seq_of(&pos, 2), 9);
        assert_eq!(seq_of(&pos, 1), 0);
    }
}
