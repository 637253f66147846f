//! Restore drills, the part that is about backups: how much disk a drill of a
//! backup needs, what a drill to now plans from ([`to_now_chain_input`]), the
//! measured stages of a drill and its one-line summary, and how
//! its outcome reads in the backup's record (written by CAS through
//! [`record_drill`], keeping every other field). The agent runs
//! the drill itself (`tablet::drill`).
//!
//! May call: `cairn-topo`, the MANIFEST type, [`super::catalog`] (which backup
//! is the newest), the pitr planner's types and `mysql::gtid`. Pure but for
//! [`record_drill`], one CAS write in etcd.

use std::time::Duration;

use anyhow::Context;
use cairn_topo::{BackupRecord, DrillResult, Topo};
use chrono::{DateTime, Utc};

use super::manifest::{BackupMethod, Manifest};
use super::pitr::{ArchiveListing, RestoreTarget};
use crate::mysql::gtid::{merge_gtid_lists, parse_gtid_list, Gtid};

/// The backup a drill of a shard is for, from the shard's records: the one
/// `name`d (which must be catalogued, complete and full), or else the newest
/// complete full backup. `Err` says why none can be drilled. Pure.
pub fn choose_drill_backup<'r>(
    records: &'r [BackupRecord],
    name: Option<&str>,
) -> Result<&'r BackupRecord, String> {
    let Some(name) = name else {
        return super::catalog::latest_backup(records)
            .ok_or_else(|| "it has no complete full backup to drill".to_string());
    };
    let r = records
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| format!("backup {name} is not in its catalog (list-backups shows them)"))?;
    if r.incremental {
        return Err(format!(
            "backup {name} is incremental (binary logs): only a full backup can be drilled"
        ));
    }
    if !r.complete {
        return Err(format!(
            "backup {name} is not complete ({})",
            r.error.as_deref().unwrap_or("unreadable")
        ));
    }
    Ok(r)
}

/// Room a drill leaves free beyond what it needs: the tablet it runs beside
/// keeps writing (binlogs, relay logs), so a drill never takes the last of it.
pub const DRILL_RESERVE_BYTES: u64 = 256 * 1024 * 1024;

/// Bytes a drill of a backup of `method` whose files are `restored_bytes` as
/// restored (the sum of its MANIFEST's file sizes) takes in the scratch
/// directory: its files, a fifth more (an xtrabackup `--prepare` rewrites its
/// redo log and grows tablespaces: a tenth more again; a builtin restore is its
/// files' size, the fifth is margin), and the server's own files when it starts
/// (redo log, temporary tablespace: 128 MiB); a drill to now also holds
/// `binlog_bytes` of binlogs twice (downloaded, and written again by the
/// scratch server as it applies them). Pure.
pub fn drill_space_needed(method: BackupMethod, restored_bytes: u64, binlog_bytes: u64) -> u64 {
    let expansion = match method {
        BackupMethod::Builtin => restored_bytes / 5,
        BackupMethod::Xtrabackup => restored_bytes / 5 + restored_bytes / 10,
    };
    restored_bytes
        .saturating_add(expansion)
        .saturating_add(128 * 1024 * 1024)
        .saturating_add(binlog_bytes.saturating_mul(2))
}

/// The free bytes a drill needs on the tablet's file system before it starts:
/// [`drill_space_needed`] and [`DRILL_RESERVE_BYTES`] left to the serving
/// tablet. The one rule the agent's own check ([`check_drill_room`]) and the
/// placement of a drill (`coordinator::select`) both use. Pure.
pub fn drill_room_required(method: BackupMethod, restored_bytes: u64, binlog_bytes: u64) -> u64 {
    drill_space_needed(method, restored_bytes, binlog_bytes).saturating_add(DRILL_RESERVE_BYTES)
}

/// The free bytes a drill of the backup of record `r` needs, from the record
/// (its engine and restored size; no binlogs: a drill to now's chain is
/// planned by the agent, whose own check counts them). `None` for a record
/// written before `restored_bytes` existed. Pure.
pub fn drill_room_for(r: &BackupRecord) -> Option<u64> {
    r.restored_bytes
        .map(|bytes| drill_room_required(r.engine, bytes, 0))
}

/// Refuses a drill of `m` (and `binlog_bytes` of binlogs to apply) when `free`
/// bytes cannot hold it and still leave [`DRILL_RESERVE_BYTES`] to the serving
/// tablet ([`drill_room_required`]), saying what it needs. Pure.
pub fn check_drill_room(m: &Manifest, binlog_bytes: u64, free: u64) -> Result<(), String> {
    let want = drill_room_required(m.backup_method, m.total_size, binlog_bytes);
    if free >= want {
        return Ok(());
    }
    let need = drill_space_needed(m.backup_method, m.total_size, binlog_bytes);
    Err(format!(
        "not enough disk to drill backup {}: the restore and its server need {} ({} of files \
         and their expansion) and {} must stay free for the serving tablet, {} is free",
        m.backup_name,
        human_bytes(need),
        human_bytes(m.total_size),
        human_bytes(DRILL_RESERVE_BYTES),
        human_bytes(free)
    ))
}

/// What a drill to now plans from: the drilled full backup `full` and every
/// incremental among `manifests` (the other full backups left out, so the
/// planner starts from the drilled one), and the target: the newest archived
/// transaction per replication domain, the newest of the full backup's
/// position, each incremental's, each archived segment's last GTID and the
/// archive record's `archived_position` (what the archiving agent recorded as
/// stored, so a segment missing from storage is a gap, not a shorter chain).
/// `Err` when the full backup's position or the archive's is not a MariaDB
/// GTID list. Pure.
pub fn to_now_chain_input(
    full: &Manifest,
    manifests: &[Manifest],
    archive: &ArchiveListing,
    archived_position: &str,
) -> Result<(Vec<Manifest>, RestoreTarget), String> {
    let parse = |what: &str, p: &str| -> Result<Vec<Gtid>, String> {
        let raw = p.trim();
        let raw = raw.strip_prefix("MariaDB/").unwrap_or(raw);
        parse_gtid_list(raw).map_err(|e| format!("{what} {p:?} is not a GTID list: {e:#}"))
    };
    let full_pos = parse(
        &format!("the position of backup {}", full.backup_name),
        &full.position,
    )?;
    if full_pos.is_empty() {
        return Err(format!(
            "backup {} holds no GTID position: there is no chain to apply on it",
            full.backup_name
        ));
    }
    let mut lists = vec![
        full_pos,
        parse("the archive's position", archived_position)?,
    ];
    let incrementals: Vec<Manifest> = manifests
        .iter()
        .filter(|m| m.is_incremental() && m.check_restorable().is_ok())
        .cloned()
        .collect();
    // An incremental whose position does not parse is left to the planner
    // (which skips it); it names no newer transaction.
    lists.extend(
        incrementals
            .iter()
            .filter_map(|m| parse("", &m.position).ok()),
    );
    lists.push(
        archive
            .segments
            .iter()
            .filter_map(|s| s.last_gtid)
            .collect(),
    );
    let mut chain = vec![full.clone()];
    chain.extend(incrementals);
    Ok((chain, RestoreTarget::Position(merge_gtid_lists(&lists))))
}

/// `1.5 GiB`, `300.0 MiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// The stages of a drill, timed: download and restore (one pass: the engine
/// verifies and writes as it reads), start of the scratch server, for a drill
/// to now the binlogs' download, verification and apply, and the checks. A
/// stage not reached is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrillStages {
    pub restore: Option<Duration>,
    pub start: Option<Duration>,
    pub apply: Option<Duration>,
    pub check: Option<Duration>,
}

impl DrillStages {
    /// Adds `d` to the apply stage (its download and its apply are timed apart).
    pub fn add_apply(&mut self, d: Duration) {
        self.apply = Some(self.apply.unwrap_or_default() + d);
    }

    /// The measured recovery time: every stage reached, in seconds.
    pub fn total_seconds(&self) -> f64 {
        [self.restore, self.start, self.apply, self.check]
            .iter()
            .flatten()
            .map(Duration::as_secs_f64)
            .sum()
    }

    /// `restore 8.1s, start 2.0s, apply 1.2s, check 0.4s` (the stages reached).
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            ("restore", self.restore),
            ("start", self.start),
            ("apply", self.apply),
            ("check", self.check),
        ]
        .iter()
        .filter_map(|(name, d)| d.map(|d| format!("{name} {:.1}s", d.as_secs_f64())))
        .collect();
        if parts.is_empty() {
            "no stage reached".into()
        } else {
            parts.join(", ")
        }
    }
}

/// How a drill ended, as it goes into the backup's record.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillOutcome {
    /// `Ok(())`, or why it failed (one line).
    pub result: Result<(), String>,
    /// The measured recovery time (the stages reached).
    pub seconds: f64,
    /// When it ended.
    pub at: DateTime<Utc>,
}

/// `r` with the drill's outcome: on success `verified_at`, `drill_seconds`,
/// `drill_result: succeeded` and no `drill_error`; on failure `drill_result:
/// failed` with the error (one line) and the seconds it ran; `verified_at`
/// keeps the last success. Every other field is kept. Pure.
pub fn with_drill_outcome(r: &BackupRecord, o: &DrillOutcome) -> BackupRecord {
    let mut r = r.clone();
    r.drill_seconds = Some((o.seconds * 1000.0).round() / 1000.0);
    match &o.result {
        Ok(()) => {
            r.verified_at = Some(o.at);
            r.drill_result = Some(DrillResult::Succeeded);
            r.drill_error = None;
        }
        Err(e) => {
            r.drill_result = Some(DrillResult::Failed);
            r.drill_error = Some(one_line(e));
        }
    }
    r
}

/// The text on one line (newlines and runs of spaces folded), at most 500
/// characters.
pub fn one_line(s: &str) -> String {
    let folded = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() <= 500 {
        return folded;
    }
    let cut: String = folded.chars().take(497).collect();
    format!("{cut}...")
}

/// Writes the drill's outcome into the record of backup `name` of
/// `keyspace/shard` by compare-and-swap (a record changed meanwhile is read again
/// and the outcome applied to what is there now, so nothing else is lost). A
/// record that is gone (the backup was removed meanwhile) is an error.
pub async fn record_drill(
    topo: &Topo,
    keyspace: &str,
    shard: &str,
    name: &str,
    outcome: &DrillOutcome,
) -> anyhow::Result<()> {
    let key = topo.keys().backup(keyspace, shard, name);
    let mut found = false;
    topo.update_with::<BackupRecord, _>(&key, |cur| {
        let Some(r) = cur else {
            found = false;
            return Ok(None);
        };
        found = true;
        Ok(Some(with_drill_outcome(&r, outcome)))
    })
    .await
    .with_context(|| format!("writing the drill's outcome into the record of backup {name}"))?;
    if !found {
        anyhow::bail!(
            "backup {name} has no record in topo any more (removed during the drill?): \
             the drill's outcome was not recorded"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_topo::BackupRecordState;

    fn manifest(method: BackupMethod, total: u64) -> Manifest {
        let t = Utc::now();
        Manifest {
            backup_name: "b1".into(),
            backup_method: method,
            position: "MariaDB/0-1-1".into(),
            purged_position: String::new(),
            backup_time: t,
            finished_time: t,
            server_uuid: String::new(),
            tablet_alias: "zone1-0000000001".into(),
            schedule: None,
            hostname: String::new(),
            keyspace: "ks".into(),
            shard: "0".into(),
            mysql_version: "10.11.6".into(),
            upgrade_safe: false,
            compression_engine: super::super::manifest::CompressionEngine::Zstd,
            file_entries: vec![],
            total_size: total,
            stored_size: total / 2,
            stream_mode: None,
            encryption: None,
            encryption_recipients: vec![],
            flavor: "MariaDB".into(),
            format_version: super::super::manifest::FORMAT_VERSION,
            incremental: Default::default(),
        }
    }

    #[test]
    fn room_table() {
        const MIB: u64 = 1024 * 1024;
        const GIB: u64 = 1024 * MIB;
        // (engine, backup's files, free, refused)
        let cases = [
            (BackupMethod::Builtin, 10 * GIB, 100 * GIB, false),
            // 10 GiB + 2 GiB + 128 MiB + 256 MiB reserve = 12.375 GiB.
            (BackupMethod::Builtin, 10 * GIB, 12 * GIB + 384 * MIB, false),
            (BackupMethod::Builtin, 10 * GIB, 12 * GIB + 383 * MIB, true),
            (BackupMethod::Builtin, 10 * GIB, 10 * GIB, true),
            // xtrabackup expands more: 10 + 3 GiB + 384 MiB.
            (
                BackupMethod::Xtrabackup,
                10 * GIB,
                12 * GIB + 384 * MIB,
                true,
            ),
            (
                BackupMethod::Xtrabackup,
                10 * GIB,
                13 * GIB + 384 * MIB,
                false,
            ),
            (BackupMethod::Builtin, 0, 384 * MIB, false),
            (BackupMethod::Builtin, 0, 383 * MIB, true),
            (BackupMethod::Builtin, u64::MAX, u64::MAX - 1, true),
        ];
        for (method, total, free, refused) in cases {
            let r = check_drill_room(&manifest(method, total), 0, free);
            assert_eq!(r.is_err(), refused, "{method:?} {total} {free}: {r:?}");
        }
        // Binlogs to apply count twice: downloaded, and logged again.
        let m = manifest(BackupMethod::Builtin, 10 * GIB);
        assert!(check_drill_room(&m, GIB, 14 * GIB + 384 * MIB).is_ok());
        assert!(check_drill_room(&m, GIB, 14 * GIB + 383 * MIB).is_err());
        let e = check_drill_room(&manifest(BackupMethod::Builtin, 10 * GIB), 0, GIB).unwrap_err();
        assert_eq!(
            e,
            "not enough disk to drill backup b1: the restore and its server need 12.1 GiB \
             (10.0 GiB of files and their expansion) and 256.0 MiB must stay free for the \
             serving tablet, 1.0 GiB is free"
        );
    }

    #[test]
    fn placement_and_the_agent_share_one_rule() {
        const GIB: u64 = 1024 * 1024 * 1024;
        for method in [BackupMethod::Builtin, BackupMethod::Xtrabackup] {
            let m = manifest(method, 10 * GIB);
            let mut r = super::super::catalog::complete_record("ks", "0", &m, GIB);
            assert_eq!(r.restored_bytes, Some(10 * GIB), "the MANIFEST's files");
            let need = drill_room_for(&r).unwrap();
            assert!(check_drill_room(&m, 0, need).is_ok(), "{method:?}");
            assert!(check_drill_room(&m, 0, need - 1).is_err(), "{method:?}");
            r.restored_bytes = None;
            assert_eq!(drill_room_for(&r), None, "an older record: unknown");
        }
    }

    #[test]
    fn which_backup_is_drilled() {
        let rec = |name: &str, secs: i64, complete: bool, incremental: bool| BackupRecord {
            name: name.into(),
            backup_time: chrono::DateTime::from_timestamp(secs, 0).unwrap(),
            complete,
            incremental,
            ..record()
        };
        let records = vec![
            rec("full-1", 1, true, false),
            rec("full-2", 2, true, false),
            rec("incr-3", 3, true, true),
            rec("bad-4", 4, false, false),
        ];
        // (what, named, chosen or the start of the error)
        let cases = [
            ("newest complete full", None, Ok("full-2")),
            ("named", Some("full-1"), Ok("full-1")),
            (
                "unknown",
                Some("nope"),
                Err("backup nope is not in its catalog"),
            ),
            (
                "incremental",
                Some("incr-3"),
                Err("backup incr-3 is incremental"),
            ),
            (
                "unreadable",
                Some("bad-4"),
                Err("backup bad-4 is not complete"),
            ),
        ];
        for (what, named, want) in cases {
            let got = choose_drill_backup(&records, named).map(|r| r.name.as_str());
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{what}"),
                (Err(w), Err(g)) => assert!(g.starts_with(w), "{what}: {g}"),
                (w, g) => panic!("{what}: want {w:?}, got {g:?}"),
            }
        }
        assert_eq!(
            choose_drill_backup(&records[2..], None).unwrap_err(),
            "it has no complete full backup to drill"
        );
    }

    #[test]
    fn stages_sum_and_print_what_was_reached() {
        let mut s = DrillStages {
            restore: Some(Duration::from_millis(8100)),
            start: Some(Duration::from_millis(2000)),
            apply: None,
            check: None,
        };
        assert!((s.total_seconds() - 10.1).abs() < 1e-9);
        assert_eq!(s.summary(), "restore 8.1s, start 2.0s");
        s.add_apply(Duration::from_millis(700));
        s.add_apply(Duration::from_millis(500));
        s.check = Some(Duration::from_millis(400));
        assert!((s.total_seconds() - 11.7).abs() < 1e-9);
        assert_eq!(
            s.summary(),
            "restore 8.1s, start 2.0s, apply 1.2s, check 0.4s"
        );
        assert_eq!(DrillStages::default().summary(), "no stage reached");
        assert_eq!(DrillStages::default().total_seconds(), 0.0);
    }

    fn record() -> BackupRecord {
        let m = manifest(BackupMethod::Builtin, 100);
        let mut r = super::super::catalog::complete_record("ks", "0", &m, 50);
        r.schedule = Some("nightly".into());
        r
    }

    #[test]
    fn outcomes_keep_every_other_field() {
        let at = Utc::now();
        let ok = DrillOutcome {
            result: Ok(()),
            seconds: 12.34567,
            at,
        };
        let base = record();
        let mut failed_before = base.clone();
        failed_before.drill_result = Some(DrillResult::Failed);
        failed_before.drill_error = Some("old".into());
        let r = with_drill_outcome(&failed_before, &ok);
        assert_eq!(r.verified_at, Some(at));
        assert_eq!(r.drill_seconds, Some(12.346));
        assert_eq!(r.drill_result, Some(DrillResult::Succeeded));
        assert_eq!(r.drill_error, None);
        assert_eq!(
            BackupRecord {
                verified_at: None,
                drill_seconds: None,
                drill_result: None,
                drill_error: None,
                ..r.clone()
            },
            base
        );

        let bad = DrillOutcome {
            result: Err("restore: hash mismatch\n  in file x".into()),
            seconds: 1.0,
            at: at + chrono::Duration::seconds(5),
        };
        let r2 = with_drill_outcome(&r, &bad);
        assert_eq!(r2.verified_at, Some(at), "the last success is kept");
        assert_eq!(r2.drill_result, Some(DrillResult::Failed));
        assert_eq!(
            r2.drill_error.as_deref(),
            Some("restore: hash mismatch in file x")
        );
        assert_eq!(r2.state, BackupRecordState::Complete);
        assert_eq!(r2.schedule.as_deref(), Some("nightly"));
    }

    #[test]
    fn to_now_targets_the_newest_archived_transaction() {
        use crate::backup::binlog_archive::SegmentName;
        let g = |d, srv, seq| Gtid {
            domain: d,
            server: srv,
            seq,
        };
        let mut full = manifest(BackupMethod::Builtin, 1);
        full.position = "MariaDB/0-1-10,1-5-3".into();
        let mut other_full = manifest(BackupMethod::Builtin, 1);
        other_full.backup_name = "b0".into();
        other_full.position = "MariaDB/0-1-4".into();
        let mut inc = manifest(BackupMethod::Builtin, 1);
        inc.backup_name = "i1".into();
        inc.incremental.is_incremental = true;
        inc.incremental.from_position = "MariaDB/0-1-10".into();
        inc.position = "MariaDB/0-1-20".into();
        let seg = |last| SegmentName {
            number: 1,
            server_id: 1,
            file_index: 1,
            start: 4,
            end: 100,
            first_ts: None,
            last_ts: None,
            first_gtid: None,
            last_gtid: last,
            compression: crate::backup::manifest::CompressionEngine::Zstd,
            encrypted: false,
            moved_head: false,
        };
        let archive = |segs| ArchiveListing {
            segments: segs,
            safe_at: None,
        };
        let ms = vec![other_full.clone(), full.clone(), inc.clone()];
        // (what, segments, the record's position, target or the start of the error)
        type Case<'a> = (
            &'a str,
            Vec<SegmentName>,
            &'a str,
            Result<Vec<Gtid>, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "no archive: the newest incremental",
                vec![],
                "",
                Ok(vec![g(0, 1, 20), g(1, 5, 3)]),
            ),
            (
                "a segment beyond it",
                vec![seg(Some(g(0, 2, 25))), seg(None)],
                "",
                Ok(vec![g(0, 2, 25), g(1, 5, 3)]),
            ),
            (
                "the record ahead of the listing (a segment gone)",
                vec![seg(Some(g(0, 2, 25)))],
                "0-2-31",
                Ok(vec![g(0, 2, 31), g(1, 5, 3)]),
            ),
            (
                "a garbage record",
                vec![],
                "nope",
                Err("the archive's position \"nope\" is not a GTID list"),
            ),
        ];
        for (what, segs, recorded, want) in cases {
            let got = to_now_chain_input(&full, &ms, &archive(segs), recorded);
            match (want, got) {
                (Ok(w), Ok((chain, RestoreTarget::Position(t)))) => {
                    let mut t = t;
                    t.sort_by_key(|g| g.domain);
                    assert_eq!(t, w, "{what}");
                    let names: Vec<&str> = chain.iter().map(|m| m.backup_name.as_str()).collect();
                    assert_eq!(names, ["b1", "i1"], "{what}: only the drilled full backup");
                }
                (Err(w), Err(e)) => assert!(e.starts_with(w), "{what}: {e}"),
                (w, g) => panic!("{what}: want {w:?}, got {g:?}"),
            }
        }
        let mut empty = full.clone();
        empty.position = String::new();
        assert!(to_now_chain_input(&empty, &ms, &archive(vec![]), "")
            .unwrap_err()
            .contains("holds no GTID position"));
    }

    #[test]
    fn one_line_folds_and_caps() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        let long = "x".repeat(600);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), 500);
        assert!(cut.ends_with("..."));
    }
}
