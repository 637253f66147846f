//! A replica's replication history, as the agent observed it, and the pure decisions
//! made from it: whether the replica is failing (its threads stopped on an error and
//! it has not yet run cleanly for [`CLEAN_PERIOD`] since), and when the agent may
//! restart replication again (exponential backoff, capped, after each restart that
//! stopped again).
//!
//! Nothing here does IO or reads a clock: every call takes `now`. The role room
//! ([`super::role`]) feeds observations in and asks before restarting; the health
//! room ([`super::health`]) publishes what it says. Table-tested in
//! `replication/tests.rs`. Calls `mysql`'s status types and `cairn-topo`'s records.

use std::time::Duration;

use cairn_topo::ReplicationError;
use chrono::{DateTime, Utc};

use crate::mysql::flavor::{ReplicationStatus, ThreadError};

/// How long replication must run without interruption after an error before the
/// replica counts as healthy (and may be backed up) again.
pub(super) const CLEAN_PERIOD: Duration = Duration::from_secs(30);

/// The wait before the restart that follows the first restart that failed; doubled
/// after each further failure.
pub(super) const RESTART_BACKOFF_BASE: Duration = Duration::from_secs(2);

/// The longest wait between two restarts.
pub(super) const RESTART_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// What mysqld reports about replication, as far as the agent's decisions care.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct ReplicationView {
    /// Both threads run.
    pub(super) running: bool,
    /// The server's last replication error, as one line for logs.
    pub(super) last_error: Option<String>,
    /// The error of a stopped thread (the SQL thread's first), with the thread's
    /// name; `None` while both threads run or when the server gave no error.
    pub(super) stop_error: Option<(&'static str, ThreadError)>,
}

impl From<&ReplicationStatus> for ReplicationView {
    fn from(s: &ReplicationStatus) -> Self {
        let running = s.io_running && s.sql_running;
        // A thread's error counts only while that thread is stopped: an error
        // column left over from before a restart says nothing about now.
        let sql = (!s.sql_running)
            .then(|| s.sql_error.clone().map(|e| ("sql", e)))
            .flatten();
        let io = (!s.io_running)
            .then(|| s.io_error.clone().map(|e| ("io", e)))
            .flatten();
        ReplicationView {
            running,
            last_error: s.last_error.clone(),
            stop_error: sql.or(io),
        }
    }
}

/// What the agent remembers of one replica's replication (reset when it follows a
/// new primary or stops being a replica).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct ReplicationHistory {
    /// The last error that stopped a thread; kept until replication has run
    /// cleanly for [`CLEAN_PERIOD`] after it.
    error: Option<ReplicationError>,
    /// Start of the current uninterrupted run of both threads.
    clean_since: Option<DateTime<Utc>>,
    /// When the agent last restarted replication on the same primary.
    restarted_at: Option<DateTime<Utc>>,
    /// Restarts after which the threads stopped again on an error, since the last
    /// clean period; drives the backoff.
    failed_restarts: u32,
    /// The stop now in progress was already counted (observations repeat every
    /// tick while the threads stay stopped).
    stop_counted: bool,
}

impl ReplicationHistory {
    /// Records one look at replication at `now` (`None`: mysqld is not configured as
    /// a replica). Returns whether it saw a new stop on an error: the caller counts
    /// those.
    pub(super) fn observe(&mut self, now: DateTime<Utc>, view: Option<&ReplicationView>) -> bool {
        let Some(view) = view else {
            self.clean_since = None;
            return false;
        };
        if view.running {
            self.stop_counted = false;
            let since = *self.clean_since.get_or_insert(now);
            if elapsed(since, now) >= CLEAN_PERIOD {
                self.error = None;
                self.failed_restarts = 0;
                self.restarted_at = None;
            }
            return false;
        }
        self.clean_since = None;
        let Some((thread, e)) = &view.stop_error else {
            // Stopped with no error (STOP SLAVE, still connecting): nothing to count.
            return false;
        };
        self.error = Some(ReplicationError {
            thread: (*thread).to_string(),
            errno: e.errno,
            message: e.message.clone(),
            seen_at: now,
        });
        if self.stop_counted {
            return false;
        }
        self.stop_counted = true;
        if self.restarted_at.is_some() {
            self.failed_restarts = self.failed_restarts.saturating_add(1);
        }
        true
    }

    /// Records that the agent restarted replication on the same primary at `now`.
    pub(super) fn restarted(&mut self, now: DateTime<Utc>) {
        self.restarted_at = Some(now);
        self.stop_counted = false;
        self.clean_since = None;
    }

    /// Forgets everything (a new primary, or no longer a replica).
    pub(super) fn reset(&mut self) {
        *self = ReplicationHistory::default();
    }

    /// The earliest time the agent may restart stopped threads again: `None` means
    /// now (no restart has failed since the last clean period).
    pub(super) fn next_restart_at(&self) -> Option<DateTime<Utc>> {
        let at = self.restarted_at?;
        if self.failed_restarts == 0 {
            return None;
        }
        let wait = restart_backoff(self.failed_restarts);
        Some(at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX))
    }

    /// The error that makes this replica failing, if it is.
    pub(super) fn error(&self) -> Option<&ReplicationError> {
        self.error.as_ref()
    }

    /// Since when both threads have run without interruption.
    pub(super) fn clean_since(&self) -> Option<DateTime<Utc>> {
        self.clean_since
    }

    /// Restarts that stopped again since the last clean period.
    pub(super) fn failed_restarts(&self) -> u32 {
        self.failed_restarts
    }
}

/// The wait before the next restart after `failed` restarts stopped again:
/// `BASE · 2^(failed-1)`, at most the cap; no wait before any restart failed.
pub(super) fn restart_backoff(failed: u32) -> Duration {
    if failed == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failed - 1).unwrap_or(u32::MAX);
    RESTART_BACKOFF_BASE
        .checked_mul(factor)
        .map_or(RESTART_BACKOFF_CAP, |d| d.min(RESTART_BACKOFF_CAP))
}

/// `now - since` as a std duration (zero if the clock went back).
fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests;
