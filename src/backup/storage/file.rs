//! The `file` backend, [`FileStorage`]: backups and blobs as a directory tree on a
//! local or mounted filesystem, in the layout the storage module describes. The
//! backup under construction is `file_writer`'s; the owner-only
//! primitives are `disk`'s.
//!
//! May call: the storage module, [`crate::backup::manifest`], `cairn-topo`'s
//! name rules.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cairn_topo::names::{validate_backup_name, validate_shard};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::disk::{
    blocking, create_dirs_0700, create_file_0600, fsync_dir, open_read, remove_backup_dir,
};
use super::file_writer::FileBackupWriter;
use super::{
    validate_blob_dir, validate_blob_name, validate_shard_path, validate_stored_name, BackupInfo,
    BackupStorage, BackupWriter, BlobInfo, BlobWritten, ShardDir, StorageError, StorageResult,
    StoredFiles, DIR_MODE, MANIFEST_FILE,
};
use crate::backup::manifest::Manifest;

/// The `file` backend: a directory tree on a local or mounted filesystem.
#[derive(Debug, Clone)]
pub struct FileStorage {
    /// `--file-backup-storage-root`: everything lives below it.
    root: PathBuf,
}

impl FileStorage {
    /// A storage rooted at `root` (created on first write if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
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

fn not_found_or(e: io::Error, what: String, context: String) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound(what)
    } else {
        StorageError::io(context, e)
    }
}

/// The largest MANIFEST read: a bigger one is refused (unreadable), not loaded.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Reads and parses a MANIFEST (at most [`MAX_MANIFEST_BYTES`]); Ok(None) if the
/// file is absent.
fn read_manifest_at(dir: &Path, label: &str) -> StorageResult<Option<Manifest>> {
    let path = dir.join(MANIFEST_FILE);
    let mut bytes = Vec::new();
    match open_read(&path).and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes)) {
        Ok(n) if n as u64 > MAX_MANIFEST_BYTES => {
            return Err(StorageError::io(
                format!("reading {}", path.display()),
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("MANIFEST larger than {MAX_MANIFEST_BYTES} bytes"),
                ),
            ))
        }
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

/// The regular files in `dir` with their sizes (not recursive: backups are flat).
fn dir_files(dir: &Path) -> StorageResult<StoredFiles> {
    let rd =
        fs::read_dir(dir).map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    let mut files = StoredFiles::new();
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
        if let Ok(md) = entry.metadata() {
            if md.is_file() {
                files.insert(entry.file_name().to_string_lossy().into_owned(), md.len());
            }
        }
    }
    Ok(files)
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
            let keyspaces = list_subdirs(&root, super::is_keyspace_dir)?;
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
                    let label = format!("{label}/{name}");
                    let read = read_manifest_at(&bdir, &label);
                    let files = match dir_files(&bdir) {
                        Ok(f) => f,
                        // Removed while we were listing it: skip.
                        Err(StorageError::Io { error, .. })
                            if error.kind() == io::ErrorKind::NotFound =>
                        {
                            continue
                        }
                        Err(e) => return Err(e),
                    };
                    let size_bytes = files.values().sum();
                    // The listing has every file's size anyway: a file the MANIFEST
                    // names that is missing or of another size makes it unreadable.
                    let info =
                        BackupInfo::classify(name, read, size_bytes).with_stored_files(&files);
                    if let Some(error) = &info.error {
                        tracing::warn!(backup = %label, %error,
                            "unreadable MANIFEST or missing file: the backup is kept, never restored");
                    }
                    out.push(info);
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
            Ok(Box::new(FileBackupWriter::new(
                name, label, dir, shard_dir, keyspace, shard,
            )) as Box<dyn BackupWriter>)
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

#[cfg(test)]
mod manifest_limit_tests {
    use super::*;

    #[test]
    fn an_oversized_manifest_is_refused_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let f = fs::File::create(dir.path().join(MANIFEST_FILE)).unwrap();
        f.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
        let err = read_manifest_at(dir.path(), "b").unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        assert!(read_manifest_at(&dir.path().join("missing"), "b")
            .unwrap()
            .is_none());
    }
}
