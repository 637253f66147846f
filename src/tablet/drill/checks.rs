//! What a restore drill concludes from the scratch server: the pure verdicts on
//! `CHECK TABLE`'s rows, on the restored GTID position against the MANIFEST's,
//! and on the row counts of the largest tables. Table tests below; the queries
//! that feed them are in the parent module.

use crate::mysql::flavor::Flavor;

/// One row of `CHECK TABLE`'s result.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    /// `schema.table`.
    pub table: String,
    /// `status`, `error`, `warning`, `note`, `info`.
    pub msg_type: String,
    pub msg_text: String,
}

/// Status texts that mean a table is fine.
const GOOD_STATUS: &[&str] = &["OK", "Table is already up to date"];

/// One line per table `CHECK TABLE` did not find good: an `error` row, or a
/// `status` row other than OK. An engine that cannot check (a note saying so,
/// no error) is not a problem. Pure.
pub fn check_table_problems(rows: &[CheckRow]) -> Vec<String> {
    let mut problems: Vec<String> = Vec::new();
    let mut say = |table: &str, text: &str| {
        let line = format!("CHECK TABLE {table}: {text}");
        if !problems.contains(&line) {
            problems.push(line);
        }
    };
    for r in rows {
        let kind = r.msg_type.to_ascii_lowercase();
        let bad_status = kind == "status" && !GOOD_STATUS.contains(&r.msg_text.as_str());
        if kind == "error" || bad_status {
            say(&r.table, &r.msg_text);
        }
    }
    problems
}

/// The restored server's executed position against the MANIFEST's: `Ok(None)`
/// when they are the same GTID set; `Ok(Some(note))` when the data carries no
/// replica position at all (a backup of a primary: its position lives in the
/// binary logs, which a backup leaves out, and a restore sets it from the
/// MANIFEST); `Err` naming both otherwise, or when either does not parse. Pure.
pub fn position_verdict(restored: &str, manifest: &str) -> Result<Option<String>, String> {
    let f = Flavor::MariaDB;
    let want = f
        .parse_position(manifest)
        .map_err(|e| format!("the MANIFEST's position {manifest:?} does not parse: {e:#}"))?;
    let got = f
        .parse_position(restored)
        .map_err(|e| format!("the restored position {restored:?} does not parse: {e:#}"))?;
    if got == want {
        return Ok(None);
    }
    if got.is_empty() {
        return Ok(Some(format!(
            "the restored data carries no replica position (a primary's backup); a restore sets \
             the MANIFEST's {}",
            f.format_position(&want)
        )));
    }
    Err(format!(
        "the restored data is at position {}, its MANIFEST says {}",
        f.format_position(&got),
        f.format_position(&want)
    ))
}

/// A table among the largest, with what the server's statistics estimate and
/// what `COUNT(*)` found.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCount {
    /// `schema.table`.
    pub table: String,
    /// `information_schema.TABLES.TABLE_ROWS` (InnoDB's persistent estimate).
    pub estimated_rows: u64,
    /// Bytes of data the table holds by the server's statistics.
    pub data_length: u64,
    pub counted: u64,
}

/// Data beyond which a table cannot be empty: an empty InnoDB table takes one
/// 16 KiB page; a table whose statistics say it holds a MiB has rows.
const DATA_MEANS_ROWS: u64 = 1024 * 1024;

/// One line per table whose count is not plausible: empty although the
/// statistics say it holds rows or data. Pure.
pub fn row_count_problems(counts: &[TableCount]) -> Vec<String> {
    counts
        .iter()
        .filter(|c| c.counted == 0 && (c.estimated_rows > 0 || c.data_length >= DATA_MEANS_ROWS))
        .map(|c| {
            format!(
                "table {} is empty, but its statistics say about {} rows in {} bytes",
                c.table, c.estimated_rows, c.data_length
            )
        })
        .collect()
}

/// `schema`.`table` with backticks doubled.
pub fn quote_table(schema: &str, table: &str) -> String {
    let q = |s: &str| format!("`{}`", s.replace('`', "``"));
    format!("{}.{}", q(schema), q(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(table: &str, kind: &str, text: &str) -> CheckRow {
        CheckRow {
            table: table.into(),
            msg_type: kind.into(),
            msg_text: text.into(),
        }
    }

    #[test]
    fn check_table_rows() {
        // (what, rows, problems)
        let cases: Vec<(&str, Vec<CheckRow>, Vec<&str>)> = vec![
            ("all fine", vec![row("a.t", "status", "OK")], vec![]),
            (
                "up to date",
                vec![row("a.t", "status", "Table is already up to date")],
                vec![],
            ),
            (
                "an engine that cannot check",
                vec![
                    row(
                        "a.t",
                        "note",
                        "The storage engine for the table doesn't support check",
                    ),
                    row("a.u", "status", "OK"),
                ],
                vec![],
            ),
            (
                "an error and its status row",
                vec![
                    row(
                        "a.t",
                        "Warning",
                        "InnoDB: The B-tree of index PRIMARY is corrupted.",
                    ),
                    row("a.t", "error", "Corrupt"),
                    row("a.u", "status", "OK"),
                ],
                vec!["CHECK TABLE a.t: Corrupt"],
            ),
            (
                "a status other than OK",
                vec![row("a.t", "status", "Operation failed")],
                vec!["CHECK TABLE a.t: Operation failed"],
            ),
            (
                "the same line once",
                vec![
                    row("a.t", "error", "Corrupt"),
                    row("a.t", "status", "Corrupt"),
                ],
                vec!["CHECK TABLE a.t: Corrupt"],
            ),
            ("nothing", vec![], vec![]),
        ];
        for (what, rows, want) in cases {
            assert_eq!(check_table_problems(&rows), want, "{what}");
        }
    }

    #[test]
    fn positions() {
        // (restored, MANIFEST, Ok(note?) or Err)
        let cases: Vec<(&str, &str, Result<bool, ()>)> = vec![
            ("0-1-5", "MariaDB/0-1-5", Ok(false)),
            ("MariaDB/1-2-3,0-1-5", "MariaDB/0-1-5,1-2-3", Ok(false)),
            ("", "MariaDB/0-1-5", Ok(true)),
            ("0-1-4", "MariaDB/0-1-5", Err(())),
            ("0-1-5", "MariaDB/0-1-5,1-2-3", Err(())),
            ("0-1-5,1-2-3", "MariaDB/0-1-5", Err(())),
            ("garbage", "MariaDB/0-1-5", Err(())),
            ("0-1-5", "MySQL56/abc:1-5", Err(())),
        ];
        for (restored, manifest, want) in cases {
            let got = position_verdict(restored, manifest);
            match want {
                Ok(note) => assert_eq!(
                    got.as_ref().map(Option::is_some),
                    Ok(note),
                    "{restored} vs {manifest}: {got:?}"
                ),
                Err(()) => assert!(got.is_err(), "{restored} vs {manifest}: {got:?}"),
            }
        }
        assert_eq!(
            position_verdict("0-1-4", "MariaDB/0-1-5").unwrap_err(),
            "the restored data is at position MariaDB/0-1-4, its MANIFEST says MariaDB/0-1-5"
        );
    }

    #[test]
    fn row_counts() {
        let c = |estimated_rows, data_length, counted| TableCount {
            table: "app.t".into(),
            estimated_rows,
            data_length,
            counted,
        };
        // (what, count, plausible)
        let cases = [
            ("rows found", c(100, 16384, 97), true),
            ("empty and said empty", c(0, 16384, 0), true),
            ("stale statistics, rows found", c(0, 16384, 5), true),
            ("empty but estimated rows", c(100, 16384, 0), false),
            ("empty but a MiB of data", c(0, 4 << 20, 0), false),
        ];
        for (what, count, plausible) in cases {
            assert_eq!(row_count_problems(&[count]).is_empty(), plausible, "{what}");
        }
        assert_eq!(
            row_count_problems(&[c(100, 16384, 0)]),
            vec!["table app.t is empty, but its statistics say about 100 rows in 16384 bytes"]
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_table("app", "t"), "`app`.`t`");
        assert_eq!(quote_table("a`b", "t"), "`a``b`.`t`");
    }
}
