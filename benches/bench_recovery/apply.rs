//! Apply speed and time to recover (issue 10, "Must measure"). A primary and a
//! replica; the `--size` data set on the replica (outside the binlog), a full
//! builtin backup of the replica; then `--binlog-size` of ROW binlog from
//! batched transactions on the primary (1,000-row INSERTs and 1,000-row UPDATEs
//! of ~400-byte rows: synthetic, written as fast as the server takes them, for
//! "an hour's worth"), replicated, and taken as one incremental backup
//! (`backup --incremental-from-pos auto`, 64 MiB binlog files). Then, `--runs`
//! times each, alternating which goes first:
//!
//! - ours: a NEW tablet started with `--restore-from-backup --restore-to-pos
//!   MariaDB/<last GTID>` (the accident's restore), timed from spawn to DRAINED
//!   in topo; download, full restore and apply from the agent's log line.
//! - baseline: a new tablet restored to the full backup's own position (the same
//!   full restore, nothing applied; not timed), then the same binlog files
//!   (copied from the replica) piped by hand: `mariadb-binlog --start-position=
//!   <full backup> --stop-position=<last GTID> FILES | mariadb`.
//!
//! Both end with the primary's row count and sum, checked. Prints MiB/s of
//! binlog applied and the ratio, and the RTO split.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn::backup::storage::{BackupStorage, FileStorage};
use cairn::testkit::{cairn_binary, Cluster, TabletProcess};

use crate::common::{gib, loadavg, median, quote, say};
use crate::{dataset, ratio, shell, KS, MIB, SHARD, T};

const CHECK: &str = "SELECT COUNT(*), COALESCE(SUM(k), 0) FROM app.w";

/// `backup ALIAS [ARGS] --json`: the backup's name.
fn backup(c: &Cluster, alias: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut a = vec!["backup", alias, "--json"];
    a.extend_from_slice(args);
    let out = c.cli_ok(&a)?;
    let v: serde_json::Value = serde_json::from_str(out.trim()).context("backup --json")?;
    Ok(v["backup_name"]
        .as_str()
        .with_context(|| format!("no backup stored: {v}"))?
        .to_string())
}

/// Binlog files of a server: (name, size), oldest first.
fn binlogs(t: &TabletProcess) -> anyhow::Result<Vec<(String, u64)>> {
    let out = t.sql("SHOW BINARY LOGS")?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.trim().parse().ok()?))
        })
        .collect())
}

/// Waits until `t` is registered DRAINED; the seconds since `since`.
async fn wait_drained(c: &Cluster, t: &mut TabletProcess, since: Instant) -> anyhow::Result<f64> {
    let alias = t.spec.alias();
    loop {
        if let Some(st) = t.try_exit() {
            bail!("{alias} exited ({st}):\n{}", t.log_tail(40));
        }
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&c.cli_ok(&["get-tablets", "--json"])?)?;
        if rows
            .iter()
            .any(|r| r["alias"] == alias.as_str() && r["type"] == "DRAINED")
        {
            return Ok(since.elapsed().as_secs_f64());
        }
        if since.elapsed() > T {
            bail!("{alias} not DRAINED:\n{}", t.log_tail(40));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `KEY=123` from the agent's "point-in-time restore done" line, in seconds.
fn logged_secs(log: &str, key: &str) -> Option<f64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("point-in-time restore done") && l.contains(key))?;
    let rest = &line[line.find(&format!("{key}="))? + key.len() + 1..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<f64>().ok().map(|ms| ms / 1000.0)
}

/// Our side: spawn-to-DRAINED and the (download, full restore, apply) split.
struct Ours {
    rto: f64,
    download: f64,
    full: f64,
    apply: f64,
}

pub async fn run(size: u64, binlog_size: u64, runs: usize) -> anyhow::Result<()> {
    let load_start = loadavg();
    let c = Cluster::start(cairn_binary()?).await?;
    let topo = c.topo().await?;
    eprintln!(
        "bench_recovery apply: working in {}",
        c.dir.path().display()
    );
    let mut p = c.spawn_tablet(&c.tablet(101, KS, SHARD)?)?;
    let mut r = c.spawn_tablet(&c.tablet(102, KS, SHARD)?)?;
    p.wait_healthy(&topo, T).await?;
    r.wait_healthy(&topo, T).await?;
    c.cli_ok(&[
        "init-shard-primary",
        &format!("{KS}/{SHARD}"),
        &p.spec.alias(),
    ])?;
    p.sql(
        "SET GLOBAL binlog_format = 'ROW'; CREATE DATABASE app; \
         CREATE TABLE app.w (id BIGINT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL, pad VARCHAR(512) NOT NULL)",
    )?;
    r.wait_value(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'app'",
        "1",
        T,
    )
    .await?;
    eprintln!("generating {} of InnoDB data on the replica…", gib(size));
    let (data_bytes, _) = dataset::generate(&r, &r.spec.dir.join("data"), size)?;
    dataset::flush_dirty(&r).await?;
    let full = backup(&c, &r.spec.alias(), &[])?;
    let store = FileStorage::new(c.backup_root());
    let full_m = store.read_manifest(KS, SHARD, &full).await?;
    let start = full_m
        .position
        .strip_prefix("MariaDB/")
        .context("the full backup has no MariaDB position")?
        .to_string();
    r.wait_healthy(&topo, T).await?;
    // After the backup (which restarts the replica's mysqld): 64 MiB files.
    r.sql("SET GLOBAL max_binlog_size = 67108864")?;
    let first_file = binlogs(&r)?
        .last()
        .map(|(n, _)| n.clone())
        .context("the replica has no binlog")?;

    // The writes: batches of 10 x (INSERT 1,000 rows; UPDATE 1,000 rows).
    eprintln!("writing {} of ROW binlog on the primary…", gib(binlog_size));
    let p_start: u64 = binlogs(&p)?.iter().map(|(_, s)| s).sum();
    let t0 = Instant::now();
    let mut next = 1u64;
    loop {
        let written = binlogs(&p)?.iter().map(|(_, s)| s).sum::<u64>() - p_start;
        if written >= binlog_size {
            break;
        }
        let mut sql = String::new();
        for _ in 0..10 {
            sql.push_str(
                "INSERT INTO app.w (k, pad) SELECT seq, REPEAT(MD5(RAND()), 12) FROM app.seq_1_to_1000; ",
            );
            sql.push_str(&format!(
                "UPDATE app.w SET k = k + 1, pad = REPEAT(MD5(RAND()), 12) WHERE id BETWEEN {next} AND {}; ",
                next + 999
            ));
            next += 1000;
        }
        p.sql(&sql)?;
    }
    let write_secs = t0.elapsed().as_secs_f64();
    let target = p.sql("SELECT @@gtid_binlog_pos")?.trim().to_string();
    let want = p.sql(CHECK)?.trim().to_string();
    r.wait_value("SELECT @@gtid_slave_pos", &target, T).await?;
    let inc = backup(&c, &r.spec.alias(), &["--incremental-from-pos", "auto"])?;
    let inc_m = store.read_manifest(KS, SHARD, &inc).await?;

    // The same binlog files for the baseline, copied off the replica.
    let files = binlogs(&r)?;
    let from = files
        .iter()
        .position(|(n, _)| *n == first_file)
        .context("the first binlog file was purged")?;
    let closed = &files[from..files.len() - 1];
    let dir = c.dir.path().join("binlogs");
    std::fs::create_dir_all(&dir)?;
    let datadir = r.spec.dir.join("data");
    let mut paths = Vec::new();
    for (n, _) in closed {
        let src = datadir.join(n);
        let dst = dir.join(n);
        std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        paths.push(dst);
    }
    let binlog_bytes: u64 = closed.iter().map(|(_, s)| s).sum();
    let mib = binlog_bytes as f64 / MIB;
    say(format!(
        "bench_recovery apply: full backup {full} ({} of data, position {start}); \
         {mib:.0} MiB of ROW binlog in {} files written in {write_secs:.0}s \
         ({} rows inserted and updated), incremental {inc} ({} stored); \
         target MariaDB/{target}; {runs} runs each, interleaved; load average at start {load_start} \
         (the machine is shared: figures include other work)",
        gib(data_bytes),
        closed.len(),
        next - 1,
        gib(inc_m.stored_size),
    ));
    let pipe = |sock: &Path| {
        format!(
            "mariadb-binlog --no-defaults --start-position={start} --stop-position={target} -- {} \
             | mariadb --no-defaults --socket={} --user=root --binary-mode --batch",
            paths.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" "),
            quote(sock)
        )
    };
    let (mut ours, mut base, mut base_full) = (Vec::<Ours>::new(), vec![], vec![]);
    let mut uid = 200;
    for rep in 0..runs {
        for first in [rep % 2 == 0, rep % 2 == 1] {
            uid += 1;
            let mut spec = c.tablet(uid, KS, SHARD)?;
            if first {
                eprintln!("run {}/{runs}: cairn restore to the last GTID…", rep + 1);
                spec.extra = vec![
                    "--restore-from-backup".into(),
                    "--restore-to-pos".into(),
                    format!("MariaDB/{target}"),
                ];
                let t = Instant::now();
                let mut tab = c.spawn_tablet(&spec)?;
                let rto = wait_drained(&c, &mut tab, t).await?;
                let log = tab.log();
                let get = |k| logged_secs(&log, k).with_context(|| format!("no {k} logged"));
                ours.push(Ours {
                    rto,
                    download: get("download_ms")?,
                    full: get("full_restore_ms")?,
                    apply: get("apply_ms")?,
                });
                let got = tab.sql(CHECK)?.trim().to_string();
                if got != want {
                    bail!("cairn's restore holds {got:?}, the primary {want:?}");
                }
            } else {
                eprintln!(
                    "run {}/{runs}: full restore, then mariadb-binlog | mariadb…",
                    rep + 1
                );
                spec.extra = vec![
                    "--restore-from-backup".into(),
                    "--restore-to-pos".into(),
                    format!("MariaDB/{start}"),
                ];
                let t = Instant::now();
                let mut tab = c.spawn_tablet(&spec)?;
                base_full.push(wait_drained(&c, &mut tab, t).await?);
                base.push(shell(
                    "mariadb-binlog | mariadb",
                    &pipe(&spec.dir.join("mysql.sock")),
                )?);
                let got = tab.sql(CHECK)?.trim().to_string();
                if got != want {
                    bail!("the hand-piped restore holds {got:?}, the primary {want:?}");
                }
            }
            // Drop: the tablet and its mysqld killed; its directory is freed.
            let _ = std::fs::remove_dir_all(spec.dir.join("data"));
        }
    }

    let m = |f: fn(&Ours) -> f64| median(&ours.iter().map(f).collect::<Vec<_>>());
    let (apply, b) = (m(|o| o.apply), median(&base));
    let r_ = ratio(mib / apply, mib / b);
    say(format!(
        "  apply {mib:.0} MiB of binlog: cairn {apply:.1}s {:.1} MiB/s | mariadb-binlog | mariadb {b:.1}s {:.1} MiB/s \
         | cairn/hand {:.0}% (goal >= 100%: {})",
        mib / apply,
        mib / b,
        r_ * 100.0,
        if r_ >= 1.0 { "met" } else { "MISSED" }
    ));
    say(format!(
        "    runs: cairn apply {} s; hand {} s",
        ours.iter()
            .map(|o| format!("{:.1}", o.apply))
            .collect::<Vec<_>>()
            .join(" "),
        base.iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    say(format!(
        "  RTO (new tablet, command to DRAINED with the data): {:.1}s = download {:.1}s + full restore {:.1}s \
         + binlog apply {:.1}s + start/register {:.1}s (medians); baseline's full restore alone (spawn to DRAINED) {:.1}s",
        m(|o| o.rto),
        m(|o| o.download),
        m(|o| o.full),
        apply,
        m(|o| o.rto - o.download - o.full - o.apply),
        median(&base_full)
    ));
    say(format!(
        "load average: start {load_start}, end {}",
        loadavg()
    ));
    Ok(())
}
