//! Tablet lifecycle benchmark: how long a `cairn tablet` takes to show up healthy in
//! topo (fresh data dir, and restart on an existing one), and how long
//! `cairn init-shard-primary` and a re-parent take until every replica replicates
//! from the new primary. Real etcd and mariadbd on loopback, in a temporary
//! directory removed at the end; prints medians over `--runs` runs (default 5).
//!
//! Every run uses its own shard `bench/rN` with three fresh tablets A, B, C:
//!
//! 1. A alone, fresh dir: spawn → Health in topo says mysqld up and serving.
//! 2. SIGTERM A (time until the agent exited), wait until its Health is gone
//!    (lease revoked), spawn it again on the same dir → Health again (written after
//!    the restart began).
//! 3. B and C started together (not timed), then `init-shard-primary bench/rN A`:
//!    from the command's start until, on both B and C, `SHOW SLAVE STATUS` names A's
//!    port with both threads running and a row written on A once the command
//!    returned is visible (the mysqld view), and Health written since the command
//!    started says both replication threads run (the topo view).
//! 4. Re-parent to B: the same, with A and C as the replicas.
//!
//! Health is written every second by the testkit's agents (`--health-interval 1s`)
//! and on every shard change, and polled every 20 ms here, so figures that wait on a
//! Health refresh carry up to a second of that interval.
//!
//! `cargo bench --bench bench_tablet -- [--runs N]` (or scripts/bench.sh)

mod common;

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn::testkit::{cairn_binary, Cluster, TabletProcess, TabletSpec, Wait, WaitError};
use cairn_topo::{Health, TabletAlias, Topo};
use chrono::{DateTime, Utc};
use clap::Parser;

use common::{loadavg, median};

/// Tablet start/restart and re-parent times (medians over runs).
#[derive(Parser, Debug)]
#[command(name = "bench_tablet", bin_name = "bench_tablet")]
struct Opts {
    /// Runs of every measurement.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const T: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(20);

fn alias_of(spec: &TabletSpec) -> anyhow::Result<TabletAlias> {
    spec.alias().parse().map_err(|e| anyhow::anyhow!("{e}"))
}

async fn health(topo: &Topo, alias: &TabletAlias) -> anyhow::Result<Option<Health>> {
    Ok(topo.get_tablet_info(alias).await?.and_then(|i| i.health))
}

/// Waits until the tablet's Health (written at or after `since`) says mysqld is up
/// and it serves; returns when that was seen.
async fn wait_serving(
    topo: &Topo,
    t: &mut TabletProcess,
    since: DateTime<Utc>,
) -> anyhow::Result<Instant> {
    let alias = alias_of(&t.spec)?;
    let waited = Wait::new(format!("{} healthy", t.spec.alias()), T)
        .every(POLL)
        .fail_fast()
        .until(|| {
            let exited = t.try_exit().map(|st| {
                anyhow::anyhow!(
                    "agent {} exited ({st}):\n{}",
                    t.spec.alias(),
                    t.log_tail(30)
                )
            });
            let alias = &alias;
            async move {
                if let Some(e) = exited {
                    return Err(e);
                }
                let h = health(topo, alias).await?;
                let serving = h.is_some_and(|h| {
                    h.mysqld_up && h.serving && h.updated_at.is_some_and(|u| u >= since)
                });
                Ok(serving.then(Instant::now))
            }
        })
        .await;
    match waited {
        Err(e) if e.is::<WaitError>() => bail!("{e}:\n{}", t.log_tail(30)),
        other => other,
    }
}

/// Waits until the Health record of `spec` is gone (its lease was revoked or expired).
async fn wait_health_gone(topo: &Topo, spec: &TabletSpec) -> anyhow::Result<Duration> {
    let alias = alias_of(spec)?;
    let started = Instant::now();
    let what = format!("Health of {} to go after SIGTERM", spec.alias());
    Wait::new(what, Duration::from_secs(30))
        .every(POLL)
        .fail_fast()
        .until(|| async { Ok(health(topo, &alias).await?.is_none().then_some(())) })
        .await?;
    Ok(started.elapsed())
}

/// `SHOW SLAVE STATUS` on `t`: (Master_Port, IO running, SQL running).
fn slave_status(t: &TabletProcess) -> Option<(u16, bool, bool)> {
    let out = t.sql("SHOW SLAVE STATUS").ok()?;
    let f: Vec<&str> = out.lines().next()?.split('\t').collect();
    // Columns: Slave_IO_State, Master_Host, Master_User, Master_Port, …,
    // Slave_IO_Running (10), Slave_SQL_Running (11).
    Some((
        f.get(3)?.parse().ok()?,
        *f.get(10)? == "Yes",
        *f.get(11)? == "Yes",
    ))
}

/// Runs `init-shard-primary ks/shard PRIMARY`, writes row `row_id` on the primary
/// once the command returned, and waits until every replica replicates from it.
/// Returns (command time, mysqld view, topo view): the mysqld view is when, on
/// every replica, `SHOW SLAVE STATUS` names the primary's port with both threads
/// running and the row is there; the topo view adds that Health written since the
/// start says both threads run.
async fn reparent(
    c: &Cluster,
    topo: &Topo,
    shard: &str,
    primary: &TabletProcess,
    replicas: &[&TabletProcess],
    row_id: u32,
) -> anyhow::Result<(f64, f64, f64)> {
    let since = Utc::now();
    let t0 = Instant::now();
    c.cli_ok(&[
        "init-shard-primary",
        &format!("bench/{shard}"),
        &primary.spec.alias(),
    ])?;
    let cmd = t0.elapsed().as_secs_f64();
    primary.sql(&format!(
        "CREATE DATABASE IF NOT EXISTS benchdb; \
         CREATE TABLE IF NOT EXISTS benchdb.t (id INT PRIMARY KEY); \
         INSERT INTO benchdb.t VALUES ({row_id})"
    ))?;
    let port = primary.spec.mysql_port;
    // Per replica: when mysqld showed it following, when topo did too.
    let mysqld_at: Vec<Cell<Option<f64>>> = vec![Cell::new(None); replicas.len()];
    let topo_at: Vec<Cell<Option<f64>>> = vec![Cell::new(None); replicas.len()];
    let waited = Wait::new(format!("replicas following {}", primary.spec.alias()), T)
        .every(POLL)
        .fail_fast()
        .until(|| async {
            for (i, r) in replicas.iter().enumerate() {
                if topo_at[i].get().is_some() {
                    continue;
                }
                if mysqld_at[i].get().is_none() {
                    let following = slave_status(r) == Some((port, true, true))
                        && r.sql(&format!(
                            "SELECT COUNT(*) FROM benchdb.t WHERE id = {row_id}"
                        ))
                        .is_ok_and(|s| s.trim() == "1");
                    if !following {
                        continue;
                    }
                    mysqld_at[i].set(Some(t0.elapsed().as_secs_f64()));
                }
                let h = health(topo, &alias_of(&r.spec)?).await?;
                if h.is_some_and(|h| h.replicating() && h.updated_at.is_some_and(|u| u >= since)) {
                    topo_at[i].set(Some(t0.elapsed().as_secs_f64()));
                }
            }
            Ok(topo_at.iter().all(|t| t.get().is_some()).then_some(()))
        })
        .await;
    if let Err(e) = waited {
        let which: Vec<String> = replicas
            .iter()
            .zip(&topo_at)
            .filter(|(_, d)| d.get().is_none())
            .map(|(r, _)| format!("{}:\n{}", r.spec.alias(), r.log_tail(20)))
            .collect();
        bail!("{e:#}: {}", which.join("\n"));
    }
    let max =
        |v: &[Cell<Option<f64>>]| v.iter().filter_map(Cell::get).fold(0.0f64, |a, b| a.max(b));
    Ok((cmd, max(&mysqld_at), max(&topo_at)))
}

#[derive(Default)]
struct Samples(Vec<(&'static str, Vec<f64>)>);

impl Samples {
    fn add(&mut self, what: &'static str, v: f64) {
        match self.0.iter_mut().find(|(w, _)| *w == what) {
            Some((_, vs)) => vs.push(v),
            None => self.0.push((what, vec![v])),
        }
    }

    fn print(&self) {
        println!(
            "\n{:<66} {:>4} {:>8} {:>8} {:>8}",
            "bench_tablet (seconds)", "runs", "median", "min", "max"
        );
        for (what, vs) in &self.0 {
            let mut s = vs.clone();
            s.sort_by(|a, b| a.total_cmp(b));
            let n = s.len();
            let median = median(&s);
            println!(
                "{what:<66} {n:>4} {median:>8.2} {:>8.2} {:>8.2}",
                s[0],
                s[n - 1]
            );
        }
    }
}

async fn one_run(c: &Cluster, topo: &Topo, r: u32, out: &mut Samples) -> anyhow::Result<()> {
    let shard = format!("r{r}");
    let specs: Vec<TabletSpec> = (1..=3)
        .map(|i| c.tablet(100 * r + i, "bench", &shard))
        .collect::<anyhow::Result<_>>()?;

    // 1. Fresh start of A, alone.
    let since = Utc::now();
    let t0 = Instant::now();
    let mut a = c.spawn_tablet(&specs[0])?;
    let fresh = wait_serving(topo, &mut a, since)
        .await?
        .duration_since(t0)
        .as_secs_f64();
    out.add(
        "tablet start -> Health serving, fresh (empty) tablet dir",
        fresh,
    );

    // 2. SIGTERM, then restart on the existing data dir.
    let t0 = Instant::now();
    let st = a.terminate(Duration::from_secs(120))?;
    if !st.success() {
        bail!("agent exited with {st} on SIGTERM:\n{}", a.log_tail(20));
    }
    // Its mysqld is down and the pid file gone: dropping it kills nothing.
    drop(a);
    out.add(
        "SIGTERM -> agent exited (mysqld shut down, lease revoked)",
        t0.elapsed().as_secs_f64(),
    );
    wait_health_gone(topo, &specs[0]).await?;
    let since = Utc::now();
    let t0 = Instant::now();
    let mut a = c.spawn_tablet(&specs[0])?;
    let restart = wait_serving(topo, &mut a, since)
        .await?
        .duration_since(t0)
        .as_secs_f64();
    out.add(
        "tablet start -> Health serving, restart on existing data dir",
        restart,
    );

    // 3. B and C, then init-shard-primary A.
    let since = Utc::now();
    let mut b = c.spawn_tablet(&specs[1])?;
    let mut cc = c.spawn_tablet(&specs[2])?;
    wait_serving(topo, &mut b, since).await?;
    wait_serving(topo, &mut cc, since).await?;
    let (cmd, mysqld, total) = reparent(c, topo, &shard, &a, &[&b, &cc], 1).await?;
    out.add(
        "init-shard-primary: command returns (new primary serving)",
        cmd,
    );
    out.add(
        "init-shard-primary: -> both replicas following (mysqld view)",
        mysqld,
    );
    out.add(
        "init-shard-primary: -> both replicas replicating in topo + row",
        total,
    );

    // 4. Re-parent to B.
    let (cmd, mysqld, total) = reparent(c, topo, &shard, &b, &[&a, &cc], 2).await?;
    out.add("re-parent to a replica: command returns", cmd);
    out.add(
        "re-parent to a replica: -> both following (mysqld view)",
        mysqld,
    );
    out.add(
        "re-parent to a replica: -> both replicating in topo + row",
        total,
    );

    for mut t in [a, b, cc] {
        t.terminate(Duration::from_secs(120))?;
    }
    for s in &specs {
        let _ = std::fs::remove_dir_all(&s.dir);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::skipped_under_cargo_test("bench_tablet") {
        return Ok(());
    }
    let runs = Opts::parse().runs;
    let c = Cluster::start(cairn_binary()?).await?;
    let topo = c.topo().await?;
    println!(
        "bench_tablet: {runs} runs, health interval 1s, poll every {POLL:?}, load average at start {}",
        loadavg()
    );
    let mut samples = Samples::default();
    for r in 1..=runs {
        let t0 = Instant::now();
        one_run(&c, &topo, r, &mut samples)
            .await
            .with_context(|| format!("run {r}"))?;
        eprintln!("run {r}/{runs} done in {:.1}s", t0.elapsed().as_secs_f64());
    }
    samples.print();
    println!("load average at the end: {}", loadavg());
    Ok(())
}
