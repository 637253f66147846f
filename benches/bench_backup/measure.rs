//! One measured pass: a shell baseline (bash, timed with its children's CPU) or
//! cairn's own pipeline run in this process (`backup_files`, `backup_stream`,
//! into a `FileStorage` or a storage that discards), plus what passes need around
//! them: syncing, dropping pages from the cache, single-core stage speeds.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use cairn::backup::manifest::{BackupMethod, FileEntry, Manifest, FORMAT_VERSION_PLAIN};
use cairn::backup::pipeline::{self, Compression, CopyOptions, Progress, SourceFile};
use cairn::backup::storage::{BackupStorage, BackupWriter, FileSink, FileStorage, StorageResult};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{KS, MIB, SHARD};
use crate::common::cpu_times;

/// Wall and CPU time of one measured pass.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub secs: f64,
    pub cpu: f64,
}

/// Runs a shell pipeline (bash, pipefail) and times it; CPU is the children's.
pub fn shell(what: &str, script: &str) -> anyhow::Result<Timed> {
    let (_, c0) = cpu_times();
    let t0 = Instant::now();
    let out = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail; {script}")])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    let secs = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let (_, c1) = cpu_times();
    Ok(Timed { secs, cpu: c1 - c0 })
}

/// `sync FILE…` (fsync of each), timed: what the baselines would pay to be durable.
pub fn sync_paths(paths: &[&Path]) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let st = Command::new("sync")
        .args(paths)
        .status()
        .context("running sync")?;
    if !st.success() {
        bail!("sync failed ({st})");
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Global `sync`, between passes, so one pass's dirty pages are not written back
/// during the next.
pub fn settle() {
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
}

pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}

/// A backup writer whose files go nowhere: the pipeline without storage costs.
struct NullWriter;

struct NullSink(u64);

impl Write for NullSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl FileSink for NullSink {
    fn finish(self: Box<Self>) -> StorageResult<u64> {
        Ok(self.0)
    }
}

impl BackupWriter for NullWriter {
    fn name(&self) -> &str {
        "null"
    }
    fn create_file<'a>(
        &'a self,
        _stored_name: &'a str,
    ) -> BoxFuture<'a, StorageResult<Box<dyn FileSink>>> {
        Box::pin(async { Ok(Box::new(NullSink(0)) as Box<dyn FileSink>) })
    }
    fn write_manifest<'a>(&'a self, _manifest: &'a Manifest) -> BoxFuture<'a, StorageResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn abort(&self) -> BoxFuture<'_, StorageResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

pub fn manifest_for(name: &str, compression: Compression, entries: Vec<FileEntry>) -> Manifest {
    let now = chrono::Utc::now();
    let mut m = Manifest {
        backup_name: name.into(),
        backup_method: BackupMethod::Builtin,
        position: String::new(),
        purged_position: String::new(),
        backup_time: now,
        finished_time: now,
        server_uuid: String::new(),
        tablet_alias: "zone1-0000000101".into(),
        hostname: "localhost".into(),
        keyspace: KS.into(),
        shard: SHARD.into(),
        schedule: None,
        mysql_version: String::new(),
        upgrade_safe: false,
        compression_engine: compression.engine(),
        file_entries: vec![],
        total_size: 0,
        stored_size: 0,
        stream_mode: None,
        encryption: None,
        encryption_recipients: vec![],
        flavor: "MariaDB".into(),
        format_version: FORMAT_VERSION_PLAIN,
        incremental: Default::default(),
    };
    m.set_file_entries(entries);
    m
}

/// `backup_files` into `storage` (None: the discarding writer), MANIFEST included.
pub async fn our_backup(
    storage: Option<&FileStorage>,
    name: &str,
    files: &[SourceFile],
    compression: Compression,
    concurrency: usize,
) -> anyhow::Result<(Timed, Manifest)> {
    let opts = CopyOptions {
        compression,
        concurrency,
        retries_per_file: 1,
        ..CopyOptions::default()
    };
    our_backup_with(storage, name, files, &opts).await
}

/// Like [`our_backup`] with any copy options (encryption among them).
pub async fn our_backup_with(
    storage: Option<&FileStorage>,
    name: &str,
    files: &[SourceFile],
    opts: &CopyOptions,
) -> anyhow::Result<(Timed, Manifest)> {
    let compression = opts.compression;
    let (c0, _) = cpu_times();
    let t0 = Instant::now();
    let writer: Box<dyn BackupWriter> = match storage {
        Some(s) => s.start_backup(KS, SHARD, name).await?,
        None => Box::new(NullWriter),
    };
    let entries = pipeline::backup_files(
        &*writer,
        files.to_vec(),
        opts,
        Progress::new(),
        CancellationToken::new(),
    )
    .await?;
    let mut m = manifest_for(name, compression, entries);
    if let Some(r) = &opts.encryption {
        m.set_encryption(r.names());
    }
    writer.write_manifest(&m).await?;
    let secs = t0.elapsed().as_secs_f64();
    let (c1, _) = cpu_times();
    Ok((Timed { secs, cpu: c1 - c0 }, m))
}

/// Single-core speeds of the pipeline's stages on a sample of the data set (MiB/s):
/// BLAKE3 (what backups record) and sha256 (what they recorded before), zstd
/// level 1 compression and decompression (one thread), and the ratio.
pub fn stage_speeds(sample_from: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut sample = Vec::new();
    std::fs::File::open(sample_from)?
        .take(256 << 20)
        .read_to_end(&mut sample)?;
    let mib = sample.len() as f64 / MIB;
    let t0 = Instant::now();
    std::hint::black_box(sha2::Sha256::digest(&sample));
    let sha = mib / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    std::hint::black_box(blake3::hash(&sample));
    let b3 = mib / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let compressed = zstd::bulk::compress(&sample, 1)?;
    let comp = mib / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let back = zstd::bulk::decompress(&compressed, sample.len())?;
    let decomp = mib / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    std::hint::black_box(blake3::hash(&compressed));
    let b3_c = compressed.len() as f64 / MIB / t0.elapsed().as_secs_f64();
    if back != sample {
        bail!("zstd round trip of the sample failed");
    }
    Ok(format!(
        "single core, on {mib:.0} MiB of {}: blake3 {b3:.0} MiB/s (of compressed bytes {b3_c:.0} MiB/s), sha256 {sha:.0} MiB/s, zstd -1 compress {comp:.0} MiB/s, decompress {decomp:.0} MiB/s, ratio {:.2}",
        sample_from.file_name().unwrap_or_default().to_string_lossy(),
        sample.len() as f64 / compressed.len() as f64
    ))
}

/// One xtrabackup stream through `pipeline::backup_stream` in this process, fed by
/// `mariabackup --stream=xbstream` as the engine does, into `storage`.
pub async fn our_stream(
    storage: &FileStorage,
    name: &str,
    args: &[String],
    concurrency: usize,
) -> anyhow::Result<(Timed, FileEntry)> {
    let (c0, ch0) = cpu_times();
    let t0 = Instant::now();
    let mut child = Command::new("mariabackup")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running mariabackup")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let writer = storage.start_backup(KS, SHARD, name).await?;
    let opts = CopyOptions {
        compression: Compression::default_zstd(),
        concurrency,
        retries_per_file: 1,
        ..CopyOptions::default()
    };
    let entry = pipeline::backup_stream(
        &*writer,
        stdout,
        "backup.xbstream",
        &opts,
        Progress::new(),
        CancellationToken::new(),
    )
    .await?;
    let st = child.wait()?;
    if !st.success() {
        bail!("mariabackup failed ({st})");
    }
    let mut m = manifest_for(name, opts.compression, vec![entry.clone()]);
    m.backup_method = BackupMethod::Xtrabackup;
    m.stream_mode = Some("xbstream".into());
    writer.write_manifest(&m).await?;
    let secs = t0.elapsed().as_secs_f64();
    let (c1, ch1) = cpu_times();
    Ok((
        Timed {
            secs,
            cpu: (c1 - c0) + (ch1 - ch0),
        },
        entry,
    ))
}
