//! Backup storage: the object-store-friendly [`BackupStorage`] trait the engines,
//! the tablet and the coordinator use, and its `file` backend [`FileStorage`].
//!
//! Layout (see CONTRACT.md, "Backup storage"):
//! `<root>/<keyspace>/<shard>/<backup-name>/{0,1,…,MANIFEST}`, plus opaque blobs
//! (etcd snapshots) under `<root>/_topo/`. A backup directory without a MANIFEST
//! is incomplete and never restored; the MANIFEST is written last, atomically,
//! after every data file is durable. Files are 0600 and directories 0700,
//! whatever the umask. Every name is validated before it becomes a path.
//!
//! The control operations are async (an object store is remote); the data path
//! ([`FileSink`], [`BackupStorage::open_file`]) is plain blocking `Read`/`Write`,
//! because the copy pipeline runs compression and hashing on blocking threads
//! anyway and a blocking file descriptor is the fastest way to feed them.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cairn_topo::names::{validate_backup_name, validate_keyspace, validate_shard, NameError};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::manifest::{Manifest, ManifestError};

/// Name of the document that makes a backup complete.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Temporary name the MANIFEST is written under before its atomic rename.
const MANIFEST_TMP: &str = "MANIFEST.tmp";
/// Top-level directories reserved for blobs; never a keyspace in this storage.
pub const BLOB_DIRS: &[&str] = &["_topo"];
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
    /// An operating-system error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, on which path.
        context: String,
        /// The underlying error (its text is part of the message).
        source: io::Error,
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
            source,
        }
    }
}

/// Shorthand for storage results.
pub type StorageResult<T> = Result<T, StorageError>;

/// One backup as listed from storage.
#[derive(Debug, Clone)]
pub struct BackupInfo {
    /// The backup's directory name, `YYYY-MM-DD.HHMMSS.<alias>` for cairn's own.
    pub name: String,
    /// True when the MANIFEST is present and parses: only then may it be restored.
    pub complete: bool,
    /// The parsed MANIFEST, when complete.
    pub manifest: Option<Manifest>,
    /// Bytes the backup occupies in storage (all its files, MANIFEST included).
    pub size_bytes: u64,
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
    /// A shard with no directory has no backups.
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

/// Validates a blob directory: one of [`BLOB_DIRS`].
pub fn validate_blob_dir(s: &str) -> Result<(), NameError> {
    if BLOB_DIRS.contains(&s) {
        Ok(())
    } else {
        Err(NameError(format!(
            "invalid blob directory {s:?}: expected one of {BLOB_DIRS:?}"
        )))
    }
}

/// Validates a blob name: `[A-Za-z0-9._-]{1,128}` starting with a letter or digit
/// (names starting with `.` are temporary files).
pub fn validate_blob_name(s: &str) -> Result<(), NameError> {
    validate_backup_name(s).map_err(|e| NameError(e.0.replacen("backup name", "blob name", 1)))?;
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(NameError(format!(
            "invalid blob name {s:?}: must start with a letter or digit"
        )));
    }
    Ok(())
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

/// Shared byte budget for failure injection: writes fail once it is spent, and
/// optionally are slowed to a rate (a slow storage, for tests that must catch a
/// backup in the middle).
#[derive(Debug)]
struct FailBudget {
    /// Bytes that may still be written before writes start failing.
    remaining: AtomicU64,
    /// The configured total, for the error message.
    total: u64,
    /// Write rate limit in bytes per second (0: none).
    bytes_per_sec: u64,
    /// When the throttle started counting.
    throttle_start: std::time::Instant,
    /// Bytes written since `throttle_start`.
    throttled: AtomicU64,
}

impl FailBudget {
    /// Takes up to `want` bytes from the budget; returns how many were granted.
    fn take(&self, want: usize) -> usize {
        let want = want as u64;
        let mut granted = 0;
        let _ = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                granted = r.min(want);
                Some(r - granted)
            });
        granted as usize
    }

    fn error(&self) -> io::Error {
        io::Error::other(format!(
            "injected storage failure after {} bytes (FileStorage::with_fail_after_bytes)",
            self.total
        ))
    }
}

/// Writes `buf` through an optional failure budget.
fn budgeted_write(
    fail: &Option<Arc<FailBudget>>,
    w: &mut impl Write,
    buf: &[u8],
) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    match fail {
        None => w.write(buf),
        Some(b) => {
            let n = b.take(buf.len());
            if n == 0 {
                return Err(b.error());
            }
            let written = w.write(&buf[..n])?;
            if written < n {
                // Give back what the file did not take.
                b.remaining
                    .fetch_add((n - written) as u64, Ordering::SeqCst);
            }
            if b.bytes_per_sec > 0 {
                let total =
                    b.throttled.fetch_add(written as u64, Ordering::SeqCst) + written as u64;
                let due = std::time::Duration::from_secs_f64(total as f64 / b.bytes_per_sec as f64);
                let elapsed = b.throttle_start.elapsed();
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                }
            }
            Ok(written)
        }
    }
}

/// The `file` backend: a directory tree on a local or mounted filesystem.
#[derive(Debug, Clone)]
pub struct FileStorage {
    /// `--file-backup-storage-root`: everything lives below it.
    root: PathBuf,
    /// Test hook: when set, writes fail after this shared budget is spent.
    fail: Option<Arc<FailBudget>>,
}

impl FileStorage {
    /// A storage rooted at `root` (created on first write if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            fail: None,
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Failure injection for tests: every write through this storage (data
    /// files, MANIFEST, blobs; clones share the budget) succeeds until `n` bytes
    /// have been written in total, then fails with an I/O error naming this hook.
    /// Lets integration tests check how engines behave when storage fails midway.
    /// Costs one atomic operation per write when enabled, nothing otherwise.
    pub fn with_fail_after_bytes(mut self, n: u64) -> Self {
        let bytes_per_sec = self.fail.as_ref().map_or(0, |f| f.bytes_per_sec);
        self.fail = Some(Arc::new(FailBudget {
            remaining: AtomicU64::new(n),
            total: n,
            bytes_per_sec,
            throttle_start: std::time::Instant::now(),
            throttled: AtomicU64::new(0),
        }));
        self
    }

    /// Slow storage for tests: writes are paced to `bytes_per_sec` in total
    /// (clones share the pace), so a test can act while a backup is midway.
    pub fn with_write_throttle(mut self, bytes_per_sec: u64) -> Self {
        let (remaining, total) = self.fail.as_ref().map_or((u64::MAX, u64::MAX), |f| {
            (f.remaining.load(Ordering::SeqCst), f.total)
        });
        self.fail = Some(Arc::new(FailBudget {
            remaining: AtomicU64::new(remaining),
            total,
            bytes_per_sec,
            throttle_start: std::time::Instant::now(),
            throttled: AtomicU64::new(0),
        }));
        self
    }

    fn shard_dir(&self, keyspace: &str, shard: &str) -> PathBuf {
        self.root.join(keyspace).join(shard)
    }

    fn backup_dir(&self, keyspace: &str, shard: &str, name: &str) -> StorageResult<PathBuf> {
        validate_shard_path(keyspace, shard)?;
        validate_backup_name(name)?;
        Ok(self.shard_dir(keyspace, shard).join(name))
    }
}

/// Runs blocking filesystem work off the async runtime.
async fn blocking<T, F>(f: F) -> StorageResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StorageResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Misuse(format!("storage task failed: {e}")))?
}

/// Creates `dir` (one level) with mode 0700 regardless of umask; Ok(false) if it
/// already existed as a directory.
fn create_dir_0700(dir: &Path) -> io::Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and any missing parents (each new one 0700, whatever the umask).
pub(crate) fn create_dirs_0700(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_dirs_0700(parent)?;
        }
    }
    create_dir_0700(dir).map(|_| ())
}

/// fsyncs a directory so entries created or renamed in it are durable.
fn fsync_dir(dir: &Path) -> StorageResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("fsync of directory {}", dir.display()), e))
}

/// Opens a new file for writing with mode 0600 regardless of umask; never follows
/// a symlink at `path`.
fn create_file_0600(path: &Path, exclusive: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if exclusive {
        o.create_new(true);
    } else {
        o.create(true).truncate(true);
    }
    let f = o.open(path)?;
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Opens a stored file for reading without following symlinks.
fn open_read(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // Sequential read-ahead hint; purely advisory, so the result is ignored.
        // SAFETY: the fd is valid for the lifetime of `f`.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
    }
    Ok(f)
}

fn not_found_or(e: io::Error, what: String, context: String) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound(what)
    } else {
        StorageError::io(context, e)
    }
}

/// Reads and parses a MANIFEST; Ok(None) if the file is absent.
fn read_manifest_at(dir: &Path, label: &str) -> StorageResult<Option<Manifest>> {
    let path = dir.join(MANIFEST_FILE);
    let mut bytes = Vec::new();
    match open_read(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(format!("reading {}", path.display()), e)),
    }
    Manifest::from_json(&bytes)
        .map(Some)
        .map_err(|source| StorageError::Manifest {
            backup: label.to_string(),
            source,
        })
}

/// Sum of the sizes of the regular files in `dir` (not recursive: backups are flat).
fn dir_size(dir: &Path) -> StorageResult<u64> {
    let rd =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    let mut total = 0;
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
        if let Ok(md) = entry.metadata() {
            if md.is_file() {
                total += md.len();
            }
        }
    }
    Ok(total)
}

/// Sub-directory names of `dir` passing `valid`, sorted; empty if `dir` is absent.
fn list_subdirs(dir: &Path, valid: impl Fn(&str) -> bool) -> StorageResult<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(StorageError::io(format!("listing {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !valid(&name) {
            continue;
        }
        // Follow symlinks: an operator may have moved a keyspace to another disk.
        if fs::metadata(entry.path())
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

impl BackupStorage for FileStorage {
    fn list_shards(&self) -> BoxFuture<'_, StorageResult<Vec<ShardDir>>> {
        let root = self.root.clone();
        Box::pin(blocking(move || {
            let mut out = Vec::new();
            let keyspaces = list_subdirs(&root, |k| {
                validate_keyspace(k).is_ok() && !BLOB_DIRS.contains(&k)
            })?;
            for ks in keyspaces {
                for shard in list_subdirs(&root.join(&ks), |s| validate_shard(s).is_ok())? {
                    out.push(ShardDir {
                        keyspace: ks.clone(),
                        shard,
                    });
                }
            }
            Ok(out)
        }))
    }

    fn list_backups<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
    ) -> BoxFuture<'a, StorageResult<Vec<BackupInfo>>> {
        Box::pin(async move {
            validate_shard_path(keyspace, shard)?;
            let dir = self.shard_dir(keyspace, shard);
            let label = format!("{keyspace}/{shard}");
            blocking(move || {
                let names = list_subdirs(&dir, |n| validate_backup_name(n).is_ok())?;
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    let bdir = dir.join(&name);
                    let manifest = match read_manifest_at(&bdir, &format!("{label}/{name}")) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(backup = %format!("{label}/{name}"), error = %e,
                                "unreadable MANIFEST; listing the backup as incomplete");
                            None
                        }
                    };
                    let size_bytes = match dir_size(&bdir) {
                        Ok(s) => s,
                        // Removed while we were listing it: skip.
                        Err(StorageError::Io { source, .. })
                            if source.kind() == io::ErrorKind::NotFound =>
                        {
                            continue
                        }
                        Err(e) => return Err(e),
                    };
                    out.push(BackupInfo {
                        name,
                        complete: manifest.is_some(),
                        manifest,
                        size_bytes,
                    });
                }
                Ok(out)
            })
            .await
        })
    }

    fn start_backup<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn BackupWriter>>> {
        Box::pin(async move {
            let dir = self.backup_dir(keyspace, shard, name)?;
            let shard_dir = self.shard_dir(keyspace, shard);
            let label = format!("backup {keyspace}/{shard}/{name}");
            let d = dir.clone();
            let sd = shard_dir.clone();
            let l = label.clone();
            blocking(move || {
                create_dirs_0700(&sd)
                    .map_err(|e| StorageError::io(format!("creating {}", sd.display()), e))?;
                // `create_dir`, not `create_dir_all`: two backups of the same name
                // must never share a directory.
                match fs::create_dir(&d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(StorageError::AlreadyExists(l))
                    }
                    Err(e) => return Err(StorageError::io(format!("creating {}", d.display()), e)),
                }
                fs::set_permissions(&d, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(|e| StorageError::io(format!("chmod {}", d.display()), e))?;
                Ok(())
            })
            .await?;
            Ok(Box::new(FileBackupWriter {
                name: name.to_string(),
                label,
                dir,
                shard_dir,
                keyspace: keyspace.to_string(),
                shard: shard.to_string(),
                state: Arc::new(Mutex::new(WriterState::default())),
                fail: self.fail.clone(),
            }) as Box<dyn BackupWriter>)
        })
    }

    fn remove_backup<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<()>> {
        Box::pin(async move {
            let dir = self.backup_dir(keyspace, shard, name)?;
            let label = format!("backup {keyspace}/{shard}/{name}");
            blocking(move || {
                if !dir.is_dir() {
                    return Err(StorageError::NotFound(label));
                }
                remove_backup_dir(&dir)
            })
            .await
        })
    }

    fn read_manifest<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Manifest>> {
        Box::pin(async move {
            let dir = self.backup_dir(keyspace, shard, name)?;
            let label = format!("{keyspace}/{shard}/{name}");
            blocking(move || {
                read_manifest_at(&dir, &label)?
                    .ok_or_else(|| StorageError::NotFound(format!("MANIFEST of backup {label}")))
            })
            .await
        })
    }

    fn open_file<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
        stored_name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn Read + Send>>> {
        Box::pin(async move {
            let dir = self.backup_dir(keyspace, shard, name)?;
            validate_stored_name(stored_name)?;
            let path = dir.join(stored_name);
            let what = format!("file {stored_name} of backup {keyspace}/{shard}/{name}");
            blocking(move || {
                open_read(&path)
                    .map(|f| Box::new(f) as Box<dyn Read + Send>)
                    .map_err(|e| not_found_or(e, what, format!("opening {}", path.display())))
            })
            .await
        })
    }

    fn put_blob<'a>(
        &'a self,
        dir: &'a str,
        name: &'a str,
        mut reader: Box<dyn AsyncRead + Send + Unpin + 'a>,
    ) -> BoxFuture<'a, StorageResult<BlobWritten>> {
        Box::pin(async move {
            validate_blob_dir(dir)?;
            validate_blob_name(name)?;
            let bdir = self.root.join(dir);
            let path = bdir.join(name);
            let tmp = bdir.join(format!(".tmp-{name}-{:016x}", rand::random::<u64>()));
            {
                let (bd, t) = (bdir.clone(), tmp.clone());
                blocking(move || {
                    create_dirs_0700(&bd)
                        .map_err(|e| StorageError::io(format!("creating {}", bd.display()), e))?;
                    create_file_0600(&t, true)
                        .map_err(|e| StorageError::io(format!("creating {}", t.display()), e))?;
                    Ok(())
                })
                .await?;
            }
            let result = async {
                let f = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&tmp)
                    .map_err(|e| StorageError::io(format!("opening {}", tmp.display()), e))?;
                let mut out = tokio::fs::File::from_std(f);
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = reader
                        .read(&mut buf)
                        .await
                        .map_err(|e| StorageError::io(format!("reading blob {dir}/{name}"), e))?;
                    if n == 0 {
                        break;
                    }
                    if let Some(b) = &self.fail {
                        if b.take(n) < n {
                            return Err(StorageError::io(
                                format!("writing {}", tmp.display()),
                                b.error(),
                            ));
                        }
                    }
                    out.write_all(&buf[..n])
                        .await
                        .map_err(|e| StorageError::io(format!("writing {}", tmp.display()), e))?;
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                out.sync_all()
                    .await
                    .map_err(|e| StorageError::io(format!("fsync {}", tmp.display()), e))?;
                drop(out);
                let (t, p, bd) = (tmp.clone(), path.clone(), bdir.clone());
                let label = format!("blob {dir}/{name}");
                blocking(move || {
                    // A hard link never replaces an existing name, unlike rename.
                    match fs::hard_link(&t, &p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            return Err(StorageError::AlreadyExists(label))
                        }
                        Err(e) => {
                            return Err(StorageError::io(format!("linking {}", p.display()), e))
                        }
                    }
                    let _ = fs::remove_file(&t);
                    fsync_dir(&bd)
                })
                .await?;
                Ok(BlobWritten {
                    size_bytes: size,
                    sha256: hex::encode(hasher.finalize()),
                })
            }
            .await;
            if result.is_err() {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            result
        })
    }

    fn list_blobs<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, StorageResult<Vec<BlobInfo>>> {
        Box::pin(async move {
            validate_blob_dir(dir)?;
            let bdir = self.root.join(dir);
            blocking(move || {
                let rd = match fs::read_dir(&bdir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
                    Err(e) => {
                        return Err(StorageError::io(format!("listing {}", bdir.display()), e))
                    }
                };
                let mut out = Vec::new();
                for entry in rd {
                    let entry = entry
                        .map_err(|e| StorageError::io(format!("listing {}", bdir.display()), e))?;
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    if validate_blob_name(&name).is_err() {
                        continue;
                    }
                    match entry.metadata() {
                        Ok(md) if md.is_file() => out.push(BlobInfo {
                            name,
                            size_bytes: md.len(),
                        }),
                        _ => {}
                    }
                }
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            })
            .await
        })
    }

    fn open_blob<'a>(
        &'a self,
        dir: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn AsyncRead + Send + Unpin>>> {
        Box::pin(async move {
            validate_blob_dir(dir)?;
            validate_blob_name(name)?;
            let path = self.root.join(dir).join(name);
            let what = format!("blob {dir}/{name}");
            blocking(move || {
                open_read(&path)
                    .map(|f| {
                        Box::new(tokio::fs::File::from_std(f)) as Box<dyn AsyncRead + Send + Unpin>
                    })
                    .map_err(|e| not_found_or(e, what, format!("opening {}", path.display())))
            })
            .await
        })
    }

    fn remove_blob<'a>(&'a self, dir: &'a str, name: &'a str) -> BoxFuture<'a, StorageResult<()>> {
        Box::pin(async move {
            validate_blob_dir(dir)?;
            validate_blob_name(name)?;
            let bdir = self.root.join(dir);
            let path = bdir.join(name);
            let what = format!("blob {dir}/{name}");
            blocking(move || {
                fs::remove_file(&path)
                    .map_err(|e| not_found_or(e, what, format!("removing {}", path.display())))?;
                fsync_dir(&bdir)
            })
            .await
        })
    }
}

/// Removes a backup directory, MANIFEST first (made durable), so a crash midway
/// leaves an incomplete backup rather than a complete-looking broken one.
fn remove_backup_dir(dir: &Path) -> StorageResult<()> {
    match fs::remove_file(dir.join(MANIFEST_FILE)) {
        Ok(()) => fsync_dir(dir)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StorageError::io(
                format!("removing MANIFEST in {}", dir.display()),
                e,
            ))
        }
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io(format!("removing {}", dir.display()), e)),
    }
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// State of one stored file of a backup under construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    /// A sink exists and is being written.
    Open,
    /// Finished and fsynced with this many bytes.
    Finished(u64),
    /// The sink was dropped without `finish` (failed attempt).
    Abandoned,
}

/// Bookkeeping that lets `write_manifest` check it is really last.
#[derive(Debug, Default)]
struct WriterState {
    /// Every stored file created so far and where it stands.
    files: HashMap<String, FileState>,
    /// Set once the MANIFEST is in place: no more files.
    manifest_written: bool,
    /// Set by `abort`: nothing more may be written.
    aborted: bool,
}

fn lock(state: &Mutex<WriterState>) -> std::sync::MutexGuard<'_, WriterState> {
    // A panic elsewhere cannot leave this map inconsistent; keep going.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A backup being written into a [`FileStorage`].
struct FileBackupWriter {
    /// The backup's name.
    name: String,
    /// `backup ks/shard/name`, for messages.
    label: String,
    /// The backup directory.
    dir: PathBuf,
    /// Its parent, fsynced so the backup directory's entry is durable.
    shard_dir: PathBuf,
    /// Keyspace, checked against the MANIFEST.
    keyspace: String,
    /// Shard, checked against the MANIFEST.
    shard: String,
    /// Files created and their states, shared with the sinks.
    state: Arc<Mutex<WriterState>>,
    /// Failure injection budget of the storage, if any.
    fail: Option<Arc<FailBudget>>,
}

impl BackupWriter for FileBackupWriter {
    fn name(&self) -> &str {
        &self.name
    }

    fn create_file<'a>(
        &'a self,
        stored_name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn FileSink>>> {
        Box::pin(async move {
            validate_stored_name(stored_name)?;
            {
                let mut st = lock(&self.state);
                if st.aborted || st.manifest_written {
                    return Err(StorageError::Misuse(format!(
                        "{}: cannot create file {stored_name} after the backup was {}",
                        self.label,
                        if st.aborted { "aborted" } else { "completed" }
                    )));
                }
                if st.files.get(stored_name) == Some(&FileState::Open) {
                    return Err(StorageError::Misuse(format!(
                        "{}: file {stored_name} is already being written",
                        self.label
                    )));
                }
                st.files.insert(stored_name.to_string(), FileState::Open);
            }
            let path = self.dir.join(stored_name);
            let p = path.clone();
            let opened = blocking(move || {
                create_file_0600(&p, false)
                    .map_err(|e| StorageError::io(format!("creating {}", p.display()), e))
            })
            .await;
            match opened {
                Ok(file) => Ok(Box::new(FileStorageSink {
                    file,
                    path,
                    stored_name: stored_name.to_string(),
                    written: 0,
                    finished: false,
                    state: self.state.clone(),
                    fail: self.fail.clone(),
                }) as Box<dyn FileSink>),
                Err(e) => {
                    lock(&self.state)
                        .files
                        .insert(stored_name.to_string(), FileState::Abandoned);
                    Err(e)
                }
            }
        })
    }

    fn write_manifest<'a>(&'a self, manifest: &'a Manifest) -> BoxFuture<'a, StorageResult<()>> {
        Box::pin(async move {
            let misuse = |why: String| StorageError::Misuse(format!("{}: {why}", self.label));
            if manifest.backup_name != self.name
                || manifest.keyspace != self.keyspace
                || manifest.shard != self.shard
            {
                return Err(misuse(format!(
                    "MANIFEST names backup {}/{}/{}",
                    manifest.keyspace, manifest.shard, manifest.backup_name
                )));
            }
            let json = manifest
                .to_json()
                .map_err(|source| StorageError::Manifest {
                    backup: self.label.clone(),
                    source,
                })?;
            {
                let st = lock(&self.state);
                if st.aborted {
                    return Err(misuse("backup was aborted".into()));
                }
                if st.manifest_written {
                    return Err(misuse("MANIFEST already written".into()));
                }
                if let Some((n, _)) = st.files.iter().find(|(_, s)| **s == FileState::Open) {
                    return Err(misuse(format!(
                        "file {n} is still being written; the MANIFEST must be last"
                    )));
                }
                for e in &manifest.file_entries {
                    match st.files.get(&e.stored_name) {
                        Some(FileState::Finished(n)) if *n == e.stored_size => {}
                        Some(FileState::Finished(n)) => {
                            return Err(misuse(format!(
                                "MANIFEST says file {} ({}) has {} stored bytes, storage wrote {n}",
                                e.stored_name, e.name, e.stored_size
                            )))
                        }
                        _ => {
                            return Err(misuse(format!(
                                "MANIFEST lists file {} ({}) which was not stored completely",
                                e.stored_name, e.name
                            )))
                        }
                    }
                }
            }
            let dir = self.dir.clone();
            let shard_dir = self.shard_dir.clone();
            let fail = self.fail.clone();
            blocking(move || {
                // The data files' directory entries must be durable before the
                // MANIFEST can vouch for them.
                fsync_dir(&dir)?;
                let tmp = dir.join(MANIFEST_TMP);
                let write = || -> io::Result<()> {
                    let mut f = create_file_0600(&tmp, false)?;
                    let mut rest = &json[..];
                    while !rest.is_empty() {
                        let n = budgeted_write(&fail, &mut f, rest)?;
                        if n == 0 {
                            return Err(io::ErrorKind::WriteZero.into());
                        }
                        rest = &rest[n..];
                    }
                    f.sync_all()?;
                    fs::rename(&tmp, dir.join(MANIFEST_FILE))
                };
                if let Err(e) = write() {
                    let _ = fs::remove_file(&tmp);
                    return Err(StorageError::io(
                        format!("writing MANIFEST in {}", dir.display()),
                        e,
                    ));
                }
                fsync_dir(&dir)?;
                fsync_dir(&shard_dir)
            })
            .await?;
            lock(&self.state).manifest_written = true;
            Ok(())
        })
    }

    fn abort(&self) -> BoxFuture<'_, StorageResult<()>> {
        Box::pin(async move {
            lock(&self.state).aborted = true;
            let dir = self.dir.clone();
            blocking(move || remove_backup_dir(&dir)).await
        })
    }
}

/// A stored file being written into a [`FileStorage`] backup.
struct FileStorageSink {
    /// The open file.
    file: File,
    /// Its path, for messages.
    path: PathBuf,
    /// Its stored name, the key into the writer's state.
    stored_name: String,
    /// Bytes written so far.
    written: u64,
    /// Set by `finish`, so Drop knows the file was not abandoned.
    finished: bool,
    /// The writer's bookkeeping.
    state: Arc<Mutex<WriterState>>,
    /// Failure injection budget, if any.
    fail: Option<Arc<FailBudget>>,
}

impl Write for FileStorageSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = budgeted_write(&self.fail, &mut self.file, buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl FileSink for FileStorageSink {
    fn finish(mut self: Box<Self>) -> StorageResult<u64> {
        self.file
            .sync_all()
            .map_err(|e| StorageError::io(format!("fsync {}", self.path.display()), e))?;
        self.finished = true;
        lock(&self.state)
            .files
            .insert(self.stored_name.clone(), FileState::Finished(self.written));
        Ok(self.written)
    }
}

impl Drop for FileStorageSink {
    fn drop(&mut self) {
        if !self.finished {
            let mut st = lock(&self.state);
            if st.files.get(&self.stored_name) == Some(&FileState::Open) {
                st.files
                    .insert(self.stored_name.clone(), FileState::Abandoned);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{
        base, BackupMethod, CompressionEngine, FileEntry, FORMAT_VERSION, HASH_ALGORITHM_SHA256,
    };
    use chrono::{TimeZone, Utc};

    fn manifest(ks: &str, shard: &str, name: &str, entries: Vec<FileEntry>) -> Manifest {
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        let mut m = Manifest {
            backup_name: name.into(),
            backup_method: BackupMethod::Builtin,
            position: "MariaDB/0-1-1".into(),
            purged_position: String::new(),
            backup_time: t,
            finished_time: t,
            server_uuid: String::new(),
            tablet_alias: "zone1-0000000101".into(),
            hostname: String::new(),
            keyspace: ks.into(),
            shard: shard.into(),
            mysql_version: String::new(),
            upgrade_safe: false,
            compression_engine: CompressionEngine::None,
            file_entries: vec![],
            total_size: 0,
            stored_size: 0,
            stream_mode: None,
            flavor: "MariaDB".into(),
            format_version: FORMAT_VERSION,
        };
        m.set_file_entries(entries);
        m
    }

    fn entry(stored: &str, n: u64) -> FileEntry {
        FileEntry {
            base: base::DATA.into(),
            name: format!("f{stored}"),
            stored_name: stored.into(),
            size: n,
            stored_size: n,
            hash: "00".repeat(32),
            hash_algorithm: HASH_ALGORITHM_SHA256.into(),
        }
    }

    async fn write_file(w: &dyn BackupWriter, stored: &str, data: &[u8]) -> u64 {
        let mut s = w.create_file(stored).await.unwrap();
        s.write_all(data).unwrap();
        s.finish().unwrap()
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    const NAME1: &str = "2024-01-02.030405.zone1-0000000101";
    const NAME2: &str = "2024-01-02.030406.zone1-0000000101";

    #[tokio::test]
    async fn write_list_read_with_owner_only_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        let st = FileStorage::new(&root);
        // A permissive umask must not leak into storage modes.
        let old = unsafe { libc::umask(0o000) };
        let w = st.start_backup("commerce", "-80", NAME1).await.unwrap();
        let n = write_file(&*w, "0", b"hello").await;
        unsafe { libc::umask(old) };
        assert_eq!(n, 5);
        // Before the MANIFEST: listed incomplete.
        let l = st.list_backups("commerce", "-80").await.unwrap();
        assert_eq!(l.len(), 1);
        assert!(!l[0].complete);
        assert!(matches!(
            st.read_manifest("commerce", "-80", NAME1).await,
            Err(StorageError::NotFound(_))
        ));
        w.write_manifest(&manifest("commerce", "-80", NAME1, vec![entry("0", 5)]))
            .await
            .unwrap();
        let bdir = root.join("commerce/-80").join(NAME1);
        for d in [
            root.join("commerce"),
            root.join("commerce/-80"),
            bdir.clone(),
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        assert_eq!(mode(&bdir.join("0")), 0o600);
        assert_eq!(mode(&bdir.join(MANIFEST_FILE)), 0o600);
        assert!(!bdir.join(MANIFEST_TMP).exists());

        let l = st.list_backups("commerce", "-80").await.unwrap();
        assert!(l[0].complete);
        assert_eq!(l[0].manifest.as_ref().unwrap().file_entries.len(), 1);
        assert!(l[0].size_bytes > 5);
        let m = st.read_manifest("commerce", "-80", NAME1).await.unwrap();
        assert_eq!(m.backup_name, NAME1);
        let mut r = st.open_file("commerce", "-80", NAME1, "0").await.unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert!(matches!(
            st.open_file("commerce", "-80", NAME1, "7").await,
            Err(StorageError::NotFound(_))
        ));
        // No more files after the MANIFEST.
        assert!(w.create_file("1").await.is_err());
        assert_eq!(
            st.list_shards().await.unwrap(),
            vec![ShardDir {
                keyspace: "commerce".into(),
                shard: "-80".into()
            }]
        );
    }

    #[tokio::test]
    async fn same_name_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let st = FileStorage::new(tmp.path());
        let w = st.start_backup("ks", "0", NAME1).await.unwrap();
        write_file(&*w, "0", b"first").await;
        match st.start_backup("ks", "0", NAME1).await {
            Err(StorageError::AlreadyExists(m)) => assert!(m.contains(NAME1)),
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => panic!("second backup with the same name started"),
        }
        let mut r = st.open_file("ks", "0", NAME1, "0").await.unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "first");
    }

    #[tokio::test]
    async fn list_order_abort_remove_and_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let st = FileStorage::new(tmp.path());
        assert!(st.list_backups("ks", "0").await.unwrap().is_empty());
        for name in [NAME2, NAME1] {
            let w = st.start_backup("ks", "0", name).await.unwrap();
            write_file(&*w, "0", b"x").await;
            w.write_manifest(&manifest("ks", "0", name, vec![entry("0", 1)]))
                .await
                .unwrap();
        }
        // Dropped without a MANIFEST: stays, incomplete.
        let name3 = "2024-01-02.030407.zone1-0000000101";
        {
            let w = st.start_backup("ks", "0", name3).await.unwrap();
            write_file(&*w, "0", b"x").await;
        }
        // Aborted: gone.
        let name4 = "2024-01-02.030408.zone1-0000000101";
        let w = st.start_backup("ks", "0", name4).await.unwrap();
        write_file(&*w, "0", b"x").await;
        w.abort().await.unwrap();
        assert!(w.create_file("1").await.is_err());
        // Junk that is not a backup is ignored.
        fs::write(tmp.path().join("ks/0/stray-file"), b"").unwrap();
        fs::create_dir(tmp.path().join("ks/0/bad name")).unwrap();

        let l = st.list_backups("ks", "0").await.unwrap();
        let names: Vec<_> = l.iter().map(|b| (b.name.as_str(), b.complete)).collect();
        assert_eq!(names, vec![(NAME1, true), (NAME2, true), (name3, false)]);

        st.remove_backup("ks", "0", NAME1).await.unwrap();
        assert!(matches!(
            st.remove_backup("ks", "0", NAME1).await,
            Err(StorageError::NotFound(_))
        ));
        let l = st.list_backups("ks", "0").await.unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, NAME2);
    }

    #[tokio::test]
    async fn manifest_is_last_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let st = FileStorage::new(tmp.path());
        let w = st.start_backup("ks", "0", NAME1).await.unwrap();
        // An open file blocks the MANIFEST.
        let mut open = w.create_file("0").await.unwrap();
        open.write_all(b"abc").unwrap();
        let m = manifest("ks", "0", NAME1, vec![entry("0", 3)]);
        let err = w.write_manifest(&m).await.unwrap_err().to_string();
        assert!(err.contains("still being written"), "{err}");
        assert!(open.finish().is_ok());
        // Wrong size, missing file, wrong identity: refused.
        let bad = manifest("ks", "0", NAME1, vec![entry("0", 4)]);
        assert!(w.write_manifest(&bad).await.is_err());
        let bad = manifest("ks", "0", NAME1, vec![entry("0", 3), entry("1", 0)]);
        assert!(w.write_manifest(&bad).await.is_err());
        let bad = manifest("ks", "1", NAME1, vec![entry("0", 3)]);
        assert!(w.write_manifest(&bad).await.is_err());
        assert!(!st.list_backups("ks", "0").await.unwrap()[0].complete);
        w.write_manifest(&m).await.unwrap();
        assert!(w.write_manifest(&m).await.is_err());
        assert!(st.list_backups("ks", "0").await.unwrap()[0].complete);
        // A MANIFEST that does not parse lists as incomplete.
        fs::write(
            tmp.path().join("ks/0").join(NAME1).join(MANIFEST_FILE),
            b"{",
        )
        .unwrap();
        assert!(!st.list_backups("ks", "0").await.unwrap()[0].complete);
        assert!(matches!(
            st.read_manifest("ks", "0", NAME1).await,
            Err(StorageError::Manifest { .. })
        ));
    }

    #[tokio::test]
    async fn invalid_names_are_rejected_before_touching_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let st = FileStorage::new(tmp.path());
        for (ks, shard, name) in [
            ("../x", "0", NAME1),
            ("ks", "a/b", NAME1),
            ("ks", "0", ".."),
            ("ks", "0", "a/b"),
            ("ks", "0", ""),
            ("_topo", "0", NAME1),
            ("ks", "..", NAME1),
        ] {
            assert!(
                matches!(
                    st.start_backup(ks, shard, name).await,
                    Err(StorageError::InvalidName(_))
                ),
                "{ks}/{shard}/{name} accepted"
            );
            assert!(st.remove_backup(ks, shard, name).await.is_err());
            assert!(st.read_manifest(ks, shard, name).await.is_err());
        }
        assert!(st.list_backups("../x", "0").await.is_err());
        assert!(st.list_backups("ks", "a/b").await.is_err());
        let w = st.start_backup("ks", "0", NAME1).await.unwrap();
        for bad in ["../0", "a/b", "MANIFEST", "MANIFEST.tmp", "", "."] {
            assert!(w.create_file(bad).await.is_err(), "{bad:?} accepted");
            assert!(st.open_file("ks", "0", NAME1, bad).await.is_err());
        }
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        assert!(st.list_blobs("ks").await.is_err());
        assert!(st.open_blob("_topo", "../x").await.is_err());
        assert!(st.remove_blob("_topo", ".hidden").await.is_err());
    }

    #[tokio::test]
    async fn failure_injection_fails_writes_after_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let st = FileStorage::new(tmp.path()).with_fail_after_bytes(10);
        let w = st.start_backup("ks", "0", NAME1).await.unwrap();
        let mut s = w.create_file("0").await.unwrap();
        s.write_all(&[1u8; 6]).unwrap();
        let err = s.write_all(&[1u8; 6]).unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        drop(s);
        // The abandoned file cannot be vouched for by a MANIFEST.
        assert!(w
            .write_manifest(&manifest("ks", "0", NAME1, vec![entry("0", 10)]))
            .await
            .is_err());
        w.abort().await.unwrap();
        assert!(st.list_backups("ks", "0").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn blobs_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let st = FileStorage::new(tmp.path());
        assert!(st.list_blobs("_topo").await.unwrap().is_empty());
        let data = vec![7u8; 3 << 20];
        let w = st
            .put_blob("_topo", "snap-2.db", Box::new(&data[..]))
            .await
            .unwrap();
        assert_eq!(w.size_bytes, data.len() as u64);
        assert_eq!(w.sha256, hex::encode(Sha256::digest(&data)));
        st.put_blob("_topo", "snap-1.db", Box::new(&b"x"[..]))
            .await
            .unwrap();
        assert!(matches!(
            st.put_blob("_topo", "snap-1.db", Box::new(&b"y"[..])).await,
            Err(StorageError::AlreadyExists(_))
        ));
        let l = st.list_blobs("_topo").await.unwrap();
        assert_eq!(
            l,
            vec![
                BlobInfo {
                    name: "snap-1.db".into(),
                    size_bytes: 1
                },
                BlobInfo {
                    name: "snap-2.db".into(),
                    size_bytes: data.len() as u64
                },
            ]
        );
        let mut r = st.open_blob("_topo", "snap-2.db").await.unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, data);
        assert_eq!(mode(&tmp.path().join("_topo")), 0o700);
        assert_eq!(mode(&tmp.path().join("_topo/snap-1.db")), 0o600);
        // The blob dir is not a keyspace.
        assert!(st.list_shards().await.unwrap().is_empty());
        st.remove_blob("_topo", "snap-1.db").await.unwrap();
        assert!(matches!(
            st.remove_blob("_topo", "snap-1.db").await,
            Err(StorageError::NotFound(_))
        ));
        assert_eq!(st.list_blobs("_topo").await.unwrap().len(), 1);
    }
}
