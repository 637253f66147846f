//! Owner-only file-system primitives of the `file` backend: directories 0700 and
//! files 0600 whatever the umask, never following a symlink, fsync of directory
//! entries, the MANIFEST-first removal of a backup directory, and running this
//! blocking work off the async runtime.
//!
//! May call: `std`, `libc`, `tokio`; nothing else of the crate but the storage
//! module's error type and modes, and `common::failpoint`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{StorageError, StorageResult, DIR_MODE, FILE_MODE, MANIFEST_FILE};

/// Runs blocking filesystem work off the async runtime.
pub(super) async fn blocking<T, F>(f: F) -> StorageResult<T>
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
pub(super) fn fsync_dir(dir: &Path) -> StorageResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("fsync of directory {}", dir.display()), e))
}

/// Opens a new file for writing with mode 0600 regardless of umask; never follows
/// a symlink at `path`.
pub(super) fn create_file_0600(path: &Path, exclusive: bool) -> io::Result<File> {
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
pub(super) fn open_read(path: &Path) -> io::Result<File> {
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

/// Removes a backup directory, MANIFEST first (made durable), so a crash midway
/// leaves an incomplete backup rather than a complete-looking broken one.
pub(super) fn remove_backup_dir(dir: &Path) -> StorageResult<()> {
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
    // The backup is incomplete now; its data is still there.
    crate::common::failpoint::hit("remove-backup-after-manifest");
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
