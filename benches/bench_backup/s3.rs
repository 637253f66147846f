//! S3 throughput and memory: the builtin zstd backup into an S3 server and its
//! restore from it, against the AWS CLI pipelines an operator would use instead,
//! to and from the same server, alternating which goes first:
//! `tar -cf - FILES | zstd -T2 -1 | aws s3 cp - s3://BUCKET/KEY` and
//! `aws s3 cp s3://BUCKET/KEY - | zstd -d | tar -x`. Source files warm (read just
//! before each backup); `sync` between passes.
//!
//! The server is `s3s-fs` (a Rust S3 server over a directory, fast enough that the
//! clients set the pace) from `$CAIRN_S3S_FS`, else `target/tools/bin/s3s-fs`
//! (`scripts/bench.sh --only s3` installs it there); without it, moto, which is
//! slow (Python) and bounds both sides alike: the report says which.
//!
//! Peak RSS: ours is this process's VmHWM, reset through `/proc/self/clear_refs`
//! just before the pass after `malloc_trim` (the process holds nothing else of
//! size); the baseline's
//! is the `aws` process's maximum RSS (GNU `time`, when installed).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn::backup::manifest::Manifest;
use cairn::backup::pipeline::{self, Compression, CopyOptions, Progress, SourceFile};
use cairn::backup::storage::s3::{MIN_PART_SIZE, RANGES_IN_FLIGHT, RANGE_SIZE};
use cairn::backup::storage::{BackupStorage, S3Config, S3Storage};
use cairn::testkit::{MotoServer, AWS_ENV};
use tokio_util::sync::CancellationToken;

use super::measure::{dir_bytes, manifest_for, settle, shell, Timed};
use super::report::{Goal, Row};
use super::{KS, MIB, SHARD};
use crate::common::{cpu_times, memory_mib, quote};

const BUCKET: &str = "bench";
/// The baseline's object.
const BASE_KEY: &str = "baseline/data.tar.zst";

/// The S3 server of the pass (killed on drop).
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// What it is, for the report.
    pub kind: String,
    child: Option<Child>,
    _moto: Option<MotoServer>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `$CAIRN_S3S_FS`, else `target/tools/bin/s3s-fs` if it is there.
fn s3s_fs_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CAIRN_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/s3s-fs");
    p.is_file().then_some(p)
}

/// Starts s3s-fs over `root` (or moto without it) with bucket [`BUCKET`].
async fn start_server(root: &Path) -> anyhow::Result<Server> {
    let Some(bin) = s3s_fs_binary() else {
        eprintln!(
            "s3s-fs not found (scripts/bench.sh installs it): measuring on moto, which is slow"
        );
        let m = MotoServer::start().await?;
        m.create_bucket(BUCKET)?;
        return Ok(Server {
            endpoint: m.endpoint(),
            kind: "moto (Python; slow: it bounds both sides)".into(),
            child: None,
            _moto: Some(m),
        });
    };
    // s3s-fs keeps a bucket as a directory of its root.
    std::fs::create_dir_all(root.join(BUCKET))?;
    let port = cairn_topo::testkit::free_port()?;
    let log = std::fs::File::create(root.with_extension("log"))?;
    let (key, secret) = (AWS_ENV[0].1, AWS_ENV[1].1);
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", key, "--secret-key", secret])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let server = Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        kind: format!("s3s-fs ({})", bin.display()),
        child: Some(child),
        _moto: None,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("s3s-fs did not listen on {port} within 30s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(server)
}

/// Returns freed heap to the system (so one pass's leftovers do not count in the
/// next), then resets this process's peak RSS to its current RSS; returns that
/// (MiB).
fn reset_peak_rss() -> f64 {
    // SAFETY: malloc_trim only releases free memory of glibc's heap.
    unsafe { libc::malloc_trim(0) };
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    memory_mib(std::process::id()).map_or(f64::NAN, |m| m.0)
}

/// This process's peak RSS since the last reset (MiB).
fn peak_rss() -> f64 {
    memory_mib(std::process::id()).map_or(f64::NAN, |m| m.1)
}

/// `aws …` (the endpoint added), under GNU time writing its maximum RSS (KiB)
/// to `rss_file` when `time` is installed.
fn aws(endpoint: &str, args: &str, rss_file: &Path) -> String {
    let time = Path::new("/usr/bin/time");
    let prefix = if time.is_file() {
        format!("{} -f %M -o {} ", time.display(), quote(rss_file))
    } else {
        String::new()
    };
    format!("{prefix}aws --endpoint-url {endpoint} --only-show-errors {args}")
}

/// The maximum RSS GNU time wrote (MiB); NaN without it.
fn read_rss(rss_file: &Path) -> f64 {
    std::fs::read_to_string(rss_file)
        .ok()
        .and_then(|s| s.lines().last()?.trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// The pass (see the module doc): rows for the report, and the peak RSS lines.
#[allow(clippy::too_many_arguments)]
pub async fn s3_pass(
    work: &Path,
    data_dir: &Path,
    list: &Path,
    files: &[SourceFile],
    warm_up: &str,
    concurrency: usize,
    reps: usize,
    name: &mut impl FnMut() -> String,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    for (k, v) in AWS_ENV.iter().chain(&[("AWS_DEFAULT_REGION", "us-east-1")]) {
        // SAFETY: set before any client of this pass reads the environment; the
        // AWS CLI children inherit it.
        unsafe { std::env::set_var(k, v) };
    }
    let server = start_server(&work.join("s3")).await?;
    let store = S3Storage::open(S3Config {
        endpoint: Some(server.endpoint.clone()),
        force_path_style: true,
        concurrency,
        ..S3Config::new(BUCKET)
    })?;
    let data_bytes: u64 = files.iter().map(|f| f.size).sum();
    let rss_file = work.join("aws.rss");
    let base_url = format!("s3://{BUCKET}/{BASE_KEY}");
    let tar = format!(
        "tar -cf - -C {} --null -T {} | zstd -q -T2 -1 | {}",
        quote(data_dir),
        quote(list),
        aws(&server.endpoint, &format!("s3 cp - {base_url}"), &rss_file)
    );
    let opts = CopyOptions {
        compression: Compression::default_zstd(),
        concurrency,
        retries_per_file: 1,
        ..CopyOptions::default()
    };

    let mut kept: Option<Manifest> = None;
    let (mut ours, mut base, mut our_rss, mut base_rss) = (vec![], vec![], vec![], vec![]);
    let (mut before, mut base_size) = (f64::NAN, 0);
    for rep in 0..reps {
        eprintln!(
            "s3: builtin zstd vs tar|zstd|aws s3 cp, run {}/{reps}…",
            rep + 1
        );
        for first in [rep % 2 == 0, rep % 2 == 1] {
            shell("warm-up read", warm_up)?;
            if first {
                let n = name();
                before = reset_peak_rss();
                let (c0, _) = cpu_times();
                let t0 = Instant::now();
                let writer = store.start_backup(KS, SHARD, &n).await?;
                let entries = pipeline::backup_files(
                    &*writer,
                    files.to_vec(),
                    &opts,
                    Progress::new(),
                    CancellationToken::new(),
                )
                .await?;
                let m = manifest_for(&n, opts.compression, entries);
                writer.write_manifest(&m).await?;
                ours.push(Timed {
                    secs: t0.elapsed().as_secs_f64(),
                    cpu: cpu_times().0 - c0,
                });
                our_rss.push(peak_rss());
                if kept.is_none() {
                    kept = Some(m);
                } else {
                    store.remove_backup(KS, SHARD, &n).await?;
                }
            } else {
                base.push(shell("tar | zstd | aws s3 cp -", &tar)?);
                base_rss.push(read_rss(&rss_file));
                base_size = dir_bytes(&work.join("s3").join(BUCKET).join("baseline"));
            }
            settle();
        }
    }
    let m = kept.context("no backup kept")?;
    let backup_buffers = concurrency * 3 * MIN_PART_SIZE + concurrency * MIN_PART_SIZE;
    let server_note = format!("server: {}", server.kind);
    let mut rows = vec![Row {
        what: "s3: builtin zstd vs tar|zstd -T2 -1|aws s3 cp -".into(),
        ours,
        base,
        bytes: data_bytes,
        goal: Some(Goal::MaxTime(1.0)),
        note: format!(
            "{server_note}; stored {:.0} MiB vs {:.0} MiB (baseline size as the server keeps it; 0 if it keeps it elsewhere)",
            m.stored_size as f64 / MIB,
            base_size as f64 / MIB,
        ),
    }];
    let mut rss = vec![format!(
        "peak RSS, backup of {:.0} MiB to S3: ours {:.0} MiB (max of runs; {before:.0} MiB before the pass; \
         part buffers at most {:.0} MiB: {concurrency} files x 3 parts of {:.0} MiB + {concurrency} parts in flight); \
         the aws CLI of the baseline {:.0} MiB",
        data_bytes as f64 / MIB,
        max(&our_rss),
        backup_buffers as f64 / MIB,
        MIN_PART_SIZE as f64 / MIB,
        max(&base_rss),
    )];

    let dest = work.join("restore-s3-ours");
    let tar_dest = work.join("restore-s3-tar");
    let untar = format!(
        "{} | zstd -q -d | tar -x -C {}",
        aws(&server.endpoint, &format!("s3 cp {base_url} -"), &rss_file),
        quote(&tar_dest)
    );
    let (mut ours, mut base, mut our_rss, mut base_rss) = (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        eprintln!(
            "s3: restore vs aws s3 cp|zstd -d|tar -x, run {}/{reps}…",
            rep + 1
        );
        for first in [rep % 2 == 0, rep % 2 == 1] {
            if first {
                before = reset_peak_rss();
                let (c0, _) = cpu_times();
                let t0 = Instant::now();
                pipeline::restore_files(
                    pipeline::StoredBackup {
                        storage: &store,
                        keyspace: KS,
                        shard: SHARD,
                        name: &m.backup_name,
                        manifest: &m,
                        identities: None,
                    },
                    &dest,
                    concurrency,
                    Progress::new(),
                    CancellationToken::new(),
                )
                .await?;
                ours.push(Timed {
                    secs: t0.elapsed().as_secs_f64(),
                    cpu: cpu_times().0 - c0,
                });
                our_rss.push(peak_rss());
                let restored = dir_bytes(&dest);
                if restored != data_bytes {
                    bail!("restored {restored} bytes from S3, expected {data_bytes}");
                }
                std::fs::remove_dir_all(&dest)?;
            } else {
                std::fs::create_dir_all(&tar_dest)?;
                base.push(shell("aws s3 cp - | zstd -d | tar -x", &untar)?);
                base_rss.push(read_rss(&rss_file));
                let restored = dir_bytes(&tar_dest);
                if restored != data_bytes {
                    bail!("the baseline restored {restored} bytes, expected {data_bytes}");
                }
                std::fs::remove_dir_all(&tar_dest)?;
            }
            settle();
        }
    }
    let restore_buffers = concurrency * (RANGES_IN_FLIGHT + 2) * RANGE_SIZE as usize;
    rows.push(Row {
        what: "s3: restore_files vs aws s3 cp -|zstd -d|tar -x".into(),
        ours,
        base,
        bytes: data_bytes,
        goal: Some(Goal::MaxTime(1.0)),
        note: format!(
            "{server_note}; ours verifies each file's hash (BLAKE3) and fsyncs every file, the baseline neither"
        ),
    });
    rss.push(format!(
        "peak RSS, restore of {:.0} MiB from S3: ours {:.0} MiB (max of runs; {before:.0} MiB before the pass; \
         range buffers at most {:.0} MiB: {concurrency} files x ({RANGES_IN_FLIGHT} ranged GETs in flight + 2) x {:.0} MiB); \
         the aws CLI of the baseline {:.0} MiB",
        data_bytes as f64 / MIB,
        max(&our_rss),
        restore_buffers as f64 / MIB,
        RANGE_SIZE as f64 / MIB,
        max(&base_rss),
    ));
    Ok((rows, rss))
}
