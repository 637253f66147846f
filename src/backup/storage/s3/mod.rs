//! The `s3` backend, [`S3Storage`]: backups and blobs as objects in an S3 bucket
//! (AWS, or any S3-compatible server), through the `object_store` crate.
//!
//! Keys: `[PREFIX/]<keyspace>/<shard>/<backup-name>/<object>`, the same names as the
//! `file` layout (`0`, `1`, …, `MANIFEST`), and blobs under `[PREFIX/]_topo/`. A
//! backup prefix without a `MANIFEST` object is incomplete and never restored. The
//! MANIFEST is created last, after every data object is complete, with a
//! conditional create (`If-None-Match: *`): it is never overwritten, so two writers
//! can never both complete one backup. Removal deletes the MANIFEST first.
//!
//! - `config`: [`S3Config`] (the flags), the pure rules that check them, the
//!   shared credentials file, building the client.
//! - `upload`: the blocking `Write` sink that streams a file as a multipart
//!   upload with bounded memory, and the part-size schedule.
//! - `download`: the blocking `Read` that prefetches ranged GETs in order.
//! - `errors`: client errors on one line, S3 error documents summarized.
//! - `writer`: the backup under construction (MANIFEST-last bookkeeping).
//! - `uploads`: listing and aborting multipart uploads left unfinished (which
//!   `object_store` cannot list): retention and removal clean them.
//!
//! May call: `object_store`, the storage module, [`crate::backup::manifest`],
//! `cairn-topo`'s name rules, [`crate::common`].

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use cairn_topo::names::{validate_backup_name, validate_shard};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;

use super::file::MAX_MANIFEST_BYTES;
use super::{
    validate_blob_dir, validate_blob_name, validate_shard_path, validate_stored_name, BackupInfo,
    BackupStorage, BackupWriter, BlobInfo, BlobWritten, ShardDir, StorageError, StorageResult,
    MANIFEST_FILE,
};
use crate::backup::manifest::Manifest;
pub(super) use errors::error_chain;

mod config;
mod download;
mod errors;
mod upload;
mod uploads;
mod writer;

pub use config::{S3Config, ServerSideEncryption, DEFAULT_RETRIES};
pub use download::{RANGES_IN_FLIGHT, RANGE_SIZE};
pub use upload::{capacity, part_size, MAX_PARTS, MIN_PART_SIZE};

/// MANIFESTs read at once when listing a shard's backups.
const MANIFEST_READS_IN_FLIGHT: usize = 8;

/// The `s3` backend (see the module doc).
#[derive(Clone)]
pub struct S3Storage {
    /// The client.
    store: Arc<dyn ObjectStore>,
    /// The same client, as S3 (credentials, aborting uploads by id).
    s3: Arc<AmazonS3>,
    /// The settings (no secrets).
    cfg: S3Config,
    /// Part uploads in flight across every file of this process.
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Storage({})", self.cfg.url())
    }
}

impl S3Storage {
    /// The storage `cfg` describes (validated here too). Nothing is sent: a wrong
    /// bucket, endpoint or credentials show at the first request.
    pub fn open(cfg: S3Config) -> StorageResult<Self> {
        let cfg = cfg.validate().map_err(StorageError::Misuse)?;
        let s3 = Arc::new(cfg.build().map_err(StorageError::Misuse)?);
        Ok(Self {
            store: s3.clone(),
            s3,
            slots: Arc::new(Semaphore::new(cfg.concurrency)),
            cfg,
        })
    }

    /// The settings.
    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// The key `[PREFIX/]a/b/…`.
    fn key(&self, parts: &[&str]) -> Path {
        let root = self.cfg.root.split('/').filter(|s| !s.is_empty());
        // A blob directory may have several levels (`_binlog/ks/0`); every other
        // part is one validated name without a slash.
        let parts = parts.iter().flat_map(|p| p.split('/'));
        Path::from_iter(root.chain(parts))
    }

    /// `s3://bucket/key`, for messages.
    fn url(&self, key: &Path) -> String {
        format!("s3://{}/{key}", self.cfg.bucket)
    }

    /// A storage error from a client error: `NotFound`/`AlreadyExists` as such
    /// (named `what`), anything else with what was being done (`doing` plus the
    /// key's URL).
    fn err(&self, e: object_store::Error, what: &str, doing: &str, key: &Path) -> StorageError {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound(what.to_string()),
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => {
                StorageError::AlreadyExists(what.to_string())
            }
            e => StorageError::io(
                format!("{doing} {}", self.url(key)),
                io::Error::other(error_chain(&e)),
            ),
        }
    }

    /// Every object under `prefix/` (recursively) as (path below it, size).
    async fn list_under(&self, prefix: &Path) -> StorageResult<Vec<(Vec<String>, u64)>> {
        self.list_under_from(prefix, None).await
    }

    /// [`Self::list_under`] from the first key after `offset` when given (S3's
    /// `start-after`: the keys before it are not listed at all).
    async fn list_under_from(
        &self,
        prefix: &Path,
        offset: Option<&Path>,
    ) -> StorageResult<Vec<(Vec<String>, u64)>> {
        let mut out = Vec::new();
        let mut s = match offset {
            Some(o) => self.store.list_with_offset(Some(prefix), o),
            None => self.store.list(Some(prefix)),
        };
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| self.err(e, "listing", "listing", prefix))?;
            let Some(rel) = m.location.prefix_match(prefix) else {
                continue;
            };
            out.push((rel.map(|p| p.as_ref().to_string()).collect(), m.size));
        }
        Ok(out)
    }

    /// The blobs of `dir` (every one, or those named after `after`), sorted.
    async fn blobs_from(&self, dir: &str, after: Option<&str>) -> StorageResult<Vec<BlobInfo>> {
        validate_blob_dir(dir)?;
        if let Some(a) = after {
            validate_blob_name(a)?;
        }
        let listed = match after {
            Some(a) => {
                self.list_under_from(&self.key(&[dir]), Some(&self.key(&[dir, a])))
                    .await?
            }
            None => self.list_under(&self.key(&[dir])).await?,
        };
        let mut out: Vec<BlobInfo> = listed
            .into_iter()
            .filter_map(|(rel, size)| match &rel[..] {
                [name]
                    if validate_blob_name(name).is_ok()
                        && after.is_none_or(|a| name.as_str() > a) =>
                {
                    Some(BlobInfo {
                        name: name.clone(),
                        size_bytes: size,
                    })
                }
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The sub-"directories" of `prefix` (common prefixes), sorted.
    async fn subdirs(&self, prefix: &Path) -> StorageResult<Vec<String>> {
        let p = (!prefix.as_ref().is_empty()).then_some(prefix);
        let listed = self
            .store
            .list_with_delimiter(p)
            .await
            .map_err(|e| self.err(e, "listing", "listing", prefix))?;
        let mut out: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|c| c.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Reads and parses the MANIFEST at `key` (at most [`MAX_MANIFEST_BYTES`]);
    /// `Ok(None)` if absent.
    async fn manifest_at(&self, key: &Path, label: &str) -> StorageResult<Option<Manifest>> {
        let got = match self.store.get(key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(e, label, "reading", key)),
        };
        if got.meta.size > MAX_MANIFEST_BYTES {
            return Err(StorageError::io(
                format!("reading {}", self.url(key)),
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("MANIFEST larger than {MAX_MANIFEST_BYTES} bytes"),
                ),
            ));
        }
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.err(e, label, "reading", key))?;
        Manifest::from_json(&bytes)
            .map(Some)
            .map_err(|source| StorageError::Manifest {
                backup: label.to_string(),
                source,
            })
    }

    /// Size of the object at `key`; `NotFound` (as `what`) if absent.
    async fn size_of(&self, key: &Path, what: &str) -> StorageResult<u64> {
        self.store
            .head(key)
            .await
            .map(|m| m.size)
            .map_err(|e| self.err(e, what, "reading", key))
    }

    /// Deletes these keys, in order.
    async fn delete_all(&self, keys: Vec<Path>) -> StorageResult<()> {
        for k in keys {
            match self.store.delete(&k).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err(e, "object", "deleting", &k)),
            }
        }
        Ok(())
    }

    /// Stores a blob from `reader` at `key`: one conditional PUT when it fits in a
    /// part, else a multipart upload (after checking the name is free).
    async fn upload_blob(
        &self,
        key: &Path,
        what: &str,
        reader: &mut (dyn AsyncRead + Send + Unpin),
    ) -> StorageResult<BlobWritten> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = Vec::with_capacity(part_size(0));
        let n = (&mut *reader)
            .take(part_size(0) as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| StorageError::io(format!("reading {what}"), e))?;
        hasher.update(&buf);
        size += n as u64;
        if n < part_size(0) {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            self.store
                .put_opts(key, PutPayload::from(Bytes::from(buf)), opts)
                .await
                .map_err(|e| self.err(e, what, "writing", key))?;
            return Ok(BlobWritten {
                size_bytes: size,
                sha256: hex::encode(hasher.finalize()),
            });
        }
        match self.store.head(key).await {
            Ok(_) => return Err(StorageError::AlreadyExists(what.to_string())),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.err(e, what, "checking", key)),
        }
        let mut up = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.err(e, what, "starting the upload of", key))?;
        let result = async {
            let mut index = 0u64;
            loop {
                up.put_part(PutPayload::from(Bytes::from(std::mem::take(&mut buf))))
                    .await
                    .map_err(|e| self.err(e, what, "uploading a part of", key))?;
                index += 1;
                let want = part_size(index);
                buf.reserve(want);
                let n = (&mut *reader)
                    .take(want as u64)
                    .read_to_end(&mut buf)
                    .await
                    .map_err(|e| StorageError::io(format!("reading {what}"), e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf);
                size += n as u64;
            }
            up.complete()
                .await
                .map_err(|e| self.err(e, what, "completing the upload of", key))?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = up.abort().await;
            return Err(e);
        }
        Ok(BlobWritten {
            size_bytes: size,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

impl BackupStorage for S3Storage {
    fn list_shards(&self) -> BoxFuture<'_, StorageResult<Vec<ShardDir>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for ks in self.subdirs(&self.key(&[])).await? {
                if !super::is_keyspace_dir(&ks) {
                    continue;
                }
                for shard in self.subdirs(&self.key(&[&ks])).await? {
                    if validate_shard(&shard).is_ok() {
                        out.push(ShardDir {
                            keyspace: ks.clone(),
                            shard,
                        });
                    }
                }
            }
            Ok(out)
        })
    }

    fn list_backups<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
    ) -> BoxFuture<'a, StorageResult<Vec<BackupInfo>>> {
        Box::pin(async move {
            validate_shard_path(keyspace, shard)?;
            let prefix = self.key(&[keyspace, shard]);
            // name -> (bytes, has a MANIFEST)
            let mut backups: BTreeMap<String, (u64, bool)> = BTreeMap::new();
            for (rel, size) in self.list_under(&prefix).await? {
                let [name, rest @ ..] = &rel[..] else {
                    continue;
                };
                if validate_backup_name(name).is_err() || rest.is_empty() {
                    continue;
                }
                let e = backups.entry(name.clone()).or_default();
                e.0 += size;
                e.1 |= rest.len() == 1 && rest[0] == MANIFEST_FILE;
            }
            // A backup whose only trace is an unfinished upload (its tablet died in
            // its first file) is incomplete too, so retention cleans it.
            for u in self.pending_uploads_or_none(&prefix).await {
                let rel = u
                    .key
                    .strip_prefix(&format!("{prefix}/"))
                    .unwrap_or_default();
                if let Some((name, _)) = rel.split_once('/') {
                    if validate_backup_name(name).is_ok() {
                        backups.entry(name.to_string()).or_default();
                    }
                }
            }
            let infos = futures::stream::iter(backups)
                .map(|(name, (size, has_manifest))| async move {
                    let label = format!("{keyspace}/{shard}/{name}");
                    let read = if has_manifest {
                        let key = self.key(&[keyspace, shard, &name, MANIFEST_FILE]);
                        self.manifest_at(&key, &label).await
                    } else {
                        Ok(None)
                    };
                    let info = BackupInfo::classify(name, read, size);
                    if let Some(error) = &info.error {
                        tracing::warn!(backup = %label, %error,
                            "unreadable MANIFEST: the backup is kept, never restored");
                    }
                    info
                })
                .buffered(MANIFEST_READS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await;
            Ok(infos)
        })
    }

    fn start_backup<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn BackupWriter>>> {
        Box::pin(async move {
            validate_shard_path(keyspace, shard)?;
            validate_backup_name(name)?;
            let label = format!("backup {keyspace}/{shard}/{name}");
            let prefix = self.key(&[keyspace, shard, name]);
            // Never write into a prefix that holds anything: two backups of one
            // name must never share objects.
            if let Some(first) = self.store.list(Some(&prefix)).next().await {
                first.map_err(|e| self.err(e, &label, "listing", &prefix))?;
                return Err(StorageError::AlreadyExists(label));
            }
            Ok(Box::new(writer::S3BackupWriter::new(
                self.clone(),
                (keyspace, shard, name),
                label,
                prefix,
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
            validate_shard_path(keyspace, shard)?;
            validate_backup_name(name)?;
            let label = format!("backup {keyspace}/{shard}/{name}");
            let prefix = self.key(&[keyspace, shard, name]);
            let objects = self.list_under(&prefix).await?;
            let uploads = self.pending_uploads_or_none(&prefix).await;
            if objects.is_empty() && uploads.is_empty() {
                return Err(StorageError::NotFound(label));
            }
            // The MANIFEST first: a half-removed backup is incomplete, never
            // taken for a complete one.
            let mut keys = vec![self.key(&[keyspace, shard, name, MANIFEST_FILE])];
            for (rel, _) in objects {
                if rel != [MANIFEST_FILE] {
                    let mut parts = vec![keyspace, shard, name];
                    parts.extend(rel.iter().map(String::as_str));
                    keys.push(self.key(&parts));
                }
            }
            self.delete_all(keys).await?;
            self.abort_uploads(&uploads).await
        })
    }

    fn read_manifest<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Manifest>> {
        Box::pin(async move {
            validate_shard_path(keyspace, shard)?;
            validate_backup_name(name)?;
            let label = format!("{keyspace}/{shard}/{name}");
            let key = self.key(&[keyspace, shard, name, MANIFEST_FILE]);
            self.manifest_at(&key, &label)
                .await?
                .ok_or_else(|| StorageError::NotFound(format!("MANIFEST of backup {label}")))
        })
    }

    fn open_file<'a>(
        &'a self,
        keyspace: &'a str,
        shard: &'a str,
        name: &'a str,
        stored_name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn io::Read + Send>>> {
        Box::pin(async move {
            validate_shard_path(keyspace, shard)?;
            validate_backup_name(name)?;
            validate_stored_name(stored_name)?;
            let key = self.key(&[keyspace, shard, name, stored_name]);
            let what = format!("file {stored_name} of backup {keyspace}/{shard}/{name}");
            let size = self.size_of(&key, &what).await?;
            let url = self.url(&key);
            Ok(Box::new(download::S3Reader::start(
                self.store.clone(),
                &tokio::runtime::Handle::current(),
                key,
                size,
                url,
            )) as Box<dyn io::Read + Send>)
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
            let key = self.key(&[dir, name]);
            let what = format!("blob {dir}/{name}");
            self.upload_blob(&key, &what, &mut *reader).await
        })
    }

    fn list_blobs<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, StorageResult<Vec<BlobInfo>>> {
        Box::pin(self.blobs_from(dir, None))
    }

    fn list_blobs_after<'a>(
        &'a self,
        dir: &'a str,
        after: &'a str,
    ) -> BoxFuture<'a, StorageResult<Vec<BlobInfo>>> {
        Box::pin(self.blobs_from(dir, Some(after)))
    }

    fn open_blob<'a>(
        &'a self,
        dir: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn AsyncRead + Send + Unpin>>> {
        Box::pin(async move {
            validate_blob_dir(dir)?;
            validate_blob_name(name)?;
            let key = self.key(&[dir, name]);
            let what = format!("blob {dir}/{name}");
            let got = self
                .store
                .get(&key)
                .await
                .map_err(|e| self.err(e, &what, "reading", &key))?;
            let url = self.url(&key);
            let stream = got
                .into_stream()
                .map_err(move |e| io::Error::other(format!("reading {url}: {}", error_chain(&e))));
            Ok(Box::new(tokio_util::io::StreamReader::new(stream))
                as Box<dyn AsyncRead + Send + Unpin>)
        })
    }

    fn remove_blob<'a>(&'a self, dir: &'a str, name: &'a str) -> BoxFuture<'a, StorageResult<()>> {
        Box::pin(async move {
            validate_blob_dir(dir)?;
            validate_blob_name(name)?;
            let key = self.key(&[dir, name]);
            let what = format!("blob {dir}/{name}");
            self.size_of(&key, &what).await?;
            self.delete_all(vec![key]).await
        })
    }
}
