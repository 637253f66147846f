//! The binary log files of a running server, as SQL sees them: rotate to a new
//! file (`FLUSH BINARY LOGS`), list the files (`SHOW BINARY LOGS`) and where they
//! lie on disk (`@@log_bin_basename`). An `impl Mysqld` block over the type in
//! [`super::mysqld`]; reading the files' contents is [`super::binlog`]'s.
//!
//! May call: [`super::mysqld`], [`super::sql`]; nothing else of the crate.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::mysqld::Mysqld;

/// One binary log file of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogFile {
    /// Its name as the server lists it (`mysql-bin.000003`).
    pub name: String,
    /// Its size when listed (the last, active file keeps growing).
    pub size: u64,
    /// Where it lies.
    pub path: PathBuf,
}

/// The paths of the files `SHOW BINARY LOGS` listed, in `dir` (the directory of
/// `@@log_bin_basename`). A name with a path separator, or `.`/`..`, is refused:
/// it would make cairn read outside the binlog directory. Pure.
pub fn binlog_files(dir: &Path, listed: Vec<(String, u64)>) -> Result<Vec<BinlogFile>> {
    listed
        .into_iter()
        .map(|(name, size)| {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                bail!("the server lists a binary log named {name:?}: not a plain file name");
            }
            Ok(BinlogFile {
                path: dir.join(&name),
                name,
                size,
            })
        })
        .collect()
}

impl Mysqld {
    /// Closes the active binary log and opens a new one: every transaction
    /// committed before is now in a closed file.
    pub async fn flush_binary_logs(&self) -> Result<()> {
        self.exec("FLUSH BINARY LOGS").await
    }

    /// The server's binary logs, oldest first; the last is the active one. Fails
    /// when binary logging is off.
    pub async fn binary_logs(&self) -> Result<Vec<BinlogFile>> {
        let base: Option<Option<String>> =
            self.query_first("SELECT @@GLOBAL.log_bin_basename").await?;
        let Some(base) = base.flatten().filter(|b| !b.is_empty()) else {
            bail!("binary logging is off on this server (no log_bin_basename): nothing to back up incrementally");
        };
        let base = PathBuf::from(base);
        let dir = base
            .parent()
            .with_context(|| format!("log_bin_basename {} has no directory", base.display()))?
            .to_path_buf();
        let rows: Vec<mysql_async::Row> = self.query("SHOW BINARY LOGS").await?;
        let mut listed = Vec::with_capacity(rows.len());
        for row in rows {
            let name: Option<String> = row.get(0);
            let size: Option<u64> = row.get(1);
            let (Some(name), Some(size)) = (name, size) else {
                bail!("SHOW BINARY LOGS returned a row without a name or size");
            };
            listed.push((name, size));
        }
        if listed.is_empty() {
            bail!("SHOW BINARY LOGS lists no file: binary logging is off");
        }
        binlog_files(&dir, listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_names_stay_in_the_binlog_directory() {
        let dir = Path::new("/d/data");
        let ok = binlog_files(dir, vec![("mysql-bin.000001".into(), 10)]).unwrap();
        assert_eq!(ok[0].path, Path::new("/d/data/mysql-bin.000001"));
        assert_eq!(ok[0].size, 10);
        for bad in ["", ".", "..", "../x", "a/b"] {
            assert!(
                binlog_files(dir, vec![(bad.into(), 1)]).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
