//! bench_recovery: the "Must measure" figures of issue 10 (apply speed and the
//! time to recover) and issue 11 (`cairn verify` throughput), each against the
//! shell an operator would use instead, in the same run, interleaved (A B A B)
//! so that the machine's other load hits both sides.
//!
//! - `--only apply` ([`apply`]): a full backup of a replica, then `--binlog-size`
//!   of ROW binlog (synthetic batched inserts and updates on the primary) taken
//!   as an incremental backup; a new tablet restored with `--restore-from-backup
//!   --restore-to-pos` to the last GTID (spawn to DRAINED, split into download,
//!   full restore and apply from the agent's log line) against the same full
//!   backup restored and the same binlog files piped by hand through
//!   `mariadb-binlog | mariadb`.
//! - `--only verify` ([`verify`]): `cairn verify KS/SHARD --backup NAME` of a
//!   builtin backup of the `--size` data set on file storage against `cat
//!   OBJECTS > /dev/null` (page cache warm), and on S3 (moto) against `aws s3 cp
//!   s3://… - > /dev/null` per object at the same concurrency.
//!
//! `cargo bench --bench bench_recovery -- --only apply|verify [--size 2G]
//! [--binlog-size 256M] [--runs 2]` (or `scripts/bench.sh --only apply|verify`)
//!
//! Everything runs on loopback in a temporary directory removed at the end.
//! Other work on the machine skews the figures: the load average is printed.

#[path = "../common/mod.rs"]
mod common;
#[path = "../bench_backup/dataset.rs"]
mod dataset;

mod apply;
mod verify;

use std::time::Duration;

use clap::{Parser, ValueEnum};

const T: Duration = Duration::from_secs(1800);
const KS: &str = "bench";
const SHARD: &str = "0";
const MIB: f64 = (1u64 << 20) as f64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    Apply,
    Verify,
}

/// Apply speed and time to recover, and verify throughput, against the shell.
#[derive(Parser, Debug)]
#[command(name = "bench_recovery", bin_name = "bench_recovery")]
struct Opts {
    /// Which measurement.
    #[arg(long, value_enum)]
    only: Only,
    /// The generated InnoDB data set (`verify`: backed up and verified; `apply`:
    /// the full backup's content): BYTES with an optional K, M or G.
    #[arg(long, value_parser = common::parse_size)]
    size: Option<u64>,
    /// `apply`: bytes of binlog written after the full backup.
    #[arg(long, default_value = "256M", value_parser = common::parse_size)]
    binlog_size: u64,
    /// Runs of each side (interleaved; medians reported).
    #[arg(long, default_value_t = 2, value_parser = common::at_least_one)]
    runs: usize,
    /// `verify`: objects read at once (cairn's `--concurrency` and the S3 baseline's).
    #[arg(long, default_value_t = 4, value_parser = common::at_least_one)]
    concurrency: usize,
    /// `verify`: skip the S3 pass.
    #[arg(long)]
    no_s3: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::skipped_under_cargo_test("bench_recovery") {
        return Ok(());
    }
    let o = Opts::parse();
    match o.only {
        Only::Apply => apply::run(o.size.unwrap_or(256 << 20), o.binlog_size, o.runs).await,
        Only::Verify => {
            verify::run(o.size.unwrap_or(2 << 30), o.runs, o.concurrency, !o.no_s3).await
        }
    }
}

/// Runs a bash script; returns its wall seconds, or its stderr when it fails.
fn shell(what: &str, script: &str) -> anyhow::Result<f64> {
    let t = std::time::Instant::now();
    let out = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .stdin(std::process::Stdio::null())
        .output()?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        anyhow::bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(secs)
}

/// `a / b`, NaN when `b` is not positive.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}
