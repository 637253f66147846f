//! The closing table: every figure against its goal, and whether it was met.

use super::schedule::SchedRun;
use super::throughput::Step;
use crate::common::{pct, say};

pub struct Figures {
    pub records: usize,
    pub write_secs: f64,
    pub load_log_ms: Option<u64>,
    pub spawn_to_loaded_ms: Option<f64>,
    pub spawn_to_status_ms: f64,
    pub mem_loaded: Option<(f64, f64)>,
    pub sched_runs: Vec<SchedRun>,
    pub mem_jobs: Option<(f64, f64)>,
    pub steps: Vec<Step>,
    pub seed: Vec<f64>,
}

pub fn report(f: &Figures, tablets: usize, shards: usize) {
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let opt = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0} ms"));
    let mut seed = f.seed.clone();
    seed.sort_by(f64::total_cmp);
    // The fastest step the coordinator kept up with, and whether its rate was
    // limited by the writer (etcd, CPU) rather than by the coordinator.
    let best = f
        .steps
        .iter()
        .filter(|s| s.keeps_up && s.target != Some(0))
        .max_by(|a, b| a.achieved.total_cmp(&b.achieved));
    let lagged: Vec<&str> = f
        .steps
        .iter()
        .filter(|s| !s.keeps_up)
        .map(|s| s.label.as_str())
        .collect();
    let etcd_max = f
        .steps
        .iter()
        .filter(|s| s.target.is_none())
        .map(|s| s.achieved)
        .fold(0.0, f64::max);
    let peak = f
        .mem_loaded
        .into_iter()
        .chain(f.mem_jobs)
        .map(|m| m.1)
        .fold(0.0, f64::max);
    let load = f.load_log_ms.map(|v| v as f64);
    // Each run's figure, then the median.
    let runs = |get: &dyn Fn(&SchedRun) -> Option<f64>| -> String {
        let mut v: Vec<f64> = f.sched_runs.iter().filter_map(get).collect();
        let each = v
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" / ");
        v.sort_by(f64::total_cmp);
        format!("{each} ms (median {:.0})", pct(&v, 50.0))
    };
    say("");
    say(format!(
        "== coordinator at {tablets} tablets / {shards} shards"
    ));
    let rows: Vec<(String, String, String, String)> = vec![
        (
            "synthetic topology written (no watcher)".into(),
            format!(
                "{} records in {:.2} s ({:.0} puts/s)",
                f.records,
                f.write_secs,
                f.records as f64 / f.write_secs
            ),
            "-".into(),
            "".into(),
        ),
        (
            "topology load (\"topology loaded\" elapsed_ms)".into(),
            opt(load),
            "< 2 s".into(),
            verdict(load.is_some_and(|v| v < 2000.0)).into(),
        ),
        (
            "spawn -> \"topology loaded\" logged".into(),
            opt(f.spawn_to_loaded_ms),
            "".into(),
            "".into(),
        ),
        (
            format!("spawn -> status answers tablets == {tablets}"),
            format!("{:.0} ms", f.spawn_to_status_ms),
            "".into(),
            "".into(),
        ),
        (
            "RSS after load (VmRSS / VmHWM)".into(),
            f.mem_loaded
                .map_or("?".into(), |m| format!("{:.1} / {:.1} MiB", m.0, m.1)),
            "< 150 MB".into(),
            "".into(),
        ),
        (
            format!("RSS after {shards} jobs (VmRSS / VmHWM)"),
            f.mem_jobs
                .map_or("?".into(), |m| format!("{:.1} / {:.1} MiB", m.0, m.1)),
            "< 150 MB".into(),
            verdict(peak > 0.0 && peak * 1.048_576 < 150.0).into(),
        ),
        (
            "cron slot -> first job in etcd".into(),
            runs(&|r| Some(r.first_ms)),
            "".into(),
            "".into(),
        ),
        (
            format!("cron slot -> all {shards} jobs in etcd (stagger 0 s)"),
            runs(&|r| Some(r.all_ms)),
            "< 5 s".into(),
            verdict(!f.sched_runs.is_empty() && f.sched_runs.iter().all(|r| r.all_ms < 5000.0))
                .into(),
        ),
        (
            "cron slot -> the coordinator's slot (logged)".into(),
            runs(&|r| r.coord_slot_ms),
            "".into(),
            "".into(),
        ),
        (
            "cron slot -> \"schedule run started\" logged".into(),
            runs(&|r| r.logged_ms),
            "".into(),
            "".into(),
        ),
        (
            "jobs created (last run)".into(),
            f.sched_runs.last().map_or("?".into(), |r| r.states.clone()),
            "".into(),
            "".into(),
        ),
        (
            "Health updates/s the coordinator keeps up with".into(),
            match best {
                Some(b) => format!(
                    "{:.0}/s ({} step{}); {}",
                    b.achieved,
                    b.label,
                    if b.target.is_none_or(|t| b.achieved < 0.95 * t as f64) {
                        ": the writes, not the coordinator, hit their limit"
                    } else {
                        ""
                    },
                    if lagged.is_empty() {
                        "no step lagged".to_string()
                    } else {
                        format!("lagged at: {}", lagged.join(", "))
                    }
                ),
                None => "none of the steps".into(),
            },
            "".into(),
            "".into(),
        ),
        (
            "etcd max Health put rate here (unpaced step)".into(),
            format!(
                "{etcd_max:.0}/s with the coordinator watching ({:.0} puts/s without a watcher, step 1)",
                f.records as f64 / f.write_secs
            ),
            "".into(),
            "".into(),
        ),
        (
            format!("seed: record put -> restore starts (n={})", seed.len()),
            format!(
                "p50 {:.1} / p99 {:.1} / max {:.1} ms",
                pct(&seed, 50.0),
                pct(&seed, 99.0),
                pct(&seed, 100.0)
            ),
            "p99 < 1 s".into(),
            verdict(!seed.is_empty() && pct(&seed, 99.0) < 1000.0).into(),
        ),
    ];
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    for (a, b, goal, v) in rows {
        say(format!("{a:<w0$}  {b:<w1$}  {goal:<9} {v}").trim_end());
    }
    say("(MB = 10^6 bytes: 150 MB = 143 MiB; p99 of n samples is the nearest rank, i.e. the max for n < 100)");
}
