//! Validation of every name that can become a key or a path: keyspaces, shards,
//! tablet aliases, backup names. Nothing unvalidated reaches etcd or the filesystem.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name that failed validation; the message says which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

fn check(kind: &str, s: &str, max: usize, extra: &[char]) -> Result<(), NameError> {
    if s.is_empty() || s.len() > max {
        return Err(NameError(format!(
            "invalid {kind} {s:?}: must be 1 to {max} characters"
        )));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || extra.contains(c)))
    {
        let allowed: String = extra.iter().collect();
        return Err(NameError(format!(
            "invalid {kind} {s:?}: character {c:?} not allowed (use A-Z a-z 0-9 _{allowed})"
        )));
    }
    Ok(())
}

/// Keyspace: `[A-Za-z0-9_]{1,63}`, not beginning with `_` (reserved for cairn's
/// own prefixes in backup storage: `_topo/`, `_binlog/`).
pub fn validate_keyspace(s: &str) -> Result<(), NameError> {
    check("keyspace", s, 63, &[])?;
    if s.starts_with('_') {
        return Err(NameError(format!(
            "invalid keyspace {s:?}: a keyspace may not begin with '_' (reserved for \
             cairn's own prefixes in backup storage, such as _topo/)"
        )));
    }
    Ok(())
}

/// Shard: `[A-Za-z0-9_-]{1,63}` (key ranges such as `-80`, `80-`).
pub fn validate_shard(s: &str) -> Result<(), NameError> {
    check("shard", s, 63, &['-'])
}

/// Cell: `[A-Za-z0-9_]{1,63}`.
pub fn validate_cell(s: &str) -> Result<(), NameError> {
    check("cell", s, 63, &[])
}

/// Backup name: `[A-Za-z0-9._-]{1,128}`, not `.` or `..`.
pub fn validate_backup_name(s: &str) -> Result<(), NameError> {
    check("backup name", s, 128, &['.', '-'])?;
    if s == "." || s == ".." {
        return Err(NameError(format!("invalid backup name {s:?}")));
    }
    Ok(())
}

/// Schedule name: same rule as a backup name.
pub fn validate_schedule_name(s: &str) -> Result<(), NameError> {
    check("schedule name", s, 128, &['.', '-'])?;
    if s == "." || s == ".." {
        return Err(NameError(format!("invalid schedule name {s:?}")));
    }
    Ok(())
}

/// `KEYSPACE/SHARD`, written with exactly one slash.
pub fn parse_keyspace_shard(s: &str) -> Result<(String, String), NameError> {
    let mut parts = s.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ks), Some(shard), None) => {
            validate_keyspace(ks)?;
            validate_shard(shard)?;
            Ok((ks.to_string(), shard.to_string()))
        }
        _ => Err(NameError(format!(
            "invalid KEYSPACE/SHARD {s:?}: expected one slash, e.g. commerce/0"
        ))),
    }
}

/// A tablet's identity: `CELL-UID`, printed with the uid zero-padded to ten digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TabletAlias {
    /// Failure domain the tablet lives in.
    pub cell: String,
    /// Unique id within the cell; also the basis of the mysqld server_id.
    pub uid: u32,
}

impl TabletAlias {
    /// Builds an alias after validating the cell.
    pub fn new(cell: &str, uid: u32) -> Result<Self, NameError> {
        validate_cell(cell)?;
        Ok(Self {
            cell: cell.to_string(),
            uid,
        })
    }
}

impl fmt::Display for TabletAlias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:010}", self.cell, self.uid)
    }
}

impl FromStr for TabletAlias {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let bad = || {
            NameError(format!(
                "invalid tablet alias {s:?}: expected CELL-UID, e.g. zone1-101"
            ))
        };
        let (cell, uid) = s.rsplit_once('-').ok_or_else(bad)?;
        if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let uid: u32 = uid.parse().map_err(|_| {
            NameError(format!(
                "invalid tablet alias {s:?}: uid does not fit in 32 bits"
            ))
        })?;
        validate_cell(cell).map_err(|e| NameError(format!("invalid tablet alias {s:?}: {e}")))?;
        Ok(Self {
            cell: cell.to_string(),
            uid,
        })
    }
}

impl Serialize for TabletAlias {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TabletAlias {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_parse_padded_or_not_and_print_padded() {
        let a: TabletAlias = "zone1-101".parse().unwrap();
        assert_eq!(a.to_string(), "zone1-0000000101");
        let b: TabletAlias = "zone1-0000000101".parse().unwrap();
        assert_eq!(a, b);
        for bad in [
            "",
            "zone1",
            "zone1-",
            "-101",
            "zo/ne-1",
            "zone1-x1",
            "zone1-4294967296",
            "zone1--1",
        ] {
            assert!(bad.parse::<TabletAlias>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_follow_the_contract() {
        assert!(validate_keyspace("commerce_1").is_ok());
        assert!(validate_keyspace("com-merce").is_err());
        assert!(validate_keyspace("_binlog").is_err());
        assert!(validate_keyspace("a_b").is_ok());
        assert!(validate_keyspace(&"a".repeat(64)).is_err());
        assert!(validate_keyspace("_topo").is_err());
        assert!(validate_keyspace("_binlog").is_err());
        assert!(validate_keyspace("a_").is_ok());
        assert!(validate_shard("-80").is_ok());
        assert!(validate_shard("80-").is_ok());
        assert!(validate_shard("8/0").is_err());
        assert!(validate_backup_name("2024-01-01.123456.zone1-0000000101").is_ok());
        for bad in [".", "..", "a/b", "", "a b", &"x".repeat(129)] {
            assert!(validate_backup_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_keyspace_shard("commerce/-80").unwrap(),
            ("commerce".into(), "-80".into())
        );
        for bad in ["commerce", "commerce/0/1", "/0", "commerce/", "com merce/0"] {
            assert!(parse_keyspace_shard(bad).is_err(), "{bad:?} accepted");
        }
    }
}
