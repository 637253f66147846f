//! Phase 5, seed notification: agents waiting for a backup to restore, a seed
//! backup (complete, with a wrong hash so the restore fails at once) for each,
//! and the latency from its record's put to the agent's log line.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cairn::backup::manifest::{
    backup_name, base, BackupMethod, CompressionEngine, FileEntry, Manifest, FORMAT_VERSION,
    HASH_ALGORITHM_SHA256,
};
use cairn::backup::storage::{BackupStorage, FileStorage};
use cairn::testkit::{Cluster, TabletProcess, Wait, WaitError};
use cairn_topo::{BackupRecord, Topo};
use chrono::{Timelike, Utc};

use super::probe::log_line;
use super::topology::alias;
use super::WAIT;
use crate::common::ms_between;

/// Writes a complete backup of `shard` whose one file has a wrong hash (the
/// agent finds it, starts its restore and fails at the hash check, without ever
/// starting mysqld); returns its topo record.
async fn write_seed_backup(
    storage: &FileStorage,
    ks: &str,
    shard: &str,
) -> anyhow::Result<BackupRecord> {
    let now = Utc::now();
    let time = now.with_nanosecond(0).unwrap_or(now);
    let from = alias(999_999);
    let name = backup_name(time, &from);
    let w = storage.start_backup(ks, shard, &name).await?;
    let data = b"not a real data file\n";
    let mut sink = w.create_file("0").await?;
    sink.write_all(data)?;
    let stored = sink.finish()?;
    let mut m = Manifest {
        backup_name: name.clone(),
        backup_method: BackupMethod::Builtin,
        position: "MariaDB/0-1-1".into(),
        purged_position: String::new(),
        backup_time: time,
        finished_time: time,
        server_uuid: String::new(),
        tablet_alias: from.to_string(),
        hostname: "bench".into(),
        keyspace: ks.into(),
        shard: shard.into(),
        schedule: None,
        mysql_version: String::new(),
        upgrade_safe: false,
        compression_engine: CompressionEngine::None,
        file_entries: vec![],
        total_size: 0,
        stored_size: 0,
        stream_mode: None,
        encryption: None,
        encryption_recipients: vec![],
        flavor: "MariaDB".into(),
        format_version: FORMAT_VERSION,
        incremental: Default::default(),
    };
    m.set_file_entries(vec![FileEntry {
        base: base::DATA.into(),
        name: "bench/bogus.ibd".into(),
        stored_name: "0".into(),
        size: data.len() as u64,
        stored_size: stored,
        hash: "0".repeat(64),
        hash_algorithm: HASH_ALGORITHM_SHA256.into(),
    }]);
    w.write_manifest(&m).await?;
    Ok(BackupRecord {
        name,
        keyspace: ks.into(),
        shard: shard.into(),
        tablet_alias: from.to_string(),
        engine: cairn_topo::BackupMethod::Builtin,
        backup_time: time,
        finished_time: Some(time),
        position: m.position.clone(),
        size_bytes: stored,
        complete: true,
        schedule: None,
        state: cairn_topo::BackupRecordState::Complete,
        error: None,
        incremental: false,
        from_position: None,
        first_timestamp: None,
        last_timestamp: None,
        verified_at: None,
        drill_seconds: None,
        drill_result: None,
        drill_error: None,
        restored_bytes: None,
    })
}

/// One round: `n` fresh agents waiting in shards of their own, a seed for each,
/// one after another; returns the latencies in ms.
pub async fn seed_round(
    c: &Cluster,
    topo: &Topo,
    round: usize,
    n: usize,
) -> anyhow::Result<Vec<f64>> {
    let ks = "seed";
    let mut agents: Vec<TabletProcess> = Vec::new();
    for i in 0..n {
        let uid = 5000 + (round * n + i) as u32;
        let mut spec = c.tablet(uid, ks, &format!("r{round}a{i}"))?;
        spec.extra = vec![
            "--restore-from-backup".into(),
            "--wait-for-backup-interval".into(),
            "1h".into(),
        ];
        agents.push(c.spawn_tablet(&spec)?);
    }
    for a in agents.iter_mut() {
        let what = format!("agent {} to start waiting", a.spec.alias());
        let waited = Wait::new(what, WAIT)
            .every(Duration::from_millis(20))
            .fail_fast()
            .until(|| {
                let waiting = a.log().contains("waiting for a backup to restore");
                let exited = match a.try_exit() {
                    Some(st) if !waiting => Some(anyhow!(
                        "agent {} exited ({st}):\n{}",
                        a.spec.alias(),
                        a.log_tail(20)
                    )),
                    _ => None,
                };
                async move {
                    match exited {
                        Some(e) => Err(e),
                        None => Ok(waiting.then_some(())),
                    }
                }
            })
            .await;
        match waited {
            Err(e) if e.is::<WaitError>() => bail!("{e}:\n{}", a.log_tail(20)),
            other => other?,
        }
    }
    let storage = FileStorage::new(c.backup_root());
    let mut put_at = Vec::new();
    for a in &agents {
        let rec = write_seed_backup(&storage, ks, &a.spec.shard).await?;
        let key = topo.keys().backup(ks, &a.spec.shard, &rec.name);
        let t = Utc::now();
        topo.put(&key, &rec, None).await?;
        put_at.push(t);
        // One seed at a time: each notification is measured on its own.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    for (a, t) in agents.iter().zip(put_at) {
        let seen = Wait::new("the seed log line", Duration::from_secs(10))
            .every(Duration::from_millis(20))
            .until(|| async {
                Ok(log_line(&a.log(), "seed backup found; restoring").map(|(ts, _)| ts))
            })
            .await
            .with_context(|| format!("agent {}:\n{}", a.spec.alias(), a.log_tail(20)))?;
        out.push(ms_between(t, seen));
    }
    drop(agents);
    Ok(out)
}
