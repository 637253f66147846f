//! The coordinator's in-memory picture of the topology: every tablet with its
//! health, shard, job, schedule and backup record, loaded with one list and kept
//! current by one prefix watch ("persist objects, rebuild relationships in memory").
//! A compaction gap is answered by a full reload (the watch's Resync).
//!
//! Owns [`TopoView`], what every pass reads (distinct from an etcd snapshot, see
//! `etcd_snapshot`). May call: `cairn-topo` (list, watch).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cairn_topo::typed::TabletInfo;
use cairn_topo::watch::WatchEvent;
use cairn_topo::{
    ArchiveRecord, BackupRecord, Health, Job, Keys, Schedule, Shard, Tablet, TabletAlias, Topo,
    TopoKey, Versioned,
};
use chrono::{DateTime, Utc};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

/// The picture itself.
#[derive(Debug, Default)]
pub struct TopoView {
    /// Tablet records by alias string.
    pub tablets: HashMap<String, Versioned<Tablet>>,
    /// Aliases of each shard's tablets (scheduling looks tablets up by shard).
    pub by_shard: HashMap<(String, String), std::collections::BTreeSet<String>>,
    /// Health by alias string (present while the agent lives).
    pub health: HashMap<String, Health>,
    /// When this picture saw each tablet's Health deleted (removed when it is
    /// back), so a job's tablet gets a grace before its job is failed.
    pub health_lost_at: HashMap<String, DateTime<Utc>>,
    /// When the picture was loaded (or reloaded after a gap): a Health missing
    /// since then is counted as lost from this moment.
    pub loaded_at: DateTime<Utc>,
    /// Shards by (keyspace, shard).
    pub shards: BTreeMap<(String, String), Versioned<Shard>>,
    /// Backup records by (keyspace, shard) then name.
    pub backups: BTreeMap<(String, String), BTreeMap<String, BackupRecord>>,
    /// Jobs by id.
    pub jobs: BTreeMap<String, Versioned<Job>>,
    /// Schedules by name.
    pub schedules: BTreeMap<String, Versioned<Schedule>>,
    /// Binlog archives by (keyspace, shard).
    pub archives: BTreeMap<(String, String), Versioned<ArchiveRecord>>,
    /// etcd revision the picture is current to.
    pub revision: i64,
    /// Records that did not parse (counted for the status page).
    pub bad_records: u64,
}

impl TopoView {
    fn apply_put(&mut self, keys: &Keys, key: &str, value: &[u8], version: i64) {
        fn parse<T: serde::de::DeserializeOwned>(
            key: &str,
            value: &[u8],
            bad: &mut u64,
        ) -> Option<T> {
            match serde_json::from_slice(value) {
                Ok(v) => Some(v),
                Err(e) => {
                    *bad += 1;
                    tracing::warn!(%key, error = %e, "skipping a record that does not parse");
                    None
                }
            }
        }
        let bad = &mut self.bad_records;
        let Some(parsed) = keys.parse(key) else {
            return;
        };
        match parsed {
            TopoKey::Tablet(alias) => {
                let a = alias.to_string();
                if let Some(t) = parse::<Tablet>(key, value, bad) {
                    let place = (t.keyspace.clone(), t.shard.clone());
                    if let Some(old) = self
                        .tablets
                        .insert(a.clone(), Versioned { value: t, version })
                    {
                        self.unindex(&a, &old.value);
                    }
                    self.by_shard.entry(place).or_default().insert(a);
                }
            }
            TopoKey::Health(alias) => {
                let a = alias.to_string();
                if let Some(h) = parse::<Health>(key, value, bad) {
                    self.health_lost_at.remove(&a);
                    self.health.insert(a, h);
                }
            }
            TopoKey::Shard {
                keyspace: ks,
                shard: s,
            } => {
                if let Some(v) = parse::<Shard>(key, value, bad) {
                    self.shards.insert((ks, s), Versioned { value: v, version });
                }
            }
            TopoKey::Backup {
                keyspace: ks,
                shard: s,
                name,
            } => {
                if let Some(v) = parse::<BackupRecord>(key, value, bad) {
                    self.backups.entry((ks, s)).or_default().insert(name, v);
                }
            }
            TopoKey::Job(id) => {
                if let Some(v) = parse::<Job>(key, value, bad) {
                    self.jobs.insert(id, Versioned { value: v, version });
                }
            }
            TopoKey::Schedule(name) => {
                if let Some(v) = parse::<Schedule>(key, value, bad) {
                    self.schedules.insert(name, Versioned { value: v, version });
                }
            }
            TopoKey::Archive {
                keyspace: ks,
                shard: s,
            } => {
                if let Some(v) = parse::<ArchiveRecord>(key, value, bad) {
                    self.archives
                        .insert((ks, s), Versioned { value: v, version });
                }
            }
            TopoKey::Keyspace { .. } => {}
        }
    }

    fn apply_delete(&mut self, keys: &Keys, key: &str) {
        let Some(parsed) = keys.parse(key) else {
            return;
        };
        match parsed {
            TopoKey::Tablet(alias) => {
                let a = alias.to_string();
                if let Some(old) = self.tablets.remove(&a) {
                    self.unindex(&a, &old.value);
                }
            }
            TopoKey::Health(alias) => {
                let a = alias.to_string();
                if self.health.remove(&a).is_some() {
                    self.health_lost_at.insert(a, Utc::now());
                }
            }
            TopoKey::Shard {
                keyspace: ks,
                shard: s,
            } => {
                self.shards.remove(&(ks, s));
            }
            TopoKey::Backup {
                keyspace: ks,
                shard: s,
                name,
            } => {
                if let Some(m) = self.backups.get_mut(&(ks, s)) {
                    m.remove(&name);
                }
            }
            TopoKey::Job(id) => {
                self.jobs.remove(&id);
            }
            TopoKey::Schedule(name) => {
                self.schedules.remove(&name);
            }
            TopoKey::Archive {
                keyspace: ks,
                shard: s,
            } => {
                self.archives.remove(&(ks, s));
            }
            TopoKey::Keyspace { .. } => {}
        }
    }

    /// The tablets of a shard with their health, sorted by alias.
    pub fn shard_tablets(&self, keyspace: &str, shard: &str) -> Vec<TabletInfo> {
        let Some(aliases) = self
            .by_shard
            .get(&(keyspace.to_string(), shard.to_string()))
        else {
            return Vec::new();
        };
        let mut out: Vec<TabletInfo> = aliases
            .iter()
            .filter_map(|a| {
                Some(TabletInfo {
                    tablet: self.tablets.get(a)?.clone(),
                    health: self.health.get(a).cloned(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.tablet.value.alias.cmp(&b.tablet.value.alias));
        out
    }

    fn unindex(&mut self, alias: &str, t: &Tablet) {
        let place = (t.keyspace.clone(), t.shard.clone());
        if let Some(set) = self.by_shard.get_mut(&place) {
            set.remove(alias);
            if set.is_empty() {
                self.by_shard.remove(&place);
            }
        }
    }

    /// Whether the tablet's agent is alive (its Health exists).
    pub fn has_health(&self, alias: &TabletAlias) -> bool {
        self.health.contains_key(&alias.to_string())
    }

    /// Since when the tablet (alias string) has been without Health as this picture
    /// saw it: the deletion it watched, else the load of the picture; `None` while
    /// Health is there.
    pub fn health_gone_since(&self, alias: &str) -> Option<DateTime<Utc>> {
        if self.health.contains_key(alias) {
            return None;
        }
        Some(
            self.health_lost_at
                .get(alias)
                .copied()
                .unwrap_or(self.loaded_at),
        )
    }
}

/// A shared, watched picture of the topology.
#[derive(Clone)]
pub struct Cache {
    /// The picture; readers take the read lock briefly.
    pub inner: Arc<RwLock<TopoView>>,
    /// The key layout under `--topo-root`, to tell which record a key holds.
    keys: Keys,
}

impl Cache {
    /// Loads everything under the root; returns the cache and starts nothing.
    pub async fn load(topo: &Topo) -> anyhow::Result<Cache> {
        let keys = topo.keys().clone();
        let mut snap = TopoView {
            loaded_at: Utc::now(),
            ..TopoView::default()
        };
        let (kvs, rev) = topo.list_raw(&topo.keys().all()).await?;
        for (k, v, ver) in kvs {
            snap.apply_put(&keys, &k, &v, ver);
        }
        snap.revision = rev;
        Ok(Cache {
            inner: Arc::new(RwLock::new(snap)),
            keys,
        })
    }

    /// Keeps the picture current until `cancel` fires. `changed` is notified after
    /// each batch of events, so loops can react at once.
    pub async fn follow(
        self,
        topo: Topo,
        changed: Arc<tokio::sync::Notify>,
        cancel: CancellationToken,
    ) {
        let start = self.inner.read().await.revision + 1;
        let mut watch = topo.watch(&topo.keys().all(), true, start);
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => return,
                ev = watch.next() => ev,
            };
            let Some(ev) = ev else { return };
            let mut snap = self.inner.write().await;
            // Wake the leader's loops only for what they act on: not for a Health
            // refresh of a tablet already known to be alive (thousands a second on a
            // big fleet) nor for keys outside the model; the loops' own tick covers
            // the rest.
            let wake = match ev {
                WatchEvent::Put {
                    key,
                    value,
                    mod_revision,
                } => {
                    let wake = match self.keys.parse(&key) {
                        Some(TopoKey::Health(alias)) => {
                            !snap.health.contains_key(&alias.to_string())
                        }
                        Some(TopoKey::Keyspace { .. }) | None => false,
                        Some(_) => true,
                    };
                    snap.apply_put(&self.keys, &key, &value, mod_revision);
                    snap.revision = snap.revision.max(mod_revision);
                    wake
                }
                WatchEvent::Delete { key, mod_revision } => {
                    let wake =
                        !matches!(self.keys.parse(&key), Some(TopoKey::Keyspace { .. }) | None);
                    snap.apply_delete(&self.keys, &key);
                    snap.revision = snap.revision.max(mod_revision);
                    wake
                }
                WatchEvent::Resync { revision, kvs } => {
                    tracing::warn!(
                        revision,
                        "topology watch had a gap; reloading the whole picture"
                    );
                    let mut fresh = TopoView {
                        loaded_at: Utc::now(),
                        ..TopoView::default()
                    };
                    for (k, v, ver) in kvs {
                        fresh.apply_put(&self.keys, &k, &v, ver);
                    }
                    fresh.revision = revision;
                    *snap = fresh;
                    true
                }
            };
            drop(snap);
            if wake {
                changed.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablets_are_indexed_by_shard() {
        let mut s = TopoView::default();
        let tablet = |uid: u32, shard: &str| {
            format!(
                r#"{{"alias":"zone1-{uid}","hostname":"h","mysql_host":"h","mysql_port":1,"port":2,
                "keyspace":"ks","shard":"{shard}","type":"REPLICA","base_type":"REPLICA",
                "started_at":"2026-01-01T00:00:00Z"}}"#
            )
        };
        let key = |uid: u32| format!("/cairn/zone1/tablets/zone1-{uid:010}/Tablet");
        s.apply_put(&Keys::new("/cairn"), &key(1), tablet(1, "0").as_bytes(), 1);
        s.apply_put(&Keys::new("/cairn"), &key(2), tablet(2, "0").as_bytes(), 2);
        s.apply_put(
            &Keys::new("/cairn"),
            &key(3),
            tablet(3, "80-").as_bytes(),
            3,
        );
        assert_eq!(s.shard_tablets("ks", "0").len(), 2);
        // A tablet re-registered elsewhere moves between shards.
        s.apply_put(
            &Keys::new("/cairn"),
            &key(2),
            tablet(2, "80-").as_bytes(),
            4,
        );
        assert_eq!(s.shard_tablets("ks", "0").len(), 1);
        assert_eq!(s.shard_tablets("ks", "80-").len(), 2);
        s.apply_delete(&Keys::new("/cairn"), &key(1));
        assert!(s.shard_tablets("ks", "0").is_empty());
        assert!(!s
            .by_shard
            .contains_key(&("ks".to_string(), "0".to_string())));
    }

    #[test]
    fn health_gone_since_the_delete_or_the_load() {
        let keys = Keys::new("/cairn");
        let key = "/cairn/zone1/tablets/zone1-0000000001/Health";
        let a = "zone1-0000000001";
        let loaded = Utc::now() - chrono::Duration::hours(1);
        let health = serde_json::to_vec(&Health::default()).unwrap();
        let mut s = TopoView {
            loaded_at: loaded,
            ..TopoView::default()
        };
        // Never seen: missing since the load.
        assert_eq!(s.health_gone_since(a), Some(loaded));
        s.apply_put(&keys, key, &health, 1);
        assert_eq!(s.health_gone_since(a), None);
        let before = Utc::now();
        s.apply_delete(&keys, key);
        let since = s.health_gone_since(a).unwrap();
        assert!(since >= before && since <= Utc::now(), "{since}");
        // Back: present again, and a later loss counts from its own delete.
        s.apply_put(&keys, key, &health, 2);
        assert_eq!(s.health_gone_since(a), None);
        assert!(s.health_lost_at.is_empty());
    }

    #[test]
    fn garbage_is_counted_and_skipped() {
        let mut s = TopoView::default();
        s.apply_put(&Keys::new("/cairn"), "/cairn/global/jobs/j1", b"{nope", 5);
        assert_eq!(s.bad_records, 1);
        assert!(s.jobs.is_empty());
        s.apply_delete(&Keys::new("/cairn"), "/cairn/global/jobs/j1");
    }
}
