//! Table tests of the binlog reader over synthetic binlogs built here byte by byte,
//! with and without CRC32 checksums. (Real binlogs from a running mariadbd are read
//! in the integration tests.)

use super::*;

/// Builds a binlog the way MariaDB lays one out.
struct Builder {
    bytes: Vec<u8>,
    crc: bool,
}

impl Builder {
    fn new(crc: bool) -> Self {
        let mut b = Self {
            bytes: BINLOG_MAGIC.to_vec(),
            crc: false,
        };
        // Format_description: version 4, server version, created, header len 19,
        // some post-header lengths, checksum alg, checksum.
        let mut body = vec![4, 0];
        let mut ver = b"10.11.6-MariaDB-log".to_vec();
        ver.resize(50, 0);
        body.extend(ver);
        body.extend(0u32.to_le_bytes());
        body.push(19);
        body.extend([0u8; 10]);
        body.push(u8::from(crc));
        if !crc {
            // MariaDB keeps the checksum field in the Format_description event
            // even with checksums off.
            body.extend([0u8; 4]);
        }
        b.crc = crc;
        b.event(1000, kind::FORMAT_DESCRIPTION, 1, body);
        b
    }

    fn event(&mut self, ts: u32, kind: u8, server: u32, body: Vec<u8>) -> &mut Self {
        let start = self.bytes.len() as u32;
        let len = HEADER_LEN as u32 + body.len() as u32 + if self.crc { 4 } else { 0 };
        let mut ev = Vec::new();
        ev.extend(ts.to_le_bytes());
        ev.push(kind);
        ev.extend(server.to_le_bytes());
        ev.extend(len.to_le_bytes());
        ev.extend((start + len).to_le_bytes());
        ev.extend(0u16.to_le_bytes());
        ev.extend(body);
        if self.crc {
            let c = crc32fast::hash(&ev);
            ev.extend(c.to_le_bytes());
        }
        self.bytes.extend(ev);
        self
    }

    fn gtid_list(&mut self, gtids: &[(u32, u32, u64)]) -> &mut Self {
        let mut body = (gtids.len() as u32).to_le_bytes().to_vec();
        for (d, s, q) in gtids {
            body.extend(d.to_le_bytes());
            body.extend(s.to_le_bytes());
            body.extend(q.to_le_bytes());
        }
        self.event(1000, kind::GTID_LIST, 1, body)
    }

    fn gtid(&mut self, ts: u32, domain: u32, server: u32, seq: u64, standalone: bool) -> &mut Self {
        let mut body = seq.to_le_bytes().to_vec();
        body.extend(domain.to_le_bytes());
        body.push(u8::from(standalone));
        body.extend([0u8; 6]);
        self.event(ts, kind::GTID, server, body)
    }

    fn query(&mut self, ts: u32, sql: &str) -> &mut Self {
        let mut body = vec![0u8; 8];
        body.push(2); // db_len
        body.extend(0u16.to_le_bytes());
        body.extend(0u16.to_le_bytes()); // no status vars
        body.extend(b"db\0");
        body.extend(sql.as_bytes());
        self.event(ts, kind::QUERY, 1, body)
    }

    fn rows(&mut self, ts: u32) -> &mut Self {
        self.event(ts, 30, 1, vec![7u8; 40])
    }

    fn xid(&mut self, ts: u32) -> &mut Self {
        self.event(ts, kind::XID, 1, 42u64.to_le_bytes().to_vec())
    }

    fn rotate(&mut self, next: &str) -> &mut Self {
        let mut body = 4u64.to_le_bytes().to_vec();
        body.extend(next.as_bytes());
        self.event(0, kind::ROTATE, 1, body)
    }
}

fn g(domain: u32, server: u32, seq: u64) -> Gtid {
    Gtid {
        domain,
        server,
        seq,
    }
}

#[test]
fn summarises_transactions_positions_and_times() {
    for crc in [false, true] {
        let mut b = Builder::new(crc);
        b.gtid_list(&[(0, 1, 10), (1, 2, 4)])
            .gtid(2000, 0, 1, 11, false)
            .query(2000, "BEGIN")
            .rows(2000)
            .xid(2001)
            .gtid(2005, 0, 1, 12, true)
            .query(2005, "CREATE TABLE t (a INT)")
            .gtid(2010, 1, 3, 5, false)
            .query(2010, "BEGIN")
            .rows(2010)
            .query(2011, "COMMIT")
            .rotate("mysql-bin.000002");
        let s = summarize(&b.bytes[..]).unwrap();
        assert_eq!(s.gtid_list, vec![g(0, 1, 10), g(1, 2, 4)], "crc={crc}");
        assert!(s.has_gtid_list);
        let gtids: Vec<Gtid> = s.transactions.iter().map(|t| t.gtid).collect();
        assert_eq!(gtids, vec![g(0, 1, 11), g(0, 1, 12), g(1, 3, 5)]);
        assert_eq!(s.first_timestamp(), Some(2000));
        assert_eq!(s.last_timestamp(), Some(2011));
        assert_eq!(s.transactions[0].committed, 2001);
        assert_eq!(s.end_position(), vec![g(0, 1, 12), g(1, 3, 5)]);
        assert!(s.closed);
        assert_eq!(s.rotated_to.as_deref(), Some("mysql-bin.000002"));
        assert_eq!(s.complete_len, b.bytes.len() as u64);
        assert_eq!(s.server_version, "10.11.6-MariaDB-log");
        // Transaction byte ranges tile the file between the header events and the rotate.
        assert_eq!(s.transactions[0].end, s.transactions[1].start);
        assert_eq!(s.transactions[1].end, s.transactions[2].start);
    }
}

#[test]
fn a_growing_file_counts_only_complete_transactions() {
    let mut b = Builder::new(true);
    b.gtid_list(&[])
        .gtid(2000, 0, 1, 1, false)
        .query(2000, "BEGIN")
        .rows(2000)
        .xid(2000);
    let done = b.bytes.len() as u64;
    b.gtid(2001, 0, 1, 2, false).query(2001, "BEGIN").rows(2001);
    let open_txn = b.bytes.len();
    b.xid(2002);
    let full = b.bytes.clone();

    // (bytes visible, transactions complete, complete_len)
    let cases: &[(usize, usize, u64)] = &[
        (open_txn, 1, done),     // second transaction still open
        (open_txn + 5, 1, done), // its XID half written
        (full.len(), 2, full.len() as u64),
    ];
    for &(visible, txns, complete) in cases {
        let s = summarize(&full[..visible]).unwrap();
        assert_eq!(s.transactions.len(), txns, "visible={visible}");
        assert_eq!(s.complete_len, complete, "visible={visible}");
        assert!(!s.closed);
        // The complete prefix is itself a readable binlog with the same transactions.
        let again = summarize(&full[..s.complete_len as usize]).unwrap();
        assert_eq!(again.transactions, s.transactions);
    }
}

#[test]
fn refuses_what_is_not_a_readable_binlog() {
    assert!(matches!(
        summarize(&b"hello world"[..]),
        Err(BinlogError::NotBinlog)
    ));
    assert!(matches!(summarize(&b""[..]), Err(BinlogError::NotBinlog)));

    let mut b = Builder::new(true);
    b.gtid_list(&[])
        .gtid(2000, 0, 1, 1, true)
        .query(2000, "DROP TABLE t");
    let mut flipped = b.bytes.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 0xff;
    let err = summarize(&flipped[..]).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    let mut enc = Builder::new(true);
    enc.event(2000, kind::START_ENCRYPTION, 1, vec![0u8; 20]);
    assert!(matches!(
        summarize(&enc.bytes[..]),
        Err(BinlogError::Encrypted)
    ));

    let mut bad_len = Builder::new(false).bytes;
    bad_len.extend([0u8; 9]);
    bad_len.extend(5u32.to_le_bytes()); // length below a header
    bad_len.extend([0u8; 6]);
    let err = summarize(&bad_len[..]).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");

    let mut nested = Builder::new(false);
    nested.gtid(1, 0, 1, 1, false).gtid(1, 0, 1, 2, false);
    assert!(summarize(&nested.bytes[..]).is_err());
}

#[test]
fn the_head_gtid_list_is_read_without_the_rest() {
    let mut b = Builder::new(true);
    b.gtid_list(&[(0, 1, 10), (1, 2, 4)])
        .gtid(2000, 0, 1, 11, true)
        .query(2000, "DROP TABLE t");
    assert_eq!(
        read_gtid_list(&b.bytes[..]).unwrap(),
        Some(vec![g(0, 1, 10), g(1, 2, 4)])
    );
    // A corrupt event after the head does not matter.
    let mut tail = b.bytes.clone();
    let n = tail.len() - 3;
    tail[n] ^= 0xff;
    assert!(read_gtid_list(&tail[..]).unwrap().is_some());
    let mut none = Builder::new(false);
    none.gtid(2000, 0, 1, 1, true).query(2000, "DROP TABLE t");
    assert_eq!(read_gtid_list(&none.bytes[..]).unwrap(), None);
    assert!(matches!(
        read_gtid_list(&b"nope"[..]),
        Err(BinlogError::NotBinlog)
    ));
}

#[test]
fn an_open_files_in_use_flag_is_outside_the_checksum() {
    // What mariadbd does: the checksum of the Format_description event is over
    // its header without the "in use" flag, set while the file is open.
    let mut b = Builder::new(true);
    b.gtid_list(&[(0, 1, 3)])
        .gtid(2000, 0, 1, 4, true)
        .query(2000, "DROP TABLE t");
    let mut open = b.bytes.clone();
    open[4 + FLAGS_OFFSET] |= FL_BINLOG_IN_USE;
    let s = summarize(&open[..]).unwrap();
    assert_eq!(s.transactions.len(), 1);
    assert_eq!(read_gtid_list(&open[..]).unwrap(), Some(vec![g(0, 1, 3)]));
    // Any other flag is covered.
    let mut other = b.bytes.clone();
    other[4 + FLAGS_OFFSET] |= 0x40;
    assert!(summarize(&other[..]).is_err());
}
