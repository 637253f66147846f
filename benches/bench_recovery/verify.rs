//! `cairn verify` throughput (issue 11, "Must measure": at least 80% of reading
//! the same objects by hand). A tablet gets the `--size` data set and a builtin
//! backup (zstd, the default); then, `--runs` times each, alternating which goes
//! first:
//!
//! - file storage: `cairn verify KS/SHARD --backup NAME` against `cat OBJECTS >
//!   /dev/null` (one reader, as an operator would type it); also, as a
//!   diagnostic, `xargs -P C cat` (as many readers as verify's `--concurrency`)
//!   and `b3sum` (the same hash, one reader). Twice: warm (every object read
//!   just before, so both sides read the page cache) and cold (the objects'
//!   pages dropped with `posix_fadvise(DONTNEED)` before each side, as a backup
//!   that nobody read lately is: both read the disk).
//! - S3 (moto on loopback; the objects uploaded with `aws s3 cp --recursive`):
//!   the same verify against `aws s3 cp s3://BUCKET/KEY - > /dev/null` per
//!   object, C at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use cairn::backup::storage::{BackupStorage, FileStorage};
use cairn::testkit::{cairn_binary, Cluster, MotoServer, AWS_ENV};

use crate::common::{evict, gib, loadavg, median, quote, say};
use crate::{dataset, ratio, shell, KS, MIB, SHARD, T};

const BUCKET: &str = "bench";

/// Runs `cairn verify … --json` with `flags` and `env`; its wall seconds. Fails
/// unless it exits 0 with status OK.
fn our_verify(
    bin: &Path,
    name: &str,
    concurrency: usize,
    flags: &[String],
    env: &[(&str, &str)],
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = Command::new(bin)
        .args([
            "verify",
            &format!("{KS}/{SHARD}"),
            "--backup",
            name,
            "--json",
        ])
        .args(["--concurrency", &concurrency.to_string()])
        .args(flags)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .context("running cairn verify")?;
    let secs = t.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "cairn verify printed no report ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    if !out.status.success() || report["status"] != "OK" {
        bail!("cairn verify did not say OK ({}): {report}", out.status);
    }
    Ok(secs)
}

/// One compared pair: medians and the throughput ratio (ours / baseline).
fn row(what: &str, bytes: u64, ours: &[f64], base: &[f64], goal: bool) {
    let (o, b) = (median(ours), median(base));
    let (os, bs) = (bytes as f64 / MIB / o, bytes as f64 / MIB / b);
    let r = ratio(os, bs);
    say(format!(
        "  {what:<44} ours {o:>6.2}s {os:>6.0} MiB/s | baseline {b:>6.2}s {bs:>6.0} MiB/s | ours/baseline {:>4.0}%{}",
        r * 100.0,
        if goal {
            if r >= 0.8 {
                " (goal >= 80%: met)"
            } else {
                " (goal >= 80%: MISSED)"
            }
        } else {
            ""
        }
    ));
    let all = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    say(format!(
        "    runs: ours {} s; baseline {} s",
        all(ours),
        all(base)
    ));
}

pub async fn run(size: u64, runs: usize, conc: usize, with_s3: bool) -> anyhow::Result<()> {
    let load_start = loadavg();
    let bin = cairn_binary()?;
    let c = Cluster::start(bin.clone()).await?;
    let topo = c.topo().await?;
    eprintln!(
        "bench_recovery verify: working in {}",
        c.dir.path().display()
    );
    let spec = c.tablet(101, KS, SHARD)?;
    let alias = spec.alias();
    let mut tablet = c.spawn_tablet(&spec)?;
    tablet.wait_healthy(&topo, T).await?;
    c.cli_ok(&["init-shard-primary", &format!("{KS}/{SHARD}"), &alias])?;
    eprintln!("generating {} of InnoDB data…", gib(size));
    let (bytes, secs) = dataset::generate(&tablet, &spec.dir.join("data"), size)?;
    dataset::flush_dirty(&tablet).await?;
    eprintln!("generated {} in {secs:.0}s", gib(bytes));
    let out = c.cli_ok(&["backup", &alias, "--allow-primary", "--json"])?;
    let done: serde_json::Value = serde_json::from_str(out.trim()).context("backup --json")?;
    let name = done["backup_name"]
        .as_str()
        .context("no backup_name")?
        .to_string();
    // The tablet is not needed any more: it would only add load.
    tablet.terminate(std::time::Duration::from_secs(300))?;
    drop(tablet);

    let root = c.backup_root();
    let manifest = FileStorage::new(root.clone())
        .read_manifest(KS, SHARD, &name)
        .await?;
    let dir = root.join(KS).join(SHARD).join(&name);
    let objects: Vec<PathBuf> = manifest
        .file_entries
        .iter()
        .map(|e| dir.join(&e.stored_name))
        .collect();
    let stored: u64 = manifest.file_entries.iter().map(|e| e.stored_size).sum();
    let hash = manifest
        .file_entries
        .first()
        .map_or("?", |e| e.hash_algorithm.as_str())
        .to_string();
    say(format!(
        "bench_recovery verify: backup {name}: {} objects, {} stored ({} of data, {hash}); \
         concurrency {conc}; {runs} runs each, interleaved; load average at start {load_start} \
         (the machine is shared: figures include other work)",
        objects.len(),
        gib(stored),
        gib(manifest.total_size),
    ));
    let list = c.dir.path().join("objects.list");
    let mut nul = Vec::new();
    for p in &objects {
        nul.extend_from_slice(p.display().to_string().as_bytes());
        nul.push(0);
    }
    std::fs::write(&list, nul)?;
    let cat_all = format!(
        "cat {} > /dev/null",
        objects
            .iter()
            .map(|p| quote(p))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let cat_par = format!("xargs -0 -P {conc} -n 1 cat < {} > /dev/null", quote(&list));
    let b3 = format!(
        "xargs -0 b3sum --num-threads 1 < {} > /dev/null",
        quote(&list)
    );
    let has_b3 = shell("b3sum", "command -v b3sum").is_ok();
    let file_flags = vec![
        "--file-backup-storage-root".to_string(),
        root.display().to_string(),
    ];
    let paths: Vec<&Path> = objects.iter().map(PathBuf::as_path).collect();
    for cold in [false, true] {
        let prep = || -> anyhow::Result<()> {
            if cold {
                evict(&paths)
            } else {
                shell("warm-up read", &cat_all).map(|_| ())
            }
        };
        let (mut ours, mut base, mut par, mut b3s) = (vec![], vec![], vec![], vec![]);
        for rep in 0..runs {
            eprintln!(
                "file ({}): verify vs cat, run {}/{runs}…",
                if cold { "cold" } else { "warm" },
                rep + 1
            );
            for first in [rep % 2 == 0, rep % 2 == 1] {
                if first {
                    prep()?;
                    ours.push(our_verify(&bin, &name, conc, &file_flags, &[])?);
                } else {
                    prep()?;
                    base.push(shell("cat", &cat_all)?);
                    prep()?;
                    par.push(shell("xargs cat", &cat_par)?);
                    if has_b3 {
                        prep()?;
                        b3s.push(shell("b3sum", &b3)?);
                    }
                }
            }
        }
        say(if cold {
            "file storage, cache cold (each object's pages dropped before each side):"
        } else {
            "file storage, cache warm (every object read just before, nothing dropped):"
        });
        row(
            "cairn verify vs cat OBJECTS > /dev/null",
            stored,
            &ours,
            &base,
            true,
        );
        row(
            &format!("  (diag) vs xargs -P {conc} cat"),
            stored,
            &ours,
            &par,
            false,
        );
        if has_b3 {
            row("  (diag) vs b3sum, one thread", stored, &ours, &b3s, false);
        }
    }

    if with_s3 {
        s3_pass(&bin, &dir, &name, &manifest, stored, runs, conc).await?;
    }
    say(format!(
        "load average: start {load_start}, end {}",
        loadavg()
    ));
    Ok(())
}

async fn s3_pass(
    bin: &Path,
    dir: &Path,
    name: &str,
    manifest: &cairn::backup::manifest::Manifest,
    stored: u64,
    runs: usize,
    conc: usize,
) -> anyhow::Result<()> {
    let env: Vec<(&str, &str)> = AWS_ENV
        .iter()
        .copied()
        .chain([("AWS_DEFAULT_REGION", "us-east-1")])
        .collect();
    let moto = MotoServer::start().await?;
    moto.create_bucket(BUCKET)?;
    let endpoint = moto.endpoint();
    let exports: String = env
        .iter()
        .map(|(k, v)| format!("export {k}={v}; "))
        .collect();
    let aws = format!("{exports}aws --endpoint-url {endpoint} --only-show-errors");
    let prefix = format!("s3://{BUCKET}/{KS}/{SHARD}/{name}");
    eprintln!("s3: uploading the backup to moto…");
    shell(
        "aws s3 cp --recursive",
        &format!("{aws} s3 cp --recursive {} {prefix}/", quote(dir)),
    )?;
    let keys = c_keys(manifest, &prefix);
    let list = dir.with_extension("s3list");
    std::fs::write(&list, keys.join("\n") + "\n")?;
    let base_script = format!(
        "{exports} xargs -P {conc} -I KEY aws --endpoint-url {endpoint} --only-show-errors \
         s3 cp KEY - < {} > /dev/null",
        quote(&list)
    );
    let flags = moto.flags(BUCKET, None, 3);
    let (mut ours, mut base) = (vec![], vec![]);
    for rep in 0..runs {
        eprintln!("s3: verify vs aws s3 cp, run {}/{runs}…", rep + 1);
        for first in [rep % 2 == 0, rep % 2 == 1] {
            if first {
                ours.push(our_verify(bin, name, conc, &flags, &env)?);
            } else {
                base.push(shell("aws s3 cp", &base_script)?);
            }
        }
    }
    say(format!(
        "S3 (moto on loopback, Python: the server bounds both sides; {} objects):",
        keys.len()
    ));
    row(
        &format!("cairn verify vs aws s3 cp KEY - (x{conc})"),
        stored,
        &ours,
        &base,
        true,
    );
    Ok(())
}

/// Every object's `s3://` URL.
fn c_keys(manifest: &cairn::backup::manifest::Manifest, prefix: &str) -> Vec<String> {
    manifest
        .file_entries
        .iter()
        .map(|e| format!("{prefix}/{}", e.stored_name))
        .collect()
}
