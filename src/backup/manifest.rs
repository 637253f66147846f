//! The backup MANIFEST: the JSON document written last into a backup directory,
//! whose presence makes a backup complete. Field names follow Vitess's
//! `BackupManifest` where one exists, so Vitess operators can read it; cairn adds
//! what it needs beyond them (sizes, stream mode, flavor, a format version).
//!
//! Also owns backup names (`YYYY-MM-DD.HHMMSS.<tablet-alias>`, UTC) and the rule
//! for file names inside a backup (relative, no `..`), because both the backup and
//! the restore side must agree on them. No IO here.
//!
//! May call: `cairn-topo` (engine enums, names); nothing else of the crate.

pub use cairn_topo::engines::{BackupMethod, CompressionEngine};
use cairn_topo::names::{NameError, TabletAlias};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The newest MANIFEST format this code reads, and the one it writes for an
/// incremental backup: a cairn that predates incrementals refuses (and never
/// prunes) one instead of seeding a tablet from binary logs. A reader refuses
/// anything newer.
pub const FORMAT_VERSION: u32 = 3;

/// The format written for an encrypted full backup: a cairn that predates
/// encryption refuses (and never prunes) it instead of trying to decompress
/// ciphertext.
pub const FORMAT_VERSION_ENCRYPTED: u32 = 2;

/// The format written for an incremental backup (see [`FORMAT_VERSION`]).
pub const FORMAT_VERSION_INCREMENTAL: u32 = 3;

/// The format written for a backup without encryption: unchanged since version
/// 1, so every cairn still reads it.
pub const FORMAT_VERSION_PLAIN: u32 = 1;

/// The only value of `Encryption` this code writes and restores.
pub const ENCRYPTION_AGE: &str = "age";

/// The hash algorithm of every MANIFEST entry cairn writes: BLAKE3, fast enough
/// that hashing is not what limits an uncompressed copy.
pub const HASH_ALGORITHM_BLAKE3: &str = "blake3";

/// The hash algorithm cairn wrote before BLAKE3; such backups stay restorable.
pub const HASH_ALGORITHM_SHA256: &str = "sha256";

/// A hash algorithm a MANIFEST entry may name (`HashAlgorithm`), each verified
/// with its own algorithm. A cairn that predates BLAKE3 refuses a `blake3` entry
/// in [`Manifest::check_restorable`] (it only ever accepted `sha256`), so such a
/// backup is unreadable to it, never mis-verified: no format version bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlgorithm {
    /// SHA-256: what cairn wrote before BLAKE3 (and what `sha256sum` prints).
    Sha256,
    /// BLAKE3 with its default 32-byte output (what `b3sum` prints).
    #[default]
    Blake3,
}

impl HashAlgorithm {
    /// The name recorded in the MANIFEST.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => HASH_ALGORITHM_SHA256,
            HashAlgorithm::Blake3 => HASH_ALGORITHM_BLAKE3,
        }
    }

    /// The algorithm a MANIFEST names; `None` for one this code cannot verify.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            HASH_ALGORITHM_SHA256 => Some(HashAlgorithm::Sha256),
            HASH_ALGORITHM_BLAKE3 => Some(HashAlgorithm::Blake3),
            _ => None,
        }
    }

    /// Length of a digest in hex (both are 32 bytes).
    pub fn hex_len(self) -> usize {
        64
    }
}

impl std::fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Values of [`FileEntry::base`]: which part of the server a file came from.
pub mod base {
    /// A file under the data directory (database directories, `mysql.ibd`, …).
    pub const DATA: &str = "Data";
    /// An InnoDB system tablespace file (`ibdata1`, undo tablespaces).
    pub const INNODB_DATA: &str = "InnoDBData";
    /// An InnoDB redo log file.
    pub const INNODB_LOG: &str = "InnoDBLog";
    /// A whole-backup stream (xtrabackup/mariabackup `xbstream` or `tar`).
    pub const STREAM: &str = "Stream";
    /// A binary log file of an incremental backup, named as the server named it.
    pub const BINLOG: &str = "Binlog";
}

/// Errors of this module: malformed names, timestamps or MANIFEST documents.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A backup name that is not `YYYY-MM-DD.HHMMSS.<alias>`.
    #[error("invalid backup name {name:?}: {why}")]
    InvalidBackupName {
        /// The offending name.
        name: String,
        /// Which rule it broke.
        why: String,
    },
    /// A timestamp that is not `YYYY-MM-DD.HHMMSS`.
    #[error(
        "invalid backup timestamp {0:?}: expected YYYY-MM-DD.HHMMSS (UTC), e.g. 2024-01-31.235959"
    )]
    InvalidTimestamp(String),
    /// A file name that could escape the directory it is restored into.
    #[error("invalid file name {name:?} in backup: {why}")]
    InvalidFileName {
        /// The offending name.
        name: String,
        /// Which rule it broke.
        why: &'static str,
    },
    /// JSON that does not parse as a MANIFEST.
    #[error("invalid MANIFEST JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A MANIFEST that parses but cannot be restored by this version of cairn.
    #[error("MANIFEST of backup {backup} cannot be restored: {why}")]
    Unrestorable {
        /// The backup's name.
        backup: String,
        /// Why not.
        why: String,
    },
}

/// RFC3339 UTC with whole seconds, as Go's `time.RFC3339` (what Vitess writes);
/// any RFC3339 offset is accepted when reading.
mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("invalid RFC3339 time {s:?}: {e}")))
    }
}

/// One stored file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Which part of the server the file belongs to (see [`base`]); lets a restore
    /// route files (e.g. redo logs) to where the server expects them.
    #[serde(rename = "Base")]
    pub base: String,
    /// Path relative to the data directory (or the stream's name): where the file
    /// goes back on restore.
    #[serde(rename = "Name")]
    pub name: String,
    /// The file's name inside the backup directory (`0`, `1`, …), so storage never
    /// sees paths from the server.
    #[serde(rename = "StoredName")]
    pub stored_name: String,
    /// Original (uncompressed) bytes; checked after decompression.
    #[serde(rename = "Size")]
    pub size: u64,
    /// Bytes as stored (compressed); checked when reading back.
    #[serde(rename = "StoredSize")]
    pub stored_size: u64,
    /// Hex digest of the stored bytes; a mismatch fails the restore.
    #[serde(rename = "Hash")]
    pub hash: String,
    /// Algorithm of `Hash` (see [`HashAlgorithm`]): `blake3` for what cairn writes
    /// now, `sha256` for what it wrote before (Vitess uses CRC-32).
    #[serde(rename = "HashAlgorithm", default)]
    pub hash_algorithm: String,
}

/// The MANIFEST document of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `YYYY-MM-DD.HHMMSS.<alias>`; equals the backup directory's name.
    #[serde(rename = "BackupName")]
    pub backup_name: String,
    /// Engine that took the backup, and so the one that restores it.
    #[serde(rename = "BackupMethod")]
    pub backup_method: BackupMethod,
    /// Replication position of the data, `MariaDB/<gtid>` or `MySQL56/<gtid-set>`;
    /// a restored server resumes replication from here.
    #[serde(rename = "Position")]
    pub position: String,
    /// `gtid_purged` at backup time, same notation as `Position`.
    #[serde(rename = "PurgedPosition", default)]
    pub purged_position: String,
    /// When the backup started (UTC, whole seconds); the name's timestamp.
    #[serde(rename = "BackupTime", with = "rfc3339")]
    pub backup_time: DateTime<Utc>,
    /// When the backup finished (UTC, whole seconds).
    #[serde(rename = "FinishedTime", with = "rfc3339")]
    pub finished_time: DateTime<Utc>,
    /// `server_uuid` of the source server, for tracing a backup to its origin.
    #[serde(rename = "ServerUUID", default)]
    pub server_uuid: String,
    /// Tablet that took the backup (`zone1-0000000101`).
    #[serde(rename = "TabletAlias")]
    pub tablet_alias: String,
    /// Host of that tablet, for operators.
    #[serde(rename = "Hostname", default)]
    pub hostname: String,
    /// Keyspace the data belongs to.
    #[serde(rename = "Keyspace")]
    pub keyspace: String,
    /// Shard the data belongs to.
    #[serde(rename = "Shard")]
    pub shard: String,
    /// The schedule whose job took the backup: only that schedule's retention
    /// rule may prune it. Absent for a manual backup, and in MANIFESTs written
    /// before the field existed (those count as manual).
    #[serde(rename = "Schedule", default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Server version string; a restore refuses an incompatible server.
    #[serde(rename = "MySQLVersion", default)]
    pub mysql_version: String,
    /// True when the files are safe to open with a newer server version.
    #[serde(rename = "UpgradeSafe", default)]
    pub upgrade_safe: bool,
    /// How every stored file is compressed.
    #[serde(rename = "CompressionEngine")]
    pub compression_engine: CompressionEngine,
    /// Every stored file with its hash, in stored-name order.
    #[serde(rename = "FileEntries", default)]
    pub file_entries: Vec<FileEntry>,
    /// Sum of `Size` over the entries: what a restore writes.
    #[serde(rename = "TotalSize", default)]
    pub total_size: u64,
    /// Sum of `StoredSize` over the entries: what the backup occupies.
    #[serde(rename = "StoredSize", default)]
    pub stored_size: u64,
    /// xtrabackup only: `xbstream` or `tar`, how to unpack the stream.
    #[serde(
        rename = "StreamMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stream_mode: Option<String>,
    /// Server flavor (`MariaDB` or `MySQL`), so a restore picks matching tools.
    #[serde(rename = "Flavor", default)]
    pub flavor: String,
    /// MANIFEST format version; 0 means written by something other than cairn.
    #[serde(rename = "FormatVersion", default)]
    pub format_version: u32,
    /// `age` when every stored file is an age file (of the compressed bytes);
    /// absent for plaintext. The hashes are over the stored (encrypted) bytes.
    #[serde(
        rename = "Encryption",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub encryption: Option<String>,
    /// The age recipients (`age1…`) the files are encrypted to: the identity of
    /// any one of them decrypts the backup.
    #[serde(
        rename = "EncryptionRecipients",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub encryption_recipients: Vec<String>,
    /// What makes an incremental backup one (Vitess's `Incremental`,
    /// `FromPosition`, `FromBackup`, `IncrementalDetails`, at the top level of
    /// the document); all absent for a full backup.
    #[serde(flatten)]
    pub incremental: Incremental,
}

/// The fields of an incremental backup (binary logs, not data files), Vitess's
/// names. `Position` of such a MANIFEST is the state at the end of its files and
/// `PurgedPosition` the state before the oldest binary log the server still had.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incremental {
    /// True for an incremental backup: never restored as a seed.
    #[serde(rename = "Incremental", default, skip_serializing_if = "is_false")]
    pub is_incremental: bool,
    /// Its files hold every transaction after this position (`MariaDB/<gtids>`):
    /// the `Gtid_list` of its first file, never more than what was asked for.
    #[serde(
        rename = "FromPosition",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub from_position: String,
    /// The backup whose `Position` was asked for (`auto` or a backup name);
    /// empty when a position was given.
    #[serde(
        rename = "FromBackup",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub from_backup: String,
    /// The first and last transactions' times and the files that hold them.
    #[serde(
        rename = "IncrementalDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub details: Option<IncrementalDetails>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Vitess's `IncrementalDetails`: when the first and the last transaction of an
/// incremental backup committed (UTC, whole seconds) and which binary log holds
/// each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalDetails {
    /// Start time of the first transaction after `FromPosition`.
    #[serde(rename = "FirstTimestamp", with = "rfc3339")]
    pub first_timestamp: DateTime<Utc>,
    /// The file holding it.
    #[serde(rename = "FirstTimestampBinlog")]
    pub first_timestamp_binlog: String,
    /// Commit time of the last transaction before `Position`.
    #[serde(rename = "LastTimestamp", with = "rfc3339")]
    pub last_timestamp: DateTime<Utc>,
    /// The file holding it.
    #[serde(rename = "LastTimestampBinlog")]
    pub last_timestamp_binlog: String,
}

impl Manifest {
    /// Sets the file entries and the totals derived from them.
    pub fn set_file_entries(&mut self, entries: Vec<FileEntry>) {
        self.total_size = entries.iter().map(|e| e.size).sum();
        self.stored_size = entries.iter().map(|e| e.stored_size).sum();
        self.file_entries = entries;
    }

    /// Marks every stored file as an age file encrypted to `recipients`, and the
    /// MANIFEST as one that predates-encryption readers must refuse.
    pub fn set_encryption(&mut self, recipients: &[String]) {
        self.encryption = Some(ENCRYPTION_AGE.to_string());
        self.encryption_recipients = recipients.to_vec();
        self.format_version = self.format_version.max(FORMAT_VERSION_ENCRYPTED);
    }

    /// Whether this is an incremental backup (binary logs): never a seed.
    pub fn is_incremental(&self) -> bool {
        self.incremental.is_incremental
    }

    /// The JSON bytes written to storage (pretty, for operators reading it).
    pub fn to_json(&self) -> Result<Vec<u8>, ManifestError> {
        let mut v = serde_json::to_vec_pretty(self)?;
        v.push(b'\n');
        Ok(v)
    }

    /// Parses a MANIFEST read from storage.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Checks everything a restore relies on before touching any file: a format
    /// this code understands, a valid hash in an algorithm it verifies on every
    /// entry (an empty hash would make a corrupt file undetectable — Vitess
    /// #19338), safe relative names, no duplicate names.
    pub fn check_restorable(&self) -> Result<(), ManifestError> {
        let bad = |why: String| ManifestError::Unrestorable {
            backup: self.backup_name.clone(),
            why,
        };
        if self.format_version > FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} is newer than this cairn understands ({FORMAT_VERSION})",
                self.format_version
            )));
        }
        if let Some(e) = self.encryption.as_deref().filter(|e| *e != ENCRYPTION_AGE) {
            return Err(bad(format!(
                "encryption {e:?} is not supported (only {ENCRYPTION_AGE:?})"
            )));
        }
        let mut names = std::collections::HashSet::new();
        let mut stored = std::collections::HashSet::new();
        for e in &self.file_entries {
            let Some(algorithm) = HashAlgorithm::parse(&e.hash_algorithm) else {
                return Err(bad(format!(
                    "file {} has hash algorithm {:?}, this cairn verifies only {HASH_ALGORITHM_BLAKE3:?} and {HASH_ALGORITHM_SHA256:?}",
                    e.name, e.hash_algorithm
                )));
            };
            if e.hash.len() != algorithm.hex_len() || !e.hash.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(bad(format!(
                    "file {} has no valid {algorithm} hash ({:?})",
                    e.name, e.hash
                )));
            }
            check_relative_name(&e.name)?;
            if !names.insert(e.name.as_str()) {
                return Err(bad(format!("file {} appears twice", e.name)));
            }
            if !stored.insert(e.stored_name.as_str()) {
                return Err(bad(format!("stored name {} appears twice", e.stored_name)));
            }
        }
        Ok(())
    }
}

/// Refuses a file name that could land outside the directory it is restored into,
/// or is not in normal form: empty, absolute, with an empty, `.` or `..` segment,
/// containing NUL, or longer than 4096 bytes.
pub fn check_relative_name(name: &str) -> Result<(), ManifestError> {
    let bad = |why| ManifestError::InvalidFileName {
        name: name.to_string(),
        why,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > 4096 {
        return Err(bad("longer than 4096 bytes"));
    }
    if name.contains('\0') {
        return Err(bad("contains NUL"));
    }
    if name.starts_with('/') {
        return Err(bad("absolute path"));
    }
    for segment in name.split('/') {
        match segment {
            "" => return Err(bad("empty path segment")),
            "." => return Err(bad("contains .")),
            ".." => return Err(bad("contains ..")),
            _ => {}
        }
    }
    Ok(())
}

/// Timestamp layout of backup names (`2006-01-02.150405` in Go's notation).
const TIMESTAMP_FORMAT: &str = "%Y-%m-%d.%H%M%S";

/// The name of a backup started at `time` by `alias`: `YYYY-MM-DD.HHMMSS.<alias>`,
/// in UTC, with the alias zero-padded (`2024-01-01.123456.zone1-0000000101`).
pub fn backup_name(time: DateTime<Utc>, alias: &TabletAlias) -> String {
    format!("{}.{}", time.format(TIMESTAMP_FORMAT), alias)
}

/// Parses `YYYY-MM-DD.HHMMSS` (UTC), the form of `--restore-from-backup-ts`.
/// Strict: exactly that many digits, nothing around them.
pub fn parse_backup_timestamp(s: &str) -> Result<DateTime<Utc>, ManifestError> {
    let bad = || ManifestError::InvalidTimestamp(s.to_string());
    let b = s.as_bytes();
    let shape_ok = b.len() == 17
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'.',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(bad());
    }
    let naive = NaiveDateTime::parse_from_str(s, TIMESTAMP_FORMAT).map_err(|_| bad())?;
    Ok(Utc.from_utc_datetime(&naive))
}

/// Splits a backup name into its start time and tablet alias. The name must have
/// exactly three dot-separated parts (as Vitess's parsers require) and a valid alias.
pub fn parse_backup_name(name: &str) -> Result<(DateTime<Utc>, TabletAlias), ManifestError> {
    let bad = |why: String| ManifestError::InvalidBackupName {
        name: name.to_string(),
        why,
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() != 3 {
        return Err(bad(
            "expected exactly three dot-separated parts: YYYY-MM-DD.HHMMSS.<tablet-alias>".into(),
        ));
    }
    let time = parse_backup_timestamp(&format!("{}.{}", parts[0], parts[1]))
        .map_err(|e| bad(e.to_string()))?;
    let alias: TabletAlias = parts[2]
        .parse()
        .map_err(|e: NameError| bad(e.to_string()))?;
    Ok((time, alias))
}

#[cfg(test)]
mod tests;
