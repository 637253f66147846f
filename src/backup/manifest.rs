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
/// encrypted backup: a cairn that predates encryption refuses (and never prunes)
/// such a backup instead of trying to decompress ciphertext. A reader refuses
/// anything newer.
pub const FORMAT_VERSION: u32 = 2;

/// The format written for a backup without encryption: unchanged since version
/// 1, so every cairn still reads it.
pub const FORMAT_VERSION_PLAIN: u32 = 1;

/// The only value of `Encryption` this code writes and restores.
pub const ENCRYPTION_AGE: &str = "age";

/// The only hash algorithm cairn writes and accepts for restores.
pub const HASH_ALGORITHM_SHA256: &str = "sha256";

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
    /// Algorithm of `Hash`; always `sha256` for cairn (Vitess uses CRC-32).
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
    /// An incremental backup: binary log files from `FromPosition` to `Position`,
    /// not a data directory. Never restored on its own; a point-in-time restore
    /// applies it on top of a full backup.
    #[serde(rename = "Incremental", default)]
    pub incremental: bool,
    /// Incremental only: the GTID state before its first binlog file (the first
    /// file's `Gtid_list`), same notation as `Position`.
    #[serde(
        rename = "FromPosition",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub from_position: String,
    /// Incremental only: the first and last event times and the files holding them.
    #[serde(
        rename = "IncrementalDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub incremental_details: Option<IncrementalDetails>,
}

/// What an incremental backup's binlogs span in time (Vitess's
/// `IncrementalBackupDetails`): the first and last event timestamps and the
/// binlog files that hold them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalDetails {
    /// Time of the first event (UTC, whole seconds).
    #[serde(rename = "FirstTimestamp", with = "rfc3339")]
    pub first_timestamp: DateTime<Utc>,
    /// The binlog file holding it.
    #[serde(rename = "FirstTimestampBinlog", default)]
    pub first_timestamp_binlog: String,
    /// Time of the last event (UTC, whole seconds).
    #[serde(rename = "LastTimestamp", with = "rfc3339")]
    pub last_timestamp: DateTime<Utc>,
    /// The binlog file holding it.
    #[serde(rename = "LastTimestampBinlog", default)]
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
        self.format_version = self.format_version.max(FORMAT_VERSION);
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
    /// this code understands, a sha256 hash on every entry (an empty hash would
    /// make a corrupt file undetectable — Vitess #19338), safe relative names,
    /// no duplicate names.
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
            if e.hash_algorithm != HASH_ALGORITHM_SHA256 {
                return Err(bad(format!(
                    "file {} has hash algorithm {:?}, only sha256 is supported",
                    e.name, e.hash_algorithm
                )));
            }
            if e.hash.len() != 64 || !e.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "file {} has no valid sha256 hash ({:?})",
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
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        let alias: TabletAlias = "zone1-101".parse().unwrap();
        let mut m = Manifest {
            backup_name: backup_name(t, &alias),
            backup_method: BackupMethod::Builtin,
            position: "MariaDB/0-101-42".into(),
            purged_position: "MariaDB/0-101-1".into(),
            backup_time: t,
            finished_time: t + chrono::Duration::seconds(30),
            server_uuid: "uuid".into(),
            tablet_alias: alias.to_string(),
            hostname: "host".into(),
            keyspace: "commerce".into(),
            shard: "-80".into(),
            schedule: None,
            mysql_version: "10.11.6-MariaDB".into(),
            upgrade_safe: false,
            compression_engine: CompressionEngine::Zstd,
            file_entries: vec![],
            total_size: 0,
            stored_size: 0,
            stream_mode: None,
            encryption: None,
            encryption_recipients: vec![],
            flavor: "MariaDB".into(),
            format_version: FORMAT_VERSION_PLAIN,
            incremental: false,
            from_position: String::new(),
            incremental_details: None,
        };
        m.set_file_entries(vec![FileEntry {
            base: base::DATA.into(),
            name: "commerce/t.ibd".into(),
            stored_name: "0".into(),
            size: 100,
            stored_size: 40,
            hash: "ab".repeat(32),
            hash_algorithm: HASH_ALGORITHM_SHA256.into(),
        }]);
        m
    }

    #[test]
    fn backup_name_round_trips() {
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        let alias: TabletAlias = "zone1-101".parse().unwrap();
        let name = backup_name(t, &alias);
        assert_eq!(name, "2024-01-02.030405.zone1-0000000101");
        let (t2, a2) = parse_backup_name(&name).unwrap();
        assert_eq!(t2, t);
        assert_eq!(a2, alias);
        // Sub-second precision is dropped by the name.
        let t3 = t + chrono::Duration::milliseconds(999);
        assert_eq!(backup_name(t3, &alias), name);
    }

    #[test]
    fn backup_name_parse_errors() {
        for bad in [
            "",
            "2024-01-02.030405",
            "2024-01-02.030405.zone1-101.x",
            "2024-01-02.030405.zone1",
            "2024-01-02.030405.zone1-abc",
            "2024-1-02.030405.zone1-101",
            "2024-01-02.30405.zone1-101",
            "2024-13-02.030405.zone1-101",
            "2024-02-30.030405.zone1-101",
            "2024-01-02.246060.zone1-101",
            "2024-01-02T030405.zone1-101",
            "x024-01-02.030405.zone1-101",
        ] {
            let err = parse_backup_name(bad);
            assert!(err.is_err(), "{bad:?} accepted");
        }
        assert!(parse_backup_name("2024-01-02.030405.zone1-101").is_ok());
    }

    #[test]
    fn timestamp_parsing_is_strict() {
        let t = parse_backup_timestamp("2024-12-31.235959").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 59).unwrap());
        for bad in [
            "2024-12-31",
            "2024-12-31.23595",
            "2024-12-31.2359590",
            " 2024-12-31.235959",
            "2024-12-31 235959",
            "+024-12-31.235959",
        ] {
            assert!(parse_backup_timestamp(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn manifest_json_uses_vitess_field_names_and_round_trips() {
        let m = sample();
        let json = String::from_utf8(m.to_json().unwrap()).unwrap();
        for field in [
            "\"BackupName\"",
            "\"BackupMethod\": \"builtin\"",
            "\"Position\": \"MariaDB/0-101-42\"",
            "\"BackupTime\": \"2024-01-02T03:04:05Z\"",
            "\"FinishedTime\": \"2024-01-02T03:04:35Z\"",
            "\"ServerUUID\"",
            "\"MySQLVersion\"",
            "\"CompressionEngine\": \"zstd\"",
            "\"FileEntries\"",
            "\"StoredName\": \"0\"",
            "\"HashAlgorithm\": \"sha256\"",
            "\"TotalSize\": 100",
            "\"StoredSize\": 40",
            "\"FormatVersion\": 1",
        ] {
            assert!(json.contains(field), "{field} missing in {json}");
        }
        assert!(!json.contains("StreamMode"));
        let back = Manifest::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, m);
        back.check_restorable().unwrap();
    }

    #[test]
    fn incremental_fields_use_the_contract_names_and_default_to_full() {
        let full = String::from_utf8(sample().to_json().unwrap()).unwrap();
        assert!(!full.contains("FromPosition") && !full.contains("IncrementalDetails"));
        assert!(!Manifest::from_json(full.as_bytes()).unwrap().incremental);
        let mut m = sample();
        m.incremental = true;
        m.from_position = "MariaDB/0-101-40".into();
        m.incremental_details = Some(IncrementalDetails {
            first_timestamp: m.backup_time,
            first_timestamp_binlog: "mysql-bin.000002".into(),
            last_timestamp: m.finished_time,
            last_timestamp_binlog: "mysql-bin.000003".into(),
        });
        let json = String::from_utf8(m.to_json().unwrap()).unwrap();
        for field in [
            "\"Incremental\": true",
            "\"FromPosition\": \"MariaDB/0-101-40\"",
            "\"FirstTimestamp\": \"2024-01-02T03:04:05Z\"",
            "\"FirstTimestampBinlog\": \"mysql-bin.000002\"",
            "\"LastTimestamp\": \"2024-01-02T03:04:35Z\"",
            "\"LastTimestampBinlog\": \"mysql-bin.000003\"",
        ] {
            assert!(json.contains(field), "{field} missing in {json}");
        }
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), m);
    }

    #[test]
    fn the_owning_schedule_is_recorded_and_absent_means_manual() {
        let manual = sample();
        let json = String::from_utf8(manual.to_json().unwrap()).unwrap();
        assert!(!json.contains("Schedule"), "{json}");
        let mut owned = sample();
        owned.schedule = Some("hourly".into());
        let json = String::from_utf8(owned.to_json().unwrap()).unwrap();
        assert!(json.contains("\"Schedule\": \"hourly\""), "{json}");
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), owned);
        // A MANIFEST written before the field existed reads as manual.
        let mut v = serde_json::to_value(sample()).unwrap();
        v.as_object_mut().unwrap().remove("Schedule");
        let old: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!(old.schedule, None);
    }

    #[test]
    fn manifest_parsing_errors_and_vitess_leniency() {
        assert!(Manifest::from_json(b"{").is_err());
        assert!(Manifest::from_json(b"{}").is_err());
        let mut v = serde_json::to_value(sample()).unwrap();
        v["CompressionEngine"] = "pgzip".into();
        assert!(serde_json::from_value::<Manifest>(v.clone()).is_err());
        v["CompressionEngine"] = "lz4".into();
        // Vitess writes an empty BackupMethod for builtin.
        v["BackupMethod"] = "".into();
        v["BackupTime"] = "2024-01-02T05:04:05+02:00".into();
        let m: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!(m.backup_method, BackupMethod::Builtin);
        assert_eq!(m.compression_engine, CompressionEngine::Lz4);
        assert_eq!(
            m.backup_time,
            Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
        );
    }

    #[test]
    fn restorability_checks() {
        let mut m = sample();
        m.file_entries[0].hash.clear();
        assert!(m
            .check_restorable()
            .unwrap_err()
            .to_string()
            .contains("no valid sha256"));
        let mut m = sample();
        m.file_entries[0].hash_algorithm = "crc32".into();
        assert!(m.check_restorable().is_err());
        let mut m = sample();
        m.format_version = FORMAT_VERSION + 1;
        assert!(m.check_restorable().is_err());
        let mut m = sample();
        let e = m.file_entries[0].clone();
        m.file_entries.push(FileEntry {
            stored_name: "1".into(),
            ..e
        });
        assert!(m
            .check_restorable()
            .unwrap_err()
            .to_string()
            .contains("twice"));
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../b",
            "",
            "./a",
            "a/./b",
            "a\0b",
            "a//b",
            "a/",
        ] {
            let mut m = sample();
            m.file_entries[0].name = bad.into();
            assert!(m.check_restorable().is_err(), "{bad:?} accepted");
        }
        for good in ["ibdata1", "db/t.ibd", "a/b/c.frm", "a..b/.c"] {
            assert!(check_relative_name(good).is_ok(), "{good:?} refused");
        }
    }
}
