//! Leases with a keepalive loop that notices loss and re-grants.
//!
//! Ephemeral keys (a tablet's Health, an election candidate, a shard lock) hang
//! on a lease; when the owner dies, etcd deletes them after the TTL. The loop
//! pings every TTL/3 and declares the lease lost when etcd says so (a reply with
//! TTL <= 0, "lease not found") or when no ping has been answered for a whole TTL
//! (the server is frozen or unreachable; by then etcd may have expired it). A
//! broken keepalive stream by itself is not a loss: the stream is reopened, and
//! its first reply proves whether the lease still lives. Nor is one ping left
//! unanswered for a ping interval: the stream is reopened too, so a stream stuck
//! on a frozen member of a multi-member cluster moves to one that answers
//! before the TTL is spent. On loss, the old lease is
//! revoked best-effort (so its keys cannot outlive our belief that they are
//! gone), a new one is granted as soon as etcd answers, and the new state is
//! announced so the owner re-puts its ephemeral keys.
//!
//! Calls [`crate::conn`] (the client) and [`crate::retry`] (deadlines, backoff).

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::conn::Topo;
use crate::error::{Result, TopoError};
use crate::retry::{next_delay, reconnect_backoff, with_timeout};

/// The lease as the keepalive loop last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// The current lease id (changes on re-grant).
    pub id: i64,
    /// Bumped on every re-grant, so a subscriber can tell "new lease" from "same".
    pub generation: u64,
    /// False between noticing a loss and the re-grant.
    pub alive: bool,
}

/// A lease kept alive in the background. Dropping it stops the keepalive (the
/// lease then expires after its TTL); [`LeaseHandle::revoke`] ends it at once.
pub struct LeaseHandle {
    /// The loop's announcements.
    state: watch::Receiver<LeaseState>,
    /// The keepalive loop, aborted on drop.
    task: JoinHandle<()>,
    /// For the final revoke.
    topo: Topo,
    /// TTL etcd granted, in seconds.
    ttl_secs: i64,
}

impl LeaseHandle {
    /// The current lease id.
    pub fn id(&self) -> i64 {
        self.state.borrow().id
    }

    /// The current state (id, generation, alive).
    pub fn state(&self) -> LeaseState {
        *self.state.borrow()
    }

    /// Whether the lease is believed alive right now.
    pub fn is_alive(&self) -> bool {
        self.state.borrow().alive
    }

    /// The TTL etcd granted, in seconds (at least the one asked for).
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Follow loss and re-grant: `changed().await` wakes on each.
    pub fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// Stops the keepalive and revokes the lease (deleting its keys), best effort
    /// within the request timeout. A lease that is already gone is fine.
    pub async fn revoke(self) -> Result<()> {
        self.task.abort();
        let id = self.id();
        let mut c = self.topo.client();
        match with_timeout(self.topo.request_timeout(), "lease revoke", async {
            Ok(c.lease_revoke(id).await?)
        })
        .await
        {
            Ok(_) => Ok(()),
            Err(TopoError::Etcd(etcd_client::Error::GRpcStatus(s)))
                if s.code() == tonic::Code::NotFound =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for LeaseHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Topo {
    /// Grants a lease of `ttl_secs` and keeps it alive, re-granting when lost.
    pub async fn lease(&self, ttl_secs: i64) -> Result<LeaseHandle> {
        self.lease_with(ttl_secs, true).await
    }

    /// Grants a lease; with `regrant` false the loop stops at the first loss
    /// (for a shard lock, a new lease would not bring the lock back).
    pub(crate) async fn lease_with(&self, ttl_secs: i64, regrant: bool) -> Result<LeaseHandle> {
        if ttl_secs < 1 {
            return Err(TopoError::Config(format!(
                "lease TTL must be at least 1s, got {ttl_secs}"
            )));
        }
        let sent = Instant::now();
        // etcd may raise a short TTL to its minimum; pace and judge by what it granted.
        let (id, ttl_secs) = self.grant(ttl_secs).await?;
        let (tx, rx) = watch::channel(LeaseState {
            id,
            generation: 0,
            alive: true,
        });
        let task = tokio::spawn(keepalive_loop(self.clone(), ttl_secs, tx, regrant, sent));
        Ok(LeaseHandle {
            state: rx,
            task,
            topo: self.clone(),
            ttl_secs,
        })
    }

    /// One grant call (retried on transient errors like every unary call);
    /// returns the id and the TTL etcd granted.
    async fn grant(&self, ttl_secs: i64) -> Result<(i64, i64)> {
        let resp = self
            .call("lease grant", |mut c| async move {
                Ok(c.lease_grant(ttl_secs, None).await?)
            })
            .await?;
        Ok((resp.id(), resp.ttl().max(ttl_secs)))
    }
}

/// Keeps the current lease alive; on loss, announces it and (if allowed)
/// re-grants, forever, until aborted.
async fn keepalive_loop(
    topo: Topo,
    ttl_secs: i64,
    tx: watch::Sender<LeaseState>,
    regrant: bool,
    mut granted_at: Instant,
) {
    let ttl = Duration::from_secs(ttl_secs.unsigned_abs());
    loop {
        let id = tx.borrow().id;
        let why = keep_alive_until_lost(&topo, id, ttl, granted_at).await;
        warn!("lease {id:x} lost: {why}");
        tx.send_modify(|s| s.alive = false);
        revoke_in_background(&topo, id);
        if !regrant {
            return;
        }
        let mut backoff = reconnect_backoff();
        let new_id = loop {
            granted_at = Instant::now();
            let mut c = topo.client();
            match with_timeout(topo.request_timeout(), "lease grant", async {
                Ok(c.lease_grant(ttl_secs, None).await?)
            })
            .await
            {
                Ok(r) => break r.id(),
                Err(e) => {
                    let d = next_delay(&mut backoff);
                    warn!(
                        "cannot re-grant lease at {}: {e}; retrying in {d:?}",
                        topo.endpoints()
                    );
                    tokio::time::sleep(d).await;
                }
            }
        };
        info!("lease re-granted: {new_id:x} replaces {id:x}");
        tx.send_modify(|s| {
            s.id = new_id;
            s.generation += 1;
            s.alive = true;
        });
    }
}

/// Revokes a lease we gave up on: it may still be alive on the server (we only
/// stopped hearing from it), and its keys must not linger as if we held them.
fn revoke_in_background(topo: &Topo, id: i64) {
    let topo = topo.clone();
    tokio::spawn(async move {
        let mut c = topo.client();
        let _ = with_timeout(topo.request_timeout(), "lease revoke", async {
            Ok(c.lease_revoke(id).await?)
        })
        .await;
    });
}

/// Pings until the lease is lost; returns why. `last_ok` is when the last ping
/// that was answered was *sent*: etcd extends the lease from when it receives a
/// ping, so this errs on the early side.
async fn keep_alive_until_lost(
    topo: &Topo,
    id: i64,
    ttl: Duration,
    mut last_ok: Instant,
) -> String {
    let interval = ttl / 3;
    let lost = |ttl: Duration| format!("no keepalive answer within the TTL ({ttl:?})");
    loop {
        // (Re)open the keepalive stream; its first reply tells whether the lease
        // lives. An attempt gets one ping interval: a stream stuck on a frozen
        // member is given up and reopened (the balancer may place it on another
        // member) well before the TTL runs out.
        let sent = Instant::now();
        let expires = last_ok + ttl;
        let mut c = topo.client();
        let opened =
            tokio::time::timeout_at((sent + interval).min(expires), c.lease_keep_alive(id)).await;
        let (mut keeper, mut stream) = match opened {
            Err(_) if Instant::now() >= expires => return lost(ttl),
            Err(_) => {
                warn!("lease {id:x} keepalive did not open within {interval:?}; retrying");
                continue;
            }
            Ok(Ok(ks)) => {
                last_ok = sent;
                ks
            }
            Ok(Err(e)) if is_lease_gone(&e) => return format!("etcd says: {e}"),
            Ok(Err(e)) => {
                warn!("lease {id:x} keepalive cannot start: {e}; retrying");
                let pause = Duration::from_millis(300).min(interval);
                if tokio::time::timeout_at(last_ok + ttl, tokio::time::sleep(pause))
                    .await
                    .is_err()
                {
                    return format!(
                        "no keepalive answer within the TTL ({ttl:?}); last error: {e}"
                    );
                }
                continue;
            }
        };
        loop {
            tokio::time::sleep(interval).await;
            let sent = Instant::now();
            let expires = last_ok + ttl;
            let ping = async {
                keeper.keep_alive().await?;
                stream.message().await
            };
            match tokio::time::timeout_at((sent + interval).min(expires), ping).await {
                Err(_) if Instant::now() >= expires => return lost(ttl),
                Err(_) => {
                    warn!("lease {id:x} keepalive unanswered for {interval:?}; reopening");
                    break;
                }
                Ok(Ok(Some(r))) if r.ttl() > 0 => last_ok = sent,
                Ok(Ok(Some(_))) => return "etcd answered with TTL 0 (expired)".to_string(),
                Ok(Ok(None)) => {
                    warn!("lease {id:x} keepalive stream ended; reopening");
                    break;
                }
                Ok(Err(e)) => {
                    warn!("lease {id:x} keepalive failed: {e}; reopening");
                    break;
                }
            }
        }
    }
}

/// Whether etcd said the lease does not exist (as opposed to not answering).
fn is_lease_gone(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains("not found"),
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::NotFound,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_gone_is_told_from_trouble() {
        assert!(is_lease_gone(&etcd_client::Error::LeaseKeepAliveError(
            "lease not found".into()
        )));
        assert!(is_lease_gone(&etcd_client::Error::GRpcStatus(
            tonic::Status::not_found("etcdserver: requested lease not found")
        )));
        assert!(!is_lease_gone(&etcd_client::Error::GRpcStatus(
            tonic::Status::unavailable("connection refused")
        )));
    }
}
