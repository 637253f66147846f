//! `archive set|list|remove`: continuous binlog archiving, one record per shard
//! (`<root>/global/archives/<ks>/<shard>`) that the elected coordinator turns into
//! one ARCHIVE job per shard. Segments live in backup storage under
//! `_binlog/<ks>/<shard>/`; `remove` stops archiving and keeps them.
//!
//! `set KS` archives every shard the keyspace has now; an unknown keyspace or
//! shard is exit 2 with nothing written. `set` on an archived shard changes its
//! interval and keeps its state. `list --json` fields: `keyspace, shard,
//! interval_seconds, tablet, position, first_timestamp, last_timestamp,
//! segments, stored_bytes, loss_window_seconds, last_error`.

use anyhow::Context;
use cairn_topo::{ArchiveRecord, ArchiveState, Topo};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use super::args::{ArchiveCommand, ArchiveSetArgs, GlobalArgs};
use super::output::{opt, print_rows};
use super::UsageError;
use crate::coordinator::archive_plan::loss_window;
use crate::coordinator::schedule::Target;

/// Runs one `archive` subcommand.
pub async fn run(g: &GlobalArgs, c: ArchiveCommand) -> anyhow::Result<()> {
    let topo = super::connect_admin(g).await?;
    match c {
        ArchiveCommand::Set(a) => set(&topo, a).await,
        ArchiveCommand::List { json } => list(&topo, json).await,
        ArchiveCommand::Remove { target } => remove(&topo, &target).await,
    }
}

/// The shards a target names, checked against topo: an unknown keyspace or shard,
/// or a keyspace without shards, is a [`UsageError`].
async fn shards_of(topo: &Topo, target: &Target) -> anyhow::Result<Vec<(String, String)>> {
    match target {
        Target::Keyspace(ks) => {
            let shards = topo
                .list_shards(ks)
                .await
                .with_context(|| format!("listing the shards of {ks}"))?;
            if shards.is_empty() {
                return Err(UsageError(format!(
                    "keyspace {ks:?} has no shards (unknown keyspace?)"
                ))
                .into());
            }
            Ok(shards
                .into_iter()
                .map(|s| (ks.clone(), s.value.name))
                .collect())
        }
        Target::Shard { keyspace, shard } => {
            let found = topo
                .get_shard(keyspace, shard)
                .await
                .with_context(|| format!("reading shard {keyspace}/{shard}"))?;
            if found.is_none() {
                return Err(UsageError(format!("shard {keyspace}/{shard} does not exist")).into());
            }
            Ok(vec![(keyspace.clone(), shard.clone())])
        }
    }
}

async fn set(topo: &Topo, a: ArchiveSetArgs) -> anyhow::Result<()> {
    let shards = shards_of(topo, &a.target).await?;
    let interval_ms = u64::try_from(a.interval.as_millis()).unwrap_or(u64::MAX);
    for (ks, shard) in shards {
        let key = topo.keys().archive(&ks, &shard);
        topo.update_with::<ArchiveRecord, _>(&key, |cur| {
            let now = Utc::now();
            Ok(Some(match cur {
                Some(mut r) => {
                    r.interval_ms = interval_ms;
                    r.updated_at = Some(now);
                    r
                }
                None => ArchiveRecord {
                    keyspace: ks.clone(),
                    shard: shard.clone(),
                    interval_ms,
                    created_at: now,
                    updated_at: Some(now),
                    state: ArchiveState::default(),
                    gaps: Vec::new(),
                },
            }))
        })
        .await
        .with_context(|| format!("writing the archive setting of {ks}/{shard}"))?;
        println!("archiving {ks}/{shard} every {:?}", a.interval);
    }
    Ok(())
}

async fn remove(topo: &Topo, target: &Target) -> anyhow::Result<()> {
    let shards = match target {
        Target::Keyspace(ks) => {
            let prefix = format!("{}{ks}/", topo.keys().archives_prefix());
            topo.list::<ArchiveRecord>(&prefix)
                .await
                .context("listing archives")?
                .into_iter()
                .map(|(_, v)| (v.value.keyspace, v.value.shard))
                .collect()
        }
        Target::Shard { keyspace, shard } => vec![(keyspace.clone(), shard.clone())],
    };
    let mut removed = 0;
    for (ks, shard) in &shards {
        if topo
            .delete_if_exists(&topo.keys().archive(ks, shard))
            .await
            .with_context(|| format!("removing the archive setting of {ks}/{shard}"))?
        {
            removed += 1;
            println!("stopped archiving {ks}/{shard} (its segments stay in storage)");
        }
    }
    if removed == 0 {
        let what = match target {
            Target::Keyspace(ks) => ks.clone(),
            Target::Shard { keyspace, shard } => format!("{keyspace}/{shard}"),
        };
        return Err(UsageError(format!("{what} is not archived")).into());
    }
    Ok(())
}

/// One line of `archive list`.
#[derive(Debug, Serialize)]
pub struct ArchiveRow {
    pub keyspace: String,
    pub shard: String,
    pub interval_seconds: f64,
    pub tablet: Option<String>,
    pub position: String,
    pub first_timestamp: Option<String>,
    pub last_timestamp: Option<String>,
    pub segments: u64,
    pub stored_bytes: u64,
    pub loss_window_seconds: Option<f64>,
    pub last_error: Option<String>,
}

/// The row of one archive; `primary_position` is the shard primary's Health
/// position. Pure.
pub fn archive_row(r: &ArchiveRecord, primary_position: Option<&str>) -> ArchiveRow {
    let ts =
        |t: &Option<chrono::DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
    let st = &r.state;
    ArchiveRow {
        keyspace: r.keyspace.clone(),
        shard: r.shard.clone(),
        interval_seconds: r.interval_ms as f64 / 1000.0,
        tablet: st.tablet.as_ref().map(|t| t.to_string()),
        position: st.position.clone(),
        first_timestamp: ts(&st.first_timestamp),
        last_timestamp: ts(&st.last_timestamp),
        segments: st.segments,
        stored_bytes: st.stored_bytes,
        loss_window_seconds: loss_window(r, primary_position, Utc::now()).map(|d| d.as_secs_f64()),
        last_error: st.last_error.clone(),
    }
}

/// The shard primary's Health position, if it has one.
pub async fn primary_position(topo: &Topo, ks: &str, shard: &str) -> Option<String> {
    let primary = topo.get_shard(ks, shard).await.ok()??.value.primary_alias?;
    let info = topo.get_tablet_info(&primary).await.ok()??;
    info.health?.gtid_position
}

async fn list(topo: &Topo, json: bool) -> anyhow::Result<()> {
    let records = topo
        .list::<ArchiveRecord>(&topo.keys().archives_prefix())
        .await
        .context("listing archives")?;
    let mut rows = Vec::new();
    for (_, v) in records {
        let pos = primary_position(topo, &v.value.keyspace, &v.value.shard).await;
        rows.push(archive_row(&v.value, pos.as_deref()));
    }
    print_rows(
        json,
        &[
            "SHARD",
            "INTERVAL",
            "TABLET",
            "FIRST",
            "LAST",
            "SEGMENTS",
            "LOSS WINDOW",
            "ERROR",
        ],
        &rows,
        |r| {
            vec![
                format!("{}/{}", r.keyspace, r.shard),
                format!("{}s", r.interval_seconds),
                opt(&r.tablet),
                opt(&r.first_timestamp),
                opt(&r.last_timestamp),
                r.segments.to_string(),
                opt(&r.loss_window_seconds.map(|s| format!("{s:.1}s"))),
                opt(&r.last_error),
            ]
        },
    )
}
