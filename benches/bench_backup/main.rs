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
//! After pass 3 (warm), `encryption` measures the same builtin zstd backup with
//! and without age (goal: at most 15% slower), and the two restores;
//! `--encryption-only` runs just that pass after generating the data.
//! `--s3-only` runs just the S3 pass (`s3`): the builtin zstd backup into an S3
//! server and its restore against `tar|zstd|aws s3 cp -` and
//! `aws s3 cp -|zstd -d|tar -x`, with each side's peak RSS.
//! `--copy-only` runs, after generating the data, what issue 9 measures: `copy`
//! (builtin `none` against `cat FILES > out; sync out`, with the before/after
//! variants of hashing and reading), `encryption`, and `rss` (peak RSS of a
//! backup and a restore, each in a child process).
//!
//! Passes 3 and 4 run warm (every file read just before) and cold (the files'
//! pages dropped with `posix_fadvise(DONTNEED)` just before). cairn fsyncs every
//! file it writes; the shell baselines do not, so the time a `sync` of their output
//! takes afterwards is shown beside them (not counted). Diagnostic rows run the
//! same pipeline into a storage that discards its bytes, which separates reading,
//! compression and hashing from storage writes and fsync, and compare `none` with
//! a durable `cat FILES > file; sync file`.
//!
//! `cargo bench --bench bench_backup -- [--size 2G] [--concurrency 4] [--runs 3]
//! [--encryption-only | --copy-only | --s3-only]` (or
//! scripts/bench.sh). Files: `dataset` generates the data, `measure` times one
//! pass of ours or of a shell baseline, `report` prints the pairs.

#[path = "../common/mod.rs"]
mod common;
mod copy;
mod dataset;
mod encryption;
mod measure;
mod report;
mod rss;
mod s3;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn::backup::builtin::list_data_files;
use cairn::backup::manifest::Manifest;
use cairn::backup::pipeline::{self, Compression, Progress, SourceFile};
use cairn::backup::storage::{BackupStorage, FileStorage};
use cairn::testkit::{cairn_binary, Cluster};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use common::{at_least_one, cpu_times, evict, gib, loadavg, quote};
use dataset::{flush_dirty, generate};
use measure::{dir_bytes, our_backup, our_stream, settle, shell, stage_speeds, sync_paths, Timed};
use report::{median, print_rows, Goal, Row};

const T: Duration = Duration::from_secs(600);
const KS: &str = "bench";
const SHARD: &str = "0";
const MIB: f64 = (1u64 << 20) as f64;

/// cairn's backup and restore pipeline against shell pipelines, side by side.
#[derive(Parser, Debug)]
#[command(name = "bench_backup", bin_name = "bench_backup")]
struct Opts {
    /// Size of the generated data set: BYTES with an optional K, M or G (at least 16M).
    #[arg(long, default_value = "2G", value_parser = common::parse_size)]
    size: u64,
    /// Files copied at once.
    #[arg(long, default_value_t = 4, value_parser = at_least_one)]
    concurrency: usize,
    /// Runs of every pass (medians are reported).
    #[arg(long = "runs", value_name = "N", default_value_t = 3, value_parser = at_least_one)]
    reps: usize,
    /// Only the encryption pass (builtin zstd with vs without age) after generating.
    #[arg(long, conflicts_with_all = ["copy_only", "s3_only"])]
    encryption_only: bool,
    /// Only the S3 pass (builtin zstd backup and restore against the AWS CLI
    /// pipelines, on s3s-fs or moto) after generating.
    #[arg(long, conflicts_with = "copy_only")]
    s3_only: bool,
    /// Only the copy passes (builtin none vs cat > file; sync, zstd with vs without
    /// age, peak RSS of a backup and a restore) after generating.
    #[arg(long)]
    copy_only: bool,
    /// Internal: run one backup or restore and print its peak RSS (see `rss`).
    #[arg(long, hide = true)]
    rss_child: Option<String>,
    #[arg(long, hide = true)]
    rss_store: Option<std::path::PathBuf>,
    #[arg(long, hide = true)]
    rss_dir: Option<std::path::PathBuf>,
    #[arg(long, hide = true)]
    rss_name: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::skipped_under_cargo_test("bench_backup") {
        return Ok(());
    }
    let o = Opts::parse();
    if let Some(kind) = o.rss_child {
        return rss::child(rss::ChildArgs {
            kind,
            store: o.rss_store.context("--rss-store is required")?,
            dir: o.rss_dir.context("--rss-dir is required")?,
            name: o.rss_name.context("--rss-name is required")?,
            concurrency: o.concurrency,
        })
        .await;
    }
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

    let xtra: Option<(Manifest, u64)> = if o.encryption_only || o.copy_only || o.s3_only {
        None
    } else {
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
        Some((xm, xb_base_size))
    };

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

    if o.s3_only {
        let (rows, rss) = s3::s3_pass(
            &work,
            &data_dir,
            &list,
            &files,
            &cat,
            o.concurrency,
            o.reps,
            &mut name,
        )
        .await?;
        println!(
            "\nbench_backup --s3-only: data set {} in {} files; {threads} cores; ours: concurrency {}, zstd level 1 with \
             {threads} zstdmt workers; {} runs per pass, alternating which goes first; load average at start {load_start}, \
             at the end {}",
            gib(data_bytes),
            files.len(),
            o.concurrency,
            o.reps,
            loadavg()
        );
        print_rows(&rows);
        rss.iter().for_each(|l| println!("{l}"));
        return Ok(());
    }
    if o.copy_only {
        let mut rows = copy::none_pass(
            &work,
            &files,
            &cat,
            &cat_args,
            o.concurrency,
            o.reps,
            &mut name,
        )
        .await?;
        rows.extend(
            encryption::age_pass(&work, &files, &cat, o.concurrency, o.reps, &mut name).await?,
        );
        let rss = rss::rss_pass(&work, &data_dir, data_bytes, o.concurrency)?;
        println!(
            "\nbench_backup --copy-only: data set {} in {} files (largest: {}); {threads} cores; concurrency {}, \
             {} runs, files warm; load average at start {load_start}, at the end {}\n{speeds}",
            gib(data_bytes),
            files.len(),
            top.join(", "),
            o.concurrency,
            o.reps,
            loadavg()
        );
        print_rows(&rows);
        println!();
        rss.iter().for_each(|l| println!("{l}"));
        return Ok(());
    }
    if o.encryption_only {
        let rows =
            encryption::age_pass(&work, &files, &cat, o.concurrency, o.reps, &mut name).await?;
        println!(
            "\nbench_backup --encryption-only: data set {} in {} files; {threads} cores; concurrency {}, {} runs; \
             load average at start {load_start}, at the end {}",
            gib(data_bytes),
            files.len(),
            o.concurrency,
            o.reps,
            loadavg()
        );
        print_rows(&rows);
        return Ok(());
    }

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
            note: "read + compress + hash (blake3) only: what storage writes and fsyncs cost is the difference to the row above".into(),
        });
    }
    let zm = kept.context("no zstd backup kept")?;

    // 3b. Encryption's cost: the same backup with and without age (warm).
    rows.extend(encryption::age_pass(&work, &files, &cat, o.concurrency, o.reps, &mut name).await?);

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
            note: "ours reads + hashes (blake3) only, nothing written: like for like with cat > /dev/null"
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
                        identities: None,
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
            "ours verifies blake3 and fsyncs every file; baseline `sync` afterwards +{:.2}s (median, not counted)",
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
    let (xm, xb_base_size) = xtra.context("no xtrabackup backup")?;
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
