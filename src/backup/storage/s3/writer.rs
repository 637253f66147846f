//! A backup under construction in the `s3` backend: its data objects (each a
//! streamed upload, see `upload`) and the MANIFEST, created last with a
//! conditional create so it is never overwritten.
//!
//! May call: the storage module and its bookkeeping, `object_store`,
//! [`crate::backup::manifest`], [`crate::common`].

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::super::bookkeeping::WriterState;
use super::super::{
    validate_stored_name, BackupWriter, FileSink, StorageError, StorageResult, MANIFEST_FILE,
};
use super::upload::{self, UploadCtx};
use super::S3Storage;
use crate::backup::manifest::Manifest;
use crate::common::lock;

/// A backup being written into an [`S3Storage`].
pub(super) struct S3BackupWriter {
    /// The storage.
    storage: S3Storage,
    /// Keyspace, shard and name, checked against the MANIFEST.
    keyspace: String,
    shard: String,
    name: String,
    /// `backup ks/shard/name`, for messages.
    label: String,
    /// `[PREFIX/]ks/shard/name`.
    prefix: Path,
    /// Files created and their states, shared with the sinks.
    state: Arc<Mutex<WriterState>>,
}

impl S3BackupWriter {
    pub(super) fn new(
        storage: S3Storage,
        (keyspace, shard, name): (&str, &str, &str),
        label: String,
        prefix: Path,
    ) -> Self {
        Self {
            storage,
            keyspace: keyspace.into(),
            shard: shard.into(),
            name: name.into(),
            label,
            prefix,
            state: Arc::new(Mutex::new(WriterState::default())),
        }
    }

    fn object(&self, stored_name: &str) -> Path {
        self.prefix.clone().join(stored_name)
    }
}

impl BackupWriter for S3BackupWriter {
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
            let key = self.object(stored_name);
            let url = self.storage.url(&key);
            let ctx = UploadCtx {
                store: self.storage.store.clone(),
                slots: self.storage.slots.clone(),
                runtime: tokio::runtime::Handle::current(),
            };
            Ok(Box::new(upload::start(
                ctx,
                key,
                url,
                stored_name.to_string(),
                self.state.clone(),
            )) as Box<dyn FileSink>)
        })
    }

    fn write_manifest<'a>(&'a self, manifest: &'a Manifest) -> BoxFuture<'a, StorageResult<()>> {
        Box::pin(async move {
            lock(&self.state).check_manifest_last(
                &self.label,
                (&self.keyspace, &self.shard, &self.name),
                manifest,
            )?;
            let json = manifest
                .to_json()
                .map_err(|source| StorageError::Manifest {
                    backup: self.label.clone(),
                    source,
                })?;
            let key = self.object(MANIFEST_FILE);
            let what = format!("MANIFEST of {}", self.label);
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            let put = self
                .storage
                .store
                .put_opts(&key, PutPayload::from(Bytes::from(json.clone())), opts)
                .await;
            match put {
                Ok(_) => {}
                Err(object_store::Error::AlreadyExists { .. }) => {
                    // Ours, if a retried create found the first attempt's object;
                    // anyone else's is never overwritten.
                    let theirs = self.storage.store.get(&key).await;
                    let same = match theirs {
                        Ok(g) => g.bytes().await.map(|b| b[..] == json[..]).unwrap_or(false),
                        Err(_) => false,
                    };
                    if !same {
                        return Err(StorageError::AlreadyExists(what));
                    }
                }
                Err(e) => return Err(self.storage.err(e, &what, "writing", &key)),
            }
            lock(&self.state).manifest_written = true;
            Ok(())
        })
    }

    fn abort(&self) -> BoxFuture<'_, StorageResult<()>> {
        Box::pin(async move {
            lock(&self.state).aborted = true;
            let objects = self.storage.list_under(&self.prefix).await?;
            let keys = objects
                .into_iter()
                .map(|(rel, _)| {
                    rel.iter()
                        .fold(self.prefix.clone(), |p, part| p.join(part.as_str()))
                })
                .collect();
            self.storage.delete_all(keys).await?;
            // Sinks abort their own uploads; one that could not reach the server
            // then is aborted here, or later by retention.
            let uploads = self.storage.pending_uploads_or_none(&self.prefix).await;
            self.storage.abort_uploads(&uploads).await
        })
    }
}
