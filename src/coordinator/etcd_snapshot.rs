//! etcd snapshots: stream etcd's maintenance snapshot, verify its integrity hash,
//! and keep it in a file (`cairn topo snapshot FILE`) or in backup storage under
//! `_topo/` with a JSON sidecar (the coordinator's `--topo-snapshot-cron`), pruning
//! old ones. Owns the snapshot stream and the `_topo/etcd-*.db` naming; storage
//! itself is [`BackupStorage`]'s. (Not the coordinator's in-memory topology: that
//! is [`TopoView`](super::cache::TopoView).)
//!
//! May call: `cairn-topo` (the snapshot stream, status), `backup` (storage,
//! encryption).
//!
//! The stream's layout (etcd 3.4, checked against `etcdctl snapshot save`): the
//! bbolt database file, then the sha256 of those bytes as the last 32 bytes. The
//! whole stream, hash included, is what is stored, exactly as etcdctl saves it,
//! so `etcdctl snapshot restore` verifies it again. The first message's
//! `remaining_bytes` plus its blob tell the database size, which finds a stream
//! that ends early.
//!
//! With recipients configured (`--backup-encryption-recipient…`), the stored
//! blob is the age encryption of that stream, named `etcd-<time>.db.age`; its
//! sidecar's `sha256`/`size_bytes` are those of the stored bytes (as for a
//! MANIFEST), `db_sha256`/`db_size_bytes` those of the snapshot inside, and
//! `encryption`/`encryption_recipients` say who can open it:
//! `age -d -i KEY etcd-….db.age > etcd.db` gives what `etcdctl` restores.
//!
//! `revision` is the store revision etcd reported when the snapshot began (the
//! snapshot's own response header when it carries one, else a status call just
//! before): the snapshot holds every change up to at least that revision.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use cairn_topo::{Topo, TopoError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::backup::encryption::{EncryptingReader, Recipients, AGE};
use crate::backup::storage::{BackupStorage, StorageError, StorageResultExt};

/// Length of etcd's trailing integrity hash (sha256).
const HASH_LEN: usize = 32;
/// A snapshot stream that sends nothing for this long is given up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The blob directory of etcd snapshots in backup storage.
pub const TOPO_DIR: &str = "_topo";
/// Prefix of snapshot blob names.
const NAME_PREFIX: &str = "etcd-";
/// Suffix of snapshot blob names.
const DB_SUFFIX: &str = ".db";
/// Suffix appended to the name of an encrypted snapshot.
const AGE_SUFFIX: &str = ".age";
/// Suffix appended to a snapshot's name to name its sidecar.
const SIDECAR_SUFFIX: &str = ".json";

/// What can go wrong taking a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// etcd refused or the connection broke.
    #[error("etcd snapshot: {0}")]
    Etcd(#[from] TopoError),
    /// etcd stopped sending for too long.
    #[error("etcd snapshot: {0}")]
    Timeout(String),
    /// The stream ended before the announced size plus the hash arrived.
    #[error("etcd snapshot truncated: got {got} bytes, expected {expected}")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Database size announced by the first message, plus the hash.
        expected: u64,
    },
    /// The trailing hash does not match the bytes before it.
    #[error("etcd snapshot integrity check failed: sha256 of the {size} database bytes is {actual}, the stream's trailer says {expected}")]
    HashMismatch {
        /// Bytes hashed (the database part).
        size: u64,
        /// The trailer etcd sent.
        expected: String,
        /// What the received bytes hash to.
        actual: String,
    },
    /// Writing the snapshot out failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, on which path.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Backup storage refused.
    #[error("{context}: {source}")]
    Storage {
        /// What was being done.
        context: String,
        /// The storage error.
        source: StorageError,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SnapshotError {
    let context = context.into();
    move |source| SnapshotError::Io { context, source }
}

fn storage_err(context: impl Into<String>) -> impl FnOnce(StorageError) -> SnapshotError {
    let context = context.into();
    move |source| SnapshotError::Storage { context, source }
}

/// What a verified snapshot is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// etcd's store revision when the snapshot began (see the module docs).
    pub revision: i64,
    /// Bytes stored: the database plus etcd's 32-byte hash trailer.
    pub size_bytes: u64,
    /// Hex sha256 of the stored bytes (what `sha256sum FILE` prints).
    pub sha256: String,
}

/// The JSON sidecar stored next to a snapshot in backup storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    /// The snapshot blob this describes.
    pub name: String,
    /// See [`SnapshotInfo::revision`].
    pub revision: i64,
    /// Bytes stored (of the age file, when encrypted).
    pub size_bytes: u64,
    /// Hex sha256 of the stored bytes (what `sha256sum` of the blob prints).
    pub sha256: String,
    /// When the coordinator took it.
    pub taken_at: DateTime<Utc>,
    /// `age` when the blob is an age file; absent for plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// The recipients it is encrypted to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encryption_recipients: Vec<String>,
    /// Encrypted only: size of the snapshot inside (etcd's stream, trailer included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_size_bytes: Option<u64>,
    /// Encrypted only: hex sha256 of the snapshot inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_sha256: Option<String>,
}

/// Checks the stream as it passes: the database bytes are hashed, the last 32
/// bytes seen are held back as the candidate trailer, and the whole stream is
/// hashed for [`SnapshotInfo::sha256`].
#[derive(Default)]
struct Verifier {
    /// sha256 over every byte but the last 32 seen so far.
    db: Sha256,
    /// sha256 over every byte.
    file: Sha256,
    /// The last (up to) 32 bytes seen: the trailer once the stream ends.
    tail: Vec<u8>,
    /// Bytes seen.
    total: u64,
    /// Database size plus trailer, learnt from the first non-empty message.
    expected: Option<u64>,
}

impl Verifier {
    /// Feeds one message: `remaining` is its `remaining_bytes`.
    fn push(&mut self, chunk: &[u8], remaining: u64) {
        if chunk.is_empty() {
            return;
        }
        if self.expected.is_none() {
            self.expected = Some(remaining + chunk.len() as u64 + HASH_LEN as u64);
        }
        self.file.update(chunk);
        self.total += chunk.len() as u64;
        let combined = self.tail.len() + chunk.len();
        if combined <= HASH_LEN {
            self.tail.extend_from_slice(chunk);
            return;
        }
        let to_hash = combined - HASH_LEN;
        let from_tail = to_hash.min(self.tail.len());
        self.db.update(&self.tail[..from_tail]);
        let from_chunk = to_hash - from_tail;
        self.db.update(&chunk[..from_chunk]);
        let mut tail = self.tail.split_off(from_tail);
        tail.extend_from_slice(&chunk[from_chunk..]);
        self.tail = tail;
    }

    /// Checks size and trailer; returns (size, hex sha256 of everything).
    fn finish(self) -> Result<(u64, String), SnapshotError> {
        let expected = self.expected.unwrap_or(HASH_LEN as u64 + 1);
        if self.total != expected || self.tail.len() < HASH_LEN {
            return Err(SnapshotError::Truncated {
                got: self.total,
                expected,
            });
        }
        let actual = self.db.finalize();
        if actual.as_slice() != self.tail.as_slice() {
            return Err(SnapshotError::HashMismatch {
                size: self.total - HASH_LEN as u64,
                expected: hex::encode(&self.tail),
                actual: hex::encode(actual),
            });
        }
        Ok((self.total, hex::encode(self.file.finalize())))
    }
}

/// Streams etcd's snapshot into `out`, verifying it; `out` is flushed, not
/// synced. On error, `out` holds a partial stream the caller must discard.
pub async fn save_snapshot<W: AsyncWrite + Unpin>(
    topo: &Topo,
    out: &mut W,
) -> Result<SnapshotInfo, SnapshotError> {
    let mut stream = topo.snapshot().await.map_err(|e| match e {
        TopoError::Timeout(m) => SnapshotError::Timeout(m),
        e => SnapshotError::Etcd(e),
    })?;
    let mut v = Verifier::default();
    loop {
        let chunk = tokio::time::timeout(IDLE_TIMEOUT, stream.next_chunk())
            .await
            .map_err(|_| {
                SnapshotError::Timeout(format!(
                    "nothing received for {IDLE_TIMEOUT:?} after {} bytes",
                    v.total
                ))
            })??;
        let Some(chunk) = chunk else { break };
        out.write_all(&chunk)
            .await
            .map_err(io_err("writing the snapshot"))?;
        v.push(&chunk, stream.remaining_bytes());
    }
    let revision = stream.revision();
    out.flush().await.map_err(io_err("writing the snapshot"))?;
    let (size_bytes, sha256) = v.finish()?;
    Ok(SnapshotInfo {
        revision,
        size_bytes,
        sha256,
    })
}

/// Saves a verified snapshot at `path`, atomically: it is written to a temporary
/// file in the same directory, fsynced, renamed over `path`, and the directory
/// fsynced. On any error the temporary file is removed and `path` is untouched.
/// The file is readable by its owner only.
pub async fn save_to_file(topo: &Topo, path: &Path) -> Result<SnapshotInfo, SnapshotError> {
    let file_name = path.file_name().ok_or_else(|| SnapshotError::Io {
        context: format!("saving a snapshot to {}", path.display()),
        source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{:016x}", rand::random::<u64>()));
    let tmp = dir.join(tmp_name);
    let result = async {
        let mut f = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .await
            .map_err(io_err(format!("creating {}", tmp.display())))?;
        let info = save_snapshot(topo, &mut f).await?;
        f.sync_all()
            .await
            .map_err(io_err(format!("fsync of {}", tmp.display())))?;
        drop(f);
        tokio::fs::rename(&tmp, path).await.map_err(io_err(format!(
            "renaming {} to {}",
            tmp.display(),
            path.display()
        )))?;
        Ok(info)
    }
    .await;
    match result {
        Ok(info) => {
            // The rename is done; a failed directory fsync is reported, but the
            // snapshot is complete and verified, so it stays.
            let d = dir.clone();
            tokio::task::spawn_blocking(move || std::fs::File::open(&d).and_then(|f| f.sync_all()))
                .await
                .map_err(|e| SnapshotError::Io {
                    context: "fsync of the snapshot's directory".into(),
                    source: io::Error::other(e.to_string()),
                })?
                .map_err(io_err(format!("fsync of directory {}", dir.display())))?;
            Ok(info)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// The blob name of a snapshot taken at `at`: `etcd-YYYY-MM-DD.HHMMSS.db` (UTC),
/// which sorts by time.
pub fn snapshot_name(at: DateTime<Utc>) -> String {
    format!("{NAME_PREFIX}{}{DB_SUFFIX}", at.format("%Y-%m-%d.%H%M%S"))
}

/// Whether a blob name is one of our snapshots, plaintext or encrypted (not a
/// sidecar, not foreign).
fn is_snapshot_name(name: &str) -> bool {
    let name = name.strip_suffix(AGE_SUFFIX).unwrap_or(name);
    name.starts_with(NAME_PREFIX) && name.ends_with(DB_SUFFIX)
}

/// Hands what the producer writes to a reader that fails instead of ending when
/// the producer failed, so storage never keeps a snapshot that did not verify.
struct SnapshotHashReader {
    /// The bytes, through an in-memory pipe.
    inner: tokio::io::DuplexStream,
    /// Set by the producer before it closes the pipe: `true` once verified.
    verified: Arc<Mutex<Option<bool>>>,
}

impl AsyncRead for SnapshotHashReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                let verified = *crate::common::lock(&self.verified);
                if verified == Some(true) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(io::Error::other(
                        "the etcd snapshot stream failed or did not verify",
                    )))
                }
            }
            other => other,
        }
    }
}

/// Takes a snapshot into backup storage as `_topo/etcd-<time>.db` plus the sidecar
/// `…db.json`, or, with `encryption`, as the age file `_topo/etcd-<time>.db.age`
/// plus `…db.age.json`; returns the snapshot's name. Nothing is kept of a
/// snapshot that did not verify; a snapshot whose sidecar cannot be written is
/// removed again.
pub async fn save_to_storage(
    topo: &Topo,
    storage: &dyn BackupStorage,
    now: DateTime<Utc>,
    encryption: Option<&Recipients>,
) -> Result<(String, SnapshotInfo), SnapshotError> {
    let mut name = snapshot_name(now);
    if encryption.is_some() {
        name.push_str(AGE_SUFFIX);
    }
    let (mut writer, reader) = tokio::io::duplex(1 << 20);
    let verified = Arc::new(Mutex::new(None));
    let reader = SnapshotHashReader {
        inner: reader,
        verified: verified.clone(),
    };
    let (reader, sealed): (Box<dyn AsyncRead + Send + Unpin>, _) = match encryption {
        None => (Box::new(reader), None),
        Some(r) => {
            let enc = EncryptingReader::new(reader, r)
                .map_err(io_err("setting up the snapshot's encryption"))?;
            let sealed = enc.sealed();
            (Box::new(enc), Some(sealed))
        }
    };
    let produce = async {
        let r = save_snapshot(topo, &mut writer).await;
        *crate::common::lock(&verified) = Some(r.is_ok());
        let _ = writer.shutdown().await;
        drop(writer);
        r
    };
    let store = storage.put_blob(TOPO_DIR, &name, reader);
    let (produced, stored) = tokio::join!(produce, store);
    let (info, stored) = match (produced, stored) {
        // The snapshot's own error explains a storage read failure best.
        (Err(e), _) => return Err(e),
        (Ok(_), Err(e)) => return Err(storage_err(format!("storing {TOPO_DIR}/{name}"))(e)),
        (Ok(info), Ok(stored)) => (info, stored),
    };
    // What was handed to storage: the snapshot itself, or its age file.
    let handed = match &sealed {
        None => Some((info.size_bytes, info.sha256.clone())),
        Some(s) => crate::common::lock(s)
            .clone()
            .map(|s| (s.size_bytes, s.sha256)),
    };
    if handed.as_ref() != Some(&(stored.size_bytes, stored.sha256.clone())) {
        let _ = storage.remove_blob(TOPO_DIR, &name).await;
        return Err(SnapshotError::Io {
            context: format!("storing {TOPO_DIR}/{name}"),
            source: io::Error::other(format!(
                "storage holds {} bytes with sha256 {}, {:?} (bytes, sha256) were handed to it",
                stored.size_bytes, stored.sha256, handed
            )),
        });
    }
    let encrypted = encryption.is_some();
    let sidecar = Sidecar {
        name: name.clone(),
        revision: info.revision,
        size_bytes: stored.size_bytes,
        sha256: stored.sha256.clone(),
        taken_at: now,
        encryption: encryption.map(|_| AGE.to_string()),
        encryption_recipients: encryption.map(|r| r.names().to_vec()).unwrap_or_default(),
        db_size_bytes: encrypted.then_some(info.size_bytes),
        db_sha256: encrypted.then(|| info.sha256.clone()),
    };
    let json = serde_json::to_vec_pretty(&sidecar).map_err(|e| SnapshotError::Io {
        context: "encoding the snapshot sidecar".into(),
        source: io::Error::other(e),
    })?;
    let sidecar_name = format!("{name}{SIDECAR_SUFFIX}");
    if let Err(e) = storage
        .put_blob(TOPO_DIR, &sidecar_name, Box::new(&json[..]))
        .await
    {
        let _ = storage.remove_blob(TOPO_DIR, &name).await;
        return Err(storage_err(format!("storing {TOPO_DIR}/{sidecar_name}"))(e));
    }
    Ok((
        name,
        SnapshotInfo {
            revision: info.revision,
            size_bytes: stored.size_bytes,
            sha256: stored.sha256,
        },
    ))
}

/// Which snapshot blobs pruning removes so that the newest `keep` snapshots stay
/// (at least one is always kept): older snapshots with their sidecars, and
/// sidecars whose snapshot is gone. Pure; names sort by time.
pub fn prune_plan(blob_names: &[String], keep: u32) -> Vec<String> {
    let mut snaps: Vec<&String> = blob_names.iter().filter(|n| is_snapshot_name(n)).collect();
    snaps.sort();
    let keep = (keep.max(1) as usize).min(snaps.len());
    let kept: Vec<&String> = snaps[snaps.len() - keep..].to_vec();
    let mut out = Vec::new();
    for s in &snaps[..snaps.len() - keep] {
        out.push((*s).clone());
    }
    for n in blob_names {
        if let Some(db) = n.strip_suffix(SIDECAR_SUFFIX) {
            if is_snapshot_name(db) && !kept.iter().any(|k| k.as_str() == db) {
                out.push(n.clone());
            }
        }
    }
    out.sort();
    out
}

/// Removes old snapshots from storage, keeping the newest `keep` (see
/// [`prune_plan`]); returns the blobs removed. A blob removed meanwhile is fine.
pub async fn prune_snapshots(
    storage: &dyn BackupStorage,
    keep: u32,
) -> Result<Vec<String>, SnapshotError> {
    let blobs = storage
        .list_blobs(TOPO_DIR)
        .await
        .map_err(storage_err(format!("listing {TOPO_DIR}")))?;
    let names: Vec<String> = blobs.into_iter().map(|b| b.name).collect();
    let doomed = prune_plan(&names, keep);
    for n in &doomed {
        storage
            .remove_blob(TOPO_DIR, n)
            .await
            .ignore_not_found()
            .map_err(storage_err(format!("removing {TOPO_DIR}/{n}")))?;
    }
    Ok(doomed)
}

#[cfg(test)]
mod tests;
