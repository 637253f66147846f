//! The generated data set: InnoDB tables of semi-compressible rows filled with
//! INSERT … SELECT from the sequence engine until the data files reach a size, then
//! flushed so the server is quiet during the online backups.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn::backup::builtin::list_data_files;
use cairn::testkit::{wait_for, TabletProcess};

use super::T;
use crate::common::gib;

/// Tables of the data set and their share of it (the largest gets half).
const TABLES: &[(&str, u64)] = &[("orders", 8), ("events", 4), ("users", 2), ("audit", 2)];
/// Rows per INSERT … SELECT (about 40 MB of rows).
const CHUNK_ROWS: u64 = 200_000;

pub fn create_tables(t: &TabletProcess) -> anyhow::Result<()> {
    let mut sql = String::from(
        "SET SESSION sql_log_bin = 0; CREATE DATABASE IF NOT EXISTS benchdata; \
         SET GLOBAL innodb_buffer_pool_size = 1073741824; \
         SET GLOBAL innodb_flush_log_at_trx_commit = 0; \
         SET GLOBAL innodb_log_file_size = 536870912;",
    );
    for (name, _) in TABLES {
        write!(
            sql,
            " CREATE TABLE benchdata.{name} (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                k INT NOT NULL,
                created DATETIME NOT NULL,
                email VARCHAR(64) NOT NULL,
                h CHAR(32) NOT NULL,
                note VARCHAR(255) NOT NULL,
                token VARBINARY(16) NOT NULL,
                amount DECIMAL(12,2) NOT NULL,
                KEY (k)
             ) ENGINE=InnoDB;"
        )?;
    }
    t.sql(&sql)?;
    Ok(())
}

/// One INSERT … SELECT of `rows` fresh rows into `table` (fresh random values per
/// row: nothing repeats across chunks, so no long-range match inflates the ratio).
fn insert_chunk(t: &TabletProcess, table: &str, rows: u64) -> anyhow::Result<()> {
    t.sql(&format!(
        "SET SESSION sql_log_bin = 0; SET SESSION unique_checks = 0; \
         INSERT INTO benchdata.{table} (k, created, email, h, note, token, amount) \
         SELECT FLOOR(RAND() * 1000000), \
                TIMESTAMP'2024-01-01 00:00:00' + INTERVAL FLOOR(RAND() * 31536000) SECOND, \
                CONCAT('user', FLOOR(RAND() * 10000000), '@example.com'), \
                MD5(RAND()), \
                CONCAT('order ', seq, ' ', ELT(1 + FLOOR(RAND() * 4), 'new', 'paid', 'shipped', 'returned'), \
                       ' ', REPEAT(MD5(RAND()), 2)), \
                RANDOM_BYTES(16), \
                ROUND(RAND() * 100000, 2) \
         FROM benchdata.seq_1_to_{rows}"
    ))?;
    Ok(())
}

/// Fills the tables until the data directory's backed-up files reach `target`
/// bytes, two INSERTs at a time (one per core) into different tables.
pub fn generate(t: &TabletProcess, data_dir: &Path, target: u64) -> anyhow::Result<(u64, f64)> {
    create_tables(t)?;
    let started = Instant::now();
    let size_of = |name: &str| {
        std::fs::metadata(data_dir.join("benchdata").join(format!("{name}.ibd")))
            .map_or(0, |m| m.len())
    };
    // The redo log does not count: it is resized meanwhile (two files for a while).
    let total = || -> anyhow::Result<u64> {
        Ok(list_data_files(data_dir)?
            .iter()
            .filter(|f| !f.name.starts_with("ib_logfile"))
            .map(|f| f.size)
            .sum())
    };
    let weight: u64 = TABLES.iter().map(|(_, w)| w).sum();
    let mut last_report = Instant::now();
    let first = total()?;
    let mut inserted = 0u64;
    loop {
        let now = total()?;
        if now >= target {
            break;
        }
        // The two tables furthest below their share.
        let mut order: Vec<(&str, f64)> = TABLES
            .iter()
            .map(|(n, w)| (*n, size_of(n) as f64 / (*w as f64 / weight as f64)))
            .collect();
        order.sort_by(|a, b| a.1.total_cmp(&b.1));
        // Bytes of data files per row so far (a guess before the first round);
        // smaller chunks near the end so the size is not overshot by much.
        let per_row = (now - first)
            .checked_div(inserted)
            .map_or(250, |b| b.max(50));
        let rows = ((target - now) / per_row / 2).clamp(1000, CHUNK_ROWS);
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = order[..2]
                .iter()
                .map(|(name, _)| s.spawn(move || insert_chunk(t, name, rows)))
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("an insert thread panicked"))??;
            }
            Ok(())
        })?;
        inserted += 2 * rows;
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  generated {} of {} ({:.0}s)",
                gib(now),
                gib(target),
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    // Back to a normal redo log size, so the data set is table data, not redo.
    t.sql(
        "SET GLOBAL innodb_log_file_size = 50331648; SET GLOBAL innodb_flush_log_at_trx_commit = 1",
    )?;
    Ok((total()?, started.elapsed().as_secs_f64()))
}

/// Waits until InnoDB has no dirty pages left, so the server is quiet while the
/// online backups run.
pub async fn flush_dirty(t: &TabletProcess) -> anyhow::Result<()> {
    t.sql("SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001; SET GLOBAL innodb_max_dirty_pages_pct = 0")?;
    wait_for("InnoDB to flush its dirty pages", T, || async {
        let out = t.sql("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")?;
        let dirty: u64 = out
            .split('\t')
            .nth(1)
            .unwrap_or("1")
            .trim()
            .parse()
            .unwrap_or(1);
        Ok((dirty < 16).then_some(()))
    })
    .await
}
