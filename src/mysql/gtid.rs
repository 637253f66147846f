//! MariaDB GTIDs as data: parse, format and merge GTID lists (`0-1-5,1-2-9`). Pure,
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
}
