//! Peak memory of a backup and a restore: each runs alone in a child process
//! (this benchmark's own executable with `--rss-child`), which reports its peak
//! resident set (`VmHWM`) at the end, so nothing else this process holds
//! counts. The data set is several times larger than every buffer of the copy
//! together, so a buffer that grew with the data would show.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use cairn::backup::builtin::list_data_files;
use cairn::backup::pipeline::{self, Compression, Progress, BUF_SIZE, READ_AHEAD_BUFFERS};
use cairn::backup::storage::{BackupStorage, FileStorage};
use tokio_util::sync::CancellationToken;

use super::measure::{dir_bytes, our_backup, settle};
use super::{KS, MIB, SHARD};
use crate::common::gib;

/// What a child runs.
pub struct ChildArgs {
    /// `backup-zstd`, `backup-none` or `restore`.
    pub kind: String,
    /// The `FileStorage` root.
    pub store: PathBuf,
    /// Backup: the data directory; restore: the directory restored into.
    pub dir: PathBuf,
    /// The backup's name.
    pub name: String,
    /// Files copied at once.
    pub concurrency: usize,
}

/// A `Vm…` line of /proc/self/status, in KiB.
fn vm_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

/// The child's side: one backup or restore, then one line on stdout.
pub async fn child(a: ChildArgs) -> anyhow::Result<()> {
    let start = vm_kib("VmRSS")?;
    let store = FileStorage::new(&a.store);
    let t0 = Instant::now();
    let bytes = match a.kind.as_str() {
        "backup-zstd" | "backup-none" => {
            let c = if a.kind == "backup-zstd" {
                Compression::default_zstd()
            } else {
                Compression::None
            };
            let files = list_data_files(&a.dir)?;
            our_backup(Some(&store), &a.name, &files, c, a.concurrency)
                .await?
                .1
                .total_size
        }
        "restore" => {
            let m = store.read_manifest(KS, SHARD, &a.name).await?;
            pipeline::restore_files(
                pipeline::StoredBackup {
                    storage: &store,
                    keyspace: KS,
                    shard: SHARD,
                    name: &a.name,
                    manifest: &m,
                    identities: None,
                },
                &a.dir,
                a.concurrency,
                Progress::new(),
                CancellationToken::new(),
            )
            .await?;
            let restored = dir_bytes(&a.dir);
            if restored != m.total_size {
                bail!("restored {restored} bytes, expected {}", m.total_size);
            }
            restored
        }
        other => bail!("unknown --rss-child {other:?}"),
    };
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "rss start_kib={start} peak_kib={} secs={secs:.3} bytes={bytes}",
        vm_kib("VmHWM")?
    );
    Ok(())
}

/// Runs one child and parses its line: (start KiB, peak KiB, seconds).
fn run_child(
    kind: &str,
    store: &Path,
    dir: &Path,
    name: &str,
    concurrency: usize,
) -> anyhow::Result<(u64, u64, f64)> {
    let exe = std::env::current_exe().context("finding this benchmark's executable")?;
    let out = Command::new(exe)
        .args(["--bench", "--rss-child", kind, "--rss-name", name])
        .arg("--rss-store")
        .arg(store)
        .arg("--rss-dir")
        .arg(dir)
        .args(["--concurrency", &concurrency.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("running the child")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{kind} child failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("rss "))
        .with_context(|| format!("{kind} child printed no figures: {stdout}"))?;
    let field = |k: &str| -> anyhow::Result<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {k} in {line:?}"))
    };
    Ok((
        field("start_kib")? as u64,
        field("peak_kib")? as u64,
        field("secs")?,
    ))
}

/// The pass: a zstd and a `none` backup of `data_dir`, then a restore of the zstd
/// one, each in a child; returns the lines to print.
pub fn rss_pass(
    work: &Path,
    data_dir: &Path,
    data_bytes: u64,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let store = work.join("store-rss");
    let dest = work.join("restore-rss");
    let (zstd_name, none_name) = (
        "2024-01-02.000001.zone1-0000000101",
        "2024-01-02.000002.zone1-0000000101",
    );
    let mut lines = vec![format!(
        "peak RSS, each in a child process of its own (VmHWM), data set {}, concurrency {concurrency}; \
         the pipeline's own buffers: at most {} MiB per file in flight ({READ_AHEAD_BUFFERS} read-ahead + 1 \
         storage buffer of {} MiB), {} MiB for {concurrency} files, plus zstd's windows and zstdmt jobs",
        gib(data_bytes),
        ((READ_AHEAD_BUFFERS + 1) * BUF_SIZE) >> 20,
        BUF_SIZE >> 20,
        (concurrency * (READ_AHEAD_BUFFERS + 1) * BUF_SIZE) >> 20,
    )];
    for (what, kind, name, dir) in [
        ("backup, zstd", "backup-zstd", zstd_name, data_dir),
        ("backup, none", "backup-none", none_name, data_dir),
        ("restore, zstd", "restore", zstd_name, dest.as_path()),
    ] {
        eprintln!("peak RSS: {what}…");
        let (start, peak, secs) = run_child(kind, &store, dir, name, concurrency)?;
        lines.push(format!(
            "  {what:<14} peak RSS {:>6.1} MiB (at start {:>5.1} MiB), {:.2}s, {:.0} MiB/s",
            peak as f64 / 1024.0,
            start as f64 / 1024.0,
            secs,
            data_bytes as f64 / MIB / secs
        ));
        settle();
    }
    std::fs::remove_dir_all(&store)?;
    std::fs::remove_dir_all(&dest)?;
    Ok(lines)
}
