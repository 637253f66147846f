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
    BackupRecord, Health, Job, Schedule, Shard, Tablet, TabletAlias, Topo, Versioned,
};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

/// Which record a key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    Tablet(String),
    Health(String),
    Shard(String, String),
    Backup(String, String, String),
    Job(String),
    Schedule(String),
    Other,
}

/// Classifies a key under `root` (pure).
pub fn classify(root: &str, key: &str) -> KeyKind {
    let Some(rest) = key.strip_prefix(root).and_then(|r| r.strip_prefix('/')) else {
        return KeyKind::Other;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["global", "keyspaces", ks, "shards", shard, "Shard"] => {
            KeyKind::Shard(ks.to_string(), shard.to_string())
        }
        ["global", "keyspaces", ks, "shards", shard, "backups", name] => {
            KeyKind::Backup(ks.to_string(), shard.to_string(), name.to_string())
        }
        ["global", "jobs", id] => KeyKind::Job(id.to_string()),
        ["global", "schedules", name] => KeyKind::Schedule(name.to_string()),
        [cell, "tablets", alias, "Tablet"] if *cell != "global" => {
            KeyKind::Tablet(alias.to_string())
        }
        [cell, "tablets", alias, "Health"] if *cell != "global" => {
            KeyKind::Health(alias.to_string())
        }
        _ => KeyKind::Other,
    }
}

/// The picture itself.
#[derive(Debug, Default)]
pub struct TopoView {
    /// Tablet records by alias string.
    pub tablets: HashMap<String, Versioned<Tablet>>,
    /// Aliases of each shard's tablets (scheduling looks tablets up by shard).
    pub by_shard: HashMap<(String, String), std::collections::BTreeSet<String>>,
    /// Health by alias string (present while the agent lives).
    pub health: HashMap<String, Health>,
    /// Shards by (keyspace, shard).
    pub shards: BTreeMap<(String, String), Versioned<Shard>>,
    /// Backup records by (keyspace, shard) then name.
    pub backups: BTreeMap<(String, String), BTreeMap<String, BackupRecord>>,
    /// Jobs by id.
    pub jobs: BTreeMap<String, Versioned<Job>>,
    /// Schedules by name.
    pub schedules: BTreeMap<String, Versioned<Schedule>>,
    /// etcd revision the picture is current to.
    pub revision: i64,
    /// Records that did not parse (counted for the status page).
    pub bad_records: u64,
}

impl TopoView {
    fn apply_put(&mut self, root: &str, key: &str, value: &[u8], version: i64) {
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
        match classify(root, key) {
            KeyKind::Tablet(a) => {
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
            KeyKind::Health(a) => {
                if let Some(h) = parse::<Health>(key, value, bad) {
                    self.health.insert(a, h);
                }
            }
            KeyKind::Shard(ks, s) => {
                if let Some(v) = parse::<Shard>(key, value, bad) {
                    self.shards.insert((ks, s), Versioned { value: v, version });
                }
            }
            KeyKind::Backup(ks, s, name) => {
                if let Some(v) = parse::<BackupRecord>(key, value, bad) {
                    self.backups.entry((ks, s)).or_default().insert(name, v);
                }
            }
            KeyKind::Job(id) => {
                if let Some(v) = parse::<Job>(key, value, bad) {
                    self.jobs.insert(id, Versioned { value: v, version });
                }
            }
            KeyKind::Schedule(name) => {
                if let Some(v) = parse::<Schedule>(key, value, bad) {
                    self.schedules.insert(name, Versioned { value: v, version });
                }
            }
            KeyKind::Other => {}
        }
    }

    fn apply_delete(&mut self, root: &str, key: &str) {
        match classify(root, key) {
            KeyKind::Tablet(a) => {
                if let Some(old) = self.tablets.remove(&a) {
                    self.unindex(&a, &old.value);
                }
            }
            KeyKind::Health(a) => {
                self.health.remove(&a);
            }
            KeyKind::Shard(ks, s) => {
                self.shards.remove(&(ks, s));
            }
            KeyKind::Backup(ks, s, name) => {
                if let Some(m) = self.backups.get_mut(&(ks, s)) {
                    m.remove(&name);
                }
            }
            KeyKind::Job(id) => {
                self.jobs.remove(&id);
            }
            KeyKind::Schedule(name) => {
                self.schedules.remove(&name);
            }
            KeyKind::Other => {}
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
}

/// A shared, watched picture of the topology.
#[derive(Clone)]
pub struct Cache {
    /// The picture; readers take the read lock briefly.
    pub inner: Arc<RwLock<TopoView>>,
    /// `--topo-root`, to classify keys.
    root: String,
}

impl Cache {
    /// Loads everything under the root; returns the cache and starts nothing.
    pub async fn load(topo: &Topo) -> anyhow::Result<Cache> {
        let root = topo.keys().root().to_string();
        let mut snap = TopoView::default();
        let (kvs, rev) = topo.list_raw(&topo.keys().all()).await?;
        for (k, v, ver) in kvs {
            snap.apply_put(&root, &k, &v, ver);
        }
        snap.revision = rev;
        Ok(Cache {
            inner: Arc::new(RwLock::new(snap)),
            root,
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
                    let kind = classify(&self.root, &key);
                    let wake = match &kind {
                        KeyKind::Health(alias) => !snap.health.contains_key(alias),
                        KeyKind::Other => false,
                        _ => true,
                    };
                    snap.apply_put(&self.root, &key, &value, mod_revision);
                    snap.revision = snap.revision.max(mod_revision);
                    wake
                }
                WatchEvent::Delete { key, mod_revision } => {
                    let wake = classify(&self.root, &key) != KeyKind::Other;
                    snap.apply_delete(&self.root, &key);
                    snap.revision = snap.revision.max(mod_revision);
                    wake
                }
                WatchEvent::Resync { revision, kvs } => {
                    tracing::warn!(
                        revision,
                        "topology watch had a gap; reloading the whole picture"
                    );
                    let mut fresh = TopoView::default();
                    for (k, v, ver) in kvs {
                        fresh.apply_put(&self.root, &k, &v, ver);
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
    fn keys_are_classified() {
        let r = "/cairn";
        assert_eq!(
            classify(r, "/cairn/zone1/tablets/zone1-0000000001/Tablet"),
            KeyKind::Tablet("zone1-0000000001".into())
        );
        assert_eq!(
            classify(r, "/cairn/zone1/tablets/zone1-0000000001/Health"),
            KeyKind::Health("zone1-0000000001".into())
        );
        assert_eq!(
            classify(r, "/cairn/global/keyspaces/ks/shards/-80/Shard"),
            KeyKind::Shard("ks".into(), "-80".into())
        );
        assert_eq!(
            classify(r, "/cairn/global/keyspaces/ks/shards/0/backups/b1"),
            KeyKind::Backup("ks".into(), "0".into(), "b1".into())
        );
        assert_eq!(
            classify(r, "/cairn/global/jobs/j1"),
            KeyKind::Job("j1".into())
        );
        assert_eq!(
            classify(r, "/cairn/global/schedules/s"),
            KeyKind::Schedule("s".into())
        );
        assert_eq!(
            classify(r, "/cairn/global/keyspaces/ks/Keyspace"),
            KeyKind::Other
        );
        assert_eq!(
            classify(r, "/cairn/global/tablets/x/Tablet"),
            KeyKind::Other
        );
        assert_eq!(
            classify(r, "/cairnx/zone1/tablets/a/Tablet"),
            KeyKind::Other
        );
        assert_eq!(
            classify(r, "/cairn/global/keyspaces/ks/shards/0/locks/123"),
            KeyKind::Other
        );
    }

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
        s.apply_put("/cairn", &key(1), tablet(1, "0").as_bytes(), 1);
        s.apply_put("/cairn", &key(2), tablet(2, "0").as_bytes(), 2);
        s.apply_put("/cairn", &key(3), tablet(3, "80-").as_bytes(), 3);
        assert_eq!(s.shard_tablets("ks", "0").len(), 2);
        // A tablet re-registered elsewhere moves between shards.
        s.apply_put("/cairn", &key(2), tablet(2, "80-").as_bytes(), 4);
        assert_eq!(s.shard_tablets("ks", "0").len(), 1);
        assert_eq!(s.shard_tablets("ks", "80-").len(), 2);
        s.apply_delete("/cairn", &key(1));
        assert!(s.shard_tablets("ks", "0").is_empty());
        assert!(!s
            .by_shard
            .contains_key(&("ks".to_string(), "0".to_string())));
    }

    #[test]
    fn garbage_is_counted_and_skipped() {
        let mut s = TopoView::default();
        s.apply_put("/cairn", "/cairn/global/jobs/j1", b"{nope", 5);
        assert_eq!(s.bad_records, 1);
        assert!(s.jobs.is_empty());
        s.apply_delete("/cairn", "/cairn/global/jobs/j1");
    }
}
