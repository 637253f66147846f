//! The report: each pair of ours against its baseline (medians of the runs, MiB/s,
//! CPU, ratio) and whether ours met the pair's goal.

use super::measure::Timed;
use super::MIB;
use crate::common::lower_median_index;

/// What a pair must achieve.
#[derive(Clone, Copy)]
pub enum Goal {
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

pub struct Row {
    pub what: String,
    pub ours: Vec<Timed>,
    pub base: Vec<Timed>,
    pub bytes: u64,
    pub goal: Option<Goal>,
    pub note: String,
}

/// The sample with the median time (the lower middle one for an even count).
pub fn median(v: &[Timed]) -> Timed {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    s[lower_median_index(s.len())]
}

pub fn print_rows(rows: &[Row]) {
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
