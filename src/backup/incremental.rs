//! Incremental backups, as Vitess names them (`backup --incremental-from-pos`):
//! the binary logs of a running server from a position to now, stored through the
//! same pipeline as any backup (compression, encryption, hashes, MANIFEST last)
//! as a backup whose MANIFEST says `Incremental: true`. mysqld keeps serving: the
//! server only rotates its binary log (`FLUSH BINARY LOGS`), and the closed files
//! are read from disk.
//!
//! What is copied: whole binlog files, from the newest one whose `Gtid_list`
//! (the state before it) is contained in the requested position up to, not
//! including, the active one. `FromPosition` is that first file's `Gtid_list`
//! (at most what was asked); `Position` is the state at the end of the copied
//! files (the active file's `Gtid_list`, with the requested position, which
//! keeps the domains a restored server's binlogs no longer name); and
//! `PurgedPosition` is the `Gtid_list` of the oldest binlog the server still
//! has (MariaDB has no `gtid_purged`: everything before that file is gone).
//!
//! The decisions are pure ([`parse_from_pos`], [`resolve_from`],
//! [`choose_files`], [`describe`]) with table tests; [`read_server_binlogs`] and
//! [`backup`] are the thin IO around them. Nothing new since the position is an
//! "empty" outcome, not an error, and stores nothing; a position whose binlogs
//! were purged, or that this server never reached, is an error naming the GTIDs.
//!
//! May call: [`super::storage`], [`super::pipeline`], [`super::manifest`],
//! [`super::params`], [`crate::mysql`] (GTIDs, binlog files and their reader).

use std::fs::File;
use std::io::BufReader;

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};

use super::manifest::{
    base, BackupMethod, Incremental, IncrementalDetails, Manifest, FORMAT_VERSION_INCREMENTAL,
};
use super::params::BackupParams;
use super::pipeline::{self, SourceFile};
use super::storage::{BackupInfo, BackupStorage};
use crate::mysql::binlog::{self, BinlogSummary};
use crate::mysql::binlog_files::BinlogFile;
use crate::mysql::gtid::{
    format_gtid_list, merge_gtid_lists, parse_gtid_list, position_contains, seq_of, Gtid,
};
use crate::mysql::mysqld::Mysqld;

/// The only position flavor incremental backups take.
const MARIADB: &str = "MariaDB/";

/// Where an incremental backup starts, as `--incremental-from-pos` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromPos {
    /// The `Position` of the shard's newest complete backup (full or incremental).
    Auto,
    /// A MariaDB GTID position.
    Position(Vec<Gtid>),
    /// The `Position` of this backup of the shard.
    Backup(String),
}

impl std::fmt::Display for FromPos {
    /// The canonical spelling, which [`parse_from_pos`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FromPos::Auto => f.write_str("auto"),
            FromPos::Position(p) => write!(f, "{MARIADB}{}", format_gtid_list(p)),
            FromPos::Backup(name) => f.write_str(name),
        }
    }
}

/// Parses `auto`, `MariaDB/<gtid-list>` or a backup name. Pure.
pub fn parse_from_pos(s: &str) -> Result<FromPos, String> {
    if s == "auto" {
        return Ok(FromPos::Auto);
    }
    if let Some(raw) = s.strip_prefix(MARIADB) {
        return parse_gtid_list(raw)
            .map(FromPos::Position)
            .map_err(|e| format!("invalid position {s:?}: {e:#}"));
    }
    if let Some((flavor, _)) = s.split_once('/') {
        return Err(format!(
            "invalid position {s:?}: flavor {flavor:?} is not supported; incremental backups take MariaDB/<gtid-list>"
        ));
    }
    if !s.trim().is_empty() && parse_gtid_list(s).is_ok() {
        return Err(format!(
            "{s:?} looks like a GTID list: write the position as {MARIADB}{s}"
        ));
    }
    cairn_topo::names::validate_backup_name(s)
        .map_err(|e| format!("{e}: want auto, {MARIADB}<gtid-list> or a backup name"))?;
    Ok(FromPos::Backup(s.to_string()))
}

/// The GTIDs of a MANIFEST's `Position` (`MariaDB/<gtids>`). Pure.
pub fn parse_position(pos: &str) -> Result<Vec<Gtid>, String> {
    let raw = pos
        .strip_prefix(MARIADB)
        .ok_or_else(|| format!("position {pos:?} is not a MariaDB position"))?;
    parse_gtid_list(raw).map_err(|e| format!("position {pos:?}: {e:#}"))
}

/// `MariaDB/<gtids>`.
pub fn format_position(gtids: &[Gtid]) -> String {
    format!("{MARIADB}{}", format_gtid_list(gtids))
}

/// The position `from` stands for, with the backup it came from (for `auto` and
/// a backup name), given the shard's backups in storage. Pure.
pub fn resolve_from(
    from: &FromPos,
    backups: &[BackupInfo],
) -> Result<(Vec<Gtid>, Option<String>), String> {
    let m = match from {
        FromPos::Position(p) => return Ok((p.clone(), None)),
        FromPos::Auto => backups
            .iter()
            .filter_map(BackupInfo::restorable_manifest)
            .max_by(|a, b| (a.backup_time, &a.backup_name).cmp(&(b.backup_time, &b.backup_name)))
            .ok_or("the shard has no complete backup to start from: take a full backup first")?,
        FromPos::Backup(name) => {
            let b = backups
                .iter()
                .find(|b| &b.name == name)
                .ok_or_else(|| format!("backup {name} is not in this shard's storage"))?;
            b.restorable_manifest().ok_or_else(|| {
                format!(
                    "backup {name} is {}: it cannot be a starting point",
                    b.state.as_str()
                )
            })?
        }
    };
    let pos = parse_position(&m.position).map_err(|e| format!("backup {}: {e}", m.backup_name))?;
    Ok((pos, Some(m.backup_name.clone())))
}

/// A binlog file and the state before it (its `Gtid_list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogHead {
    /// Its name (`mysql-bin.000003`).
    pub name: String,
    /// Its `Gtid_list`.
    pub gtid_list: Vec<Gtid>,
}

/// What to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing after the position: store nothing.
    Empty,
    /// The files from this index up to, not including, the last (active) one.
    Copy {
        /// Index of the first file to copy.
        first: usize,
    },
}

/// Per domain, the sequence numbers `have` lacks up to `want`: `(domain, from, to)`.
fn missing_ranges(have: &[Gtid], want: &[Gtid]) -> Vec<(u32, u64, u64)> {
    merge_gtid_lists(&[want.to_vec()])
        .iter()
        .filter(|w| seq_of(have, w.domain) < w.seq)
        .map(|w| (w.domain, seq_of(have, w.domain) + 1, w.seq))
        .collect()
}

fn format_ranges(ranges: &[(u32, u64, u64)]) -> String {
    ranges
        .iter()
        .map(|(d, a, b)| {
            if a == b {
                format!("domain {d} sequence {a}")
            } else {
                format!("domain {d} sequences {a} to {b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which files hold the transactions after `requested`, given the server's
/// binlogs oldest first (the last is the active one, opened by the flush) and
/// its executed position. Errors: a position this server never reached, or one
/// whose binlogs were purged (naming the GTIDs gone). Pure.
pub fn choose_files(
    requested: &[Gtid],
    executed: &[Gtid],
    heads: &[BinlogHead],
) -> Result<Plan, String> {
    let Some(active) = heads.len().checked_sub(1) else {
        return Err("the server lists no binary log".into());
    };
    if !position_contains(executed, requested) {
        return Err(format!(
            "position {} is not in this server's history (it has executed {}; missing {}): \
             a position of another shard, or one this tablet has not replicated yet",
            format_position(requested),
            format_position(executed),
            format_ranges(&missing_ranges(executed, requested))
        ));
    }
    if position_contains(requested, &heads[active].gtid_list) {
        return Ok(Plan::Empty);
    }
    match (0..active)
        .rev()
        .find(|&i| position_contains(requested, &heads[i].gtid_list))
    {
        Some(first) => Ok(Plan::Copy { first }),
        None => {
            let oldest = &heads[0];
            Err(format!(
                "the binary logs after {} were purged from this server: its oldest, {}, begins \
                 at {}, so {} are gone; take a full backup, then incrementals from it",
                format_position(requested),
                oldest.name,
                format_position(&oldest.gtid_list),
                format_ranges(&missing_ranges(requested, &oldest.gtid_list))
            ))
        }
    }
}

/// The positions and details of an incremental backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The files hold every transaction after this.
    pub from_position: Vec<Gtid>,
    /// The state at the end of the files.
    pub position: Vec<Gtid>,
    /// The state before the oldest binlog the server has.
    pub purged: Vec<Gtid>,
    /// First and last transaction times and their files.
    pub details: IncrementalDetails,
}

fn utc(secs: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(i64::from(secs), 0)
        .single()
        .unwrap_or_default()
}

/// Describes the copy [`choose_files`] chose: `heads` are all the server's
/// binlogs, `copied` the summaries of the files `first..` up to the active one,
/// in order. Refuses files that are not closed, and a gap: a domain the first
/// file's `Gtid_list` does not name (binlogs reset, as on a restored replica)
/// whose first transaction in the files does not follow `requested`. Pure.
pub fn describe(
    requested: &[Gtid],
    heads: &[BinlogHead],
    first: usize,
    copied: &[(String, BinlogSummary)],
) -> Result<Described, String> {
    let active = heads.len().saturating_sub(1);
    if first >= active || copied.len() != active - first {
        return Err(format!(
            "internal: {} summaries for files {first}..{active}",
            copied.len()
        ));
    }
    for (name, s) in copied {
        if !s.closed {
            return Err(format!(
                "binary log {name} is not closed (no Rotate or Stop event at its end): refusing to store a partial file"
            ));
        }
    }
    let base = &heads[first].gtid_list;
    let named = |d: u32| base.iter().any(|g| g.domain == d);
    let mut first_of_domain: Vec<Gtid> = Vec::new();
    for t in copied.iter().flat_map(|(_, s)| &s.transactions) {
        if !named(t.gtid.domain) && !first_of_domain.iter().any(|g| g.domain == t.gtid.domain) {
            first_of_domain.push(t.gtid);
        }
    }
    let gaps: Vec<(u32, u64, u64)> = first_of_domain
        .iter()
        .filter(|g| g.seq > seq_of(requested, g.domain) + 1)
        .map(|g| (g.domain, seq_of(requested, g.domain) + 1, g.seq - 1))
        .collect();
    if !gaps.is_empty() {
        return Err(format!(
            "this server's binary logs do not hold {} (they begin after them: the server was \
             restored from a backup or its binary logs were reset); take a full backup, then \
             incrementals from it",
            format_ranges(&gaps)
        ));
    }
    // What must already be applied before these files: the first file's state,
    // and for a domain it does not name, everything before its first transaction.
    let before: Vec<Gtid> = first_of_domain
        .iter()
        .filter(|g| g.seq > 1)
        .map(|g| Gtid {
            seq: g.seq - 1,
            ..*g
        })
        .collect();
    let from_position = merge_gtid_lists(&[base.clone(), before]);
    let txns: Vec<Gtid> = copied
        .iter()
        .flat_map(|(_, s)| s.transactions.iter().map(|t| t.gtid))
        .collect();
    let position = merge_gtid_lists(&[
        requested.to_vec(),
        from_position.clone(),
        txns,
        heads[active].gtid_list.clone(),
    ]);
    let first_txn = copied
        .iter()
        .find_map(|(name, s)| s.first_timestamp().map(|t| (name, t)));
    let last_txn = copied
        .iter()
        .rev()
        .find_map(|(name, s)| s.last_timestamp().map(|t| (name, t)));
    let (Some((first_name, first_at)), Some((last_name, last_at))) = (first_txn, last_txn) else {
        return Err("the binary logs to copy hold no transaction".into());
    };
    Ok(Described {
        from_position,
        position,
        purged: heads[0].gtid_list.clone(),
        details: IncrementalDetails {
            first_timestamp: utc(first_at),
            first_timestamp_binlog: first_name.clone(),
            last_timestamp: utc(last_at),
            last_timestamp_binlog: last_name.clone(),
        },
    })
}

/// A server's binary logs right after a rotation.
#[derive(Debug, Clone)]
pub struct ServerBinlogs {
    /// Its binlogs, oldest first; the last is the active one.
    pub files: Vec<BinlogFile>,
    /// Its executed position, read after the rotation.
    pub executed: Vec<Gtid>,
    /// `VERSION()`.
    pub version: String,
    /// Its flavor's name.
    pub flavor: String,
}

/// Rotates the server's binary log and reads what an incremental backup needs.
/// Holds the server only for these few statements.
pub async fn read_server_binlogs(mysqld: &Mysqld) -> anyhow::Result<ServerBinlogs> {
    mysqld
        .flush_binary_logs()
        .await
        .context("rotating the binary log (FLUSH BINARY LOGS)")?;
    let files = mysqld
        .binary_logs()
        .await
        .context("listing the binary logs")?;
    let executed = parse_gtid_list(
        &mysqld
            .gtid_position()
            .await
            .context("reading the GTID position")?,
    )?;
    Ok(ServerBinlogs {
        files,
        executed,
        version: mysqld.version().await.unwrap_or_default(),
        flavor: mysqld.flavor().name().to_string(),
    })
}

/// What an incremental backup did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Stored, with this MANIFEST.
    Stored(Box<Manifest>),
    /// Nothing new after the position: nothing stored; says so.
    Empty(String),
}

fn read_head(f: &BinlogFile) -> anyhow::Result<BinlogHead> {
    let file = File::open(&f.path).with_context(|| format!("opening {}", f.path.display()))?;
    let list = binlog::read_gtid_list(BufReader::new(file))
        .with_context(|| format!("reading {}", f.path.display()))?
        .with_context(|| format!("binary log {} has no Gtid_list event", f.name))?;
    Ok(BinlogHead {
        name: f.name.clone(),
        gtid_list: list,
    })
}

fn read_summary(f: &BinlogFile) -> anyhow::Result<(String, BinlogSummary)> {
    let file = File::open(&f.path).with_context(|| format!("opening {}", f.path.display()))?;
    let s = binlog::summarize(BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("reading {}", f.path.display()))?;
    Ok((f.name.clone(), s))
}

/// Takes the incremental backup `p` names from `from` on the server whose
/// binlogs are `server`. On error nothing complete is left in storage.
pub async fn backup(
    server: ServerBinlogs,
    storage: &dyn BackupStorage,
    p: &BackupParams,
    from: &FromPos,
) -> anyhow::Result<Outcome> {
    let listed = match from {
        FromPos::Position(_) => Vec::new(),
        _ => storage
            .list_backups(&p.keyspace, &p.shard)
            .await
            .with_context(|| format!("listing the backups of {}/{}", p.keyspace, p.shard))?,
    };
    let (requested, from_backup) = resolve_from(from, &listed).map_err(anyhow::Error::msg)?;
    let files = server.files.clone();
    let heads = tokio::task::spawn_blocking(move || {
        files
            .iter()
            .map(read_head)
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    .context("reading the binary logs' heads")??;
    let first =
        match choose_files(&requested, &server.executed, &heads).map_err(anyhow::Error::msg)? {
            Plan::Empty => {
                return Ok(Outcome::Empty(format!(
            "nothing to back up: no transaction after {}{} in the binary logs; no backup stored",
            format_position(&requested),
            from_backup
                .as_deref()
                .map(|b| format!(" (the position of {b})"))
                .unwrap_or_default()
        )))
            }
            Plan::Copy { first } => first,
        };
    let to_copy: Vec<BinlogFile> = server.files[first..server.files.len() - 1].to_vec();
    let read = to_copy.clone();
    let copied = tokio::task::spawn_blocking(move || {
        read.iter()
            .map(read_summary)
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    .context("reading the binary logs")??;
    let d = describe(&requested, &heads, first, &copied).map_err(anyhow::Error::msg)?;
    let sources: Vec<SourceFile> = to_copy
        .iter()
        .zip(&copied)
        .map(|(f, (_, s))| SourceFile {
            path: f.path.clone(),
            name: f.name.clone(),
            base: base::BINLOG.to_string(),
            size: s.read_len,
        })
        .collect();
    tracing::info!(files = sources.len(), from = %format_position(&d.from_position),
        to = %format_position(&d.position), name = %p.name, "storing binary logs");
    let writer = storage
        .start_backup(&p.keyspace, &p.shard, &p.name)
        .await
        .with_context(|| format!("starting backup {} in storage", p.name))?;
    let entries = match pipeline::backup_files(
        writer.as_ref(),
        sources,
        &p.copy,
        p.progress.clone(),
        p.cancel.clone(),
    )
    .await
    {
        Ok(e) => e,
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "could not remove the partial backup; it stays incomplete (no MANIFEST)");
            }
            return Err(e.context(format!("copying binary logs into backup {}", p.name)));
        }
    };
    // A closed binlog never changes; one that did (size differs) is refused.
    for (e, (name, s)) in entries.iter().zip(&copied) {
        if e.size != s.read_len {
            let _ = writer.abort().await;
            anyhow::bail!(
                "binary log {name} changed while it was copied ({} bytes read, {} stored)",
                s.read_len,
                e.size
            );
        }
    }
    let mut m = p.manifest(
        BackupMethod::Builtin,
        format_position(&d.position),
        server.version,
        &server.flavor,
        entries,
    );
    m.purged_position = format_position(&d.purged);
    m.incremental = Incremental {
        is_incremental: true,
        from_position: format_position(&d.from_position),
        from_backup: from_backup.unwrap_or_default(),
        details: Some(d.details),
    };
    m.format_version = m.format_version.max(FORMAT_VERSION_INCREMENTAL);
    if let Err(e) = writer.write_manifest(&m).await {
        let _ = writer.abort().await;
        return Err(anyhow::Error::new(e).context(format!("writing the MANIFEST of {}", p.name)));
    }
    Ok(Outcome::Stored(Box::new(m)))
}

#[cfg(test)]
mod tests;
