//! A backup under construction in the `file` backend: its stored files and the
//! bookkeeping that makes the MANIFEST really last (every file finished with the
//! size the MANIFEST claims, none still open, nothing after it).
//!
//! Durability costs one fsync per stored file and three directory fsyncs per
//! backup, however many files it has (see `write_manifest` for why that is
//! enough): finishing a file never syncs the directory.
//!
//! May call: the storage module and its `disk` primitives,
//! [`crate::backup::manifest`], [`crate::common`].

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::bookkeeping::{FileState, WriterState};
use super::disk::{blocking, create_file_0600, fsync_dir, remove_backup_dir};
use super::{
    validate_stored_name, BackupWriter, FileSink, StorageError, StorageResult, MANIFEST_FILE,
    MANIFEST_TMP,
};
use crate::backup::manifest::Manifest;
use crate::common::lock;

/// A backup being written into a [`FileStorage`](super::FileStorage).
pub(super) struct FileBackupWriter {
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
    /// Files created and their states, shared with the sinks. A panic elsewhere
    /// cannot leave this map inconsistent, so a poisoned lock is recovered.
    state: Arc<Mutex<WriterState>>,
}

impl FileBackupWriter {
    /// The writer of a backup whose directory `dir` (below `shard_dir`) was just
    /// created; `label` is `backup ks/shard/name`, for messages.
    pub(super) fn new(
        name: &str,
        label: String,
        dir: PathBuf,
        shard_dir: PathBuf,
        keyspace: &str,
        shard: &str,
    ) -> Self {
        Self {
            name: name.to_string(),
            label,
            dir,
            shard_dir,
            keyspace: keyspace.to_string(),
            shard: shard.to_string(),
            state: Arc::new(Mutex::new(WriterState::default())),
        }
    }
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
            lock(&self.state).begin_file(&self.label, stored_name)?;
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
            let json = manifest
                .to_json()
                .map_err(|source| StorageError::Manifest {
                    backup: self.label.clone(),
                    source,
                })?;
            lock(&self.state).check_manifest_last(
                &self.label,
                (&self.keyspace, &self.shard, &self.name),
                manifest,
            )?;
            let dir = self.dir.clone();
            let shard_dir = self.shard_dir.clone();
            blocking(move || {
                // Crash safety with one directory fsync for all the data files
                // instead of one per file:
                // 1. Every file the MANIFEST lists was finished (the bookkeeping
                //    checked it just now), and finishing fsyncs the file: its
                //    bytes and size are durable, though perhaps not its name.
                // 2. This fsync of the backup directory makes every entry
                //    created in it so far durable at once (fsync of a directory
                //    persists its entries, not one name), so each listed file
                //    is durable under its name when it returns.
                // 3. Only then is the MANIFEST written: to a temporary name,
                //    fsynced, renamed, and the directory fsynced again so the
                //    rename is; last the shard directory, so the backup
                //    directory's own entry is.
                // A crash before the renamed MANIFEST is durable leaves no
                // MANIFEST, an incomplete backup that is never restored (names
                // lost before step 2 only make it smaller); after, every file
                // the MANIFEST names is there with its name, bytes and size.
                fsync_dir(&dir)?;
                let tmp = dir.join(MANIFEST_TMP);
                let write = || -> io::Result<()> {
                    let mut f = create_file_0600(&tmp, false)?;
                    f.write_all(&json)?;
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

/// A stored file being written into a [`FileStorage`](super::FileStorage) backup.
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
}

impl Write for FileStorageSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
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
            lock(&self.state).abandon(&self.stored_name);
        }
    }
}
