//! Backup throughput benchmark: cairn's copy pipeline against the shell pipelines
//! an operator would use instead, on one generated InnoDB data set, side by side.
//!
//! A tablet (real etcd, real mariadbd on loopback, everything in a temporary
//! directory removed at the end) gets a data set of `--size` bytes (default 2 GiB)
//! in a few InnoDB tables of semi-compressible rows (MD5 hex, random bytes, text,
//! numbers, dates, a secondary index), generated with INSERT … SELECT from the
//! sequence engine, two sessions at a time. Then, each pass `--runs` times
//! (default 3, alternating which side goes first; medians are reported):
//!
//! 1. xtrabackup, server running, files warm: `cairn backup ALIAS --backup-engine
//!    xtrabackup` (the job on the real tablet, timed as the whole command) against
//!    `mariabackup --backup --stream=xbstream … | zstd -T2 -1 > file`; plus, as a
//!    diagnostic, the same mariabackup piped into `pipeline::backup_stream` here.
//! 2. The tablet is stopped (clean shutdown): its data directory is what the
//!    builtin engine copies.
//! 3. Builtin copy: `list_data_files` + `pipeline::backup_files` into a
//!    `FileStorage` (zstd default, concurrency 4; MANIFEST written) against
//!    `tar -cf - FILES | zstd -T2 -1 > file`, over the same file list.
//! 4. Builtin with compression `none` against `cat FILES > /dev/null`.
//! 5. Restore: `pipeline::restore_files` of the zstd backup into a fresh directory
//!    against `zstd -d < file | tar -x`.
//!
//! Passes 3 and 4 run warm (every file read just before) and cold (the files'
//! pages dropped with `posix_fadvise(DONTNEED)` just before). cairn fsyncs every
//! file it writes; the shell baselines do not, so the time a `sync` of their output
//! takes afterwards is shown beside them (not counted). Diagnostic rows run the
//! same pipeline into a storage that discards its bytes, which separates reading,
//! compression and hashing from storage writes and fsync, and compare `none` with
//! a durable `cat FILES > file; sync file`.
//!
//! `cargo run --release --example bench_backup -- [--size 2G] [--concurrency 4] [--runs 3]`

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn::backup::builtin::list_data_files;
use cairn::backup::manifest::{BackupMethod, FileEntry, Manifest, FORMAT_VERSION};
use cairn::backup::pipeline::{self, Compression, CopyOptions, Progress, SourceFile};
use cairn::backup::storage::{BackupStorage, BackupWriter, FileSink, FileStorage, StorageResult};
use cairn::testkit::{cairn_binary, wait_for, Cluster, TabletProcess};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(600);
const KS: &str = "bench";
const SHARD: &str = "0";
const MIB: f64 = (1u64 << 20) as f64;

struct Opts {
    size: u64,
    concurrency: usize,
    reps: usize,
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => bail!("bad size unit {other:?} in {s:?} (use K, M or G)"),
    };
    let bytes = (num * mult as f64) as u64;
    if bytes < 16 << 20 {
        bail!("--size {s} is too small (at least 16M)");
    }
    Ok(bytes)
}

fn parse_args() -> anyhow::Result<Opts> {
    let usage = "usage: bench_backup [--size BYTES[K|M|G]] [--concurrency N] [--runs N]";
    let mut o = Opts {
        size: 2 << 30,
        concurrency: 4,
        reps: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--size" => o.size = parse_size(&value()?)?,
            "--concurrency" => o.concurrency = value()?.parse().context("--concurrency")?,
            "--runs" => o.reps = value()?.parse().context("--runs")?,
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{usage}"),
        }
    }
    if o.concurrency == 0 || o.reps == 0 {
        bail!("--concurrency and --runs must be at least 1");
    }
    Ok(o)
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews figures.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

/// CPU seconds used so far by this process and by its waited-for children.
fn cpu_times() -> (f64, f64) {
    let get = |who| {
        // SAFETY: getrusage fills the zeroed struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    };
    (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN))
}

/// Wall and CPU time of one measured pass.
#[derive(Debug, Clone, Copy)]
struct Timed {
    secs: f64,
    cpu: f64,
}

/// Runs a shell pipeline (bash, pipefail) and times it; CPU is the children's.
fn shell(what: &str, script: &str) -> anyhow::Result<Timed> {
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
fn sync_paths(paths: &[&Path]) -> anyhow::Result<f64> {
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
fn settle() {
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

fn dir_bytes(dir: &Path) -> u64 {
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

// ---- data set -----------------------------------------------------------------

/// Tables of the data set and their share of it (the largest gets half).
const TABLES: &[(&str, u64)] = &[("orders", 8), ("events", 4), ("users", 2), ("audit", 2)];
/// Rows per INSERT … SELECT (about 40 MB of rows).
const CHUNK_ROWS: u64 = 200_000;

fn create_tables(t: &TabletProcess) -> anyhow::Result<()> {
    let mut sql = String::from(
        "SET SESSION sql_log_bin = 0; CREATE DATABASE IF NOT EXISTS benchdata; \
         SET GLOBAL innodb_buffer_pool_size = 1073741824; \
         SET GLOBAL innodb_flush_log_at_trx_commit = 0; \
         SET GLOBAL innodb_log_file_size = 536870912;",
    );
    for (name, _) in TABLES {
        write!(
            sql,
            " CREATE TABLE benchdata.{name} (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                k INT NOT NULL,
                created DATETIME NOT NULL,
                email VARCHAR(64) NOT NULL,
                h CHAR(32) NOT NULL,
                note VARCHAR(255) NOT NULL,
                token VARBINARY(16) NOT NULL,
                amount DECIMAL(12,2) NOT NULL,
                KEY (k)
             ) ENGINE=InnoDB;"
        )?;
    }
    t.sql(&sql)?;
    Ok(())
}

/// One INSERT … SELECT of `rows` fresh rows into `table` (fresh random values per
/// row: nothing repeats across chunks, so no long-range match inflates the ratio).
fn insert_chunk(t: &TabletProcess, table: &str, rows: u64) -> anyhow::Result<()> {
    t.sql(&format!(
        "SET SESSION sql_log_bin = 0; SET SESSION unique_checks = 0; \
         INSERT INTO benchdata.{table} (k, created, email, h, note, token, amount) \
         SELECT FLOOR(RAND() * 1000000), \
                TIMESTAMP'2024-01-01 00:00:00' + INTERVAL FLOOR(RAND() * 31536000) SECOND, \
                CONCAT('user', FLOOR(RAND() * 10000000), '@example.com'), \
                MD5(RAND()), \
                CONCAT('order ', seq, ' ', ELT(1 + FLOOR(RAND() * 4), 'new', 'paid', 'shipped', 'returned'), \
                       ' ', REPEAT(MD5(RAND()), 2)), \
                RANDOM_BYTES(16), \
                ROUND(RAND() * 100000, 2) \
         FROM benchdata.seq_1_to_{rows}"
    ))?;
    Ok(())
}

/// Fills the tables until the data directory's backed-up files reach `target`
/// bytes, two INSERTs at a time (one per core) into different tables.
fn generate(t: &TabletProcess, data_dir: &Path, target: u64) -> anyhow::Result<(u64, f64)> {
    create_tables(t)?;
    let started = Instant::now();
    let size_of = |name: &str| {
        std::fs::metadata(data_dir.join("benchdata").join(format!("{name}.ibd")))
            .map_or(0, |m| m.len())
    };
    // The redo log does not count: it is resized meanwhile (two files for a while).
    let total = || -> anyhow::Result<u64> {
        Ok(list_data_files(data_dir)?
            .iter()
            .filter(|f| !f.name.starts_with("ib_logfile"))
            .map(|f| f.size)
            .sum())
    };
    let weight: u64 = TABLES.iter().map(|(_, w)| w).sum();
    let mut last_report = Instant::now();
    let first = total()?;
    let mut inserted = 0u64;
    loop {
        let now = total()?;
        if now >= target {
            break;
        }
        // The two tables furthest below their share.
        let mut order: Vec<(&str, f64)> = TABLES
            .iter()
            .map(|(n, w)| (*n, size_of(n) as f64 / (*w as f64 / weight as f64)))
            .collect();
        order.sort_by(|a, b| a.1.total_cmp(&b.1));
        // Bytes of data files per row so far (a guess before the first round);
        // smaller chunks near the end so the size is not overshot by much.
        let per_row = (now - first)
            .checked_div(inserted)
            .map_or(250, |b| b.max(50));
        let rows = ((target - now) / per_row / 2).clamp(1000, CHUNK_ROWS);
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = order[..2]
                .iter()
                .map(|(name, _)| s.spawn(move || insert_chunk(t, name, rows)))
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("an insert thread panicked"))??;
            }
            Ok(())
        })?;
        inserted += 2 * rows;
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  generated {} of {} ({:.0}s)",
                gib(now),
                gib(target),
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    // Back to a normal redo log size, so the data set is table data, not redo.
    t.sql(
        "SET GLOBAL innodb_log_file_size = 50331648; SET GLOBAL innodb_flush_log_at_trx_commit = 1",
    )?;
    Ok((total()?, started.elapsed().as_secs_f64()))
}

/// Waits until InnoDB has no dirty pages left, so the server is quiet while the
/// online backups run.
async fn flush_dirty(t: &TabletProcess) -> anyhow::Result<()> {
    t.sql("SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001; SET GLOBAL innodb_max_dirty_pages_pct = 0")?;
    wait_for("InnoDB to flush its dirty pages", T, || async {
        let out = t.sql("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")?;
        let dirty: u64 = out
            .split('\t')
            .nth(1)
            .unwrap_or("1")
            .trim()
            .parse()
            .unwrap_or(1);
        Ok((dirty < 16).then_some(()))
    })
    .await
}

// ---- storage that discards ------------------------------------------------------

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

// ---- our passes -------------------------------------------------------------------

fn manifest_for(name: &str, compression: Compression, entries: Vec<FileEntry>) -> Manifest {
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
        flavor: "MariaDB".into(),
        format_version: FORMAT_VERSION,
    };
    m.set_file_entries(entries);
    m
}

/// `backup_files` into `storage` (None: the discarding writer), MANIFEST included.
async fn our_backup(
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
    };
    let (c0, _) = cpu_times();
    let t0 = Instant::now();
    let writer: Box<dyn BackupWriter> = match storage {
        Some(s) => s.start_backup(KS, SHARD, name).await?,
        None => Box::new(NullWriter),
    };
    let entries = pipeline::backup_files(
        &*writer,
        files.to_vec(),
        &opts,
        Progress::new(),
        CancellationToken::new(),
    )
    .await?;
    let m = manifest_for(name, compression, entries);
    writer.write_manifest(&m).await?;
    let secs = t0.elapsed().as_secs_f64();
    let (c1, _) = cpu_times();
    Ok((Timed { secs, cpu: c1 - c0 }, m))
}

// ---- report -------------------------------------------------------------------------

/// What a pair must achieve.
#[derive(Clone, Copy)]
enum Goal {
    /// ours' time at most this multiple of the baseline's.
    MaxTime(f64),
    /// ours' throughput at least this fraction of the baseline's.
    MinThroughput(f64),
}

impl Goal {
    fn describe(self) -> String {
        match self {
            Goal::MaxTime(1.0) => "as fast or faster".into(),
            Goal::MaxTime(r) => format!("<= {:.0}% slower", (r - 1.0) * 100.0),
            Goal::MinThroughput(f) => format!(">= {:.0}% of throughput", f * 100.0),
        }
    }

    fn verdict(self, ours: f64, base: f64) -> String {
        let ratio = ours / base;
        match self {
            Goal::MaxTime(r) if ratio <= r => "yes".into(),
            Goal::MaxTime(_) => format!("NO: {:.0}% slower", (ratio - 1.0) * 100.0),
            Goal::MinThroughput(f) if 1.0 / ratio >= f => "yes".into(),
            Goal::MinThroughput(_) => format!("NO: {:.0}% of throughput", 100.0 / ratio),
        }
    }
}

struct Row {
    what: String,
    ours: Vec<Timed>,
    base: Vec<Timed>,
    bytes: u64,
    goal: Option<Goal>,
    note: String,
}

/// The sample with the median time (the lower middle one for an even count).
fn median(v: &[Timed]) -> Timed {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    s[(s.len() - 1) / 2]
}

fn print_rows(rows: &[Row]) {
    println!(
        "\n{:<46} {:>7} {:>6} {:>5} | {:>7} {:>6} {:>5} | {:>5}  {:<21} met",
        "pair: ours vs baseline (median of runs)",
        "ours s",
        "MiB/s",
        "cpu s",
        "base s",
        "MiB/s",
        "cpu s",
        "ratio",
        "goal",
    );
    let cpu = |c: f64| {
        if c.is_nan() {
            "-".to_string()
        } else {
            format!("{c:.1}")
        }
    };
    for r in rows {
        let (o, b) = (median(&r.ours), median(&r.base));
        let all = |v: &[Timed]| {
            v.iter()
                .map(|t| format!("{:.2}", t.secs))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "{:<46} {:>7.2} {:>6.0} {:>5} | {:>7.2} {:>6.0} {:>5} | {:>5.2}  {:<21} {}",
            r.what,
            o.secs,
            r.bytes as f64 / MIB / o.secs,
            cpu(o.cpu),
            b.secs,
            r.bytes as f64 / MIB / b.secs,
            cpu(b.cpu),
            o.secs / b.secs,
            r.goal
                .map(Goal::describe)
                .unwrap_or_else(|| "(diagnostic)".into()),
            r.goal
                .map(|g| g.verdict(o.secs, b.secs))
                .unwrap_or_default()
        );
        println!(
            "    runs: ours {} s; baseline {} s",
            all(&r.ours),
            all(&r.base)
        );
        if !r.note.is_empty() {
            println!("    {}", r.note);
        }
    }
}

/// Drops the page-cache pages of `paths` (clean pages only: call after a sync), so
/// the next pass reads them from disk. Only these files; nothing else is touched.
fn evict(paths: &[&Path]) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    for p in paths {
        let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
        // SAFETY: the fd is valid for the lifetime of `f`; the call is advisory.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}

/// Single-core speeds of the pipeline's stages on a sample of the data set (MiB/s):
/// sha256, zstd level 1 compression and decompression (one thread), and the ratio.
fn stage_speeds(sample_from: &Path) -> anyhow::Result<String> {
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
    let compressed = zstd::bulk::compress(&sample, 1)?;
    let comp = mib / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let back = zstd::bulk::decompress(&compressed, sample.len())?;
    let decomp = mib / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    std::hint::black_box(sha2::Sha256::digest(&compressed));
    let sha_c = compressed.len() as f64 / MIB / t0.elapsed().as_secs_f64();
    if back != sample {
        bail!("zstd round trip of the sample failed");
    }
    Ok(format!(
        "single core, on {mib:.0} MiB of {}: sha256 {sha:.0} MiB/s (of compressed bytes {sha_c:.0} MiB/s), zstd -1 compress {comp:.0} MiB/s, decompress {decomp:.0} MiB/s, ratio {:.2}",
        sample_from.file_name().unwrap_or_default().to_string_lossy(),
        sample.len() as f64 / compressed.len() as f64
    ))
}

/// One xtrabackup stream through `pipeline::backup_stream` in this process, fed by
/// `mariabackup --stream=xbstream` as the engine does, into `storage`.
async fn our_stream(
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = parse_args()?;
    let threads = pipeline::default_threads();
    let load_start = loadavg();
    let c = Cluster::start(cairn_binary()?).await?;
    let topo = c.topo().await?;
    let work = c.dir.path().join("bench");
    std::fs::create_dir_all(&work)?;
    eprintln!("bench_backup: working in {}", c.dir.path().display());

    let mut spec = c.tablet(101, KS, SHARD)?;
    spec.extra = vec!["--concurrency".into(), o.concurrency.to_string()];
    let alias = spec.alias();
    let data_dir = spec.dir.join("data");
    let socket = spec.dir.join("mysql.sock");
    let mut tablet = c.spawn_tablet(&spec)?;
    tablet.wait_healthy(&topo, T).await?;
    c.cli_ok(&["init-shard-primary", &format!("{KS}/{SHARD}"), &alias])?;

    eprintln!("generating {} of InnoDB data…", gib(o.size));
    let (gen_bytes, gen_secs) = generate(&tablet, &data_dir, o.size)?;
    flush_dirty(&tablet).await?;
    eprintln!(
        "generated {} in {gen_secs:.0}s ({:.0} MiB/s)",
        gib(gen_bytes),
        gen_bytes as f64 / MIB / gen_secs
    );
    let mut rows = Vec::new();
    let mut n = 0;
    let mut name = || {
        n += 1;
        format!("2024-01-01.00{:04}.zone1-0000000101", n)
    };

    // 1. xtrabackup, online. Files warm: every data file read once first (mysqld
    // writes with O_DIRECT, so little of it is cached).
    let files = list_data_files(&data_dir)?;
    let paths: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
    let cat_args = paths.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ");
    let cat = format!("cat {cat_args} > /dev/null");
    shell("warm-up read", &cat)?;
    let xb_dir = work.join("xb");
    let xb_args = vec![
        "--backup".to_string(),
        "--stream=xbstream".into(),
        format!("--target-dir={}", xb_dir.join("target").display()),
        format!("--extra-lsndir={}", xb_dir.join("lsn").display()),
        format!("--socket={}", socket.display()),
        format!("--datadir={}", data_dir.display()),
        "--user=root".into(),
        format!("--parallel={}", o.concurrency),
    ];
    let xb_out = work.join("xb.xbstream.zst");
    let xb_script = format!(
        "mariabackup {} 2>{} | zstd -q -T2 -1 > {}",
        xb_args
            .iter()
            .map(|a| quote(Path::new(a)))
            .collect::<Vec<_>>()
            .join(" "),
        quote(&work.join("xb.log")),
        quote(&xb_out)
    );
    let tablet_storage = FileStorage::new(c.backup_root());
    let xb_store = FileStorage::new(work.join("xb-store"));
    let (mut xo, mut xb, mut xs, mut job_secs) = (vec![], vec![], vec![], vec![]);
    let (mut xb_base_size, mut xb_base_sync, mut xm, mut stream_stored) = (0, 0.0, None, 0);
    for rep in 0..o.reps {
        eprintln!("xtrabackup, run {}/{}…", rep + 1, o.reps);
        for first in [rep % 2 == 0, rep % 2 == 1] {
            std::fs::create_dir_all(xb_dir.join("lsn"))?;
            if first {
                let t0 = Instant::now();
                let out = c.cli_ok(&[
                    "backup",
                    &alias,
                    "--allow-primary",
                    "--backup-engine",
                    "xtrabackup",
                    "--json",
                ])?;
                let secs = t0.elapsed().as_secs_f64();
                xo.push(Timed {
                    secs,
                    cpu: f64::NAN,
                });
                let done: serde_json::Value =
                    serde_json::from_str(out.trim()).context("parsing cairn backup --json")?;
                let xb_name = done["backup_name"]
                    .as_str()
                    .context("no backup_name")?
                    .to_string();
                let job_id = done["job"].as_str().context("no job id")?.to_string();
                let jobs: Vec<serde_json::Value> =
                    serde_json::from_str(&c.cli_ok(&["jobs", "--json"])?)?;
                let job = jobs
                    .iter()
                    .find(|j| j["id"] == job_id.as_str())
                    .context("the backup job is not listed")?;
                let ts = |k: &str| -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
                    Ok(job[k]
                        .as_str()
                        .with_context(|| format!("job has no {k}"))?
                        .parse()?)
                };
                job_secs.push(
                    (ts("finished_at")? - ts("started_at")?).num_milliseconds() as f64 / 1000.0,
                );
                xm = Some(tablet_storage.read_manifest(KS, SHARD, &xb_name).await?);
                std::fs::remove_dir_all(c.backup_root().join(KS).join(SHARD).join(&xb_name))?;
            } else {
                xb.push(shell("mariabackup | zstd", &xb_script)?);
                xb_base_size = std::fs::metadata(&xb_out)?.len();
                xb_base_sync = sync_paths(&[&xb_out])?;
                std::fs::remove_file(&xb_out)?;
            }
            let _ = std::fs::remove_dir_all(&xb_dir);
            settle();
        }
        // The same stream through the pipeline in this process (no tablet, no job).
        std::fs::create_dir_all(xb_dir.join("lsn"))?;
        let (t, entry) = our_stream(&xb_store, &name(), &xb_args, o.concurrency).await?;
        xs.push(t);
        stream_stored = entry.stored_size;
        std::fs::remove_dir_all(work.join("xb-store"))?;
        let _ = std::fs::remove_dir_all(&xb_dir);
        settle();
    }
    let xm = xm.context("no xtrabackup backup")?;
    let stream_bytes = xm.total_size;
    let job_secs: Vec<String> = job_secs.iter().map(|s| format!("{s:.2}")).collect();
    rows.push(Row {
        what: "xtrabackup: cairn backup job vs mariabackup|zstd".into(),
        ours: xo,
        base: xb.clone(),
        bytes: stream_bytes,
        goal: Some(Goal::MaxTime(1.10)),
        note: format!(
            "server running, files warm; ours = the whole `cairn backup` command (job started->finished {} s); \
             stream {}, stored {} (ratio {:.2}) vs baseline {} (ratio {:.2}); baseline output sync +{xb_base_sync:.2}s (not counted); \
             ours' cpu is the tablet's (not measured)",
            job_secs.join(" "),
            gib(stream_bytes),
            gib(xm.stored_size),
            stream_bytes as f64 / xm.stored_size as f64,
            gib(xb_base_size),
            stream_bytes as f64 / xb_base_size as f64,
        ),
    });
    rows.push(Row {
        what: "  (diag) backup_stream in-process vs same".into(),
        ours: xs,
        base: xb,
        bytes: stream_bytes,
        goal: None,
        note: format!(
            "mariabackup piped into pipeline::backup_stream here (no tablet, no job); stored {}; cpu includes mariabackup's",
            gib(stream_stored)
        ),
    });

    // 2. Stop the tablet: a clean shutdown; the data directory as the builtin engine sees it.
    tablet.terminate(Duration::from_secs(300))?;
    drop(tablet);
    let files = list_data_files(&data_dir)?;
    let data_bytes: u64 = files.iter().map(|f| f.size).sum();
    let mut by_size: Vec<&SourceFile> = files.iter().collect();
    by_size.sort_by_key(|f| std::cmp::Reverse(f.size));
    let top: Vec<String> = by_size
        .iter()
        .take(6)
        .map(|f| format!("{} {:.0} MiB", f.name, f.size as f64 / MIB))
        .collect();
    let paths: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
    let cat_args = paths.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ");
    let cat = format!("cat {cat_args} > /dev/null");
    let list = work.join("files.list");
    let mut names = Vec::new();
    for f in &files {
        names.extend_from_slice(f.name.as_bytes());
        names.push(0);
    }
    std::fs::write(&list, names)?;
    shell("warm-up read", &cat)?;
    // Stage speeds on the largest table (ibdata1 may be bigger but mostly empty pages).
    let sample = by_size
        .iter()
        .find(|f| f.name.starts_with("benchdata/"))
        .unwrap_or(&by_size[0]);
    let speeds = stage_speeds(&sample.path)?;
    settle();
    let tar_out = work.join("data.tar.zst");
    let tar = format!(
        "tar -cf - -C {} --null -T {} | zstd -q -T2 -1 > {}",
        quote(&data_dir),
        quote(&list),
        quote(&tar_out)
    );
    let zstd = Compression::default_zstd();
    let prep = |cold: bool| -> anyhow::Result<()> {
        if cold {
            evict(&paths)
        } else {
            shell("warm-up read", &cat).map(|_| ())
        }
    };

    // 3. builtin zstd vs tar | zstd, warm then cold; the first backup is kept for
    // the restore.
    let store = FileStorage::new(work.join("store"));
    let mut kept: Option<Manifest> = None;
    let (mut tar_size, mut tar_sync) = (0, vec![]);
    for cold in [false, true] {
        let temp = if cold { "cold" } else { "warm" };
        let (mut ours, mut base, mut null) = (vec![], vec![], vec![]);
        let mut stored = 0;
        for rep in 0..o.reps {
            eprintln!(
                "builtin zstd vs tar|zstd ({temp}), run {}/{}…",
                rep + 1,
                o.reps
            );
            for first in [rep % 2 == 0, rep % 2 == 1] {
                prep(cold)?;
                if first {
                    let (t, m) =
                        our_backup(Some(&store), &name(), &files, zstd, o.concurrency).await?;
                    ours.push(t);
                    stored = m.stored_size;
                    if kept.is_none() {
                        kept = Some(m);
                    } else {
                        store.remove_backup(KS, SHARD, &m.backup_name).await?;
                    }
                } else {
                    base.push(shell("tar | zstd", &tar)?);
                    tar_size = std::fs::metadata(&tar_out)?.len();
                    tar_sync.push(sync_paths(&[&tar_out])?);
                }
                settle();
            }
            prep(cold)?;
            null.push(
                our_backup(None, "null", &files, zstd, o.concurrency)
                    .await?
                    .0,
            );
        }
        rows.push(Row {
            what: format!("builtin zstd vs tar|zstd -T2 -1 ({temp})"),
            ours,
            base: base.clone(),
            bytes: data_bytes,
            goal: Some(Goal::MaxTime(1.0)),
            note: format!(
                "stored {} (ratio {:.2}) vs {} (ratio {:.2}); baseline output sync +{:.2}s (median, not counted)",
                gib(stored),
                data_bytes as f64 / stored as f64,
                gib(tar_size),
                data_bytes as f64 / tar_size as f64,
                median(&tar_sync.iter().map(|&s| Timed { secs: s, cpu: 0.0 }).collect::<Vec<_>>()).secs,
            ),
        });
        rows.push(Row {
            what: format!("  (diag) zstd into a discarding storage ({temp})"),
            ours: null,
            base,
            bytes: data_bytes,
            goal: None,
            note: "read + compress + sha256 only: what storage writes and fsyncs cost is the difference to the row above".into(),
        });
    }
    let zm = kept.context("no zstd backup kept")?;

    // 4. builtin none vs cat, warm then cold.
    for cold in [false, true] {
        let temp = if cold { "cold" } else { "warm" };
        let (mut ours, mut base, mut null, mut copy) = (vec![], vec![], vec![], vec![]);
        let copy_out = work.join("copy.out");
        let copy_script = format!("cat {cat_args} > {0}; sync {0}", quote(&copy_out));
        for rep in 0..o.reps {
            eprintln!("builtin none vs cat ({temp}), run {}/{}…", rep + 1, o.reps);
            for first in [rep % 2 == 0, rep % 2 == 1] {
                prep(cold)?;
                if first {
                    let store_none = FileStorage::new(work.join("store-none"));
                    ours.push(
                        our_backup(
                            Some(&store_none),
                            &name(),
                            &files,
                            Compression::None,
                            o.concurrency,
                        )
                        .await?
                        .0,
                    );
                    std::fs::remove_dir_all(work.join("store-none"))?;
                } else {
                    base.push(shell("cat", &cat)?);
                }
                settle();
            }
            prep(cold)?;
            null.push(
                our_backup(None, "null", &files, Compression::None, o.concurrency)
                    .await?
                    .0,
            );
            prep(cold)?;
            copy.push(shell("cat > file; sync", &copy_script)?);
            std::fs::remove_file(&copy_out)?;
            settle();
        }
        let ours_again = ours.clone();
        rows.push(Row {
            what: format!("builtin none vs cat FILES > /dev/null ({temp})"),
            ours,
            base: base.clone(),
            bytes: data_bytes,
            goal: Some(Goal::MinThroughput(0.8)),
            note: format!(
                "ours writes and fsyncs {} into storage; cat writes nothing",
                gib(data_bytes)
            ),
        });
        rows.push(Row {
            what: format!("  (diag) none, discarding storage, vs cat ({temp})"),
            ours: null,
            base,
            bytes: data_bytes,
            goal: Some(Goal::MinThroughput(0.8)),
            note: "ours reads + sha256 only, nothing written: like for like with cat > /dev/null"
                .into(),
        });
        rows.push(Row {
            what: format!("  (diag) none vs cat FILES > file; sync ({temp})"),
            ours: ours_again,
            base: copy,
            bytes: data_bytes,
            goal: Some(Goal::MinThroughput(0.8)),
            note: "both write every byte once and make it durable: like for like with the storage write".into(),
        });
    }

    // 5. Restore (backup files warm: just written).
    let dest = work.join("restore-ours");
    let tar_dest = work.join("restore-tar");
    let (mut ours, mut base, mut base_sync) = (vec![], vec![], vec![]);
    for rep in 0..o.reps {
        eprintln!("restore, run {}/{}…", rep + 1, o.reps);
        for first in [rep % 2 == 0, rep % 2 == 1] {
            if first {
                let (c0, _) = cpu_times();
                let t0 = Instant::now();
                pipeline::restore_files(
                    pipeline::StoredBackup {
                        storage: &store,
                        keyspace: KS,
                        shard: SHARD,
                        name: &zm.backup_name,
                        manifest: &zm,
                    },
                    &dest,
                    o.concurrency,
                    Progress::new(),
                    CancellationToken::new(),
                )
                .await?;
                ours.push(Timed {
                    secs: t0.elapsed().as_secs_f64(),
                    cpu: cpu_times().0 - c0,
                });
                let restored = dir_bytes(&dest);
                if restored != data_bytes {
                    bail!("restored {restored} bytes, expected {data_bytes}");
                }
                std::fs::remove_dir_all(&dest)?;
            } else {
                std::fs::create_dir_all(&tar_dest)?;
                base.push(shell(
                    "zstd -d | tar -x",
                    &format!(
                        "zstd -q -d < {} | tar -x -C {}",
                        quote(&tar_out),
                        quote(&tar_dest)
                    ),
                )?);
                let t0 = Instant::now();
                settle();
                base_sync.push(t0.elapsed().as_secs_f64());
                std::fs::remove_dir_all(&tar_dest)?;
            }
            settle();
        }
    }
    rows.push(Row {
        what: "restore_files (zstd) vs zstd -d | tar -x".into(),
        ours,
        base,
        bytes: data_bytes,
        goal: Some(Goal::MaxTime(1.0)),
        note: format!(
            "ours verifies sha256 and fsyncs every file; baseline `sync` afterwards +{:.2}s (median, not counted)",
            median(&base_sync.iter().map(|&s| Timed { secs: s, cpu: 0.0 }).collect::<Vec<_>>()).secs
        ),
    });

    println!(
        "\nbench_backup: data set {} in {} files (largest: {}); generated in {gen_secs:.0}s",
        gib(data_bytes),
        files.len(),
        top.join(", "),
    );
    println!(
        "{threads} cores; ours: concurrency {}, zstd level 1 with {threads} zstdmt workers; baselines: zstd -T2 -1; {} runs per pass, alternating which goes first",
        o.concurrency, o.reps
    );
    println!(
        "warm = every file read just before the pass (all in the page cache); cold = the files' pages dropped \
         (posix_fadvise DONTNEED) before the pass; `sync` between passes; ratio = ours/baseline time"
    );
    println!("{speeds}");
    println!(
        "load average at start {load_start}, at the end {}",
        loadavg()
    );
    print_rows(&rows);
    println!(
        "\ncompressed size, builtin zstd vs tar|zstd -T2 -1: {} vs {} = {:.3} (ours/baseline)",
        gib(zm.stored_size),
        gib(tar_size),
        zm.stored_size as f64 / tar_size as f64
    );
    println!(
        "compressed size, xtrabackup vs mariabackup|zstd -T2 -1: {} vs {} = {:.3} (ours/baseline)",
        gib(xm.stored_size),
        gib(xb_base_size),
        xm.stored_size as f64 / xb_base_size as f64
    );
    Ok(())
}
