//! What the benchmark reads: counts and revisions of etcd (through the topology
//! client), etcd's /metrics, the coordinator's `/api/v1/status`, and fields of
//! log lines.

use std::time::Instant;

use anyhow::bail;
use cairn::testkit::http_get;
use cairn_topo::Topo;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::common::{ms, pct};

/// `T::default()` for an option type of etcd-client, fixed by `_fix` (never
/// called): that crate is not a dependency of this package, so its types cannot be
/// named here, but their methods can be called.
pub fn default_for<T: Default>(_fix: impl FnOnce(T)) -> T {
    T::default()
}

/// Number of keys under `prefix`: a count-only range, no keys or values travel.
pub async fn count_keys(topo: &Topo, prefix: &str) -> anyhow::Result<i64> {
    let mut c = topo.raw_client_for_tests();
    let opts = default_for(|o| {
        let mut c = c.clone();
        drop(c.get("", Some(o)));
    })
    .with_prefix()
    .with_count_only();
    Ok(c.get(prefix, Some(opts)).await?.count())
}

/// Deletes every key under `prefix` in one request.
pub async fn delete_prefix(topo: &Topo, prefix: &str) -> anyhow::Result<()> {
    let mut c = topo.raw_client_for_tests();
    let opts = default_for(|o| {
        let mut c = c.clone();
        drop(c.delete("", Some(o)));
    })
    .with_prefix();
    c.delete(prefix, Some(opts)).await?;
    Ok(())
}

/// etcd's current revision.
pub async fn etcd_revision(topo: &Topo) -> anyhow::Result<i64> {
    let probe = format!("{}bench-probe", topo.keys().all());
    Ok(topo.get_raw(&probe).await?.1)
}

/// etcd's WAL fsyncs so far: (count, total seconds), from its /metrics.
pub async fn etcd_fsyncs(endpoint: &str) -> Option<(f64, f64)> {
    let port: u16 = endpoint.rsplit_once(':')?.1.parse().ok()?;
    let body = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .ok()?
        .ok()?
        .1;
    let get = |name: &str| -> Option<f64> {
        body.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((
        get("etcd_disk_wal_fsync_duration_seconds_count ")?,
        get("etcd_disk_wal_fsync_duration_seconds_sum ")?,
    ))
}

/// What this benchmark reads of `/api/v1/status`.
#[derive(Debug, Deserialize)]
pub struct Status {
    pub tablets: u64,
    pub revision: i64,
    pub is_leader: bool,
    /// Jobs not yet finished.
    pub jobs: Vec<serde::de::IgnoredAny>,
}

/// `/api/v1/status` of the coordinator (blocking HTTP, off the runtime).
pub async fn status(port: u16) -> anyhow::Result<Status> {
    tokio::task::spawn_blocking(move || {
        let (code, body) = http_get(port, "/api/v1/status")?;
        if code != 200 {
            bail!("status endpoint answered {code}");
        }
        Ok(serde_json::from_str::<Status>(&body)?)
    })
    .await?
}

/// Size of one `/api/v1/status` answer (KiB) and the median time of `n` calls (ms).
pub async fn status_cost(port: u16, n: usize) -> anyhow::Result<(f64, f64)> {
    tokio::task::spawn_blocking(move || {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..n {
            let t = Instant::now();
            let (_, body) = http_get(port, "/api/v1/status")?;
            times.push(ms(t.elapsed()));
            size = body.len();
        }
        times.sort_by(f64::total_cmp);
        Ok((size as f64 / 1024.0, pct(&times, 50.0)))
    })
    .await?
}

/// The first log line containing `needle`: its RFC3339 timestamp and the line.
pub fn log_line(log: &str, needle: &str) -> Option<(DateTime<Utc>, String)> {
    let line = log.lines().find(|l| l.contains(needle))?;
    let ts = line.split_whitespace().next()?;
    let t = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    Some((t, line.to_string()))
}

/// `name=VALUE` of a log line, as a number.
pub fn log_field(line: &str, name: &str) -> Option<u64> {
    let pat = format!("{name}=");
    let at = line.find(&pat)? + pat.len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
