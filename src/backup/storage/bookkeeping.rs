//! The bookkeeping of a backup under construction, shared by every backend: which
//! stored files were created and where each stands, and the checks that make the
//! MANIFEST really last (every file finished with the size the MANIFEST claims,
//! none still open, nothing after it). Pure: no IO.
//!
//! May call: the storage module's errors, [`crate::backup::manifest`].

use std::collections::HashMap;

use super::{StorageError, StorageResult};
use crate::backup::manifest::Manifest;

/// State of one stored file of a backup under construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileState {
    /// A sink exists and is being written.
    Open,
    /// Finished (durable) with this many bytes.
    Finished(u64),
    /// The sink was dropped without `finish` (failed attempt).
    Abandoned,
}

/// Bookkeeping that lets `write_manifest` check it is really last.
#[derive(Debug, Default)]
pub(super) struct WriterState {
    /// Every stored file created so far and where it stands.
    pub(super) files: HashMap<String, FileState>,
    /// Set once the MANIFEST is in place: no more files.
    pub(super) manifest_written: bool,
    /// Set by `abort`: nothing more may be written.
    pub(super) aborted: bool,
}

impl WriterState {
    /// Registers a new sink for `stored_name`, refusing one after the MANIFEST or
    /// an abort, or a second sink of a file still being written. Returns whether
    /// the name was used before (an earlier, abandoned attempt).
    pub(super) fn begin_file(&mut self, label: &str, stored_name: &str) -> StorageResult<bool> {
        if self.aborted || self.manifest_written {
            return Err(StorageError::Misuse(format!(
                "{label}: cannot create file {stored_name} after the backup was {}",
                if self.aborted { "aborted" } else { "completed" }
            )));
        }
        if self.files.get(stored_name) == Some(&FileState::Open) {
            return Err(StorageError::Misuse(format!(
                "{label}: file {stored_name} is already being written"
            )));
        }
        Ok(self
            .files
            .insert(stored_name.to_string(), FileState::Open)
            .is_some())
    }

    /// Marks a sink dropped without `finish` (only if it was still open).
    pub(super) fn abandon(&mut self, stored_name: &str) {
        if self.files.get(stored_name) == Some(&FileState::Open) {
            self.files
                .insert(stored_name.to_string(), FileState::Abandoned);
        }
    }

    /// Whether the MANIFEST may be written now: it names this backup, nothing was
    /// aborted or is still open, and every entry was finished with its
    /// `StoredSize`. `label` is `backup ks/shard/name`, for messages.
    pub(super) fn check_manifest_last(
        &self,
        label: &str,
        (keyspace, shard, name): (&str, &str, &str),
        manifest: &Manifest,
    ) -> StorageResult<()> {
        let misuse = |why: String| StorageError::Misuse(format!("{label}: {why}"));
        if manifest.backup_name != name || manifest.keyspace != keyspace || manifest.shard != shard
        {
            return Err(misuse(format!(
                "MANIFEST names backup {}/{}/{}",
                manifest.keyspace, manifest.shard, manifest.backup_name
            )));
        }
        if self.aborted {
            return Err(misuse("backup was aborted".into()));
        }
        if self.manifest_written {
            return Err(misuse("MANIFEST already written".into()));
        }
        if let Some((n, _)) = self.files.iter().find(|(_, s)| **s == FileState::Open) {
            return Err(misuse(format!(
                "file {n} is still being written; the MANIFEST must be last"
            )));
        }
        for e in &manifest.file_entries {
            match self.files.get(&e.stored_name) {
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
        Ok(())
    }
}
