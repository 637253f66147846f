//! Counting what is written to etcd: a watch over every key under the topology
//! root from a known revision, each event put in the class of its key (Health,
//! Tablet, job, backup record, …) with the bytes it wrote (key and value, what a
//! revision stores). Phases take the tally and start a new one.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use cairn_topo::watch::WatchEvent;
use cairn_topo::Topo;

/// What one class of keys saw (counted in whole events; fractions once divided
/// per run or scaled to a day).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Count {
    /// Puts (a create or an update: one revision each).
    pub puts: f64,
    /// Puts to a key that did not exist before (new keys).
    pub creates: f64,
    /// Deletes (explicit, or a lease that expired).
    pub deletes: f64,
    /// Bytes of key and value of every put.
    pub bytes: f64,
}

impl Count {
    /// `self - other`, floored at zero, for a background rate taken off.
    pub fn minus(&self, o: &Count) -> Count {
        Count {
            puts: (self.puts - o.puts).max(0.0),
            creates: (self.creates - o.creates).max(0.0),
            deletes: (self.deletes - o.deletes).max(0.0),
            bytes: (self.bytes - o.bytes).max(0.0),
        }
    }

    /// Every figure times `f`.
    pub fn scaled(&self, f: f64) -> Count {
        Count {
            puts: self.puts * f,
            creates: self.creates * f,
            deletes: self.deletes * f,
            bytes: self.bytes * f,
        }
    }

    /// Sum of two counts.
    pub fn plus(&self, o: &Count) -> Count {
        Count {
            puts: self.puts + o.puts,
            creates: self.creates + o.creates,
            deletes: self.deletes + o.deletes,
            bytes: self.bytes + o.bytes,
        }
    }
}

/// Counts by class name.
pub type Tally = BTreeMap<&'static str, Count>;

/// The class of a key below the root (`<root>/…`).
pub fn class(root: &str, key: &str) -> &'static str {
    let rest = key
        .strip_prefix(root)
        .unwrap_or(key)
        .trim_start_matches('/');
    if rest.starts_with("global/jobs/") {
        "job"
    } else if rest.starts_with("global/schedules/") {
        "schedule"
    } else if rest.starts_with("global/coordinator/") {
        "coordinator"
    } else if rest.starts_with("global/keyspaces/") {
        if rest.contains("/backups/") {
            "backup record"
        } else if rest.ends_with("/Shard") {
            "shard"
        } else if rest.ends_with("/Keyspace") {
            "keyspace"
        } else {
            "keyspace other"
        }
    } else if rest.ends_with("/Health") {
        "health"
    } else if rest.ends_with("/Tablet") {
        "tablet"
    } else {
        "other"
    }
}

/// Sum over every class.
pub fn total(t: &Tally) -> Count {
    t.values().fold(Count::default(), |a, c| a.plus(c))
}

/// A running counter: every event under the root since it started.
pub struct Counter {
    /// Counts since the last [`Counter::take`].
    tally: Arc<Mutex<Tally>>,
    /// The watch task.
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    /// Lists the root (the keys that exist now) and counts every event after it.
    pub async fn start(topo: &Topo) -> anyhow::Result<Counter> {
        let root = topo.keys().all();
        let (existing, rev) = topo.list_raw(&root).await?;
        let mut known: HashSet<String> = existing.into_iter().map(|(k, _, _)| k).collect();
        let tally = Arc::new(Mutex::new(Tally::new()));
        let mut watch = topo.watch(&root, true, rev + 1);
        let t = tally.clone();
        let task = tokio::spawn(async move {
            while let Some(ev) = watch.next().await {
                let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                match ev {
                    WatchEvent::Put { key, value, .. } => {
                        let c = t.entry(class(&root, &key)).or_default();
                        c.puts += 1.0;
                        c.bytes += (key.len() + value.len()) as f64;
                        if known.insert(key) {
                            c.creates += 1.0;
                        }
                    }
                    WatchEvent::Delete { key, .. } => {
                        t.entry(class(&root, &key)).or_default().deletes += 1.0;
                        known.remove(&key);
                    }
                    WatchEvent::Resync { .. } => {
                        // Not expected: nothing compacts the bench's etcd.
                        t.entry("lost to a compaction").or_default().puts += 1.0;
                    }
                }
            }
        });
        Ok(Counter { tally, task })
    }

    /// The counts since the previous call (or the start), and a fresh tally.
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
