//! Typed access to the records of the contract on top of [`Topo`]: tablets with
//! their health, shards, keyspaces, backup records, jobs and schedules. Each call is
//! one or two etcd round trips; callers that need more (the coordinator) keep their
//! own watched cache.
//!
//! Calls [`crate::store`] and [`crate::keys`] (keys are parsed with [`crate::keys::Keys::parse`]).

use std::collections::HashMap;

use chrono::Utc;

use crate::codec::{decode_versioned, Versioned};
use crate::conn::Topo;
use crate::error::{Result, TopoError};
use crate::fenced::Fenced;
use crate::keys::TopoKey;
use crate::names::TabletAlias;
use crate::records::{BackupRecord, Health, Job, Keyspace, Schedule, Shard, Tablet};

/// A tablet record with its (possibly absent) health.
#[derive(Debug, Clone)]
pub struct TabletInfo {
    /// The registration.
    pub tablet: Versioned<Tablet>,
    /// Present while the agent's lease lives.
    pub health: Option<Health>,
}

impl TabletInfo {
    /// The tablet answers for its type: agent alive, mysqld up, serving, and (for
    /// non-primaries) replicating with no recent replication failure.
    pub fn healthy(&self) -> bool {
        match &self.health {
            None => false,
            Some(h) => {
                h.mysqld_up
                    && h.serving
                    && (self.tablet.value.tablet_type == crate::TabletType::Primary
                        || (h.replicating() && !h.replication_failing()))
            }
        }
    }
}

impl Topo {
    /// Every tablet of every cell, with health, optionally filtered; sorted by alias.
    pub async fn list_tablets(
        &self,
        keyspace: Option<&str>,
        shard: Option<&str>,
    ) -> Result<Vec<TabletInfo>> {
        let (raw, _) = self.list_raw(&self.keys().all()).await?;
        let mut tablets: HashMap<TabletAlias, Versioned<Tablet>> = HashMap::new();
        let mut healths: HashMap<TabletAlias, Health> = HashMap::new();
        for (key, bytes, version) in raw {
            match self.keys().parse(&key) {
                Some(TopoKey::Tablet(alias)) => {
                    match decode_versioned::<Tablet>(&key, &bytes, version) {
                        Ok(t) => {
                            tablets.insert(alias, t);
                        }
                        Err(e) => {
                            tracing::warn!(%key, error = %e, "skipping tablet record that does not parse")
                        }
                    }
                }
                Some(TopoKey::Health(alias)) => match serde_json::from_slice::<Health>(&bytes) {
                    Ok(h) => {
                        healths.insert(alias, h);
                    }
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "skipping health record that does not parse")
                    }
                },
                _ => {}
            }
        }
        let mut out: Vec<TabletInfo> = tablets
            .into_iter()
            .filter(|(_, t)| keyspace.is_none_or(|k| t.value.keyspace == k))
            .filter(|(_, t)| shard.is_none_or(|s| t.value.shard == s))
            .map(|(alias, tablet)| TabletInfo {
                health: healths.remove(&alias),
                tablet,
            })
            .collect();
        out.sort_by(|a, b| a.tablet.value.alias.cmp(&b.tablet.value.alias));
        Ok(out)
    }

    /// One tablet with its health; `None` if it never registered.
    pub async fn get_tablet_info(&self, alias: &TabletAlias) -> Result<Option<TabletInfo>> {
        let Some(tablet) = self.get::<Tablet>(&self.keys().tablet(alias)).await? else {
            return Ok(None);
        };
        let health = match self.get::<Health>(&self.keys().health(alias)).await {
            Ok(h) => h.map(|v| v.value),
            Err(TopoError::BadRecord { key, reason }) => {
                tracing::warn!(%key, %reason, "ignoring health record that does not parse");
                None
            }
            Err(e) => return Err(e),
        };
        Ok(Some(TabletInfo { tablet, health }))
    }

    pub async fn get_shard(&self, ks: &str, shard: &str) -> Result<Option<Versioned<Shard>>> {
        self.get(&self.keys().shard(ks, shard)).await
    }

    /// Creates the keyspace and shard records when missing (idempotent, race-safe).
    pub async fn ensure_keyspace_shard(&self, ks: &str, shard: &str) -> Result<Versioned<Shard>> {
        self.writer(None).ensure_keyspace_shard(ks, shard).await
    }

    /// Keyspace names, sorted.
    pub async fn list_keyspaces(&self) -> Result<Vec<String>> {
        let prefix = self.keys().keyspaces_prefix();
        let mut out: Vec<String> = self
            .list::<Keyspace>(&prefix)
            .await?
            .into_iter()
            .filter(|(k, _)| k.ends_with("/Keyspace"))
            .map(|(_, v)| v.value.name)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Shards of a keyspace, sorted by name.
    pub async fn list_shards(&self, ks: &str) -> Result<Vec<Versioned<Shard>>> {
        let prefix = self.keys().shards_prefix(ks);
        let mut out: Vec<Versioned<Shard>> = self
            .list::<Shard>(&prefix)
            .await?
            .into_iter()
            .filter(|(k, _)| k.ends_with("/Shard"))
            .map(|(_, v)| v)
            .collect();
        out.sort_by(|a, b| a.value.name.cmp(&b.value.name));
        Ok(out)
    }

    /// Backup records of a shard, oldest first (names sort by time).
    pub async fn list_backup_records(
        &self,
        ks: &str,
        shard: &str,
    ) -> Result<Vec<Versioned<BackupRecord>>> {
        let mut out: Vec<Versioned<BackupRecord>> = self
            .list::<BackupRecord>(&self.keys().backups_prefix(ks, shard))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        out.sort_by(|a, b| {
            (a.value.backup_time, &a.value.name).cmp(&(b.value.backup_time, &b.value.name))
        });
        Ok(out)
    }

    /// All jobs, oldest first.
    pub async fn list_jobs(&self) -> Result<Vec<Versioned<Job>>> {
        let mut out: Vec<Versioned<Job>> = self
            .list::<Job>(&self.keys().jobs_prefix())
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        out.sort_by(|a, b| {
            (a.value.created_at, &a.value.id).cmp(&(b.value.created_at, &b.value.id))
        });
        Ok(out)
    }

    /// All schedules, by name.
    pub async fn list_schedules(&self) -> Result<Vec<Versioned<Schedule>>> {
        let mut out: Vec<Versioned<Schedule>> = self
            .list::<Schedule>(&self.keys().schedules_prefix())
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        out.sort_by(|a, b| a.value.name.cmp(&b.value.name));
        Ok(out)
    }
}

impl Fenced<'_> {
    /// Creates the keyspace and shard records when missing (idempotent, race-safe;
    /// fenced when this writer is). Returns the Shard record as it stands.
    pub async fn ensure_keyspace_shard(&self, ks: &str, shard: &str) -> Result<Versioned<Shard>> {
        let keys = self.topo().keys();
        let now = Utc::now();
        let keyspace = Keyspace {
            name: ks.to_string(),
            created_at: now,
        };
        self.create_if_absent(&keys.keyspace(ks), &keyspace, None)
            .await?;
        let record = Shard {
            keyspace: ks.to_string(),
            name: shard.to_string(),
            primary_alias: None,
            primary_term_start_time: None,
            latest_backup: None,
            latest_backup_time: None,
            created_at: now,
        };
        let key = keys.shard(ks, shard);
        self.create_if_absent(&key, &record, None).await?;
        self.topo()
            .get_shard(ks, shard)
            .await?
            .ok_or(TopoError::NoNode(key))
    }
}
