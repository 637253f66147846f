//! The key layout of the contract. Every key is built here from validated names.

use crate::names::TabletAlias;

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
}
