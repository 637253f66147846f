//! Backup storage, the trait side: the object-store-friendly [`BackupStorage`]
//! trait the engines, the tablet and the coordinator use, its errors, the listing
//! types and the name rules every backend applies. The backends live beside it.
//!
//! - [`mod@file`]: the `file` backend [`FileStorage`] (layout, permissions, blobs);
//!   `file_writer` is its backup under construction (MANIFEST-last bookkeeping),
//!   `disk` the owner-only file-system primitives both use.
//! - [`mod@s3`]: the `s3` backend [`S3Storage`] (S3 and S3-compatible servers:
//!   the same layout as keys, streamed multipart uploads, ranged GETs, the
//!   MANIFEST created last with a conditional create); `bookkeeping` is the
//!   MANIFEST-last rule both backends' writers apply.
//! - `fault` (feature `fault-injection` only): `FaultyStorage`, a wrapper over
//!   any backend whose writes fail after N bytes or are throttled, for tests.
//!
//! Layout (see CONTRACT.md, "Backup storage"):
//! `<root>/<keyspace>/<shard>/<backup-name>/{0,1,…,MANIFEST}`, plus opaque blobs
//! (etcd snapshots) under `<root>/_topo/`. A backup directory without a MANIFEST
//! is incomplete and never restored; one whose MANIFEST cannot be read, parsed or
//! restored is unreadable ([`BackupState`]): kept, never restored, reported. The
//! MANIFEST is written last, atomically,
//! after every data file is durable. Files are 0600 and directories 0700,
//! whatever the umask. Every name is validated before it becomes a path.
//!
//! The control operations are async (an object store is remote); the data path
//! ([`FileSink`], [`BackupStorage::open_file`]) is plain blocking `Read`/`Write`,
//! because the copy pipeline runs compression and hashing on blocking threads
//! anyway and a blocking file descriptor is the fastest way to feed them.
//!
//! May call: [`super::manifest`], `cairn-topo`'s name rules; nothing above backup.

use std::io::{self, Read, Write};

use cairn_topo::names::{validate_backup_name, validate_keyspace, validate_shard, NameError};
use futures::future::BoxFuture;
use tokio::io::AsyncRead;

use super::manifest::{Manifest, ManifestError};

mod bookkeeping;
mod disk;
#[cfg(feature = "fault-injection")]
mod fault;
pub mod file;
mod file_writer;
pub mod s3;
#[cfg(test)]
mod tests;

pub(crate) use disk::create_dirs_0700;
#[cfg(feature = "fault-injection")]
pub use fault::{FaultConfig, FaultyStorage};
pub use file::FileStorage;
pub use s3::{S3Config, S3Storage, ServerSideEncryption};

/// Name of the document that makes a backup complete.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Temporary name the MANIFEST is written under before its atomic rename.
const MANIFEST_TMP: &str = "MANIFEST.tmp";
/// Top-level directories reserved for blobs; never a keyspace in this storage.
/// `_topo` holds blobs directly; `_binlog` one directory per shard
/// (`_binlog/<keyspace>/<shard>`, the archived binlog segments).
pub const BLOB_DIRS: &[&str] = &["_topo", "_binlog"];
/// The top-level directory of archived binlogs.
pub const BINLOG_DIR: &str = "_binlog";
/// Longest blob name (archived binlog segments carry their range in the name).
const MAX_BLOB_NAME: usize = 220;
/// Mode of every file cairn creates in storage: readable by its owner only.
const FILE_MODE: u32 = 0o600;
/// Mode of every directory cairn creates in storage.
const DIR_MODE: u32 = 0o700;

/// What can go wrong in storage. `NotFound` and `AlreadyExists` are distinct so
/// callers can act on them (a name collision, a backup removed meanwhile).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A keyspace, shard, backup, stored-file or blob name that failed validation.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The named backup, file or blob does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The named backup or blob exists already; nothing was overwritten.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// An operating-system (or object-store) error, with what was being done.
    #[error("{context}: {error}")]
    Io {
        /// What was being done, on which path.
        context: String,
        /// The underlying error. Its text is part of the message and it is not a
        /// `source()`, so an error chain (`{:#}`) does not print it twice.
        error: io::Error,
    },
    /// A MANIFEST that does not parse.
    #[error("MANIFEST of backup {backup}: {source}")]
    Manifest {
        /// `ks/shard/name` of the backup.
        backup: String,
        /// Why it does not parse.
        source: ManifestError,
    },
    /// The API was used out of order (e.g. a file created after the MANIFEST).
    #[error("{0}")]
    Misuse(String),
}

impl StorageError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            error: source,
        }
    }
}

/// Shorthand for storage results.
pub type StorageResult<T> = Result<T, StorageError>;

/// What a backup's MANIFEST says about it, as listed from storage. Three states,
/// because "not finished" and "cannot be understood" call for opposite actions:
/// an incomplete backup past its grace period is abandoned and may be removed,
/// an unreadable one may be perfectly good data (a brief I/O error, a MANIFEST
/// written by a newer cairn) and is never removed or restored automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupState {
    /// The MANIFEST is present, parses and passes [`Manifest::check_restorable`]:
    /// the backup may be restored, and it counts for retention.
    Complete,
    /// No MANIFEST: still being written, or abandoned.
    Incomplete,
    /// A MANIFEST is present but cannot be read, does not parse, or is one this
    /// version of cairn would refuse to restore, or a file it lists is missing
    /// or of another size in storage. Kept, never restored, reported.
    Unreadable,
}

impl BackupState {
    /// `complete`, `incomplete` or `unreadable`: the spelling in JSON and tables.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackupState::Complete => "complete",
            BackupState::Incomplete => "incomplete",
            BackupState::Unreadable => "unreadable",
        }
    }
}

/// One backup as listed from storage. Build it with [`BackupInfo::classify`] (or
/// the shorthands beside it), which keeps `state`, `complete` and `error` in step.
#[derive(Debug, Clone)]
pub struct BackupInfo {
    /// The backup's directory name, `YYYY-MM-DD.HHMMSS.<alias>` for cairn's own.
    pub name: String,
    /// Complete, incomplete or unreadable; see [`BackupState`].
    pub state: BackupState,
    /// `state == Complete`: only then may it be restored or count for retention.
    pub complete: bool,
    /// The parsed MANIFEST: always when complete, also when unreadable because it
    /// parses but cannot be restored (then for display only).
    pub manifest: Option<Manifest>,
    /// Why the backup is unreadable (`None` unless `state == Unreadable`).
    pub error: Option<String>,
    /// Bytes the backup occupies in storage (all its files, MANIFEST included).
    pub size_bytes: u64,
}

impl BackupInfo {
    /// The one decision of a backup's state, from what reading its MANIFEST gave:
    /// `Ok(None)` (absent) is incomplete; an error (I/O or parse) is unreadable;
    /// a parsed MANIFEST is complete exactly when it is restorable
    /// ([`Manifest::check_restorable`], the check restore makes), unreadable
    /// otherwise. Retention and restore both read the result, so "complete" for
    /// one is "restorable" for the other. Pure.
    pub fn classify(
        name: impl Into<String>,
        read: StorageResult<Option<Manifest>>,
        size_bytes: u64,
    ) -> Self {
        let name = name.into();
        let (state, manifest, error) = match read {
            Ok(None) => (BackupState::Incomplete, None, None),
            Ok(Some(m)) => match m.check_restorable() {
                Ok(()) => (BackupState::Complete, Some(m), None),
                Err(e) => (BackupState::Unreadable, Some(m), Some(e.to_string())),
            },
            Err(e) => (BackupState::Unreadable, None, Some(e.to_string())),
        };
        BackupInfo {
            name,
            complete: state == BackupState::Complete,
            state,
            manifest,
            error,
            size_bytes,
        }
    }

    /// A backup without a MANIFEST.
    pub fn incomplete(name: impl Into<String>, size_bytes: u64) -> Self {
        Self::classify(name, Ok(None), size_bytes)
    }

    /// A backup whose MANIFEST could not be read or parsed, with why.
    pub fn unreadable(name: impl Into<String>, error: impl Into<String>, size_bytes: u64) -> Self {
        BackupInfo {
            name: name.into(),
            state: BackupState::Unreadable,
            complete: false,
            manifest: None,
            error: Some(error.into()),
            size_bytes,
        }
    }

    /// A backup with a parsed MANIFEST: complete if restorable, else unreadable.
    pub fn with_manifest(name: impl Into<String>, manifest: Manifest, size_bytes: u64) -> Self {
        Self::classify(name, Ok(Some(manifest)), size_bytes)
    }

    /// A complete backup becomes unreadable, with the reason, when a file its
    /// MANIFEST lists is not in `present` with its stored size
    /// ([`check_stored_files`]): restoring it would fail halfway, and retention
    /// must not count it as the newest complete backup. Other states unchanged.
    pub fn with_stored_files(mut self, present: &StoredFiles) -> Self {
        let Some(m) = self.restorable_manifest() else {
            return self;
        };
        if let Err(why) = check_stored_files(m, present) {
            self.state = BackupState::Unreadable;
            self.complete = false;
            self.error = Some(why);
        }
        self
    }

    /// Whether the MANIFEST is present but unusable (see [`BackupState::Unreadable`]).
    pub fn is_unreadable(&self) -> bool {
        self.state == BackupState::Unreadable
    }

    /// The MANIFEST a restore may use: `Some` exactly when the backup is complete.
    pub fn restorable_manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref().filter(|_| self.complete)
    }
}

/// The stored files of one backup as a listing sees them: stored name → bytes.
pub type StoredFiles = std::collections::BTreeMap<String, u64>;

/// Whether every file `m` lists is in `present` with the stored size the
/// MANIFEST says; the error names the first that is not (missing, truncated or
/// grown). Pure: a listing that already has the sizes checks this for free.
pub fn check_stored_files(m: &Manifest, present: &StoredFiles) -> Result<(), String> {
    for e in &m.file_entries {
        match present.get(&e.stored_name) {
            None => {
                return Err(format!(
                    "stored file {} ({}) is missing from storage",
                    e.stored_name, e.name
                ))
            }
            Some(&n) if n != e.stored_size => {
                return Err(format!(
                    "stored file {} ({}) has {n} bytes in storage, its MANIFEST says {}",
                    e.stored_name, e.name, e.stored_size
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A keyspace/shard directory present in storage (for reconciliation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShardDir {
    /// Keyspace name.
    pub keyspace: String,
    /// Shard name.
    pub shard: String,
}

/// A blob as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob's name within its directory.
    pub name: String,
    /// Its size in bytes.
    pub size_bytes: u64,
}

/// What [`BackupStorage::put_blob`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobWritten {
    /// Bytes stored.
    pub size_bytes: u64,
    /// Hex sha256 of the stored bytes, computed while writing.
    pub sha256: String,
}

/// Writer of one stored file of a backup under construction. Blocking; used
/// from the pipeline's worker threads.
pub trait FileSink: Write + Send {
    /// Flushes, makes the file durable (fsync) and returns the bytes stored. A sink
    /// dropped without `finish` counts as abandoned and must not be referenced by
    /// the MANIFEST.
    fn finish(self: Box<Self>) -> StorageResult<u64>;
}

/// A backup being written. Thread-safe: many files may be written in parallel.
pub trait BackupWriter: Send + Sync {
    /// The backup's name.
    fn name(&self) -> &str;

    /// Creates (or, after an abandoned attempt, recreates) the stored file
    /// `stored_name` (a plain file name such as `0`).
    fn create_file<'a>(
        &'a self,
        stored_name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn FileSink>>>;

    /// Writes the MANIFEST, last and atomically; afterwards the backup is complete
    /// and no more files may be created. Fails if a file is still being written or
    /// an entry names a file that was not finished with that `StoredSize`.
    fn write_manifest<'a>(&'a self, manifest: &'a Manifest) -> BoxFuture<'a, StorageResult<()>>;

    /// Removes everything written so far, the directory included.
    fn abort(&self) -> BoxFuture<'_, StorageResult<()>>;
}

/// A backup storage backend, shared as `Arc<dyn BackupStorage>`.
pub trait BackupStorage: Send + Sync {
    /// Every keyspace/shard that has a directory, sorted.
    fn list_shards(&self) -> BoxFuture<'_, StorageResult<Vec<ShardDir>>>;

    /// The backups of a shard, oldest (lowest name) first, incomplete ones included.
    /// A shard with no directory has no backups. A backend lists each backup's
    /// stored files with their sizes anyway, and classifies with
    /// [`BackupInfo::with_stored_files`]: a file the MANIFEST names that is missing
    /// or of another size makes the backup unreadable, naming the file.
    fn list_backups<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
    ) -> BoxFuture<'a, StorageResult<Vec<BackupInfo>>>;

    /// Starts a new backup; `AlreadyExists` if one of that name exists (never
    /// overwritten).
    fn start_backup<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn BackupWriter>>>;

    /// Removes a backup; its MANIFEST goes first, so a half-removed backup is never
    /// taken for a complete one. `NotFound` if absent.
    fn remove_backup<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<()>>;

    /// Reads and parses a backup's MANIFEST; `NotFound` if absent.
    fn read_manifest<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Manifest>>;

    /// Opens a stored file for reading (blocking reads).
    fn open_file<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
        stored_name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn Read + Send>>>;

    /// Stores a blob under a reserved directory (see [`BLOB_DIRS`]), atomically;
    /// `AlreadyExists` if a blob of that name exists.
    fn put_blob<'a>(
        &'a self,
        dir: &'a str,
        name: &'a str,
        reader: Box<dyn AsyncRead + Send + Unpin + 'a>,
    ) -> BoxFuture<'a, StorageResult<BlobWritten>>;

    /// The blobs of a directory, sorted by name; empty if it does not exist.
    fn list_blobs<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, StorageResult<Vec<BlobInfo>>>;

    /// The blobs of a directory whose names sort after `after`, sorted by name:
    /// what is new since a listing that ended there. By default the whole
    /// listing, filtered; a backend that can start a listing at a key (S3's
    /// `start-after`) lists only the new ones.
    fn list_blobs_after<'a>(
        &'a self,
        dir: &'a str,
        after: &'a str,
    ) -> BoxFuture<'a, StorageResult<Vec<BlobInfo>>> {
        Box::pin(async move {
            let all = self.list_blobs(dir).await?;
            Ok(all
                .into_iter()
                .filter(|b| b.name.as_str() > after)
                .collect())
        })
    }

    /// Opens a blob for reading.
    fn open_blob<'a>(
        &'a self,
        dir: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn AsyncRead + Send + Unpin>>>;

    /// Removes a blob; `NotFound` if absent.
    fn remove_blob<'a>(&'a self, dir: &'a str, name: &'a str) -> BoxFuture<'a, StorageResult<()>>;
}

/// Validates a stored file name: a plain file name (`[A-Za-z0-9._-]{1,128}`, not
/// `.`/`..`), and not one of the MANIFEST's names.
pub fn validate_stored_name(s: &str) -> Result<(), NameError> {
    validate_backup_name(s)
        .map_err(|e| NameError(e.0.replacen("backup name", "stored file name", 1)))?;
    if s == MANIFEST_FILE || s == MANIFEST_TMP {
        return Err(NameError(format!(
            "invalid stored file name {s:?}: reserved for the MANIFEST"
        )));
    }
    Ok(())
}

/// Validates a blob directory: `_topo`, or `_binlog/<keyspace>/<shard>` with
/// valid names (a shard's archived binlogs).
pub fn validate_blob_dir(s: &str) -> Result<(), NameError> {
    if s == "_topo" {
        return Ok(());
    }
    let bad = || {
        NameError(format!(
            "invalid blob directory {s:?}: expected _topo or {BINLOG_DIR}/<keyspace>/<shard>"
        ))
    };
    let mut parts = s.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(BINLOG_DIR), Some(ks), Some(shard), None) => {
            validate_shard_path(ks, shard).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// Validates a blob name: `[A-Za-z0-9._-]{1,220}` starting with a letter or digit
/// (names starting with `.` are temporary files).
pub fn validate_blob_name(s: &str) -> Result<(), NameError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if s.is_empty() || s.len() > MAX_BLOB_NAME || !s.chars().all(ok_char) {
        return Err(NameError(format!(
            "invalid blob name {s:?}: want [A-Za-z0-9._-], 1 to {MAX_BLOB_NAME} characters"
        )));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(NameError(format!(
            "invalid blob name {s:?}: must start with a letter or digit"
        )));
    }
    Ok(())
}

/// Whether a top-level directory of storage holds a keyspace (what listings
/// walk): a valid keyspace name that is not a reserved blob directory.
fn is_keyspace_dir(name: &str) -> bool {
    validate_keyspace(name).is_ok() && !BLOB_DIRS.contains(&name)
}

fn validate_shard_path(keyspace: &str, shard: &str) -> Result<(), NameError> {
    validate_keyspace(keyspace)?;
    if BLOB_DIRS.contains(&keyspace) {
        return Err(NameError(format!(
            "invalid keyspace {keyspace:?}: reserved in backup storage"
        )));
    }
    validate_shard(shard)
}

/// What callers do with a storage result when "absent" is as good as done (a
/// backup or blob removed meanwhile, by someone else).
pub trait StorageResultExt<T> {
    /// `Ok(None)` for [`StorageError::NotFound`], `Ok(Some(v))` for success, any
    /// other error unchanged. `remove_backup(..).await.ignore_not_found()?` removes
    /// a backup unless it is already gone.
    fn ignore_not_found(self) -> StorageResult<Option<T>>;
}

impl<T> StorageResultExt<T> for StorageResult<T> {
    fn ignore_not_found(self) -> StorageResult<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
