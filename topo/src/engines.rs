//! The enums that name how a backup is taken and stored: the engine, the compression
//! of stored files and xtrabackup's stream format. One type each, used by the flags
//! (clap `ValueEnum` with the `clap` feature), the records in etcd (jobs, schedules,
//! backup records) and the MANIFEST, always spelled the same way.
//!
//! Owns nothing else; depends on nothing in this crate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How the backup was taken; decides which engine restores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BackupMethod {
    /// cairn's file-copy engine (mysqld stopped); Vitess's `builtin`.
    Builtin,
    /// A hot backup streamed by `xtrabackup`/`mariabackup`.
    Xtrabackup,
}

impl BackupMethod {
    /// The MANIFEST spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMethod::Builtin => "builtin",
            BackupMethod::Xtrabackup => "xtrabackup",
        }
    }
}

impl fmt::Display for BackupMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackupMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            // Vitess writes an empty method for builtin backups.
            "builtin" | "" => Ok(BackupMethod::Builtin),
            "xtrabackup" => Ok(BackupMethod::Xtrabackup),
            _ => Err(format!(
                "unknown backup method {s:?}: expected builtin or xtrabackup"
            )),
        }
    }
}

impl Serialize for BackupMethod {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BackupMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// How stored files are compressed; restore uses the engine named in the MANIFEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum CompressionEngine {
    /// zstd frames (possibly written by zstdmt; the format is the same).
    Zstd,
    /// LZ4 frame format.
    Lz4,
    /// Stored as is.
    None,
}

impl CompressionEngine {
    /// The MANIFEST and command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionEngine::Zstd => "zstd",
            CompressionEngine::Lz4 => "lz4",
            CompressionEngine::None => "none",
        }
    }
}

impl fmt::Display for CompressionEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompressionEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zstd" => Ok(CompressionEngine::Zstd),
            "lz4" => Ok(CompressionEngine::Lz4),
            "none" => Ok(CompressionEngine::None),
            _ => Err(format!(
                "unsupported compression engine {s:?}: expected zstd, lz4 or none"
            )),
        }
    }
}

impl Serialize for CompressionEngine {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CompressionEngine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// xtrabackup's stream formats (`--xtrabackup-stream-mode`); MariaDB's mariabackup
/// only writes `xbstream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// A tar stream (MySQL's xtrabackup only).
    Tar,
    /// The xbstream format.
    Xbstream,
}

impl StreamMode {
    /// The flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Tar => "tar",
            StreamMode::Xbstream => "xbstream",
        }
    }
}

impl fmt::Display for StreamMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for m in [BackupMethod::Builtin, BackupMethod::Xtrabackup] {
            let j = serde_json::to_string(&m).unwrap();
            assert_eq!(j, format!("\"{}\"", m.as_str()));
            assert_eq!(serde_json::from_str::<BackupMethod>(&j).unwrap(), m);
        }
        // Vitess writes an empty method for builtin backups.
        assert_eq!(
            serde_json::from_str::<BackupMethod>("\"\"").unwrap(),
            BackupMethod::Builtin
        );
        assert!(serde_json::from_str::<BackupMethod>("\"mysqlshell\"").is_err());
        for c in [
            CompressionEngine::Zstd,
            CompressionEngine::Lz4,
            CompressionEngine::None,
        ] {
            assert_eq!(c.as_str().parse::<CompressionEngine>().unwrap(), c);
        }
        assert!("gzip".parse::<CompressionEngine>().is_err());
        assert_eq!(
            serde_json::to_string(&StreamMode::Xbstream).unwrap(),
            "\"xbstream\""
        );
    }
}
