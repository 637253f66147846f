//! Keeping a multi-member client on healthy members. etcd-client balances
//! requests over every endpoint at random and keeps reconnecting to a member
//! that accepts TCP but never answers (frozen, SIGSTOPped, partitioned away
//! with its socket open): every third request or so then hangs until its
//! deadline, and streams placed there stall until the HTTP/2 keepalive drops
//! them. So each member is checked every [`CHECK_EVERY`] through a client of its
//! own (a status call that must come back within [`CHECK_TIMEOUT`] and name a
//! leader); a member failing [`FAILURES_TO_REMOVE`] checks in a row is taken out
//! of the shared client's balancer while another member is healthy, and put back
//! as soon as it answers again. With no healthy member at all every endpoint is
//! put back, so the client is never left with fewer choices than it started with.
//!
//! The decision is [`decide`], a pure function; the loop around it is thin. Calls
//! [`crate::retry`] only.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::retry::with_timeout;

/// How often each member is checked.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a member may take to answer a check (connect included).
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Failed checks in a row before a member is taken out of the balancer. One:
/// leases with short TTLs (a few seconds) cannot wait longer, and taking a slow
/// member out costs nothing while another answers (it is back after its next
/// good check).
pub(crate) const FAILURES_TO_REMOVE: u32 = 1;

/// What the monitor knows of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    /// Whether the shared client may send requests to it.
    pub in_balancer: bool,
    /// Failed checks in a row (0: the last check succeeded).
    pub failures: u32,
}

/// A change to the shared client's balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Remove(usize),
    Add(usize),
}

/// The balancer changes after a round of checks: healthy members out of the
/// balancer go back in; members failing `failures_to_remove` checks in a row
/// come out while at least one healthy member stays in; with no healthy member
/// at all, every member goes back in.
pub(crate) fn decide(members: &[Member], failures_to_remove: u32) -> Vec<Change> {
    let healthy = |m: &Member| m.failures == 0;
    if !members.iter().any(healthy) {
        return (0..members.len())
            .filter(|&i| !members[i].in_balancer)
            .map(Change::Add)
            .collect();
    }
    let mut changes: Vec<Change> = (0..members.len())
        .filter(|&i| !members[i].in_balancer && healthy(&members[i]))
        .map(Change::Add)
        .collect();
    changes.extend(
        (0..members.len())
            .filter(|&i| members[i].in_balancer && members[i].failures >= failures_to_remove)
            .map(Change::Remove),
    );
    changes
}

/// Stops the monitor when the last [`crate::Topo`] clone holding it is dropped.
pub(crate) struct MonitorGuard(CancellationToken);

impl Drop for MonitorGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Starts checking `urls` (the endpoints `shared` balances over, spelled as they
/// were added) with clients built from `opts`. The first round runs before this
/// returns, so even a short-lived command avoids a frozen member. Nothing is
/// started for a single endpoint: there is nowhere to fail over to.
pub(crate) async fn start(
    shared: Client,
    urls: Vec<String>,
    opts: ConnectOptions,
) -> Option<Arc<MonitorGuard>> {
    if urls.len() < 2 {
        return None;
    }
    let mut state = State {
        members: vec![
            Member {
                in_balancer: true,
                failures: 0,
            };
            urls.len()
        ],
        clients: vec![None; urls.len()],
        shared,
        urls,
        opts,
    };
    state.round().await;
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = state.round() => {}
            }
        }
    });
    Some(Arc::new(MonitorGuard(token)))
}

/// The monitor's view of the members and its own client per member.
struct State {
    members: Vec<Member>,
    clients: Vec<Option<Client>>,
    shared: Client,
    urls: Vec<String>,
    opts: ConnectOptions,
}

impl State {
    /// Checks every member at once and applies [`decide`].
    async fn round(&mut self) {
        let opts = &self.opts;
        let checks = self
            .clients
            .iter_mut()
            .zip(&self.urls)
            .map(|(c, url)| check(c, url, opts));
        let results = futures::future::join_all(checks).await;
        for (m, ok) in self.members.iter_mut().zip(results) {
            m.failures = if ok { 0 } else { m.failures.saturating_add(1) };
        }
        for change in decide(&self.members, FAILURES_TO_REMOVE) {
            match change {
                Change::Remove(i) => match self.shared.remove_endpoint(&self.urls[i]).await {
                    Ok(()) => {
                        self.members[i].in_balancer = false;
                        warn!(
                            "etcd member {} does not answer health checks; requests go to \
                             the other members until it does",
                            self.urls[i]
                        );
                    }
                    Err(e) => warn!(
                        "cannot take etcd member {} out of rotation: {e}",
                        self.urls[i]
                    ),
                },
                Change::Add(i) => match self.shared.add_endpoint(&self.urls[i]).await {
                    Ok(()) => {
                        self.members[i].in_balancer = true;
                        info!(
                            "etcd member {} answers again; back in rotation",
                            self.urls[i]
                        );
                    }
                    Err(e) => warn!(
                        "cannot put etcd member {} back in rotation: {e}",
                        self.urls[i]
                    ),
                },
            }
        }
    }
}

/// Whether `url`'s member answers a status call and knows a leader; `client`
/// is (re)built as needed.
async fn check(client: &mut Option<Client>, url: &str, opts: &ConnectOptions) -> bool {
    let outcome = with_timeout(CHECK_TIMEOUT, "health check", async {
        if client.is_none() {
            *client = Some(Client::connect([url], Some(opts.clone())).await?);
        }
        let Some(c) = client.as_mut() else {
            return Ok(None);
        };
        Ok(Some(c.status().await?))
    })
    .await;
    match outcome {
        Ok(Some(status)) => status.leader() != 0,
        Ok(None) => false,
        Err(_) => {
            // A fresh connection next time: the old one may be stuck.
            *client = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(in_balancer: bool, failures: u32) -> Member {
        Member {
            in_balancer,
            failures,
        }
    }

    #[test]
    fn unhealthy_members_leave_and_come_back() {
        // With one failure enough (the setting in use), a member leaves at once.
        assert_eq!(
            decide(&[m(true, 0), m(true, 1)], FAILURES_TO_REMOVE),
            [Change::Remove(1)]
        );
        // The rules, with two failures in a row needed.
        use Change::*;
        let cases: &[(&[Member], &[Change])] = &[
            // All well: nothing to do.
            (&[m(true, 0), m(true, 0), m(true, 0)], &[]),
            // One failure is not enough.
            (&[m(true, 0), m(true, 1), m(true, 0)], &[]),
            // Two in a row: out.
            (&[m(true, 0), m(true, 2), m(true, 0)], &[Remove(1)]),
            // Already out and still failing: stays out.
            (&[m(true, 0), m(false, 7), m(true, 0)], &[]),
            // Answers again: back in.
            (&[m(true, 0), m(false, 0), m(true, 0)], &[Add(1)]),
            // Two failing, one healthy: both out, the healthy one stays.
            (
                &[m(true, 3), m(true, 2), m(true, 0)],
                &[Remove(0), Remove(1)],
            ),
            // A healthy member out of rotation comes back while another leaves.
            (
                &[m(false, 0), m(true, 2), m(true, 5)],
                &[Add(0), Remove(1), Remove(2)],
            ),
            // Nobody healthy: nothing is removed, everything goes back in.
            (&[m(true, 4), m(false, 9), m(true, 2)], &[Add(1)]),
            (&[m(true, 4), m(true, 4)], &[]),
        ];
        for (members, want) in cases {
            assert_eq!(decide(members, 2), *want, "{members:?}");
        }
    }
}
