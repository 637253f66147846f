//! The key layout of the contract. Every key is built here from validated names,
//! and parsed back here ([`Keys::parse`] into a [`TopoKey`]), so the layout lives
//! in one place. Pure; depends only on [`crate::names`].

use crate::names::TabletAlias;

/// A record key of the contract, parsed back (see [`Keys::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopoKey {
    /// `<root>/global/keyspaces/<keyspace>/Keyspace`
    Keyspace {
        /// The keyspace name.
        keyspace: String,
    },
    /// `<root>/global/keyspaces/<keyspace>/shards/<shard>/Shard`
    Shard {
        /// The keyspace name.
        keyspace: String,
        /// The shard name.
        shard: String,
    },
    /// `<root>/global/keyspaces/<keyspace>/shards/<shard>/backups/<name>`
    Backup {
        /// The keyspace name.
        keyspace: String,
        /// The shard name.
        shard: String,
        /// The backup name.
        name: String,
    },
    /// `<root>/<cell>/tablets/<alias>/Tablet`
    Tablet(TabletAlias),
    /// `<root>/<cell>/tablets/<alias>/Health`
    Health(TabletAlias),
    /// `<root>/global/jobs/<id>`
    Job(String),
    /// `<root>/global/schedules/<name>`
    Schedule(String),
    /// `<root>/global/archives/<keyspace>/<shard>`: a shard's binlog archive
    /// (setting and state, one small record; never a key per segment).
    Archive {
        /// The keyspace name.
        keyspace: String,
        /// The shard name.
        shard: String,
    },
}

/// Builds keys under one `--topo-root`.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// `root` is normalised to start with `/` and not end with one.
    pub fn new(root: &str) -> Self {
        let trimmed = root.trim_end_matches('/');
        let root = if trimmed.starts_with('/') {
            trimmed.to_string()
        } else {
            format!("/{trimmed}")
        };
        Self { root }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn global(&self) -> String {
        format!("{}/global/", self.root)
    }
    pub fn keyspaces_prefix(&self) -> String {
        format!("{}/global/keyspaces/", self.root)
    }
    pub fn keyspace(&self, ks: &str) -> String {
        format!("{}/global/keyspaces/{ks}/Keyspace", self.root)
    }
    pub fn shard_dir(&self, ks: &str, shard: &str) -> String {
        format!("{}/global/keyspaces/{ks}/shards/{shard}/", self.root)
    }
    pub fn shard(&self, ks: &str, shard: &str) -> String {
        format!("{}/global/keyspaces/{ks}/shards/{shard}/Shard", self.root)
    }
    pub fn shards_prefix(&self, ks: &str) -> String {
        format!("{}/global/keyspaces/{ks}/shards/", self.root)
    }
    pub fn backups_prefix(&self, ks: &str, shard: &str) -> String {
        format!(
            "{}/global/keyspaces/{ks}/shards/{shard}/backups/",
            self.root
        )
    }
    pub fn backup(&self, ks: &str, shard: &str, name: &str) -> String {
        format!(
            "{}/global/keyspaces/{ks}/shards/{shard}/backups/{name}",
            self.root
        )
    }
    pub fn shard_locks_prefix(&self, ks: &str, shard: &str) -> String {
        format!("{}/global/keyspaces/{ks}/shards/{shard}/locks/", self.root)
    }
    pub fn jobs_prefix(&self) -> String {
        format!("{}/global/jobs/", self.root)
    }
    pub fn job(&self, id: &str) -> String {
        format!("{}/global/jobs/{id}", self.root)
    }
    pub fn schedules_prefix(&self) -> String {
        format!("{}/global/schedules/", self.root)
    }
    pub fn schedule(&self, name: &str) -> String {
        format!("{}/global/schedules/{name}", self.root)
    }
    pub fn archives_prefix(&self) -> String {
        format!("{}/global/archives/", self.root)
    }
    pub fn archive(&self, ks: &str, shard: &str) -> String {
        format!("{}/global/archives/{ks}/{shard}", self.root)
    }
    pub fn coordinator_prefix(&self) -> String {
        format!("{}/global/coordinator/", self.root)
    }
    pub fn election(&self) -> String {
        format!("{}/global/coordinator/election", self.root)
    }
    pub fn cell_tablets_prefix(&self, cell: &str) -> String {
        format!("{}/{cell}/tablets/", self.root)
    }
    pub fn tablet_dir(&self, alias: &TabletAlias) -> String {
        format!("{}/{}/tablets/{alias}/", self.root, alias.cell)
    }
    pub fn tablet(&self, alias: &TabletAlias) -> String {
        format!("{}/{}/tablets/{alias}/Tablet", self.root, alias.cell)
    }
    pub fn health(&self, alias: &TabletAlias) -> String {
        format!("{}/{}/tablets/{alias}/Health", self.root, alias.cell)
    }
    /// Everything under the root: used to find tablets of every cell.
    pub fn all(&self) -> String {
        format!("{}/", self.root)
    }

    /// The record a key names, or `None` for any other key (outside the root,
    /// not a record, an empty segment, a tablet alias that does not parse or that
    /// lives under another cell's directory).
    pub fn parse(&self, key: &str) -> Option<TopoKey> {
        let rest = key.strip_prefix(self.root.as_str())?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let s = |p: &str| p.to_string();
        Some(match parts.as_slice() {
            ["global", "keyspaces", ks, "Keyspace"] => TopoKey::Keyspace { keyspace: s(ks) },
            ["global", "keyspaces", ks, "shards", shard, "Shard"] => TopoKey::Shard {
                keyspace: s(ks),
                shard: s(shard),
            },
            ["global", "keyspaces", ks, "shards", shard, "backups", name] => TopoKey::Backup {
                keyspace: s(ks),
                shard: s(shard),
                name: s(name),
            },
            ["global", "jobs", id] => TopoKey::Job(s(id)),
            ["global", "schedules", name] => TopoKey::Schedule(s(name)),
            ["global", "archives", ks, shard] => TopoKey::Archive {
                keyspace: s(ks),
                shard: s(shard),
            },
            [cell, "tablets", alias, leaf] if *cell != "global" => {
                let alias: TabletAlias = alias.parse().ok()?;
                if alias.cell != *cell {
                    return None;
                }
                match *leaf {
                    "Tablet" => TopoKey::Tablet(alias),
                    "Health" => TopoKey::Health(alias),
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    /// The key of a parsed record key (the inverse of [`Keys::parse`]).
    pub fn build(&self, key: &TopoKey) -> String {
        match key {
            TopoKey::Keyspace { keyspace } => self.keyspace(keyspace),
            TopoKey::Shard { keyspace, shard } => self.shard(keyspace, shard),
            TopoKey::Backup {
                keyspace,
                shard,
                name,
            } => self.backup(keyspace, shard, name),
            TopoKey::Tablet(a) => self.tablet(a),
            TopoKey::Health(a) => self.health(a),
            TopoKey::Job(id) => self.job(id),
            TopoKey::Schedule(name) => self.schedule(name),
            TopoKey::Archive { keyspace, shard } => self.archive(keyspace, shard),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_contract() {
        let k = Keys::new("cairn/");
        let a: TabletAlias = "zone1-101".parse().unwrap();
        assert_eq!(k.tablet(&a), "/cairn/zone1/tablets/zone1-0000000101/Tablet");
        assert_eq!(k.health(&a), "/cairn/zone1/tablets/zone1-0000000101/Health");
        assert_eq!(
            k.shard("ks", "-80"),
            "/cairn/global/keyspaces/ks/shards/-80/Shard"
        );
        assert_eq!(
            k.backup("ks", "0", "b1"),
            "/cairn/global/keyspaces/ks/shards/0/backups/b1"
        );
        assert_eq!(k.job("j"), "/cairn/global/jobs/j");
        assert_eq!(k.schedule("s"), "/cairn/global/schedules/s");
    }

    #[test]
    fn every_record_key_round_trips() {
        let a: TabletAlias = "zone1-101".parse().unwrap();
        for root in ["/cairn", "cairn/", "/a/b"] {
            let k = Keys::new(root);
            let table: Vec<(String, TopoKey)> = vec![
                (
                    k.keyspace("ks"),
                    TopoKey::Keyspace {
                        keyspace: "ks".into(),
                    },
                ),
                (
                    k.shard("ks", "-80"),
                    TopoKey::Shard {
                        keyspace: "ks".into(),
                        shard: "-80".into(),
                    },
                ),
                (
                    k.backup("ks", "80-", "20240101.000000.zone1-0000000101"),
                    TopoKey::Backup {
                        keyspace: "ks".into(),
                        shard: "80-".into(),
                        name: "20240101.000000.zone1-0000000101".into(),
                    },
                ),
                (k.tablet(&a), TopoKey::Tablet(a.clone())),
                (k.health(&a), TopoKey::Health(a.clone())),
                (k.job("j-1"), TopoKey::Job("j-1".into())),
                (k.schedule("nightly"), TopoKey::Schedule("nightly".into())),
                (
                    k.archive("ks", "-80"),
                    TopoKey::Archive {
                        keyspace: "ks".into(),
                        shard: "-80".into(),
                    },
                ),
            ];
            for (key, parsed) in table {
                assert_eq!(k.parse(&key), Some(parsed.clone()), "{key}");
                assert_eq!(k.build(&parsed), key);
            }
        }
    }

    #[test]
    fn foreign_and_garbage_keys_are_none() {
        let k = Keys::new("/cairn");
        let a: TabletAlias = "zone1-101".parse().unwrap();
        for key in [
            "".to_string(),
            "/cairn".to_string(),
            "/cairn/".to_string(),
            "/cairnx/global/jobs/j".to_string(),
            "/other/global/jobs/j".to_string(),
            "cairn/global/jobs/j".to_string(),
            "/cairn/global/jobs/".to_string(),
            "/cairn/global/jobs/j/x".to_string(),
            "/cairn/global/jobs//j".to_string(),
            "/cairn/global/schedules/".to_string(),
            "/cairn/global/archives/ks".to_string(),
            "/cairn/global/archives/ks/0/x".to_string(),
            "/cairn/global/keyspaces/ks/Other".to_string(),
            "/cairn/global/keyspaces/ks/shards/0/Other".to_string(),
            "/cairn/global/keyspaces/ks/shards/0/backups/".to_string(),
            "/cairn/global/keyspaces/ks/shards/0/backups/b/x".to_string(),
            k.shard_locks_prefix("ks", "0") + "0000000000000001",
            k.election() + "/0000000000000001",
            "/cairn/global/tablets/zone1-0000000101/Tablet".to_string(),
            "/cairn/zone1/tablets/not-an-alias/Tablet".to_string(),
            "/cairn/zone2/tablets/zone1-0000000101/Tablet".to_string(),
            "/cairn/zone1/tablets/zone1-0000000101/Other".to_string(),
            "/cairn/zone1/tablets/zone1-0000000101/Tablet/x".to_string(),
            k.tablet_dir(&a),
            k.all(),
        ] {
            assert_eq!(k.parse(&key), None, "{key:?}");
        }
    }
}
