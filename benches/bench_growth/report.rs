//! The closing table of bench_growth: per shard per day at the default settings,
//! by class of key, from the measured rates and per-run costs.

use crate::common::say;
use crate::tally::{total, Count, Tally};

/// What the phases measured, and the assumptions of the day.
pub struct Figures {
    /// Background writes per second, by class (idle phase).
    pub rate: Tally,
    /// Writes of one scheduled backup, by class, background taken off.
    pub run_cost: Tally,
    /// Writes of one slot that could not run, by class, background taken off.
    pub skip_cost: Tally,
    /// Scheduled runs a day.
    pub runs_per_day: u64,
    /// Progress puts a real backup adds to the bench's small one.
    pub extra_progress_puts: f64,
    /// The length of that backup.
    pub backup_minutes: u64,
    /// One progress put per this many seconds.
    pub progress_every_secs: u64,
    /// etcd's database size before and after counting.
    pub db_start: Option<u64>,
    pub db_end: Option<u64>,
}

const DAY: f64 = 86_400.0;

fn row(name: &str, c: &Count, decimals: usize) {
    say(format!(
        "  {name:<16} {:>10.d$} {:>10.d$} {:>10.d$} {:>12.1}",
        c.puts,
        c.creates,
        c.deletes,
        c.bytes / 1e3,
        d = decimals
    ));
}

fn table(title: &str, t: &Tally, decimals: usize) {
    say(title);
    say(format!(
        "  {:<16} {:>10} {:>10} {:>10} {:>12}",
        "class", "puts", "new keys", "deletes", "kB written"
    ));
    for (k, c) in t {
        row(k, c, decimals);
    }
    row("total", &total(t), decimals);
}

/// One run as it is in production: the bench's backup is small, a real one writes
/// progress for longer; every job is deleted after the job history and every
/// backup record by retention (once the keep count is reached).
fn production_run(f: &Figures) -> Tally {
    let mut run = f.run_cost.clone();
    let job = run.entry("job").or_default();
    let put_size = if job.puts > 0.0 {
        job.bytes / job.puts
    } else {
        0.0
    };
    job.puts += f.extra_progress_puts;
    job.bytes += f.extra_progress_puts * put_size;
    job.deletes = 1.0;
    run.entry("backup record").or_default().deletes = 1.0;
    run
}

/// Prints the per-day table and the figures behind it.
pub fn report(f: &Figures) {
    say("");
    table("background, per second (idle):", &f.rate, 2);
    table(
        "one scheduled backup of the bench's small data set (background taken off):",
        &f.run_cost,
        1,
    );
    table(
        "one slot that could not run (background taken off):",
        &f.skip_cost,
        1,
    );
    let run = production_run(f);
    let mut day: Tally = f.rate.iter().map(|(k, c)| (*k, c.scaled(DAY))).collect();
    for (k, c) in &run {
        let d = day.entry(k).or_default();
        *d = d.plus(&c.scaled(f.runs_per_day as f64));
    }
    say("");
    table(
        &format!(
            "PER SHARD PER DAY at the defaults: 2 tablets, {} scheduled backups of {} min \
             (progress every {} s), jobs deleted after the job history, backups by retention:",
            f.runs_per_day, f.backup_minutes, f.progress_every_secs
        ),
        &day,
        0,
    );
    let skip_day: Tally = f
        .skip_cost
        .iter()
        .map(|(k, c)| (*k, c.scaled(f.runs_per_day as f64)))
        .collect();
    table(
        &format!(
            "if all {} slots of a day cannot run (no eligible tablet), instead of the backups:",
            f.runs_per_day
        ),
        &skip_day,
        0,
    );
    if let (Some(a), Some(b)) = (f.db_start, f.db_end) {
        say(format!(
            "etcd database: {:.2} MB before counting, {:.2} MB after (revisions are kept until \
             etcd compacts them)",
            a as f64 / 1e6,
            b as f64 / 1e6
        ));
    }
}
