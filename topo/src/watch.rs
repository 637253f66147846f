//! Watches that survive etcd: a background task follows a key or prefix, resumes
//! from the last revision it delivered after any stream error or server restart
//! (so no event is lost), and when etcd has compacted the revisions it needs it
//! re-reads the current state and reports the gap as [`WatchEvent::Resync`].
//!
//! Progress notifications are not used to advance the resume point: etcd 3.4.23
//! may send them for watchers that have not caught up (fixed in 3.4.24), which
//! would skip events on a resume.
//!
//! Calls [`crate::conn`] (the client), [`crate::retry`] (deadlines, reconnect
//! backoff) and the store's raw reads (to re-read after a compaction). The typed
//! layer on top is [`crate::record_watch`].

use etcd_client::{EventType, WatchOptions, WatchResponse};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::conn::{key_string, Topo};
use crate::error::Result;
use crate::retry::{next_delay, reconnect_backoff, with_timeout};

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// The key was created or changed.
    Put {
        /// The key that changed.
        key: String,
        /// Its new raw value (JSON for records).
        value: Vec<u8>,
        /// The revision of the change; also the key's new version.
        mod_revision: i64,
    },
    /// The key was deleted (or its lease expired).
    Delete {
        /// The key that went away.
        key: String,
        /// The revision of the deletion.
        mod_revision: i64,
    },
    /// Events were lost to a compaction: this is the complete current state of
    /// the watched key or prefix at `revision`; the caller must reconcile against
    /// it (keys it knew that are missing here were deleted).
    Resync {
        /// The store revision of the snapshot; events that follow are newer.
        revision: i64,
        /// Every key present: (key, raw value, mod_revision).
        kvs: Vec<(String, Vec<u8>, i64)>,
    },
}

/// A running watch. Dropping it stops the background task.
pub struct WatchStream {
    /// Events from the background task, in revision order.
    rx: mpsc::Receiver<WatchEvent>,
    /// The task, aborted on drop so it does not outlive its reader.
    task: JoinHandle<()>,
}

impl WatchStream {
    /// The next event; `None` only if the background task ended (it does not end
    /// on its own while the stream is alive).
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Events buffered between the task and a slow reader; when full, the task stops
/// reading from etcd (flow control) instead of growing without bound.
const WATCH_BUFFER: usize = 256;

impl Topo {
    /// Watches a key (or every key under a prefix) from `start_revision`
    /// (0 = from now). See the module doc for what happens on errors.
    pub fn watch(&self, key_or_prefix: &str, prefix: bool, start_revision: i64) -> WatchStream {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let task = tokio::spawn(run_watch(
            self.clone(),
            key_or_prefix.to_string(),
            prefix,
            start_revision,
            tx,
        ));
        WatchStream { rx, task }
    }
}

/// Why one watch stream ended.
enum Ended {
    /// The reader is gone: stop.
    ReaderGone,
    /// Re-watch from the resume point after a pause.
    Retry,
    /// Re-watch from the resume point now (after a resync).
    Resume,
}

/// The watch loop: (re)open a stream from `next_rev`, deliver, repeat.
async fn run_watch(
    topo: Topo,
    key: String,
    prefix: bool,
    start_revision: i64,
    tx: mpsc::Sender<WatchEvent>,
) {
    // The first revision not yet delivered; 0 until the first stream is created
    // when watching "from now".
    let mut next_rev = start_revision.max(0);
    let mut backoff = reconnect_backoff();
    loop {
        // No prev_kv: events carry only the new value, and asking etcd for the
        // previous one costs it a lookup per event per watcher.
        let mut opts = WatchOptions::new();
        if prefix {
            opts = opts.with_prefix();
        }
        if next_rev > 0 {
            opts = opts.with_start_revision(next_rev);
        }
        let mut client = topo.client();
        let opened = with_timeout(topo.request_timeout(), "watch", async {
            Ok(client.watch(key.as_str(), Some(opts)).await?)
        })
        .await;
        let ended = match opened {
            Ok(mut stream) => {
                let mut ended = Ended::Retry;
                loop {
                    let msg = tokio::select! {
                        m = stream.message() => m,
                        _ = tx.closed() => { ended = Ended::ReaderGone; break; }
                    };
                    match msg {
                        Ok(Some(resp)) => {
                            match handle_response(&topo, &key, prefix, &resp, &mut next_rev, &tx)
                                .await
                            {
                                Some(e) => {
                                    ended = e;
                                    break;
                                }
                                None => {
                                    if resp.created() {
                                        backoff = reconnect_backoff();
                                    }
                                }
                            }
                        }
                        Ok(None) => {
                            warn!(
                                "watch on {key} ended by etcd; resuming from revision {next_rev}"
                            );
                            break;
                        }
                        Err(e) => {
                            warn!("watch on {key} failed: {e}; resuming from revision {next_rev}");
                            break;
                        }
                    }
                }
                ended
            }
            Err(e) => {
                warn!(
                    "cannot watch {key} at {}: {e}; retrying from revision {next_rev}",
                    topo.endpoints()
                );
                Ended::Retry
            }
        };
        match ended {
            Ended::ReaderGone => return,
            Ended::Resume => {}
            Ended::Retry => {
                let d = next_delay(&mut backoff);
                debug!("re-watching {key} in {d:?}");
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = tx.closed() => return,
                }
            }
        }
    }
}

/// Delivers one response. Returns why the stream must end, or `None` to go on.
async fn handle_response(
    topo: &Topo,
    key: &str,
    prefix: bool,
    resp: &WatchResponse,
    next_rev: &mut i64,
    tx: &mpsc::Sender<WatchEvent>,
) -> Option<Ended> {
    if resp.canceled() {
        if resp.compact_revision() > 0 {
            warn!(
                "watch on {key} from revision {next_rev} hit compaction at {}; re-reading the current state",
                resp.compact_revision()
            );
            let Some((kvs, rev)) = relist(topo, key, prefix, tx).await else {
                return Some(Ended::ReaderGone);
            };
            if tx
                .send(WatchEvent::Resync { revision: rev, kvs })
                .await
                .is_err()
            {
                return Some(Ended::ReaderGone);
            }
            *next_rev = rev + 1;
            return Some(Ended::Resume);
        }
        warn!(
            "watch on {key} canceled by etcd: {}; resuming from revision {next_rev}",
            resp.cancel_reason()
        );
        return Some(Ended::Retry);
    }
    if resp.created() && *next_rev == 0 {
        // "From now": everything after the creation revision is ours; resume
        // from there if this stream breaks before any event arrives.
        if let Some(h) = resp.header() {
            *next_rev = h.revision() + 1;
        }
    }
    for ev in resp.events() {
        let Some(kv) = ev.kv() else { continue };
        let rev = kv.mod_revision();
        let event = match ev.event_type() {
            EventType::Put => WatchEvent::Put {
                key: key_string(kv),
                value: kv.value().to_vec(),
                mod_revision: rev,
            },
            EventType::Delete => WatchEvent::Delete {
                key: key_string(kv),
                mod_revision: rev,
            },
        };
        if tx.send(event).await.is_err() {
            return Some(Ended::ReaderGone);
        }
        // Events of one revision (a txn) always arrive in one response, so
        // resuming after the highest delivered revision loses nothing.
        *next_rev = (*next_rev).max(rev + 1);
    }
    None
}

/// Reads the current state of the key or prefix, retrying until etcd answers or
/// the reader goes away (`None`).
async fn relist(
    topo: &Topo,
    key: &str,
    prefix: bool,
    tx: &mpsc::Sender<WatchEvent>,
) -> Option<(Vec<(String, Vec<u8>, i64)>, i64)> {
    let mut backoff = reconnect_backoff();
    loop {
        let res: Result<_> = if prefix {
            topo.list_raw(key).await
        } else {
            topo.get_raw(key).await.map(|(kv, rev)| {
                (
                    kv.map(|(v, m)| (key.to_string(), v, m))
                        .into_iter()
                        .collect(),
                    rev,
                )
            })
        };
        match res {
            Ok(r) => return Some(r),
            Err(e) => {
                let d = next_delay(&mut backoff);
                warn!("cannot re-read {key} after compaction: {e}; retrying in {d:?}");
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = tx.closed() => return None,
                }
            }
        }
    }
}
