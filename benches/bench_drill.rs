//! bench_drill: issue 11's "Must measure" for restore drills. A primary and a
//! replica; the benchmark data set (default 2G, `--size`) generated on the
//! replica only; a builtin backup of the replica; then `cairn drill` of it on the
//! replica while the primary updates a heartbeat row every 100 ms. Prints the
//! drill's stages (restore, start, check) and total, the restore's throughput,
//! and the replica's replication lag (heartbeat age as the replica sees it,
//! sampled every 250 ms) before the drill (the baseline, same run) and during it,
//! with the ratio; reads on the replica that failed during the drill (must be 0).
//!
//!   cargo bench --bench bench_drill -- [--size 256M]
//!
//! Other work on the machine skews the figures: the load average is printed.

mod common;
#[path = "bench_backup/dataset.rs"]
mod dataset;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn::testkit::{cairn_binary, mysql_client, Cluster};
use clap::Parser;

use common::{gib, loadavg};

const T: Duration = Duration::from_secs(1800);
const KS: &str = "bench";
const SHARD: &str = "0";

/// A restore drill of the benchmark data set, and the drilling replica's lag.
#[derive(Parser, Debug)]
#[command(name = "bench_drill", bin_name = "bench_drill")]
struct Opts {
    /// Size of the generated data set: BYTES with an optional K, M or G (at least 16M).
    #[arg(long, default_value = "2G", value_parser = common::parse_size)]
    size: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// p50, p99 and max of `v` (milliseconds), or zeros.
fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// A stage's seconds from the drill's message (`restore 8.1s`), if there.
fn stage(message: &str, name: &str) -> Option<f64> {
    let rest = &message[message.find(&format!("{name} "))? + name.len() + 1..];
    rest.split('s').next()?.parse().ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::skipped_under_cargo_test("bench_drill") {
        return Ok(());
    }
    let o = Opts::parse();
    let load_start = loadavg();
    let c = Cluster::start(cairn_binary()?).await?;
    let topo = c.topo().await?;
    eprintln!("bench_drill: working in {}", c.dir.path().display());
    let mut p = c.spawn_tablet(&c.tablet(101, KS, SHARD)?)?;
    let mut r = c.spawn_tablet(&c.tablet(102, KS, SHARD)?)?;
    p.wait_healthy(&topo, T).await?;
    r.wait_healthy(&topo, T).await?;
    c.cli_ok(&[
        "init-shard-primary",
        &format!("{KS}/{SHARD}"),
        &p.spec.alias(),
    ])?;
    p.sql("CREATE DATABASE hb; CREATE TABLE hb.t (id INT PRIMARY KEY, ts DATETIME(6)); INSERT INTO hb.t VALUES (1, NOW(6))")?;
    r.wait_value("SELECT COUNT(*) FROM hb.t", "1", T).await?;

    eprintln!("generating {} of InnoDB data on the replica…", gib(o.size));
    let (bytes, gen_secs) = dataset::generate(&r, &r.spec.dir.join("data"), o.size)?;
    dataset::flush_dirty(&r).await?;
    eprintln!("generated {} in {gen_secs:.0}s", gib(bytes));
    let t = Instant::now();
    let name = c.cli_ok(&["backup", &r.spec.alias()])?.trim().to_string();
    let backup_secs = t.elapsed().as_secs_f64();
    eprintln!("backup {name} in {backup_secs:.1}s");

    // Heartbeat on the primary, lag and reads sampled on the replica.
    let running = Arc::new(AtomicBool::new(true));
    let drilling = Arc::new(AtomicBool::new(false));
    let failed_reads = Arc::new(AtomicU64::new(0));
    let lags: Arc<Mutex<(Vec<f64>, Vec<f64>)>> = Arc::default();
    let psock = p.spec.dir.join("mysql.sock");
    let rsock = r.spec.dir.join("mysql.sock");
    let writer = {
        let running = running.clone();
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                let _ = mysql_client(&psock, "UPDATE hb.t SET ts = NOW(6) WHERE id = 1");
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let sampler = {
        let (running, drilling, failed, lags) = (
            running.clone(),
            drilling.clone(),
            failed_reads.clone(),
            lags.clone(),
        );
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                let q =
                    "SELECT TIMESTAMPDIFF(MICROSECOND, ts, NOW(6)) / 1000 FROM hb.t WHERE id = 1";
                match mysql_client(&rsock, q).map(|s| s.trim().parse::<f64>()) {
                    Ok(Ok(ms)) => {
                        let mut l = lags.lock().unwrap_or_else(|e| e.into_inner());
                        if drilling.load(Ordering::Relaxed) {
                            l.1.push(ms);
                        } else {
                            l.0.push(ms);
                        }
                    }
                    _ => {
                        if drilling.load(Ordering::Relaxed) {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    // The tablet is back in service after its backup; a baseline of lag first,
    // once the heartbeat has reached it (samples before that are of the setup).
    r.wait_healthy(&topo, T).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    lags.lock().unwrap_or_else(|e| e.into_inner()).0.clear();
    tokio::time::sleep(Duration::from_secs(10)).await;
    drilling.store(true, Ordering::Relaxed);
    let t = Instant::now();
    let out = c.cli(&[
        "drill",
        &format!("{KS}/{SHARD}"),
        "--json",
        "--pending-timeout",
        "60s",
    ])?;
    let wall = t.elapsed().as_secs_f64();
    drilling.store(false, Ordering::Relaxed);
    running.store(false, Ordering::Relaxed);
    let _ = writer.join();
    let _ = sampler.join();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("drill output: {}", String::from_utf8_lossy(&out.stderr)))?;
    anyhow::ensure!(json["state"] == "SUCCEEDED", "the drill failed: {json}");
    let message = json["message"].as_str().unwrap_or_default();
    let total = json["drill_seconds"].as_f64().unwrap_or(0.0);
    let restore = stage(message, "restore").unwrap_or(0.0);
    let (mut before, mut during) = {
        let l = lags.lock().unwrap_or_else(|e| e.into_inner());
        (l.0.clone(), l.1.clone())
    };
    let (b50, b99, bmax) = stats(&mut before);
    let (d50, d99, dmax) = stats(&mut during);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };

    println!(
        "bench_drill: data set {} (builtin backup {backup_secs:.1}s)",
        gib(bytes)
    );
    println!(
        "  drill total (drill_seconds)   {total:>8.1} s   (wall {wall:.1} s, {:.2}x the backup)",
        ratio(total, backup_secs)
    );
    for s in ["restore", "start", "check"] {
        println!("  {s:<30}{:>8.1} s", stage(message, s).unwrap_or(f64::NAN));
    }
    println!(
        "  restore throughput            {:>8.0} MiB/s",
        bytes as f64 / (1u64 << 20) as f64 / restore
    );
    println!("  replica lag before (baseline) p50 {b50:.0} ms, p99 {b99:.0} ms, max {bmax:.0} ms ({} samples)", before.len());
    println!(
        "  replica lag during the drill  p50 {d50:.0} ms, p99 {d99:.0} ms, max {dmax:.0} ms ({} samples); p99 {:.1}x the baseline",
        during.len(),
        ratio(d99, b99)
    );
    println!(
        "  reads on the replica that failed during the drill: {}",
        failed_reads.load(Ordering::Relaxed)
    );
    println!("  {message}");
    println!("  load average: start {load_start}, end {}", loadavg());
    Ok(())
}
