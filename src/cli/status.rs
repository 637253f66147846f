//! `cairn status [--json]`: every shard's recoverability in the terminal, one line
//! per shard: its light (green/amber/red), the newest backup's age against what its
//! schedule allows, the last drill, the loss window and why it is not green.
//! Reads etcd directly (works with no coordinator running) and says
//! `no coordinator leader` when none leads. Changes nothing.
//!
//! Exit 0 when every shard is green or amber; 1 when any is red (a stale or
//! missing backup, or a failed drill), with one `error:` line naming them, so a
//! cron job or a monitoring check can run it as it is.
//!
//! May call: [`crate::coordinator::cache`] (loads the same picture the
//! coordinator keeps), [`crate::coordinator::recoverability`], the CLI's helpers.

use anyhow::{bail, Context};
use cairn_topo::{DrillResult, Topo};
use chrono::Utc;
use clap::Args;

use super::output::print_rows;
use crate::coordinator::cache::Cache;
use crate::coordinator::recoverability::{from_view, short_secs, Light, ShardPicture};

/// `cairn status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// A JSON array, one object per shard (the fields `/api/v1/status` gives each shard)
    #[arg(long)]
    pub json: bool,
}

/// The line said when no coordinator leads.
pub const NO_LEADER: &str = "no coordinator leader: nothing runs schedules, drills or retention";

pub async fn status(topo: &Topo, a: StatusArgs) -> anyhow::Result<()> {
    let cache = Cache::load(topo).await.context("reading the topology")?;
    let leader = topo
        .leader(&topo.keys().election())
        .await
        .context("reading the coordinator election")?;
    let pictures = {
        let view = cache.inner.read().await;
        from_view(&view, Utc::now())
    };
    print_rows(
        a.json,
        &[
            "SHARD",
            "HEALTH",
            "NEWEST BACKUP",
            "LAST DRILL",
            "LOSS WINDOW",
            "WHY",
        ],
        &pictures,
        cells,
    )?;
    if leader.is_none() {
        if a.json {
            eprintln!("{NO_LEADER}");
        } else {
            println!("{NO_LEADER}");
        }
    }
    let red: Vec<String> = pictures
        .iter()
        .filter(|p| p.health == Light::Red)
        .map(|p| format!("{}/{}", p.keyspace, p.shard))
        .collect();
    if !red.is_empty() {
        bail!("{} shard(s) red: {}", red.len(), red.join(", "));
    }
    Ok(())
}

/// One shard's table cells.
pub fn cells(p: &ShardPicture) -> Vec<String> {
    let newest = match (p.newest_backup_age_seconds, p.backup_max_age_seconds) {
        (Some(age), Some(max)) => format!("{} (max {})", short_secs(age), short_secs(max)),
        (Some(age), None) => format!("{} (no schedule)", short_secs(age)),
        (None, _) => "none".into(),
    };
    let drill = match &p.last_drill {
        None => "never".to_string(),
        Some(d) => {
            let outcome = match d.result {
                DrillResult::Succeeded => "ok",
                DrillResult::Failed => "FAILED",
            };
            match d.seconds {
                Some(s) => format!("{outcome} in {}", short_secs(s)),
                None => outcome.to_string(),
            }
        }
    };
    vec![
        format!("{}/{}", p.keyspace, p.shard),
        p.health.as_str().to_string(),
        newest,
        drill,
        p.loss_window_seconds
            .map_or_else(|| "-".to_string(), short_secs),
        if p.reasons.is_empty() {
            "-".to_string()
        } else {
            p.reasons.join("; ")
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::recoverability::{picture, LastDrill, SchedulePeriod};
    use std::time::Duration;

    #[test]
    fn one_line_per_shard() {
        let now = Utc::now();
        let sched = SchedulePeriod {
            name: "s".into(),
            target: "ks".into(),
            period: Duration::from_secs(86400),
        };
        let mut p = picture("ks", "0", &[], Some(&sched), None, now);
        assert_eq!(
            cells(&p),
            [
                "ks/0",
                "red",
                "none",
                "never",
                "-",
                "no complete backup; its schedule allows 1d"
            ]
        );
        p.newest_backup_age_seconds = Some(7200.0);
        p.last_drill = Some(LastDrill {
            backup: "b".into(),
            result: DrillResult::Succeeded,
            seconds: Some(252.0),
            verified_at: None,
            error: None,
        });
        p.loss_window_seconds = Some(3.0);
        let c = cells(&p);
        assert_eq!(c[2], "2h (max 1d)");
        assert_eq!(c[3], "ok in 4m12s");
        assert_eq!(c[4], "3s");
    }
}
