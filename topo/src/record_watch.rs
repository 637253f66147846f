//! Typed watches on top of the raw [`WatchStream`]: [`Topo::watch_records`]
//! decodes every put under a prefix into a record, and [`Topo::list_and_watch`]
//! lists a prefix at one revision and watches from the next, so a cache built
//! from the list misses no change.
//!
//! A value that does not parse is surfaced as an error item
//! (`Err(TopoError::BadRecord)` in [`RecordEvent::Put`] or in a
//! [`RecordEvent::Resync`] entry), never a panic and never dropped: the caller
//! decides (count it, log it, forget the key). Resume and compaction behaviour is
//! the raw watch's (see [`crate::watch`]).
//!
//! Calls [`crate::watch`], [`crate::store`] and [`crate::codec`].

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::codec::{decode_versioned, Versioned};
use crate::conn::Topo;
use crate::error::{Result, TopoError};
use crate::watch::{WatchEvent, WatchStream};

/// One change under a typed watch.
#[derive(Debug)]
pub enum RecordEvent<T> {
    /// The key was created or changed; `record` is `Err(BadRecord)` when the
    /// new value does not parse as `T`.
    Put {
        /// The key that changed.
        key: String,
        /// The new record and its version (the revision of the change).
        record: Result<Versioned<T>, TopoError>,
    },
    /// The key was deleted (or its lease expired).
    Delete {
        /// The key that went away.
        key: String,
        /// The revision of the deletion.
        revision: i64,
    },
    /// Events were lost to a compaction: every key present at `revision`, sorted
    /// by key; keys the caller knew that are missing here were deleted.
    Resync {
        /// The store revision of the state; events that follow are newer.
        revision: i64,
        /// Every key present, with its record or the reason it does not parse.
        records: Vec<(String, Result<Versioned<T>, TopoError>)>,
    },
}

/// A running typed watch. Dropping it stops the watch.
pub struct RecordWatch<T> {
    /// The raw watch underneath.
    raw: WatchStream,
    /// The record type (no value of it is held).
    record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> RecordWatch<T> {
    /// The next change; `None` only if the watch ended (it does not end on its
    /// own while this is alive).
    pub async fn next(&mut self) -> Option<RecordEvent<T>> {
        self.raw.next().await.map(record_event)
    }
}

/// Decodes one raw watch event (pure).
fn record_event<T: DeserializeOwned>(ev: WatchEvent) -> RecordEvent<T> {
    match ev {
        WatchEvent::Put {
            key,
            value,
            mod_revision,
        } => RecordEvent::Put {
            record: decode_versioned(&key, &value, mod_revision),
            key,
        },
        WatchEvent::Delete { key, mod_revision } => RecordEvent::Delete {
            key,
            revision: mod_revision,
        },
        WatchEvent::Resync { revision, kvs } => RecordEvent::Resync {
            revision,
            records: kvs
                .into_iter()
                .map(|(key, value, version)| {
                    let record = decode_versioned(&key, &value, version);
                    (key, record)
                })
                .collect(),
        },
    }
}

impl Topo {
    /// Watches every key under `prefix` from `start_revision` (0 = from now),
    /// decoding values as `T`.
    pub fn watch_records<T: DeserializeOwned>(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> RecordWatch<T> {
        RecordWatch {
            raw: self.watch(prefix, true, start_revision),
            record: PhantomData,
        }
    }

    /// Lists `prefix` at one revision and watches it from the next one: every
    /// later change arrives on the watch. The list is [`Topo::list`]'s: records
    /// that do not parse are logged and left out of it (a later put of the same
    /// key arrives on the watch as usual).
    pub async fn list_and_watch<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<(Vec<(String, Versioned<T>)>, RecordWatch<T>)> {
        let (records, revision) = self.list_with_revision::<T>(prefix).await?;
        Ok((records, self.watch_records(prefix, revision + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_events_become_records_or_error_items() {
        let put = |v: &[u8]| WatchEvent::Put {
            key: "/k".into(),
            value: v.to_vec(),
            mod_revision: 7,
        };
        match record_event::<i32>(put(b"5")) {
            RecordEvent::Put { key, record } => {
                assert_eq!(key, "/k");
                assert_eq!(
                    record.unwrap(),
                    Versioned {
                        value: 5,
                        version: 7
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        match record_event::<i32>(put(b"{garbage")) {
            RecordEvent::Put {
                key,
                record: Err(TopoError::BadRecord { key: bad, .. }),
            } => {
                assert_eq!(key, "/k");
                assert_eq!(bad, "/k");
            }
            other => panic!("{other:?}"),
        }
        match record_event::<i32>(WatchEvent::Delete {
            key: "/k".into(),
            mod_revision: 9,
        }) {
            RecordEvent::Delete { key, revision } => {
                assert_eq!((key.as_str(), revision), ("/k", 9))
            }
            other => panic!("{other:?}"),
        }
        match record_event::<i32>(WatchEvent::Resync {
            revision: 12,
            kvs: vec![
                ("/a".into(), b"1".to_vec(), 3),
                ("/b".into(), b"x".to_vec(), 4),
            ],
        }) {
            RecordEvent::Resync { revision, records } => {
                assert_eq!(revision, 12);
                assert_eq!(records.len(), 2);
                assert_eq!(records[0].0, "/a");
                assert_eq!(
                    records[0].1.as_ref().unwrap(),
                    &Versioned {
                        value: 1,
                        version: 3
                    }
                );
                assert_eq!(records[1].0, "/b");
                assert!(matches!(records[1].1, Err(TopoError::BadRecord { .. })));
            }
            other => panic!("{other:?}"),
        }
    }
}
