//! The queries a drill runs on its scratch server, fed to the pure verdicts of
//! [`super::checks`]: `CHECK TABLE` on every table (in batches), the executed
//! GTID position, and `COUNT(*)` of the largest tables.
//!
//! May call: `mysql` (the scratch [`Mysqld`]).

use anyhow::Context;

use super::checks;
use crate::mysql::mysqld::Mysqld;

/// How many of the largest tables get their rows counted.
const LARGEST_TABLES: usize = 5;

/// Tables checked per `CHECK TABLE` statement.
const CHECK_BATCH: usize = 32;

/// A row of `CHECK TABLE`: Table, Op, Msg_type, Msg_text.
type CheckTableRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The checks on the scratch server, its position against `want` (the
/// MANIFEST's, or the chain's end); `Err` lists every problem found.
pub async fn check_restored(
    srv: &Mysqld,
    want: &str,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let tables: Vec<(String, String, u64, u64)> = srv
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, IFNULL(TABLE_ROWS, 0), IFNULL(DATA_LENGTH, 0) \
             FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' \
             AND TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema')",
        )
        .await
        .context("listing the restored tables")?;
    let mut rows = Vec::new();
    for batch in tables.chunks(CHECK_BATCH) {
        let list: Vec<String> = batch
            .iter()
            .map(|(s, t, _, _)| checks::quote_table(s, t))
            .collect();
        let got: Vec<CheckTableRow> = srv
            .query(&format!("CHECK TABLE {}", list.join(", ")))
            .await
            .context("CHECK TABLE")?;
        rows.extend(
            got.into_iter()
                .map(|(table, _op, kind, text)| checks::CheckRow {
                    table: table.unwrap_or_default(),
                    msg_type: kind.unwrap_or_default(),
                    msg_text: text.unwrap_or_default(),
                }),
        );
    }
    problems.extend(checks::check_table_problems(&rows));

    let restored = srv
        .gtid_position()
        .await
        .context("reading the restored position")?;
    match checks::position_verdict(&restored, want) {
        Ok(None) => {}
        Ok(Some(note)) => notes.push(note),
        Err(p) => problems.push(p),
    }

    let mut user: Vec<&(String, String, u64, u64)> = tables
        .iter()
        .filter(|(s, ..)| !matches!(s.as_str(), "mysql" | "sys"))
        .collect();
    user.sort_by(|a, b| b.3.cmp(&a.3).then(b.2.cmp(&a.2)));
    let mut counts = Vec::new();
    for (s, t, estimated, data) in user.into_iter().take(LARGEST_TABLES) {
        let n: Option<u64> = srv
            .query_first(&format!(
                "SELECT COUNT(*) FROM {}",
                checks::quote_table(s, t)
            ))
            .await
            .with_context(|| format!("counting the rows of {s}.{t}"))?;
        counts.push(checks::TableCount {
            table: format!("{s}.{t}"),
            estimated_rows: *estimated,
            data_length: *data,
            counted: n.unwrap_or(0),
        });
    }
    problems.extend(checks::row_count_problems(&counts));
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    notes.push(format!(
        "{} tables checked, position {}, rows counted: {}",
        tables.len(),
        want,
        if counts.is_empty() {
            "no user tables".to_string()
        } else {
            counts
                .iter()
                .map(|c| format!("{} {}", c.table, c.counted))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    Ok(())
}
