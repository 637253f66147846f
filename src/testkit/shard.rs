//! What most cluster tests set up and then wait for, written once: a shard of a
//! primary and a replica holding rows in `app.t`, a tablet reaching a row count,
//! a replica healthy and replicating as `cairn get-tablets` shows it. Errors
//! quote the tablet's log tail, so a failing test says why.
//!
//! May call: the rest of the test kit (tablets, the CLI runner, [`wait_for`]).

use std::time::Duration;

use cairn_topo::Topo;

use super::{wait_for, Cluster, TabletProcess};

/// The table the shared set-up writes: `app.t (id INT PRIMARY KEY, v TEXT)`.
pub const ROWS_TABLE: &str = "app.t";

impl TabletProcess {
    /// Rows in `app.t`.
    pub fn rows(&self) -> anyhow::Result<u64> {
        let out = self.sql(&format!("SELECT COUNT(*) FROM {ROWS_TABLE}"))?;
        out.trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("row count {out:?} of {}: {e}", self.spec.alias()))
    }

    /// Waits until `app.t` holds exactly `n` rows.
    pub async fn wait_rows(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_value(
            &format!("SELECT COUNT(*) FROM {ROWS_TABLE}"),
            &n.to_string(),
            timeout,
        )
        .await
    }
}

impl Cluster {
    /// Waits until `cairn get-tablets --json` shows `alias` a healthy REPLICA
    /// with both replication threads running.
    pub async fn wait_replicating(&self, alias: &str, timeout: Duration) -> anyhow::Result<()> {
        wait_for(
            &format!("{alias} healthy, replicating REPLICA"),
            timeout,
            || async {
                let rows: Vec<serde_json::Value> =
                    serde_json::from_str(&self.cli_ok(&["get-tablets", "--json"])?)?;
                Ok(rows
                    .iter()
                    .find(|r| {
                        r["alias"] == alias
                            && r["type"] == "REPLICA"
                            && r["healthy"] == true
                            && r["replicating"] == true
                    })
                    .map(|_| ()))
            },
        )
        .await
    }

    /// A primary (`uid`) and a replica (`uid + 1`, started with `replica_flags`)
    /// of `keyspace/shard`, healthy; the first made primary; `rows` rows written
    /// into `app.t` (about 660 bytes each) and replicated; the replica replicating.
    pub async fn primary_and_replica(
        &self,
        topo: &Topo,
        (keyspace, shard): (&str, &str),
        uid: u32,
        replica_flags: &[String],
        rows: u64,
        timeout: Duration,
    ) -> anyhow::Result<(TabletProcess, TabletProcess)> {
        let p_spec = self.tablet(uid, keyspace, shard)?;
        let mut r_spec = self.tablet(uid + 1, keyspace, shard)?;
        r_spec.extra = replica_flags.to_vec();
        let mut p = self.spawn_tablet(&p_spec)?;
        let mut r = self.spawn_tablet(&r_spec)?;
        p.wait_healthy(topo, timeout).await?;
        r.wait_healthy(topo, timeout).await?;
        self.cli_ok(&[
            "init-shard-primary",
            &format!("{keyspace}/{shard}"),
            &p_spec.alias(),
        ])?;
        p.sql(&format!(
            "CREATE DATABASE app; CREATE TABLE {ROWS_TABLE} (id INT PRIMARY KEY, v TEXT); \
             INSERT INTO {ROWS_TABLE} SELECT seq, REPEAT(MD5(seq), 20) FROM app.seq_1_to_{rows}"
        ))?;
        r.wait_rows(rows, timeout).await?;
        self.wait_replicating(&r.spec.alias(), timeout).await?;
        Ok((p, r))
    }
}
