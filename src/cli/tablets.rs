//! `get-tablets`, `get-shard`, `init-shard-primary`.

use std::time::Instant;

use anyhow::{bail, Context};
use cairn_topo::typed::TabletInfo;
use cairn_topo::{JobKind, JobState, TabletType, Topo};
use chrono::Utc;
use serde::Serialize;

use super::args::{GetShardArgs, GetTabletsArgs, InitShardPrimaryArgs};
use super::output::{opt, print_rows};

/// One row of `get-tablets --json` (contract fields first).
#[derive(Debug, Serialize)]
pub struct TabletRow {
    pub alias: String,
    pub keyspace: String,
    pub shard: String,
    #[serde(rename = "type")]
    pub tablet_type: TabletType,
    pub hostname: String,
    pub mysql_port: u16,
    pub port: u16,
    pub healthy: bool,
    pub replication_lag_seconds: Option<u64>,
    pub mysqld_up: bool,
    pub replicating: bool,
    pub gtid_position: Option<String>,
    pub last_error: Option<String>,
    /// The error that stopped replication, while the replica has not yet run
    /// cleanly for long enough since (the tablet is then not healthy).
    pub replication_error: Option<cairn_topo::ReplicationError>,
    /// Since when replication has run without interruption.
    pub replication_clean_since: Option<chrono::DateTime<Utc>>,
}

impl From<&TabletInfo> for TabletRow {
    fn from(t: &TabletInfo) -> Self {
        let v = &t.tablet.value;
        let h = t.health.as_ref();
        TabletRow {
            alias: v.alias.to_string(),
            keyspace: v.keyspace.clone(),
            shard: v.shard.clone(),
            tablet_type: v.tablet_type,
            hostname: v.hostname.clone(),
            mysql_port: v.mysql_port,
            port: v.port,
            healthy: t.healthy(),
            replication_lag_seconds: h.and_then(|h| h.replication_lag_seconds),
            mysqld_up: h.is_some_and(|h| h.mysqld_up),
            replicating: h.is_some_and(|h| h.replicating()),
            gtid_position: h.and_then(|h| h.gtid_position.clone()),
            last_error: h.and_then(|h| h.last_error.clone()),
            replication_error: h.and_then(|h| h.replication_error.clone()),
            replication_clean_since: h.and_then(|h| h.replication_clean_since),
        }
    }
}

pub async fn get_tablets(topo: &Topo, a: GetTabletsArgs) -> anyhow::Result<()> {
    let tablets = topo
        .list_tablets(a.keyspace.as_deref(), a.shard.as_deref())
        .await
        .context("listing tablets")?;
    let rows: Vec<TabletRow> = tablets.iter().map(TabletRow::from).collect();
    print_rows(
        a.json,
        &[
            "ALIAS",
            "KEYSPACE",
            "SHARD",
            "TYPE",
            "HOST",
            "MYSQL",
            "HEALTHY",
            "LAG",
            "POSITION",
            "REPLICATION ERROR",
        ],
        &rows,
        |r| {
            vec![
                r.alias.clone(),
                r.keyspace.clone(),
                r.shard.clone(),
                r.tablet_type.to_string(),
                r.hostname.clone(),
                r.mysql_port.to_string(),
                if r.healthy { "yes" } else { "no" }.to_string(),
                opt(&r.replication_lag_seconds),
                opt(&r.gtid_position),
                r.replication_error
                    .as_ref()
                    .map_or_else(|| "-".into(), |e| one_line(&e.to_string(), 80)),
            ]
        },
    )
}

/// `s` on one line of at most `max` characters (an ellipsis marks a cut).
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

pub async fn get_shard(topo: &Topo, a: GetShardArgs) -> anyhow::Result<()> {
    let ks = &a.keyspace_shard;
    let shard = topo
        .get_shard(&ks.keyspace, &ks.shard)
        .await
        .with_context(|| format!("reading shard {ks}"))?
        .with_context(|| format!("shard {ks} does not exist"))?;
    let archive = topo
        .get::<cairn_topo::ArchiveRecord>(&topo.keys().archive(&ks.keyspace, &ks.shard))
        .await
        .with_context(|| format!("reading the archive of {ks}"))?;
    // A backup record that does not parse leaves the window unknown, never
    // the rest of the shard unshown.
    let records: Vec<cairn_topo::BackupRecord> = match topo
        .list_backup_records(&ks.keyspace, &ks.shard)
        .await
    {
        Ok(v) => v.into_iter().map(|v| v.value).collect(),
        Err(e) => {
            eprintln!("warning: cannot read the backup records of {ks}: {e}; the recoverable window is not shown");
            Vec::new()
        }
    };
    let (from, to, gaps) = recoverable_window(&records, archive.as_ref().map(|r| &r.value));
    let archive = match archive {
        Some(r) => {
            let pos = super::archive::primary_position(topo, &ks.keyspace, &ks.shard).await;
            Some(super::archive::archive_row(&r.value, pos.as_deref()))
        }
        None => None,
    };
    if a.json {
        let mut v = serde_json::to_value(&shard.value)?;
        if let Some(obj) = v.as_object_mut() {
            let loss = archive.as_ref().and_then(|r| r.loss_window_seconds);
            obj.insert("loss_window_seconds".into(), serde_json::json!(loss));
            obj.insert("archive".into(), serde_json::to_value(&archive)?);
            obj.insert("recoverable_from".into(), serde_json::json!(from));
            obj.insert("recoverable_to".into(), serde_json::json!(to));
            let secs = from.zip(to).map(|(a, b)| (b - a).num_seconds().max(0));
            obj.insert("recoverable_window_seconds".into(), serde_json::json!(secs));
            let gap = gaps.first().map(|g| {
                serde_json::json!({"missing_gtids": g.missing_gtids, "detail": g.detail,
                                   "gaps": gaps})
            });
            obj.insert("archive_gap".into(), serde_json::json!(gap));
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let s = &shard.value;
        println!("shard:          {ks}");
        println!("primary:        {}", opt(&s.primary_alias));
        println!(
            "primary since:  {}",
            opt(&s.primary_term_start_time.map(|t| t.to_rfc3339()))
        );
        println!("latest backup:  {}", opt(&s.latest_backup));
        let (window, loss) = match &archive {
            None => ("not archived".to_string(), "-".to_string()),
            Some(r) => (
                format!("{} .. {}", opt(&r.first_timestamp), opt(&r.last_timestamp)),
                opt(&r.loss_window_seconds.map(|s| format!("{s:.1}s"))),
            ),
        };
        println!("archived:       {window}");
        println!("loss window:    {loss}");
        println!(
            "recoverable:    {} .. {}",
            opt(&from.map(|t| t.to_rfc3339())),
            opt(&to.map(|t| t.to_rfc3339()))
        );
        match gaps.as_slice() {
            [] => println!("archive gap:    none"),
            [g, rest @ ..] => {
                let more = if rest.is_empty() {
                    String::new()
                } else {
                    format!(" (and {} more)", rest.len())
                };
                println!("archive gap:    {}{more}", g.detail);
            }
        }
    }
    Ok(())
}

/// The window a point-in-time restore of the shard reaches, from its backup
/// records and archive record: from the oldest complete full backup to the
/// newest archived transaction (or backup), and the gaps the coordinator
/// recorded on the archive.
fn recoverable_window(
    records: &[cairn_topo::BackupRecord],
    archive: Option<&cairn_topo::ArchiveRecord>,
) -> (
    Option<chrono::DateTime<Utc>>,
    Option<chrono::DateTime<Utc>>,
    Vec<cairn_topo::ArchiveGap>,
) {
    let refs: Vec<&cairn_topo::BackupRecord> = records.iter().collect();
    let r = crate::coordinator::recoverable::recoverability(&refs, &[], &[]);
    let archived_to = archive.and_then(|a| a.state.last_timestamp);
    let to = r
        .recoverable_to
        .max(archived_to)
        .filter(|_| r.recoverable_from.is_some());
    let gaps = archive.map(|a| a.gaps.clone()).unwrap_or_default();
    (r.recoverable_from, to, gaps)
}

/// Whether a job of this kind and state keeps its tablet from becoming primary: any
/// running job, and a restore still pending (it would restore over the primary);
/// never an ARCHIVE job.
pub fn job_blocks_promotion(kind: JobKind, state: JobState) -> bool {
    if kind == JobKind::Archive {
        // Archiving streams from the primary, whoever it is: it never blocks.
        return false;
    }
    match state {
        JobState::Running => true,
        JobState::Pending => kind == JobKind::Restore,
        _ => false,
    }
}

pub async fn init_shard_primary(topo: &Topo, a: InitShardPrimaryArgs) -> anyhow::Result<()> {
    let ks = &a.keyspace_shard;
    let alias = &a.alias;
    let info = topo
        .get_tablet_info(alias)
        .await
        .with_context(|| format!("reading tablet {alias}"))?
        .with_context(|| format!("tablet {alias} is not registered"))?;
    let t = &info.tablet.value;
    if t.keyspace != ks.keyspace || t.shard != ks.shard {
        bail!(
            "tablet {alias} belongs to {}/{}, not {ks}",
            t.keyspace,
            t.shard
        );
    }
    match &info.health {
        None => bail!("tablet {alias} is not healthy: no Health record (is its agent running?)"),
        Some(h) if !h.mysqld_up => bail!("tablet {alias} is not healthy: its mysqld is down"),
        Some(_) => {}
    }
    if matches!(t.tablet_type, TabletType::Backup | TabletType::Restore) {
        bail!(
            "tablet {alias} is busy ({}); try again when it is done",
            t.tablet_type
        );
    }
    if let Some(job) = info.health.as_ref().and_then(|h| h.busy_job.as_ref()) {
        bail!("tablet {alias} is busy with job {job}; try again when it is done");
    }
    let jobs = topo.list_jobs().await.context("listing jobs")?;
    if let Some(j) = jobs
        .iter()
        .map(|j| &j.value)
        .find(|j| &j.tablet_alias == alias && job_blocks_promotion(j.kind, j.state))
    {
        bail!(
            "tablet {alias} has a {:?} job in progress ({}, {:?}); a tablet being restored cannot become primary: try again when it is done",
            j.kind,
            j.id,
            j.state
        );
    }
    let started = Instant::now();
    let key = topo.keys().shard(&ks.keyspace, &ks.shard);
    let target = alias.clone();
    topo.update_with::<cairn_topo::Shard, _>(&key, |cur| {
        let Some(mut s) = cur else {
            return Err(cairn_topo::TopoError::NoNode(format!(
                "shard {}/{}",
                ks.keyspace, ks.shard
            )));
        };
        if s.primary_alias.as_ref() == Some(&target) {
            return Ok(None);
        }
        s.primary_alias = Some(target.clone());
        s.primary_term_start_time = Some(Utc::now());
        Ok(Some(s))
    })
    .await
    .with_context(|| format!("updating shard {ks}"))?;
    if a.no_wait {
        println!("{alias} is now the primary of {ks} (not waiting for it to take over)");
        return Ok(());
    }
    let deadline = started + a.wait_timeout;
    loop {
        if let Some(info) = topo.get_tablet_info(alias).await? {
            let serving = info
                .health
                .as_ref()
                .is_some_and(|h| h.serving && h.mysqld_up);
            if info.tablet.value.tablet_type == TabletType::Primary && serving {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "shard {ks} names {alias} as primary, but the tablet did not report PRIMARY within {:?}",
                a.wait_timeout
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!(
        "{alias} is now the primary of {ks} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_that_block_promotion() {
        use JobKind::*;
        use JobState::*;
        // (kind, state, blocks)
        let cases = [
            (Backup, Pending, false),
            (Backup, Running, true),
            (Restore, Pending, true),
            (Restore, Running, true),
            (Backup, Succeeded, false),
            (Restore, Failed, false),
            (Restore, Cancelled, false),
        ];
        for (kind, state, blocks) in cases {
            assert_eq!(
                job_blocks_promotion(kind, state),
                blocks,
                "{kind:?} {state:?}"
            );
        }
    }
}
