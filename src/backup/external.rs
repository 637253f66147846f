//! Data a data directory only points to: symbolic links (a database directory
//! moved to another disk, a MyISAM/Aria table created with `DATA DIRECTORY`) and
//! InnoDB link files (`<db>/<table>.isl`, a table created with `DATA DIRECTORY`:
//! its tablespace lies wherever the file says). Each engine's rule about them, so
//! that none is ever silently left out of a backup reported complete:
//!
//! - **builtin** copies the data directory's own regular files: every symlink and
//!   every `.isl` among what it would copy is refused, with the path and where it
//!   points. The agent checks before it takes the tablet out of service
//!   ([`check_data_dir`]); the walk that lists the files refuses them again
//!   ([`refusal`]), in case one appeared meanwhile.
//! - **xtrabackup** (`mariabackup`) follows symlinks and streams what they point
//!   to; a restore makes them plain directories and files inside the data
//!   directory, so they are allowed. `.isl` files are refused: the stream keeps
//!   them, and a restored server opens the path they name, which is the source
//!   server's own tablespace file (MariaDB 10.11 then refuses the table, "found in
//!   multiple places") or, on another host, whatever lies there.
//! - Restores refuse a backup that holds an `.isl` anyway (taken before this
//!   check, or created during an online backup): [`check_entries`] for a
//!   MANIFEST's file list, [`check_restored`] for an unpacked stream.
//!
//! The rules ([`refusal`], [`isl_entry`]) are pure and table-tested; the walks
//! around them are thin. May call: [`super::manifest`] and std; nothing above.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::manifest::{BackupMethod, Manifest};

/// Suffix of InnoDB's link files.
const ISL_SUFFIX: &str = ".isl";
/// The most of an `.isl` file read (it holds one path).
const MAX_ISL_BYTES: u64 = 4096;

/// Something in a data directory whose data lies elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum External {
    /// A symbolic link: `path` (in the data directory) points to `target`.
    Symlink { path: PathBuf, target: PathBuf },
    /// An InnoDB link file `path` for table `table` (`db.table`), naming the
    /// tablespace `target` outside the data directory.
    InnodbLink {
        path: PathBuf,
        table: String,
        target: String,
    },
}

/// Why `method` cannot back `found` up, or `None` if it can. Pure.
pub fn refusal(method: BackupMethod, found: &External) -> Option<String> {
    match (found, method) {
        (External::Symlink { path, target }, BackupMethod::Builtin) => Some(format!(
            "{} is a symbolic link to {}: the builtin engine backs up only the data \
             directory's own files; use --backup-engine xtrabackup or move the data \
             into the data directory",
            path.display(),
            target.display()
        )),
        // mariabackup streams what the link points to; a restore makes it local.
        (External::Symlink { .. }, BackupMethod::Xtrabackup) => None,
        (
            External::InnodbLink {
                path,
                table,
                target,
            },
            _,
        ) => Some(format!(
            "{}: table {table} was created with DATA DIRECTORY; its tablespace is {target}, \
             outside the data directory, and a restored server would open that path (the \
             source's own file): no engine backs it up safely; recreate the table without \
             DATA DIRECTORY",
            path.display()
        )),
    }
}

/// The table an `.isl` file at `rel` (relative to the data directory) stands
/// for, `db.table`; `None` if `rel` is not a link file. Pure.
pub fn isl_entry(rel: &str) -> Option<String> {
    let stem = rel.strip_suffix(ISL_SUFFIX)?;
    let (db, table) = stem.rsplit_once('/')?;
    (!db.is_empty() && !table.is_empty()).then(|| format!("{}.{table}", db.replace('/', ".")))
}

/// Reads what an `.isl` file names (its first line, trimmed).
fn read_isl(path: &Path) -> String {
    let mut text = String::new();
    match fs::File::open(path).and_then(|f| f.take(MAX_ISL_BYTES).read_to_string(&mut text)) {
        Ok(_) => text.lines().next().unwrap_or("").trim().to_string(),
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// What `path` (at `rel` in the data directory, of type `kind`) is, if its data
/// lies elsewhere. Reads the link or the `.isl`; never follows anything.
pub fn classify(path: &Path, rel: &str, kind: fs::FileType) -> Option<External> {
    if kind.is_symlink() {
        let target = fs::read_link(path).unwrap_or_else(|e| PathBuf::from(format!("(?: {e})")));
        return Some(External::Symlink {
            path: path.to_path_buf(),
            target,
        });
    }
    let table = isl_entry(rel).filter(|_| kind.is_file())?;
    Some(External::InnodbLink {
        path: path.to_path_buf(),
        table,
        target: read_isl(path),
    })
}

/// Every symlink and `.isl` file of `data_dir` whose relative path `included`
/// accepts (the entries a backup would copy), sorted by path; every directory is
/// walked, no link is followed.
pub fn scan(data_dir: &Path, included: &dyn Fn(&str) -> bool) -> anyhow::Result<Vec<External>> {
    fn walk(
        root: &Path,
        dir: &Path,
        included: &dyn Fn(&str) -> bool,
        out: &mut Vec<External>,
    ) -> anyhow::Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .with_context(|| format!("stat {}", path.display()))?;
            let rel = path
                .strip_prefix(root)
                .with_context(|| format!("{} outside the data directory", path.display()))?
                .to_string_lossy()
                .into_owned();
            if kind.is_dir() {
                walk(root, &path, included, out)?;
            } else if !included(&rel) {
                continue;
            } else if let Some(found) = classify(&path, &rel, kind) {
                out.push(found);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(data_dir, data_dir, included, &mut out)?;
    out.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    Ok(out)
}

fn path_of(e: &External) -> &Path {
    match e {
        External::Symlink { path, .. } | External::InnodbLink { path, .. } => path,
    }
}

/// Refuses a backup by `method` of `data_dir` if anything it would copy lies
/// elsewhere (see the module doc); the error is the first refusal, one line.
pub fn check_data_dir(
    method: BackupMethod,
    data_dir: &Path,
    included: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let found = scan(data_dir, included)?;
    match found.iter().find_map(|f| refusal(method, f)) {
        Some(why) => {
            let more = found
                .iter()
                .filter(|f| refusal(method, f).is_some())
                .count()
                - 1;
            if more > 0 {
                anyhow::bail!("{why} (and {more} more such entries)");
            }
            anyhow::bail!("{why}")
        }
        None => Ok(()),
    }
}

/// Refuses, before anything is restored, a MANIFEST listing an `.isl` file (a
/// builtin backup taken before this check: its tablespace was never copied).
pub fn check_entries(m: &Manifest) -> Result<(), String> {
    match m
        .file_entries
        .iter()
        .find_map(|e| isl_entry(&e.name).map(|t| (e, t)))
    {
        Some((e, table)) => Err(format!(
            "it holds {}, the link file of table {table} created with DATA DIRECTORY: its \
             tablespace is not in the backup, and the restored server would open the \
             path the link names",
            e.name
        )),
        None => Ok(()),
    }
}

/// Refuses an unpacked backup (`staging`) that holds an `.isl` file or a symlink:
/// the restored server would reach outside its data directory.
pub fn check_restored(staging: &Path, backup: &str) -> anyhow::Result<()> {
    let found = scan(staging, &|_| true)?;
    let Some(first) = found.first() else {
        return Ok(());
    };
    let why = match first {
        External::InnodbLink {
            path,
            table,
            target,
        } => format!(
            "it holds {}, the link file of table {table} created with DATA DIRECTORY \
             (pointing to {target}): the restored server would open that path, not the \
             restored tablespace",
            path.display()
        ),
        External::Symlink { path, target } => format!(
            "it holds a symbolic link {} to {}",
            path.display(),
            target.display()
        ),
    };
    anyhow::bail!("backup {backup} refused: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn isl_entries_name_their_table() {
        for (rel, want) in [
            ("db2/r.isl", Some("db2.r")),
            ("db2/r#P#p0.isl", Some("db2.r#P#p0")),
            ("r.isl", None),
            ("db2/.isl", None),
            ("db2/r.ibd", None),
            ("db2/r.isl.bak", None),
        ] {
            assert_eq!(isl_entry(rel).as_deref(), want, "{rel}");
        }
    }

    #[test]
    fn a_manifest_listing_a_link_file_is_refused() {
        use crate::backup::manifest::{base, FileEntry, HASH_ALGORITHM_SHA256};
        let entry = |name: &str| FileEntry {
            base: base::DATA.into(),
            name: name.into(),
            stored_name: "0".into(),
            size: 1,
            stored_size: 1,
            hash: "00".repeat(32),
            hash_algorithm: HASH_ALGORITHM_SHA256.into(),
        };
        let t = chrono::Utc::now();
        let mut m = Manifest {
            backup_name: "b".into(),
            backup_method: BackupMethod::Builtin,
            position: "MariaDB/0-1-1".into(),
            purged_position: String::new(),
            backup_time: t,
            finished_time: t,
            server_uuid: String::new(),
            tablet_alias: "zone1-0000000001".into(),
            hostname: String::new(),
            keyspace: "ks".into(),
            shard: "0".into(),
            schedule: None,
            mysql_version: String::new(),
            upgrade_safe: false,
            compression_engine: crate::backup::manifest::CompressionEngine::None,
            file_entries: vec![entry("ibdata1"), entry("app/t.ibd")],
            total_size: 0,
            stored_size: 0,
            stream_mode: None,
            encryption: None,
            encryption_recipients: vec![],
            flavor: "MariaDB".into(),
            format_version: crate::backup::manifest::FORMAT_VERSION,
            incremental: Default::default(),
        };
        assert_eq!(check_entries(&m), Ok(()));
        m.file_entries.push(entry("db2/r.isl"));
        let e = check_entries(&m).unwrap_err();
        assert!(e.contains("db2/r.isl, the link file of table db2.r"), "{e}");
    }

    #[test]
    fn refusals_by_engine() {
        let link = External::Symlink {
            path: "/t/data/db1".into(),
            target: "/mnt/x".into(),
        };
        let isl = External::InnodbLink {
            path: "/t/data/db2/r.isl".into(),
            table: "db2.r".into(),
            target: "/mnt/y/db2/r.ibd".into(),
        };
        // (found, engine, refused, the reason contains)
        let cases = [
            (
                &link,
                BackupMethod::Builtin,
                true,
                "/t/data/db1 is a symbolic link to /mnt/x",
            ),
            (
                &link,
                BackupMethod::Builtin,
                true,
                "--backup-engine xtrabackup",
            ),
            (&link, BackupMethod::Xtrabackup, false, ""),
            (
                &isl,
                BackupMethod::Builtin,
                true,
                "table db2.r was created with DATA DIRECTORY",
            ),
            (&isl, BackupMethod::Xtrabackup, true, "/mnt/y/db2/r.ibd"),
        ];
        for (found, method, refused, text) in cases {
            let got = refusal(method, found);
            assert_eq!(got.is_some(), refused, "{found:?} {method}: {got:?}");
            let got = got.unwrap_or_default();
            assert!(got.contains(text), "{got}");
            assert!(!got.contains('\n'), "one line: {got}");
        }
    }

    #[test]
    fn the_scan_finds_links_and_isl_files_and_skips_excluded_ones() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        let elsewhere = d.path().join("elsewhere");
        fs::create_dir_all(data.join("app")).unwrap();
        fs::create_dir_all(data.join("db2")).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(data.join("app/t.ibd"), b"x").unwrap();
        fs::write(data.join("db2/r.isl"), b"/mnt/y/db2/r.ibd\n").unwrap();
        symlink(&elsewhere, data.join("db1")).unwrap();
        symlink(&elsewhere, data.join("mysql-bin.000001")).unwrap();
        symlink(elsewhere.join("t.MYD"), data.join("app/m.MYD")).unwrap();
        let skip_binlogs = |rel: &str| !rel.starts_with("mysql-bin.");
        let found = scan(&data, &skip_binlogs).unwrap();
        assert_eq!(
            found,
            vec![
                External::Symlink {
                    path: data.join("app/m.MYD"),
                    target: elsewhere.join("t.MYD")
                },
                External::Symlink {
                    path: data.join("db1"),
                    target: elsewhere.clone()
                },
                External::InnodbLink {
                    path: data.join("db2/r.isl"),
                    table: "db2.r".into(),
                    target: "/mnt/y/db2/r.ibd".into()
                },
            ]
        );
        let e = check_data_dir(BackupMethod::Builtin, &data, &skip_binlogs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("app/m.MYD is a symbolic link"), "{e}");
        assert!(e.contains("(and 2 more such entries)"), "{e}");
        let e = check_data_dir(BackupMethod::Xtrabackup, &data, &skip_binlogs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("db2/r.isl: table db2.r"), "{e}");
        fs::remove_file(data.join("db2/r.isl")).unwrap();
        check_data_dir(BackupMethod::Xtrabackup, &data, &skip_binlogs).unwrap();
        let e = check_restored(&data, "b").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }
}
